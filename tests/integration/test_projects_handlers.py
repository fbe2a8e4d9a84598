"""The projects handlers on the real log: caching, conflicts, idempotent retries, expiry."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from contracts import commands as requests
from infra.eventstore import ConcurrencyError
from infra.ids import new_id
from services.projects import domain
from services.projects.app import expire_invitations
from services.projects.handlers import CommandMetadata, ProjectsHandlers
from tests.e2e.seed import project_body


class FixedClock:
    def __init__(self, now: datetime) -> None:
        self.current = now

    def now(self) -> datetime:
        return self.current


NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
OPS = domain.Actor("ops", "ops")
ADA = domain.Actor("mage", "coordinator", "ada")


def meta(actor: domain.Actor, key: str | None = None) -> CommandMetadata:
    return CommandMetadata(actor=actor, correlation_id=new_id(), idempotency_key=key)


async def network(handlers: ProjectsHandlers) -> None:
    for workspace_id in ("mage", "freiland"):
        await handlers.register_workspace(
            requests.RegisterWorkspace(
                workspace_id=workspace_id,
                name=workspace_id.title(),
                city="Somewhere",
                country="IT",
                location={"lat": 45.0, "long": 9.0},
                languages=["en"],
                timezone="Europe/Rome",
            ),
            meta(OPS),
        )
    for member_id, workspace_id, capability in (
        ("ada", "mage", "frame-welding"),
        ("lena", "freiland", "leather-sewing"),
        ("jonas", "freiland", "leather-sewing"),
    ):
        await handlers.join_workspace(
            workspace_id,
            requests.JoinWorkspace(
                member_id=member_id,
                name=member_id.title(),
                kind="artisan",
                capabilities=[{"capability": capability, "level": 4}],
                weekly_capacity={"hasNumericalValue": 20},
                languages=["en"],
            ),
            meta(domain.Actor(workspace_id, "coordinator")),
        )


def proposal() -> requests.ProposeProject:
    body = project_body()
    body["due"] = (NOW + timedelta(days=30)).isoformat()
    return requests.ProposeProject.model_validate(body)


@pytest.fixture
def clock():
    return FixedClock(NOW)


@pytest.fixture
async def handlers(jetstream_store, clock):
    handlers = ProjectsHandlers(jetstream_store, clock, new_id)
    await network(handlers)
    return handlers


async def test_two_writers_with_stale_caches_both_succeed_without_if_match(
    jetstream_store, clock, handlers
):
    created = await handlers.propose(proposal(), meta(ADA))
    other = ProjectsHandlers(jetstream_store, clock, new_id)  # another replica, cold cache
    await other.projects.load(created.aggregate_id)
    first = await handlers.invite(
        created.aggregate_id, requests.InvitePartner(role_id="bags", member_id="lena"), meta(ADA)
    )
    # `other` still believes the project is at the proposal's version: its append conflicts,
    # it refreshes and decides again on the current state.
    second = await other.invite(
        created.aggregate_id, requests.InvitePartner(role_id="bags", member_id="jonas"), meta(ADA)
    )
    assert second.version > first.version
    state, version = await ProjectsHandlers(jetstream_store, clock, new_id).projects.load(
        created.aggregate_id
    )
    assert [i.member_id for i in state.invitations] == ["lena", "jonas"]
    assert version == second.version


async def test_a_pinned_version_is_not_retried(handlers):
    created = await handlers.propose(proposal(), meta(ADA))
    await handlers.invite(
        created.aggregate_id, requests.InvitePartner(role_id="bags", member_id="lena"), meta(ADA)
    )
    with pytest.raises(ConcurrencyError) as refused:
        await handlers.invite(
            created.aggregate_id,
            requests.InvitePartner(role_id="bags", member_id="jonas"),
            meta(ADA),
            expected_version=created.version,
        )
    assert refused.value.actual > created.version


async def test_a_command_retried_with_its_idempotency_key_after_a_crash_acts_once(
    jetstream_store, clock, handlers
):
    first = await handlers.propose(proposal(), meta(ADA, key="mage/ada/k1"))
    # a fresh process (empty cache) receives the client's retry of the same request
    restarted = ProjectsHandlers(jetstream_store, clock, new_id)
    again = await restarted.propose(proposal(), meta(ADA, key="mage/ada/k1"))
    assert again.aggregate_id == first.aggregate_id
    assert again.duplicate and again.sequences == first.sequences
    history = await jetstream_store.load("project", first.aggregate_id)
    assert len(history.events) == 1


async def test_the_last_acceptance_and_staffed_are_one_atomic_append(jetstream_store, handlers):
    body = proposal().model_copy(
        update={"roles": (proposal().roles[1].model_copy(update={"seats": 1}),)}
    )
    created = await handlers.propose(body, meta(ADA))
    invited = await handlers.invite(
        created.aggregate_id, requests.InvitePartner(role_id="bags", member_id="lena"), meta(ADA)
    )
    invitation_id = invited.events[0].invitation_id
    accepted = await handlers.accept(
        created.aggregate_id, invitation_id, meta(domain.Actor("freiland", "member", "lena"))
    )
    assert [e.type for e in accepted.events] == ["project.invitation_accepted", "project.staffed"]
    assert accepted.sequences[1] == accepted.sequences[0] + 1
    recorded = (await jetstream_store.load("project", created.aggregate_id)).events
    assert recorded[-1].envelope.workspace_scope == ("freiland", "mage")


async def test_concurrent_acceptances_never_overfill_a_role(jetstream_store, clock, handlers):
    body = proposal().model_copy(
        update={"roles": (proposal().roles[1].model_copy(update={"seats": 1}),)}
    )
    created = await handlers.propose(body, meta(ADA))
    ids = {}
    for member in ("lena", "jonas"):
        outcome = await handlers.invite(
            created.aggregate_id,
            requests.InvitePartner(role_id="bags", member_id=member),
            meta(ADA),
        )
        ids[member] = outcome.events[0].invitation_id

    async def accept(member):
        replica = ProjectsHandlers(jetstream_store, clock, new_id)
        try:
            return await replica.accept(
                created.aggregate_id, ids[member], meta(domain.Actor("freiland", "member", member))
            )
        except (domain.RoleFullError, domain.IllegalTransitionError) as error:
            return error  # the seat, or the whole team, was completed by the other

    results = await asyncio.gather(accept("lena"), accept("jonas"))
    assert sum(isinstance(r, domain.DomainError) for r in results) == 1
    state, _ = await ProjectsHandlers(jetstream_store, clock, new_id).projects.load(
        created.aggregate_id
    )
    assert state.status == "staffed" and len(state.team) == 1


async def test_expired_invitations_are_swept(jetstream_store, clock, handlers, pg_pool, pg_schema):
    from infra.projections import ProjectionRunner
    from services.projects.views import WorkspaceViewProjection

    created = await handlers.propose(proposal(), meta(ADA))
    await handlers.invite(
        created.aggregate_id,
        requests.InvitePartner(
            role_id="bags", member_id="lena", expires_at=NOW + timedelta(hours=1)
        ),
        meta(ADA),
    )
    runner = ProjectionRunner(WorkspaceViewProjection(), jetstream_store, pg_pool, pg_schema)
    await runner.catch_up()
    assert await expire_invitations(handlers, pg_pool, clock) == 0
    clock.current = NOW + timedelta(hours=2)
    assert await expire_invitations(handlers, pg_pool, clock) == 1
    state, _ = await handlers.projects.load(created.aggregate_id, refresh=True)
    assert [i.status for i in state.invitations] == ["expired"]
    await runner.catch_up()
    assert await expire_invitations(handlers, pg_pool, clock) == 0
