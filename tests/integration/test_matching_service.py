"""The matching service on real NATS and PostgreSQL: proposals reach the log once, in the
service's normal flow, and survive crashes, restarts and rebuilds without being doubled."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest
import structlog
from typer.testing import CliRunner

from contracts.envelope import PendingEvent
from contracts.matching import CandidatesProposed
from contracts.projects import PartnerInvited
from contracts.wire import HEADER_MSG_ID, decode_body
from infra.auth import mint_token
from infra.eventstore import ANY
from infra.postgres import create_pool
from infra.rebuild import Rebuild
from services.matching.app import directory_projection, running
from services.matching.commands import app as matching_cli
from services.matching.directory import proposal_event_id
from services.matching.replay import verify_replay
from services.matching.taxonomy import load_taxonomy
from services.matching.weights import active_weights
from services.projects.app import running as projects_running
from tests.matching_world import World, role
from tests.waiting import eventually


async def append_world(store, world: World, start: int = 0) -> None:
    for aggregate, aggregate_id, pending in world.pending()[start:]:
        await store.append(aggregate, aggregate_id, [pending], ANY)


def small_world(scheme) -> World:
    world = World(scheme)
    world.workspace("mage", languages=("it", "en"))
    world.workspace("freiland", languages=("de", "en"))
    world.workspace("r84", languages=("it",))
    world.member("coord", "mage", {"industrial-design": 5})
    world.member("lena", "freiland", {"leather-sewing": 5}, languages=("de", "en"))
    world.member("marco", "r84", {"leather-sewing": 3}, languages=("it",))
    world.member("ada", "mage", {"laser-cutting": 5}, languages=("it", "en"))
    return world


async def proposals_of(store, project_id: str) -> list:
    history = await store.load("matching", project_id)
    return [r for r in history.events if isinstance(r.event, CandidatesProposed)]


async def outbox_rows(infrastructure) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(infrastructure.database_url)
    try:
        return await connection.fetch(
            f'SELECT * FROM "{infrastructure.schema("matching")}".outbox ORDER BY trigger_sequence'
        )
    finally:
        await connection.close()


async def test_a_proposed_project_gets_ranked_explained_candidates(infrastructure):
    store = infrastructure.store
    world = small_world(store.scheme)
    world.project("p1", (role("bags", "leather-sewing", 24, seats=2), role("film", "filmmaking")))
    async with running(infrastructure, poll_interval=0.2):
        await append_world(store, world)
        (recorded,) = await eventually(lambda: proposals_of(store, "p1"))
        (row,) = await eventually(
            lambda: outbox_rows(infrastructure),
            until=lambda rows: rows and rows[0]["status"] == "published",
        )
    proposal, trigger = recorded.event, world.recorded[-1]
    assert recorded.event_id == proposal_event_id(trigger.event_id)
    assert recorded.envelope.causation_id == trigger.event_id
    assert recorded.envelope.correlation_id == trigger.envelope.correlation_id
    assert recorded.envelope.workspace_scope == trigger.envelope.workspace_scope
    assert proposal.trigger_sequence == trigger.sequence
    bags, film = proposal.proposals
    assert [c.member_id for c in bags.candidates] == ["lena", "marco"]
    assert [f.factor for f in bags.candidates[0].factors][:2] == [
        "capability_level",
        "free_capacity",
    ]
    # bad input: a capability nobody has is an explicit, explained empty proposal
    assert film.candidates == ()
    assert (
        film.no_candidates_reason == "nobody in the network has filmmaking or a narrower capability"
    )
    assert {m.member_id for m in proposal.team.members} == {"lena", "marco"}
    assert not proposal.team.complete
    assert (row["outcome"], row["published_sequence"]) == ("appended", recorded.sequence)


async def test_the_service_serves_its_metrics(infrastructure):
    store = infrastructure.store
    world = small_world(store.scheme)
    world.project("p1", (role("film", "filmmaking"),))
    async with running(infrastructure, poll_interval=0.2, http_port=0) as service:
        await append_world(store, world)
        async with httpx.AsyncClient(base_url=service.url) as client:

            async def scrape() -> str:
                return (await client.get("/metrics")).text

            text = await eventually(scrape, until=lambda t: "mf_matching_published_total{" in t)
    proposed = 'mf_matching_proposals_total{trigger="project.proposed",outcome="some_role_empty"}'
    assert proposed in text
    assert 'mf_matching_published_total{outcome="appended"}' in text
    assert "mf_matching_propose_duration_seconds_count" in text


class Client:
    def __init__(self, url: str, secret: str, workspace: str, role_: str, member=None) -> None:
        token = mint_token(secret, workspace, role_, member)
        self.http = httpx.AsyncClient(
            base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=10
        )

    async def post(self, path: str, body: dict) -> dict:
        response = await self.http.post(path, json=body)
        assert response.status_code in (200, 201), response.text
        return response.json()


def member_body(member_id: str, capability: str, languages: list[str]) -> dict:
    return {
        "member_id": member_id,
        "name": member_id.title(),
        "kind": "artisan",
        "capabilities": [{"capability": capability, "level": 4}],
        "weekly_capacity": {"hasNumericalValue": 30, "hasUnit": "hour"},
        "languages": languages,
    }


async def test_a_project_proposed_over_http_is_matched_and_a_decline_rematched(infrastructure):
    store, secret = infrastructure.store, infrastructure.token_secret
    async with (
        projects_running(infrastructure) as projects,
        running(infrastructure, poll_interval=0.2),
    ):
        ops = Client(projects.url, secret, "ops", "ops")
        for ws, city, lat, long, languages in [
            ("mage", "Sesto San Giovanni", 45.53, 9.24, ["it", "en"]),
            ("r84", "Mantova", 45.16, 10.79, ["it"]),
        ]:
            await ops.post(
                "/workspaces",
                {
                    "workspace_id": ws,
                    "name": ws.upper(),
                    "city": city,
                    "country": "IT",
                    "location": {"lat": lat, "long": long},
                    "languages": languages,
                    "timezone": "Europe/Rome",
                },
            )
        await ops.post("/workspaces/mage/members", member_body("ada", "industrial-design", ["it"]))
        await ops.post("/workspaces/r84/members", member_body("bea", "leather-sewing", ["it"]))
        await ops.post("/workspaces/r84/members", member_body("carlo", "leather-sewing", ["it"]))
        coordinator = Client(projects.url, secret, "mage", "coordinator", "ada")
        created = await coordinator.post(
            "/projects",
            {
                "title": "Cargo bike panniers",
                "deliverable": "20 panniers",
                "delivery_location": {"lat": 45.53, "long": 9.24},
                "due": (datetime.now(UTC) + timedelta(days=40)).isoformat(),
                "roles": [
                    {
                        "role_id": "bags",
                        "capability": "leather-sewing",
                        "effortQuantity": {"hasNumericalValue": 40, "hasUnit": "hour"},
                    }
                ],
            },
        )
        project_id = created["id"]
        (first,) = await eventually(lambda: proposals_of(store, project_id))
        ranked = [c.member_id for c in first.event.proposals[0].candidates]
        assert sorted(ranked) == ["bea", "carlo"]

        # the coordinator invites from the proposal; the invited member declines
        await coordinator.post(
            f"/projects/{project_id}/invitations/from-proposal", {"role_id": "bags"}
        )
        history = await store.load("project", project_id)
        invitation = next(r.event for r in history.events if isinstance(r.event, PartnerInvited))
        assert invitation.member_id == ranked[0]
        member = Client(projects.url, secret, "r84", "member", ranked[0])
        await member.post(
            f"/projects/{project_id}/invitations/{invitation.invitation_id}/decline",
            {"reason": "fully booked"},
        )
        proposals = await eventually(
            lambda: proposals_of(store, project_id), until=lambda found: len(found) == 2
        )
        second = proposals[1].event
        assert second.trigger_type == "project.invitation_declined"
        assert [c.member_id for c in second.proposals[0].candidates] == [ranked[1]]
        for client in (ops, coordinator, member):
            await client.http.aclose()
    report = await verify_replay(store, load_taxonomy(), active_weights())
    assert report.ok and report.reproduced == 2


async def test_a_crash_between_computing_and_publishing_publishes_exactly_once(infrastructure):
    store = infrastructure.store
    world = small_world(store.scheme)
    world.project("p1", (role("bags", "leather-sewing"),))
    world.project("p2", (role("cut", "laser-cutting"),))
    async with running(infrastructure, publish=False) as service:  # "crashes" before publishing
        await append_world(store, world)
        await eventually(lambda: outbox_rows(infrastructure), until=lambda rows: len(rows) == 2)
        position = await service.runner.position()
    assert await proposals_of(store, "p1") == []
    # the append of p1's proposal landed, but the crash came before the row was marked
    envelope, event = decode_body((await outbox_rows(infrastructure))[0]["body"])
    await store.append("matching", "p1", [PendingEvent(envelope, event)], 0)
    for _ in range(2):  # restarted twice: nothing is proposed again, nothing is lost
        async with running(infrastructure, poll_interval=0.1) as service:
            rows = await eventually(
                lambda: outbox_rows(infrastructure),
                until=lambda rows: all(row["status"] == "published" for row in rows),
            )
            # the directory was loaded from its tables, not refolded from the log
            assert service.projection.network.position >= position
    assert [row["outcome"] for row in rows] == ["already in the log", "appended"]
    assert len(await proposals_of(store, "p1")) == 1
    assert len(await proposals_of(store, "p2")) == 1


async def test_bad_events_are_parked_and_matching_goes_on(infrastructure, nats_client):
    store = infrastructure.store
    world = small_world(store.scheme)
    async with running(infrastructure, poll_interval=0.1) as service:
        await append_world(store, world)
        await nats_client.jetstream().publish(
            store.scheme.event("project", "px", "proposed"),
            b'{"type": "project.proposed", "data": {}}',
            stream=store.stream,
            headers={HEADER_MSG_ID: "bad-1"},
        )
        world.project("p1", (role("bags", "leather-sewing"),))
        await append_world(store, world, start=len(world.recorded) - 1)
        await eventually(lambda: proposals_of(store, "p1"))
        pool = service.runner.pool
        parked = await pool.fetch("SELECT sequence, reason FROM parked_events")
    assert len(parked) == 1 and "undecodable" in parked[0]["reason"]


async def test_rebuilding_the_directory_proposes_nothing_again(infrastructure):
    store = infrastructure.store
    world = small_world(store.scheme)
    world.project("p1", (role("bags", "leather-sewing"),))
    async with running(infrastructure, poll_interval=0.1) as service:
        await append_world(store, world)
        await eventually(lambda: proposals_of(store, "p1"))
        before = await service.runner.pool.fetch("SELECT * FROM members ORDER BY member_id")
        projection, schema = directory_projection(infrastructure)
        pool = await create_pool(infrastructure.database_url, schema, max_size=3)
        try:
            async with Rebuild(projection, store, pool, schema) as rebuild:
                await rebuild.build()
                await rebuild.swap()
            after = await pool.fetch("SELECT * FROM members ORDER BY member_id")
        finally:
            await pool.close()
        world.project("p2", (role("cut", "laser-cutting"),))
        await append_world(store, world, start=len(world.recorded) - 1)
        await eventually(lambda: proposals_of(store, "p2"))
    assert after == before
    assert len(await proposals_of(store, "p1")) == 1
    assert [row["project_id"] for row in await outbox_rows(infrastructure)] == ["p1", "p2"]


@pytest.mark.parametrize("project_state", ["cancelled", "superseded"])
async def test_stale_proposals_are_skipped_with_the_reason(infrastructure, project_state):
    store = infrastructure.store
    world = small_world(store.scheme)
    world.project("p1", (role("bags", "leather-sewing"),))
    if project_state == "cancelled":
        world.cancel("p1")
    else:
        world.invite("p1", "i1", "bags", "lena", "freiland")
        world.decline("p1", "i1", "bags", "lena", "freiland")
    async with running(infrastructure, publish=False):
        await append_world(store, world)
        await eventually(lambda: outbox_rows(infrastructure))
        await eventually(lambda: _checkpoint_reached(infrastructure, world.sequence))
    async with running(infrastructure, poll_interval=0.1):
        rows = await eventually(
            lambda: outbox_rows(infrastructure),
            until=lambda rows: all(row["status"] != "pending" for row in rows),
        )
    statuses = [(row["trigger_type"], row["status"]) for row in rows]
    if project_state == "cancelled":
        assert statuses == [("project.proposed", "skipped")]
        assert "cancelled" in rows[0]["outcome"]
        assert await proposals_of(store, "p1") == []
    else:
        assert statuses == [
            ("project.proposed", "skipped"),
            ("project.invitation_declined", "published"),
        ]
        assert "later trigger" in rows[0]["outcome"]
        assert len(await proposals_of(store, "p1")) == 1


async def _checkpoint_reached(infrastructure, sequence: int) -> bool:
    connection = await asyncpg.connect(infrastructure.database_url)
    try:
        position = await connection.fetchval(
            f'SELECT position FROM "{infrastructure.schema("matching_directory")}".directory_state'
        )
    finally:
        await connection.close()
    return position >= sequence


async def test_the_cli_shows_proposals_status_and_verifies_the_replay(infrastructure, monkeypatch):
    store = infrastructure.store
    world = small_world(store.scheme)
    world.project("p1", (role("bags", "leather-sewing"),))
    async with running(infrastructure, poll_interval=0.1):
        await append_world(store, world)
        await eventually(lambda: proposals_of(store, "p1"))
    settings = infrastructure.settings
    for name, value in {
        "MF_NATS_URL": infrastructure.nats_url,
        "MF_DATABASE_URL": infrastructure.database_url,
        "MF_STREAM": settings.stream,
        "MF_SUBJECT_ROOT": settings.subject_root,
        "MF_SCHEMA_PREFIX": settings.schema_prefix,
    }.items():
        monkeypatch.setenv(name, value)
    runner = CliRunner()
    logging_config = structlog.get_config()  # the CLI configures logging: put it back after

    async def mf(*args: str):
        return await asyncio.to_thread(runner.invoke, matching_cli, list(args))

    try:
        shown = await mf("proposals", "p1")
        assert shown.exit_code == 0, shown.output
        assert "1. lena (freiland, leather-sewing L5" in shown.output
        status = await mf("status", "--json")
        assert status.exit_code == 0, status.output
        found = json.loads(status.output)
        assert found["members"] == 4 and found["outbox"] == {"published": 1}
        assert found["directory_position"] == found["log_head"]
        verified = await mf("verify-replay")
        assert verified.exit_code == 0, verified.output
        assert "1 proposals reproduced exactly, 0 differ" in verified.output
        missing = await mf("proposals", "nope")
        assert missing.exit_code == 1
    finally:
        structlog.configure(**logging_config)
