"""Webhook delivery and feeds on real NATS, PostgreSQL and a real local HTTP receiver."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from contracts.base import Event
from contracts.feeds import FeedMessage, decode_feed_message
from contracts.projects import InvitationAccepted, PartnerInvited, ProjectCancelled
from contracts.values import CapabilityLevel, Measure
from contracts.workspaces import MemberJoined
from infra.auth import mint_token
from infra.http_server import ServedApp, serve_http
from infra.postgres import create_pool
from infra.projections import ProjectionRunner
from infra.rebuild import Rebuild
from services.notifications.app import NotificationsService, running
from services.notifications.projection import AudienceProjection
from services.notifications.receiver import ReferenceReceiver
from services.notifications.signing import HEADER_TIMESTAMP, SignatureError, verify_signature
from services.notifications.webhooks import DeliveryPolicy
from tests.factories import note, pending, project_proposed
from tests.waiting import eventually

EXAMPLE_SUBSCRIBER = Path(__file__).resolve().parents[2] / "examples" / "feed_subscriber.py"
FAST = DeliveryPolicy(
    max_attempts=5,
    base_delay=0.05,
    max_delay=0.2,
    timeout=2.0,
    lease_seconds=10.0,
    poll_interval=0.1,
)


class Log:
    """Appends events as the services would, tracking each aggregate's version."""

    def __init__(self, store) -> None:
        self.store = store
        self.versions: dict[tuple[str, str], int] = {}
        self.event_ids: list[str] = []

    async def add(self, event: Event, aggregate_id: str) -> str:
        key = (event.aggregate(), aggregate_id)
        message = pending(event, aggregate_id)
        result = await self.store.append(key[0], aggregate_id, [message], self.versions.get(key, 0))
        self.versions[key] = result.version
        self.event_ids.append(message.envelope.event_id)
        return message.envelope.event_id


def private_project(project_id: str):
    return project_proposed(project_id).model_copy(update={"open_call": False})


def invite(project_id: str, member_id: str, workspace_id: str, role_id: str = "frame"):
    return PartnerInvited(
        project_id=project_id,
        invitation_id=f"inv-{member_id}-{role_id}",
        role_id=role_id,
        member_id=member_id,
        member_workspace_id=workspace_id,
    )


def accept(project_id: str, member_id: str, workspace_id: str, role_id: str = "frame"):
    return InvitationAccepted(
        project_id=project_id,
        invitation_id=f"inv-{member_id}-{role_id}",
        role_id=role_id,
        member_id=member_id,
        member_workspace_id=workspace_id,
    )


def member_joined(member_id: str, workspace_id: str, *capabilities: str) -> MemberJoined:
    return MemberJoined(
        member_id=member_id,
        workspace_id=workspace_id,
        name=f"Member {member_id}",
        kind="artisan",
        capabilities=tuple(CapabilityLevel(capability=c, level=4) for c in capabilities),
        weekly_capacity=Measure(hasNumericalValue=20),
        languages=("en",),
    )


@contextlib.asynccontextmanager
async def receiving(receiver: ReferenceReceiver) -> AsyncIterator[ServedApp]:
    async with serve_http(receiver.app()) as served:
        yield served


async def hook(service: NotificationsService, receiver, served, workspace_id: str, **options):
    """Register an endpoint of `workspace_id` at <receiver>/<workspace_id>."""
    endpoint, secret = await service.repository.create_endpoint(
        workspace_id, f"{served.url}/{workspace_id}", **options
    )
    receiver.secrets[f"/{workspace_id}"] = secret
    return endpoint


async def settled(service: NotificationsService, workspace_id: str, count: int) -> list[dict]:
    """Wait for `count` deliveries of the workspace, none pending; oldest first."""

    async def probe():
        return await service.repository.list_deliveries(workspace_id=workspace_id)

    rows = await eventually(
        probe,
        until=lambda rows: len(rows) == count and all(r["status"] != "pending" for r in rows),
    )
    return sorted(rows, key=lambda row: row["sequence"])


