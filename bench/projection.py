"""Figure 4: the workspace view projection over a long log — full rebuild and catch-up —
against the raw limit: an ordered-consumer read of the same messages plus a COPY of the
same rows the projection ends up with.

The log: `events` project events (proposed, invited, accepted, staffed, production started,
five progress notes per project) after a small network. Seeding is not measured: one
project's encoded messages are the template, every project gets its own ids by byte
substitution, and they go in as atomic batches of 1,000.

- full rebuild: `mf replay` (services.ops.replay: a shadow schema built with the
  projection's bulk path, then swapped in), from an empty schema; when that module is not
  there, the live runner's catch-up from sequence 1.
- catch-up: the live runner (`ProjectionRunner.run`, an ordered push consumer) on the
  rebuilt view, applying `catch_up` events appended after it (as after a restart).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

import asyncpg

from bench import servers, workload
from bench.report import Report, Result, median
from contracts.wire import encode_body, encode_headers
from infra.clock import SystemClock
from infra.ids import new_id
from infra.jetstream_store import JetStreamEventStore
from infra.postgres import create_pool, quote_identifier
from infra.projections import ProjectionRunner
from services.projects.handlers import ProjectsHandlers
from services.projects.views import WorkspaceViewProjection

NOTES_PER_PROJECT = 5
EVENTS_PER_PROJECT = 5 + NOTES_PER_PROJECT


@dataclass
class ProjectionSizes:
    events: int
    catch_up: int


def _template(scheme, now) -> tuple[str, list[tuple[str, bytes, dict[str, str]]], list[str]]:
    """One project's messages, and the ids in them that every copy replaces."""
    project_id = new_id()
    events = workload.project_story(project_id, now, NOTES_PER_PROJECT)
    pending = workload.pending_events(events, project_id, ("freiland", "mage"), now)
    invitation_id = events[1].invitation_id
    messages = [
        (
            scheme.event_of_type(p.envelope.type, project_id),
            encode_body(p),
            encode_headers(p.envelope),
        )
        for p in pending
    ]
    ids = [project_id, invitation_id, pending[0].envelope.correlation_id]
    return project_id, messages, ids


def _copies(template, count: int):
    """`count` projects' messages: the template with fresh ids (same length, valid JSON)."""
    _, messages, ids = template
    for _ in range(count):
        fresh = {old: new_id() for old in ids}
        for subject, body, headers in messages:
            event_id = new_id()
            for old, new in fresh.items():
                body = body.replace(old.encode(), new.encode())
                subject = subject.replace(old, new)
            body = body.replace(headers["Nats-Msg-Id"].encode(), event_id.encode())
            copied = dict(headers)
            copied["Nats-Msg-Id"] = event_id
            copied["Mf-Correlation-Id"] = fresh[ids[2]]
            yield subject, body, copied


