"""Many commands on one project in one process: the handlers queue them per aggregate, so
none conflicts with another; a pinned version still conflicts, with the actual version."""

from __future__ import annotations

import asyncio

import pytest

from contracts import commands as requests
from infra.eventstore import ConcurrencyError
from infra.ids import new_id
from services.projects import domain
from services.projects.handlers import ProjectsHandlers
from tests.integration.test_projects_handlers import ADA, NOW, FixedClock, meta, network, proposal

LENA = domain.Actor("freiland", "member", "lena")


@pytest.fixture
async def handlers(jetstream_store):
    handlers = ProjectsHandlers(jetstream_store, FixedClock(NOW), new_id)
    await network(handlers)
    return handlers


async def _staffed(handlers: ProjectsHandlers) -> str:
    body = proposal().model_copy(
        update={"roles": (proposal().roles[1].model_copy(update={"seats": 1}),)}
    )
    project_id = (await handlers.propose(body, meta(ADA))).aggregate_id
    invited = await handlers.invite(
        project_id, requests.InvitePartner(role_id="bags", member_id="lena"), meta(ADA)
    )
    await handlers.accept(project_id, invited.events[0].invitation_id, meta(LENA))
    return project_id


def _note(text: str) -> requests.ProgressNote:
    return requests.ProgressNote(note=text)


async def test_eight_concurrent_commands_on_one_project_all_succeed(jetstream_store, handlers):
    project_id = await _staffed(handlers)
    before = (await jetstream_store.load("project", project_id)).version

    outcomes = await asyncio.gather(
        *(handlers.record_progress(project_id, _note(f"step {n}"), meta(ADA)) for n in range(8))
    )

    history = await jetstream_store.load("project", project_id)
    new = [r for r in history.events if r.sequence > before]
    assert len(new) == 8
    assert sorted(r.event.note for r in new) == [f"step {n}" for n in range(8)]
    assert [o.version for o in outcomes] == [r.sequence for r in new]  # in arrival order
    assert len(handlers.locks) == 0


async def test_a_pinned_version_still_conflicts_and_names_the_actual_one(jetstream_store, handlers):
    project_id = await _staffed(handlers)
    seen = (await jetstream_store.load("project", project_id)).version

    results = await asyncio.gather(
        *(
            handlers.record_progress(project_id, _note(f"step {n}"), meta(ADA), seen)
            for n in range(4)
        ),
        return_exceptions=True,
    )

    winners = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, ConcurrencyError)]
    assert len(winners) == 1 and len(refused) == 3
    assert {(e.expected, e.actual) for e in refused} == {(seen, winners[0].version)}
    assert len(handlers.locks) == 0


async def test_refused_commands_release_the_project_for_the_next(jetstream_store, handlers):
    project_id = await _staffed(handlers)
    before = (await jetstream_store.load("project", project_id)).version

    results = await asyncio.gather(
        *(
            handlers.record_progress(project_id, _note("   " if n % 2 else f"step {n}"), meta(ADA))
            for n in range(6)
        ),
        return_exceptions=True,
    )

    assert [type(r).__name__ for r in results[1::2]] == ["InvalidCommandError"] * 3
    assert not any(isinstance(r, BaseException) for r in results[::2])
    assert (await jetstream_store.load("project", project_id)).version == before + 3
    assert len(handlers.locks) == 0
