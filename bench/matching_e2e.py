"""Matching end to end: from a `project.proposed` stored in the log to its
`matching.candidates_proposed` stored in the log, through the running service (directory
projection in PostgreSQL, outbox, publisher), over a warm directory.

    .venv/bin/python -m bench.matching_e2e                      # 1,000 spaces, 100,000 members
    .venv/bin/python -m bench.matching_e2e --members 20000 --spaces 200 --projects 50

Runs on its own embedded nats-server with `sync_interval: always` (the shipped durable
config; `--no-fsync` for the default) and PostgreSQL (MF_DATABASE_URL, the machine's test
database, or embedded), with unique names removed afterwards. The network is the one of
bench/matching_latency.py. Projects are proposed one at a time: this measures latency, not
throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import time
from datetime import timedelta

from bench.matching_latency import (
    Log,
    network_events,
    percentile,
    random_project,
    report,
    rss_mb,
)
from bench.servers import embedded_nats, fresh_stream, nats_client, postgres, schemas, unique
from contracts.envelope import PendingEvent
from infra.jetstream_store import JetStreamEventStore
from infra.settings import Settings
from infra.stack import Infrastructure
from services.matching.app import running
from services.matching.taxonomy import load_taxonomy


async def append_all(store: JetStreamEventStore, recorded, concurrency: int = 300) -> None:
    gate = asyncio.Semaphore(concurrency)

    async def one(event) -> None:
        async with gate:
            pending = PendingEvent(event.envelope, event.event)
            await store.append(
                event.envelope.aggregate, event.envelope.aggregate_id, [pending], None
            )

    await asyncio.gather(*(one(event) for event in recorded))


async def caught_up_with(service, head: int) -> None:
    """Wait until the directory projection has folded the log up to `head`."""
    for _ in range(100_000):
        if await service.runner.position() >= head:
            return
        await asyncio.sleep(0.2)


async def main(args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    taxonomy = load_taxonomy()
    narrower = {parent for parents in taxonomy.broader.values() for parent in parents}
    leaves = sorted(c for c in taxonomy.broader if c not in narrower)
    concepts = sorted(taxonomy.broader)
    log = Log()
    async with (
        embedded_nats(durable=not args.no_fsync) as nats,
        nats_client(nats.url) as client,
        fresh_stream(client) as stream,
        postgres() as database_url,
        schemas(database_url, unique("m") + "_") as prefix,
    ):
        store = JetStreamEventStore(client, stream.name, stream.scheme)
        settings = Settings(
            nats_url=nats.url,
            database_url=database_url,
            stream=stream.name,
            subject_root=stream.scheme.root,
            schema_prefix=prefix,
            token_secret="bench",
        )
        infra = Infrastructure(
            settings, client, nats.url, database_url, store, stream.scheme, "bench"
        )
        events = list(network_events(rng, log, args.spaces, args.members, leaves))
        started = time.perf_counter()
        await append_all(store, events)
        appended = time.perf_counter() - started
        report(f"log: {len(events)} events appended in {appended:.1f} s ({nats.label})")
        del events  # the benchmark's own copies would slow every GC pass of this process
        gc.collect()

        loop = asyncio.get_running_loop()
        arrived: dict[str, asyncio.Future[float]] = {}
        subject = stream.scheme.events_of_type("matching.candidates_proposed")

        def arrival(project_id: str) -> asyncio.Future[float]:
            return arrived.setdefault(project_id, loop.create_future())

        async def on_proposal(msg) -> None:
            found = arrival(msg.subject.split(".")[-2])
            if not found.done():
                found.set_result(time.perf_counter())

        subscription = await client.subscribe(subject, cb=on_proposal)
        started = time.perf_counter()
        async with running(infra, poll_interval=0.5) as service:
            head = await store.last_sequence()
            await caught_up_with(service, head)
            caught_up = time.perf_counter() - started
            report(
                f"directory: caught up with {head} events in {caught_up:.1f} s "
                f"({head / caught_up:,.0f} events/s into PostgreSQL and memory); "
                f"process RSS {rss_mb():.0f} MB"
            )

            latencies = []
            for index in range(args.warmup + args.projects):
                log.now += timedelta(minutes=30)
                recorded = random_project(rng, log, index, concepts)
                project_id = recorded.envelope.aggregate_id
                pending = PendingEvent(recorded.envelope, recorded.event)
                await store.append("project", project_id, [pending], 0)
                stored = time.perf_counter()
                received = await asyncio.wait_for(arrival(project_id), 30)
                if index >= args.warmup:
                    latencies.append((received - stored) * 1000)
        await subscription.unsubscribe()
        report(
            f"end-to-end proposal latency over {len(latencies)} 5-role projects (ms, from the "
            f"trigger's append ack to the proposal stored): p50 {percentile(latencies, 50):.1f}"
            f"  p95 {percentile(latencies, 95):.1f}  p99 {percentile(latencies, 99):.1f}"
            f"  max {max(latencies):.1f}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spaces", type=int, default=1000)
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--projects", type=int, default=100)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--no-fsync", action="store_true", help="default nats-server config")
    asyncio.run(main(parser.parse_args()))