def fail_first(failures: int, status: int = 500):
    async def answer(_path: str, count: int, _headers) -> int:
        return status if count < failures else 200

    return answer


async def test_500_twice_then_200_is_delivered_once_with_three_attempts_in_project_order(
    infrastructure,
):
    receiver = ReferenceReceiver(answer=fail_first(2))
    log = Log(infrastructure.store)
    async with receiving(receiver) as served, running(infrastructure, policy=FAST) as service:
        await hook(service, receiver, served, "mage")
        first = await log.add(private_project("p1"), "p1")
        second = await log.add(note("p1", "frame drawings shared"), "p1")
        third = await log.add(note("p1", "leather ordered"), "p1")
        deliveries = await settled(service, "mage", 3)

        assert [row["status"] for row in deliveries] == ["delivered"] * 3
        log_of_first = (await service.repository.get_delivery(deliveries[0]["delivery_id"]))[
            "attempt_log"
        ]
        assert [(a["outcome"], a["status_code"]) for a in log_of_first] == [
            ("failed", 500),
            ("failed", 500),
            ("delivered", 200),
        ]
        assert all(a["latency_ms"] is not None for a in log_of_first)
        assert [row["attempts"] for row in deliveries] == [3, 1, 1]
        # event n+1 of the project went only after event n succeeded
        assert [(r.event_id, r.status) for r in receiver.at("/mage")] == [
            (first, 500),
            (first, 500),
            (first, 200),
            (second, 200),
            (third, 200),
        ]
        assert all(request.signature_error is None for request in receiver.received)


async def test_the_signature_verifies_with_the_shared_secret_only_and_only_while_fresh(
    infrastructure,
):
    receiver = ReferenceReceiver()
    log = Log(infrastructure.store)
    async with receiving(receiver) as served, running(infrastructure, policy=FAST) as service:
        await hook(service, receiver, served, "mage")
        await log.add(private_project("p1"), "p1")
        await settled(service, "mage", 1)
    request = receiver.at("/mage")[0]
    secret = receiver.secrets["/mage"]
    sent_at = int(request.headers[HEADER_TIMESTAMP.lower()])
    assert abs(sent_at - time.time()) < 60
    assert verify_signature(secret, request.headers, request.body) == sent_at
    with pytest.raises(SignatureError, match="does not match"):
        verify_signature("whsec_not-the-shared-secret-at-all", request.headers, request.body)
    with pytest.raises(SignatureError, match="old"):
        verify_signature(secret, request.headers, request.body, tolerance=300, now=sent_at + 301)


async def test_a_dead_lettered_delivery_frees_the_next_and_is_redelivered_on_request(
    infrastructure,
):
    policy = replace(FAST, max_attempts=3, base_delay=0.02, max_delay=0.05, timeout=2)
    broken: set[str] = set()

    async def answer(_path, _count, headers) -> int:
        return 503 if headers.get("mf-event-id") in broken else 200

    receiver = ReferenceReceiver(answer=answer)
    log = Log(infrastructure.store)
    async with receiving(receiver) as served, running(infrastructure, policy=policy) as service:
        await hook(service, receiver, served, "mage")
        proposal = pending(private_project("p1"), "p1")
        broken.add(proposal.envelope.event_id)
        await infrastructure.store.append("project", "p1", [proposal], 0)
        log.versions[("project", "p1")] = 1
        later = await log.add(note("p1", "still going"), "p1")
        deliveries = await settled(service, "mage", 2)

        assert [row["status"] for row in deliveries] == ["dead", "delivered"]
        assert deliveries[0]["attempts"] == 3
        dead = await service.repository.list_dead_letters(workspace_id="mage")
        assert [letter["event_id"] for letter in dead] == [proposal.envelope.event_id]
        assert "3 attempts failed; last: HTTP 503" in dead[0]["reason"]
        assert receiver.accepted("/mage")[0].event_id == later

        broken.clear()  # the receiver is fixed
        await service.repository.redeliver(deliveries[0]["delivery_id"])
        service.wake()
        deliveries = await settled(service, "mage", 2)
        assert [row["status"] for row in deliveries] == ["delivered", "delivered"]
        attempts = (await service.repository.get_delivery(deliveries[0]["delivery_id"]))[
            "attempt_log"
        ]
        assert [a["status_code"] for a in attempts] == [503, 503, 503, 200]
        assert await service.repository.list_dead_letters(workspace_id="mage") == []
        history = await service.repository.list_dead_letters(
            workspace_id="mage", include_redelivered=True
        )
        assert history[0]["redelivered_at"] is not None


