"""Kill the stream leader of a 3-node cluster under a steady load of appends: every
acknowledged event is in the log exactly once, every aggregate's history is what its writer
appended, and the projection that followed the log through the failover equals a rebuild."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field

import asyncpg
import pytest

from contracts.envelope import PendingEvent
from contracts.subjects import SubjectScheme
from infra.eventstore import ConcurrencyError, EventStoreError
from infra.jetstream_store import JetStreamEventStore
from infra.migrations import drop_schema
from infra.nats_connection import connect_nats
from infra.postgres import create_pool
from infra.projections import ProjectionRunner
from infra.streams import EventStreamSpec, ensure_event_stream
from services.ops.diff import diff_projection
from services.projects.views import WorkspaceViewProjection
from tests.conftest import unique_name
from tests.factories import note, pending, project_proposed
from tests.integration.nats_cluster import nats_cluster, stream_leader, wait_for_meta_leader
from tests.waiting import eventually

pytestmark = pytest.mark.slow

WRITERS = 6
DEADLINE = 30.0  # no single append may take longer to get through, failover included


@dataclass
class Book:
    """What the writers know: each acknowledged event id, in order per aggregate."""

    acknowledged: list[str] = field(default_factory=list)
    by_aggregate: dict[str, list[str]] = field(default_factory=dict)
    retries: int = 0
    resolved_conflicts: int = 0

    def record(self, aggregate_id: str, events: list[PendingEvent]) -> None:
        ids = [p.envelope.event_id for p in events]
        self.acknowledged.extend(ids)
        self.by_aggregate.setdefault(aggregate_id, []).extend(ids)


async def landed(store, aggregate_id: str, events: list[PendingEvent]) -> int | None:
    """After a refused retry: are our events the aggregate's last ones? (Reads may come from a
    follower that is a little behind, so look a few times.)"""
    ours = [p.envelope.event_id for p in events]
    for _ in range(20):
        try:
            history = await store.load("project", aggregate_id)
        except EventStoreError:
            history = None
        if history and [r.event_id for r in history.events][-len(ours) :] == ours:
            return history.version
        await asyncio.sleep(0.1)
    return None


async def append_until_acknowledged(store, aggregate_id, events, expected, book) -> int:
    """Retry with the same event ids until the log acknowledges them, as a service would."""
    deadline = time.monotonic() + DEADLINE
    delay = 0.05
    while True:
        try:
            result = await store.append("project", aggregate_id, events, expected)
            book.record(aggregate_id, events)
            return result.version
        except ConcurrencyError:
            # one writer per aggregate: the check failed because an earlier try landed
            version = await landed(store, aggregate_id, events)
            if version is not None:
                book.resolved_conflicts += 1
                book.record(aggregate_id, events)
                return version
        except EventStoreError:
            book.retries += 1
        if time.monotonic() > deadline:
            raise AssertionError(f"append to {aggregate_id} not acknowledged in {DEADLINE}s")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.5)


async def writer(store, number: int, stop: asyncio.Event, book: Book) -> None:
    index = 0
    while not stop.is_set():
        project_id = f"w{number}x{index}"
        index += 1
        version = await append_until_acknowledged(
            store, project_id, [pending(project_proposed(project_id), project_id)], 0, book
        )
        for step in range(3):
            texts = ["cut", "welded"] if step == 1 else [f"step {step}"]
            notes = [pending(note(project_id, text), project_id) for text in texts]
            version = await append_until_acknowledged(store, project_id, notes, version, book)


async def test_killing_the_stream_leader_under_load_loses_and_duplicates_nothing(
    tmp_path, database_url
):
    started = time.monotonic()
    schema = unique_name("cluster")
    async with nats_cluster(tmp_path) as servers:
        urls = ",".join(server.url for server in servers)  # as MF_NATS_URL lists them
        client = await connect_nats(urls, name="mf-fault-test", reconnect_time_wait=0.1)
        pool = await create_pool(database_url, schema, max_size=4)
        following = writers = None
        try:
            await wait_for_meta_leader(client)
            scheme = SubjectScheme(unique_name("mf"))
            spec = EventStreamSpec(scheme.root.upper(), scheme, replicas=3)
            await ensure_event_stream(client, spec)
            store = JetStreamEventStore(client, spec.name, scheme, timeout=2.0)
            view = WorkspaceViewProjection(None, scheme)
            live = ProjectionRunner(view, store, pool, schema, retry_delay=0.05)
            await live.prepare()
            following = asyncio.create_task(live.run())

            book, stop = Book(), asyncio.Event()
            writers = [asyncio.create_task(writer(store, n, stop, book)) for n in range(WRITERS)]
            await eventually(
                lambda: asyncio.sleep(0, len(book.acknowledged)), until=lambda n: n >= 150
            )
            leader = await stream_leader(client, spec.name)
            victim = next(server for server in servers if server.server_name == leader)
            await victim.kill()
            at_kill = len(book.acknowledged)
            # keep writing through the election, and well after it
            await eventually(
                lambda: asyncio.sleep(0, len(book.acknowledged)),
                until=lambda n: n >= at_kill + 300,
                timeout=25,
            )
            stop.set()
            await asyncio.gather(*writers)
            new_leader = await stream_leader(client, spec.name)
            assert new_leader not in (None, leader)

            log = []
            position = 1
            while batch := await store.read(position, 1000):
                log.extend(batch)
                position = batch[-1].sequence + 1
            ids = Counter(message.headers["Nats-Msg-Id"] for message in log)
            duplicated = [event_id for event_id, count in ids.items() if count > 1]
            assert duplicated == [], "an event is in the log twice"
            assert set(ids) == set(book.acknowledged), "the log and the acknowledgements differ"
            assert len(log) == len(book.acknowledged)
            for aggregate_id, expected in book.by_aggregate.items():
                history = await store.load("project", aggregate_id)
                assert [r.event_id for r in history.events] == expected

            head = log[-1].sequence
            await eventually(live.position, until=lambda p: p == head, timeout=15)
            report = await diff_projection(view, store, pool, schema)
            assert report.identical, report.differences[:5]
            assert report.position == head
            rows = await pool.fetchval(f'SELECT count(*) FROM "{schema}".timeline')
            assert rows == len(log)
            print(
                f"\ncluster fault: {len(log)} events, {at_kill} acknowledged before the leader "
                f"{leader} was killed, new leader {new_leader}, {book.retries} retries, "
                f"{book.resolved_conflicts} retries found already stored, "
                f"{time.monotonic() - started:.1f} s"
            )
        finally:
            for task in [following, *(writers or [])]:
                if task is not None:
                    task.cancel()
            await asyncio.gather(
                *(t for t in [following, *(writers or [])] if t), return_exceptions=True
            )
            await pool.close()
            await client.close()
            connection = await asyncpg.connect(database_url)
            try:
                await drop_schema(connection, schema)
            finally:
                await connection.close()
