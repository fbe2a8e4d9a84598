"""Figures 1 and 2: commands/s through the projects handlers, against raw JetStream publishing
of the same bytes, under the default server config and under `sync_interval: always`.

Per run: a fresh stream, a network with staffed projects, then `commands` progress notes on
distinct projects with `concurrency` in flight (each worker owns its projects, so no two
commands race on a project). The messages those commands stored are read back, the stream is
recreated empty, and the same subjects, bodies and headers (event id, type, version,
correlation id; no concurrency check) are published raw with nats-py: awaited
`js.publish` calls with the same number in flight (pipelined), then atomic batches of 200
with 4 in flight (the ceiling group commit can approach).
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from dataclasses import dataclass

import structlog

from bench import servers, workload
from bench.report import Report, Result, median
from infra.clock import SystemClock
from infra.eventstore import ConcurrencyError, StoredMessage
from infra.group_commit import GroupCommit
from infra.ids import new_id
from infra.jetstream_store import JetStreamEventStore
from infra.streams import delete_stream, ensure_event_stream
from services.projects.handlers import ProjectsHandlers

log = structlog.get_logger(__name__)

_PLAIN_HEADERS = ("Nats-Msg-Id", "Mf-Type", "Mf-Schema-Version", "Mf-Correlation-Id")


@dataclass
class CommandSizes:
    commands: int
    projects: int
    concurrency: int
    hot_commands: int
    hot_writers: int


class CpuMeter:
    """CPU seconds of this process and of the nats-server child over a span."""

    def __init__(self, server_pid: int | None) -> None:
        self.server_pid = server_pid

    def _server(self) -> float:
        if self.server_pid is None:
            return 0.0
        try:
            fields = open(f"/proc/{self.server_pid}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def __enter__(self) -> CpuMeter:
        self._client0, self._server0 = time.process_time(), self._server()
        self._wall0 = time.perf_counter()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.wall = time.perf_counter() - self._wall0
        self.client = time.process_time() - self._client0
        self.server = self._server() - self._server0


@dataclass
class Run:
    rate: float
    client_us: float  # CPU µs per command in this process
    server_us: float  # CPU µs per command in nats-server


async def _handlers_run(
    nats: servers.Nats,
    client,
    stream: servers.Stream,
    sizes: CommandSizes,
    group_commit: GroupCommit,
) -> tuple[Run, list[StoredMessage]]:
    store = JetStreamEventStore(client, stream.name, stream.scheme, group_commit=group_commit)
    handlers = ProjectsHandlers(store, SystemClock(), new_id)
    await workload.network(handlers)
    projects = await workload.staffed_projects(handlers, sizes.projects)
    start = await store.last_sequence() + 1
    concurrency = min(sizes.concurrency, len(projects))
    per_worker = sizes.commands // concurrency
    note = workload.progress()

    async def worker(index: int) -> None:
        mine = projects[index::concurrency]
        for k in range(per_worker):
            await handlers.record_progress(
                mine[k % len(mine)], note, workload.meta(workload.COORDINATOR)
            )

    with CpuMeter(nats.server.pid) as cpu:
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
    done = per_worker * concurrency
    stored = await _read_all(store, start)
    assert len(stored) == done, f"{done} commands acknowledged, {len(stored)} events stored"
    return Run(done / cpu.wall, cpu.client / done * 1e6, cpu.server / done * 1e6), stored


async def _read_all(store: JetStreamEventStore, start: int) -> list[StoredMessage]:
    messages: list[StoredMessage] = []
    while batch := await store.read(start, 1000):
        messages.extend(batch)
        start = batch[-1].sequence + 1
    return messages


async def _raw_pipelined(nats, client, messages: list[StoredMessage], concurrency: int) -> Run:
    js = client.jetstream()
    queue = [(m.subject, m.body, {k: m.headers[k] for k in _PLAIN_HEADERS}) for m in messages]
    per_worker = len(queue) // concurrency

    async def worker(index: int) -> None:
        for subject, body, headers in queue[index * per_worker : (index + 1) * per_worker]:
            await js.publish(subject, body, headers=headers, timeout=30)

    with CpuMeter(nats.server.pid) as cpu:
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
    done = per_worker * concurrency
    return Run(done / cpu.wall, cpu.client / done * 1e6, cpu.server / done * 1e6)


async def _raw_batches(
    nats, client, messages: list[StoredMessage], size: int = 200, in_flight: int = 4
) -> Run:
    plain = [(m.subject, m.body, {k: m.headers[k] for k in _PLAIN_HEADERS}) for m in messages]
    batches = [plain[i : i + size] for i in range(0, len(plain) - size + 1, size)]
    semaphore = asyncio.Semaphore(in_flight)

    async def send(batch) -> None:
        async with semaphore:
            batch_id = uuid.uuid4().hex
            for index, (subject, body, headers) in enumerate(batch, start=1):
                staged = {**headers, "Nats-Batch-Id": batch_id, "Nats-Batch-Sequence": str(index)}
                if index < len(batch):
                    await client.publish(subject, body, headers=staged)
                else:
                    staged["Nats-Batch-Commit"] = "1"
                    reply = await client.request(subject, body, timeout=30, headers=staged)
                    assert b'"error"' not in reply.data, reply.data

    with CpuMeter(nats.server.pid) as cpu:
        await asyncio.gather(*(send(batch) for batch in batches))
    done = sum(len(batch) for batch in batches)
    return Run(done / cpu.wall, cpu.client / done * 1e6, cpu.server / done * 1e6)


async def _recreate(stream: servers.Stream) -> None:
    await delete_stream(stream.client, stream.name)
    await ensure_event_stream(stream.client, stream.spec)


async def _hot_project(
    client, writers: int, commands: int, shared: bool = False
) -> tuple[float, int, int, bool]:
    """`writers` concurrent writers sending `commands` notes to ONE project: each its own
    handlers instance (replicas, stale caches), or all one instance (`shared`).
    Returns (successful commands/s, successes, conflicts surfaced, log consistent)."""
    async with servers.fresh_stream(client) as stream:
        store = JetStreamEventStore(client, stream.name, stream.scheme)
        first = ProjectsHandlers(store, SystemClock(), new_id)
        await workload.network(first)
        project = await workload.staffed_project(first)
        replicas = [first] + [
            first if shared else ProjectsHandlers(store, SystemClock(), new_id)
            for _ in range(writers - 1)
        ]
        before = len((await store.load("project", project)).events)
        successes = conflicts = 0
        per_writer = max(commands // writers, 1)

        async def writer(handlers: ProjectsHandlers) -> None:
            nonlocal successes, conflicts
            for _ in range(per_writer):
                try:
                    await handlers.record_progress(
                        project, workload.progress(), workload.meta(workload.COORDINATOR)
                    )
                    successes += 1
                except ConcurrencyError:
                    conflicts += 1

        started = time.perf_counter()
        await asyncio.gather(*(writer(h) for h in replicas))
        elapsed = time.perf_counter() - started
        stored = len((await store.load("project", project)).events) - before
        return successes / elapsed, successes, conflicts, stored == successes


async def measure(report: Report, sizes: CommandSizes, runs: int, durable: bool) -> None:
    figure = "2" if durable else "1"
    config = "sync_interval: always" if durable else "default config"
    async with servers.embedded_nats(durable) as nats, servers.nats_client(nats.url) as client:
        report.record_load(f"figure {figure} start")
        on, off, raw, raw_batch = [], [], [], []
        for run_number in range(runs):
            for label, config_gc, bucket in (
                ("on", GroupCommit(), on),
                ("off", GroupCommit(enabled=False), off),
            ):
                async with servers.fresh_stream(client) as stream:
                    run, stored = await _handlers_run(nats, client, stream, sizes, config_gc)
                    bucket.append(run)
                    if label == "on":  # the same bytes, raw, into the same (emptied) stream
                        await _recreate(stream)
                        raw.append(await _raw_pipelined(nats, client, stored, sizes.concurrency))
                        await _recreate(stream)
                        raw_batch.append(await _raw_batches(nats, client, stored))
            log.info("bench.commands_run", figure=figure, run=run_number, rate=on[-1].rate)
        hot_serial = await _hot_project(client, 1, sizes.hot_commands)
        hot_racing = await _hot_project(client, sizes.hot_writers, sizes.hot_commands)
        hot_shared = await _hot_project(client, sizes.hot_writers, sizes.hot_commands, True)
        report.record_load(f"figure {figure} end")

    rate, raw_rate = median([r.rate for r in on]), median([r.rate for r in raw])
    if durable:
        target, met = "≥ 10,000/s", rate >= 10_000
    else:
        target = "≥ 20,000/s and ≥ 0.45 x raw"
        met = rate >= 20_000 and rate >= 0.45 * raw_rate
    report.add(
        Result(
            figure,
            f"Commands/s via projects handlers, {sizes.concurrency} in flight on distinct "
            f"projects, group commit ({config})",
            rate,
            "/s",
            "raw pipelined `js.publish` of the same bytes",
            raw_rate,
            target,
            met,
            [r.rate for r in on],
        )
    )
    report.add(
        Result(
            f"{figure}b",
            f"Same, group commit off ({config})",
            median([r.rate for r in off]),
            "/s",
            "raw pipelined `js.publish`",
            raw_rate,
            runs=[r.rate for r in off],
        )
    )
    report.add(
        Result(
            f"{figure}c",
            f"Raw atomic batches of 200 (4 in flight) of the same bytes ({config})",
            median([r.rate for r in raw_batch]),
            "msg/s",
            "raw pipelined `js.publish`",
            raw_rate,
            runs=[r.rate for r in raw_batch],
            note="the ceiling group commit approaches: no decide, no concurrency checks",
        )
    )
    serial_rate = hot_serial[0]
    for suffix, who, (rate_hot, successes, conflicts, consistent) in (
        ("d", f"{sizes.hot_writers} replicas racing (own caches)", hot_racing),
        ("e", f"{sizes.hot_writers} concurrent commands in one process", hot_shared),
    ):
        report.add(
            Result(
                f"{figure}{suffix}",
                f"One hot project, {who}: successful commands/s ({config})",
                rate_hot,
                "/s",
                "one writer, awaited, same project",
                serial_rate,
                "conflicts resolved or reported; log = successes",
                consistent,
                note=f"{successes} succeeded, {conflicts} surfaced a ConcurrencyError after the "
                f"handlers' retries (of {successes + conflicts}); events stored = successes: "
                f"{consistent}",
            )
        )
    report.notes.append(
        f"Figure {figure} ({config}): CPU per command, median — this process "
        f"{median([r.client_us for r in on]):.0f} µs, nats-server "
        f"{median([r.server_us for r in on]):.0f} µs with group commit; "
        f"{median([r.client_us for r in off]):.0f} µs / {median([r.server_us for r in off]):.0f}"
        f" µs without; raw `js.publish` {median([r.client_us for r in raw]):.0f} µs / "
        f"{median([r.server_us for r in raw]):.0f} µs per message; raw batches "
        f"{median([r.client_us for r in raw_batch]):.0f} µs / "
        f"{median([r.server_us for r in raw_batch]):.0f} µs. "
        f"On {os.cpu_count()} cores, client + server CPU per command bounds the rate."
    )