async def test_a_slow_receiver_is_retried_and_never_holds_up_other_workspaces(infrastructure):
    policy = replace(FAST, max_attempts=5, base_delay=0.02, max_delay=0.05, timeout=0.5)

    async def answer(path, count, _headers) -> int:
        if path == "/freiland" and count < 2:
            await asyncio.sleep(1.5)  # beyond the timeout
        return 200

    receiver = ReferenceReceiver(answer=answer)
    log = Log(infrastructure.store)
    async with receiving(receiver) as served, running(infrastructure, policy=policy) as service:
        await hook(service, receiver, served, "mage")
        await hook(service, receiver, served, "freiland")
        await log.add(private_project("p1"), "p1")
        await log.add(invite("p1", "m-fl", "freiland"), "p1")
        await log.add(note("p1", "welcome"), "p1")
        await log.add(note("p1", "schedule"), "p1")
        await settled(service, "mage", 4)
        slow = await settled(service, "freiland", 3)
        first = await service.repository.get_delivery(slow[0]["delivery_id"])

    assert [row["status"] for row in slow] == ["delivered"] * 3
    attempts = first["attempt_log"]
    assert [a["outcome"] for a in attempts] == ["failed", "failed", "delivered"]
    assert all("timed out after 0.5s" in a["error"] for a in attempts[:2])
    # every delivery to mage was done while freiland's first request was still hanging
    assert len(receiver.accepted("/mage")) == 4
    mage_done = max(request.arrived_at for request in receiver.accepted("/mage"))
    freiland_first = min(request.arrived_at for request in receiver.at("/freiland"))
    assert mage_done < freiland_first + policy.timeout


async def test_an_unconcerned_workspace_hears_nothing_of_a_private_project(
    infrastructure, nats_client
):
    feeds: dict[str, list[FeedMessage]] = {"mage": [], "freiland": [], "bloqs": []}
    subjects: dict[str, list[str]] = {workspace: [] for workspace in feeds}
    subscriptions = []
    for workspace in feeds:

        async def collect(msg, workspace=workspace) -> None:
            subjects[workspace].append(msg.subject)
            feeds[workspace].append(decode_feed_message(msg.data, msg.headers))

        subscriptions.append(
            await nats_client.subscribe(infrastructure.scheme.workspace_feed(workspace), cb=collect)
        )
    receiver = ReferenceReceiver()
    log = Log(infrastructure.store)
    try:
        async with receiving(receiver) as served, running(infrastructure, policy=FAST) as service:
            for workspace in feeds:
                await hook(service, receiver, served, workspace)
            await log.add(member_joined("m-fl", "freiland", "frame-welding"), "m-fl")
            # bloqs holds a capability the private project needs, and is never invited
            await log.add(member_joined("m-bq", "bloqs", "leather-sewing"), "m-bq")
            await log.add(private_project("p1"), "p1")
            await log.add(invite("p1", "m-fl", "freiland"), "p1")
            await log.add(accept("p1", "m-fl", "freiland"), "p1")
            await log.add(note("p1", "frame welded"), "p1")
            await log.add(ProjectCancelled(project_id="p1", reason="client withdrew"), "p1")
            await log.add(project_proposed("p2"), "p2")  # an open call: bloqs hears this one

            def projects(messages: list[FeedMessage]) -> list[tuple[str, str]]:
                return [
                    (m.event.project_id, m.envelope.type)
                    for m in messages
                    if m.envelope.aggregate == "project"
                ]

            await eventually(
                lambda: asyncio.sleep(0, projects(feeds["bloqs"])),
                until=lambda seen: ("p2", "project.proposed") in seen,
            )
            await settled(service, "bloqs", 2)
            await eventually(lambda: asyncio.sleep(0, len(feeds["mage"])), until=lambda n: n == 6)
            await eventually(
                lambda: asyncio.sleep(0, len(feeds["freiland"])), until=lambda n: n == 6
            )
    finally:
        for subscription in subscriptions:
            await subscription.unsubscribe()

    assert projects(feeds["bloqs"]) == [("p2", "project.proposed")]
    assert [m.envelope.type for m in feeds["bloqs"]] == ["member.joined", "project.proposed"]
    webhook_bodies = b"".join(request.body for request in receiver.at("/bloqs"))
    assert b'"p1"' not in webhook_bodies and len(receiver.accepted("/bloqs")) == 2
    assert projects(feeds["freiland"]) == [
        ("p1", "project.partner_invited"),
        ("p1", "project.invitation_accepted"),
        ("p1", "project.progress_noted"),
        ("p1", "project.cancelled"),
        ("p2", "project.proposed"),  # an open call for its frame-welding member
    ]
    assert ("p1", "project.proposed") in projects(feeds["mage"])
    assert ("p2", "project.proposed") in projects(feeds["mage"])
    # feed format: subject per workspace and type, log sequence increasing, dedup ids
    invited = feeds["freiland"][1]
    assert invited.members == ("m-fl",) and invited.concerns == ("invitee",)
    assert subjects["freiland"][1] == infrastructure.scheme.feed("freiland", invited.envelope.type)
    sequences = [m.sequence for m in feeds["mage"]]
    assert sequences == sorted(sequences) and len(set(sequences)) == len(sequences)
    assert {m.event_id for m in feeds["mage"]} <= set(log.event_ids)