async def seed(store: JetStreamEventStore, events: int, network: bool = True) -> int:
    """Append `events` more project events (and the network first); returns the head."""
    if network:
        await workload.network(ProjectsHandlers(store, SystemClock(), new_id))
    template = _template(store.scheme, SystemClock().now())
    projects = max(events // EVENTS_PER_PROJECT, 1)
    pending: list = []
    in_flight: set[asyncio.Task] = set()

    async def flush(batch) -> None:
        ack = await store._send(batch)  # raw atomic batch: seeding is not what we measure
        assert "error" not in ack, ack

    for message in _copies(template, projects):
        pending.append(message)
        if len(pending) == 1000:
            if len(in_flight) >= 4:
                _done, in_flight = await asyncio.wait(in_flight, return_when="FIRST_COMPLETED")
            in_flight.add(asyncio.create_task(flush(pending)))
            pending = []
    if pending:
        in_flight.add(asyncio.create_task(flush(pending)))
    if in_flight:
        await asyncio.gather(*in_flight)
    return await store.last_sequence()


async def _rebuild(store, database_url: str, schema: str) -> tuple[float, float]:
    """Seconds (wall, and CPU of this process) for a full rebuild of the view into `schema`
    (empty before)."""
    projection = WorkspaceViewProjection(None, store.scheme)
    pool = await create_pool(database_url, schema, max_size=4)
    try:
        try:
            from services.ops.replay import replay
        except ImportError:
            replay = None
        started, cpu = time.perf_counter(), time.process_time()
        if replay is not None:
            await replay(projection, store, pool, schema)
        else:
            await ProjectionRunner(projection, store, pool, schema).catch_up()
        return time.perf_counter() - started, time.process_time() - cpu
    finally:
        await pool.close()


async def _catch_up(store, database_url: str, schema: str, events: int) -> tuple[float, float, int]:
    """Seconds (wall, and CPU of this process) for the live runner on `schema` (at the head)
    to apply `events` new events, and how many it applied."""
    projection = WorkspaceViewProjection(None, store.scheme)
    pool = await create_pool(database_url, schema, max_size=4)
    try:
        runner = ProjectionRunner(projection, store, pool, schema)
        await runner.catch_up()
        start = await runner.position()
        head = await seed(store, events, network=False)
        task = asyncio.create_task(runner.run())
        started, cpu = time.perf_counter(), time.process_time()
        try:
            while await runner.position() < head:
                if task.done():
                    task.result()
                await asyncio.sleep(0.02)
            elapsed, used = time.perf_counter() - started, time.process_time() - cpu
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        return elapsed, used, head - start
    finally:
        await pool.close()


async def _raw_read(client, stream, expected: int) -> float:
    """Seconds to receive every message with a nats-py ordered push consumer."""
    js = client.jetstream()
    done = asyncio.Event()
    count = 0

    async def receive(_msg) -> None:
        nonlocal count
        count += 1
        if count >= expected:
            done.set()

    started = time.perf_counter()
    subscription = await js.subscribe(
        stream.scheme.all_events(),
        stream=stream.name,
        cb=receive,
        ordered_consumer=True,
        idle_heartbeat=2.0,
        pending_msgs_limit=200_000,
    )
    try:
        await asyncio.wait_for(done.wait(), 600)
    finally:
        elapsed = time.perf_counter() - started
        await subscription.unsubscribe()
    return elapsed


async def _raw_copy(database_url: str, source: str, target: str) -> tuple[float, int]:
    """Seconds to COPY the rebuilt view's rows into empty tables of the same shape."""
    connection = await asyncpg.connect(database_url)
    try:
        tables = ("workspaces", "members", "projects", "invitations", "timeline")
        await connection.execute(f"CREATE SCHEMA {quote_identifier(target)}")
        rows = {}
        for table in tables:
            await connection.execute(
                f"CREATE TABLE {quote_identifier(target)}.{table} "
                f"(LIKE {quote_identifier(source)}.{table} INCLUDING ALL)"
            )
            rows[table] = [
                tuple(record)
                for record in await connection.fetch(
                    f"SELECT * FROM {quote_identifier(source)}.{table}"
                )
            ]
        started = time.perf_counter()
        for table in tables:
            await connection.copy_records_to_table(table, records=rows[table], schema_name=target)
        return time.perf_counter() - started, sum(len(r) for r in rows.values())
    finally:
        await connection.close()


async def measure(report: Report, sizes: ProjectionSizes, runs: int, database_url: str) -> None:
    async with (
        servers.embedded_nats(False) as nats,
        servers.nats_client(nats.url) as client,
        servers.fresh_stream(client) as stream,
        servers.schemas(database_url, servers.unique("v")) as prefix,
    ):
        store = JetStreamEventStore(client, stream.name, stream.scheme)
        started = time.perf_counter()
        head = await seed(store, sizes.events)
        seeded = time.perf_counter() - started
        report.record_load("figure 4 start")
        rebuilds, catch_ups, raws, reads, copies, heads = [], [], [], [], [], []
        rebuild_cpu, catch_up_cpu = [], []  # µs of this process's CPU per event
        row_count = 0
        for run in range(runs):
            schema = f"{prefix}_{run}"
            head = await store.last_sequence()  # grows by `catch_up` events per run
            heads.append(head)
            seconds, used = await _rebuild(store, database_url, schema)
            rebuilds.append(head / seconds)
            rebuild_cpu.append(used / head * 1e6)
            read_seconds = await _raw_read(client, stream, head)
            copy_seconds, row_count = await _raw_copy(database_url, schema, f"{prefix}_raw{run}")
            reads.append(head / read_seconds)
            copies.append(row_count / copy_seconds)
            raws.append(head / (read_seconds + copy_seconds))
            # catch-up: the rebuilt view, now live, and `catch_up` new events after its head
            seconds, used, applied = await _catch_up(store, database_url, schema, sizes.catch_up)
            catch_ups.append(applied / seconds)
            catch_up_cpu.append(used / applied * 1e6)
        head = median(heads)
        report.record_load("figure 4 end")
    raw = median(raws)
    report.add(
        Result(
            "4",
            f"Full rebuild of the workspace view (`mf replay`), ~{head:,.0f} events (events/s)",
            median(rebuilds),
            "/s",
            "raw ordered-consumer read + raw COPY of the same rows",
            raw,
            "≥ 60,000/s",
            median(rebuilds) >= 60_000,
            rebuilds,
            note=f"raw read alone {median(reads):,.0f} msg/s; raw COPY alone "
            f"{median(copies):,.0f} rows/s ({row_count:,} rows); seeding took {seeded:.0f} s; "
            f"CPU of the rebuilding process {median(rebuild_cpu):.0f} µs per event",
        )
    )
    report.add(
        Result(
            "4b",
            f"Catch-up of the live runner: {sizes.catch_up:,} new events on the rebuilt view "
            f"of ~{head:,.0f}",
            median(catch_ups),
            "/s",
            "same raw limit",
            raw,
            "≥ 60,000/s",
            median(catch_ups) >= 60_000,
            catch_ups,
            note=f"CPU of the runner's process {median(catch_up_cpu):.0f} µs per event",
        )
    )