async def test_a_restart_mid_delivery_loses_nothing_and_logs_each_success_once(infrastructure):
    arrived, release = asyncio.Event(), asyncio.Event()

    async def answer(_path, count, _headers) -> int:
        if count == 0:  # the first request hangs until the service has been stopped
            arrived.set()
            await release.wait()
        return 200

    receiver = ReferenceReceiver(answer=answer)
    log = Log(infrastructure.store)
    async with receiving(receiver) as served:
        async with running(infrastructure, policy=FAST, instance_id="first") as service:
            await hook(service, receiver, served, "mage")
            await log.add(private_project("p1"), "p1")
            await asyncio.wait_for(arrived.wait(), 10)
        release.set()
        # written while the service is down
        await log.add(note("p1", "while down"), "p1")
        await log.add(private_project("p2"), "p2")
        async with running(infrastructure, policy=FAST, instance_id="second") as service:
            deliveries = await settled(service, "mage", 3)
            logs = [
                (await service.repository.get_delivery(row["delivery_id"]))["attempt_log"]
                for row in deliveries
            ]

    assert [row["status"] for row in deliveries] == ["delivered"] * 3
    assert [[a["outcome"] for a in attempts] for attempts in logs] == [
        ["interrupted", "delivered"],
        ["delivered"],
        ["delivered"],
    ]
    accepted = [request.event_id for request in receiver.accepted("/mage")]
    assert sorted(accepted) == sorted(log.event_ids)  # nothing lost
    first, while_down, _other_project = log.event_ids
    assert accepted.index(first) < accepted.index(while_down)  # p1 in order


async def test_a_rebuilt_projection_recomputes_its_state_but_fires_nothing_again(
    infrastructure,
):
    receiver = ReferenceReceiver()
    log = Log(infrastructure.store)
    async with receiving(receiver) as served, running(infrastructure, policy=FAST) as service:
        await hook(service, receiver, served, "mage")
        await log.add(private_project("p1"), "p1")
        await log.add(invite("p1", "m-fl", "freiland"), "p1")
        await settled(service, "mage", 2)
    schema = infrastructure.schema("notifications")
    pool = await create_pool(infrastructure.database_url, schema)
    try:
        counts = (
            "SELECT (SELECT count(*) FROM notifications), (SELECT count(*) FROM webhook_deliveries)"
        )
        before = tuple(await pool.fetchrow(counts))
        rebuilt = ProjectionRunner(
            AudienceProjection(version=2), infrastructure.store, pool, schema
        )
        assert await rebuilt.catch_up() == 2
        assert tuple(await pool.fetchrow(counts)) == before == (3, 2)
        participants = await pool.fetch("SELECT workspace_id FROM audience_participants")
        assert [row["workspace_id"] for row in participants] == ["freiland"]
    finally:
        await pool.close()
    assert len(receiver.received) == 2


async def test_the_example_subscriber_follows_a_workspace_feed(infrastructure):
    script = EXAMPLE_SUBSCRIBER
    log = Log(infrastructure.store)
    async with running(infrastructure, policy=FAST, http_port=None):
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(script),
            "--url",
            infrastructure.nats_url,
            "--root",
            infrastructure.scheme.root,
            "--workspace",
            "freiland",
            "--count",
            "2",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            ready = await asyncio.wait_for(process.stderr.readline(), 10)
            assert b"subscribed to" in ready
            await log.add(private_project("p1"), "p1")  # not for freiland
            await log.add(invite("p1", "m-fl", "freiland"), "p1")
            await log.add(note("p1", "welcome aboard"), "p1")
            output, _ = await asyncio.wait_for(process.communicate(), 10)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    lines = output.decode().splitlines()
    assert process.returncode == 0
    assert [line.split()[:3] for line in lines] == [
        ["2", "project.partner_invited", "p1"],
        ["3", "project.progress_noted", "p1"],
    ]
    assert "[invitee]" in lines[0] and "members: m-fl" in lines[0]


async def test_a_live_rebuild_and_swap_fires_nothing_again_and_delivery_goes_on(infrastructure):
    receiver = ReferenceReceiver()
    log = Log(infrastructure.store)
    async with receiving(receiver) as served, running(infrastructure, policy=FAST) as service:
        await hook(service, receiver, served, "mage")
        await log.add(private_project("p1"), "p1")
        await log.add(invite("p1", "m-fl", "freiland"), "p1")
        await settled(service, "mage", 2)
        async with Rebuild(
            AudienceProjection(), infrastructure.store, service.pool, service.schema
        ) as rebuild:
            await rebuild.build()
            swapped = await rebuild.swap()
        assert "webhook_deliveries" in swapped.carried_tables
        assert "audience_projects" not in swapped.carried_tables  # rebuilt, not carried
        await log.add(note("p1", "after the rebuild"), "p1")
        deliveries = await settled(service, "mage", 3)
        participants = await service.pool.fetch("SELECT workspace_id FROM audience_participants")

    assert [row["status"] for row in deliveries] == ["delivered"] * 3
    assert [request.event_id for request in receiver.received] == log.event_ids
    assert [row["workspace_id"] for row in participants] == ["freiland"]


async def test_a_shared_deployment_sends_nothing_into_its_own_network(infrastructure):
    policy = replace(
        FAST, max_attempts=2, base_delay=0.02, max_delay=0.05, allow_private_networks=False
    )
    receiver = ReferenceReceiver()
    async with receiving(receiver) as served, running(infrastructure, policy=policy) as service:
        # registered before the rule applied (or through a name that now resolves inside)
        await hook(service, receiver, served, "mage")
        await Log(infrastructure.store).add(private_project("p1"), "p1")
        (delivery,) = await settled(service, "mage", 1)
        assert delivery["status"] == "dead"
        (letter,) = await service.repository.list_dead_letters(workspace_id="mage")
        assert "127.0.0.1 is not a public address: webhooks may not reach it" in letter["reason"]

        token = mint_token(infrastructure.token_secret, "mage", "coordinator", "ada")
        async with httpx.AsyncClient(base_url=service.url) as api:
            refused = await api.post(
                "/webhooks/endpoints",
                json={"url": "http://169.254.169.254/latest/meta-data"},
                headers={"Authorization": f"Bearer {token}"},
            )
    assert receiver.received == []
    assert refused.status_code == 422
    assert refused.json()["detail"] == (
        "url: 169.254.169.254 is not a public address: webhooks may not reach it"
    )
