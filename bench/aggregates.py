"""Figure 7: loading an aggregate versus the length of its history, and the memory a cached
project costs.

One project per history length (10, 1,000, 10,000 events; the notes beyond the first three
commands are appended as atomic multi-event appends). Cold: a fresh `ProjectsHandlers` (empty
cache, as after a restart) loads the project from the log (batched Direct Get + decode +
fold), and its first command pays for it. Warm: the next commands on the same instance,
answered from the repository cache; the store's concurrency check keeps the cache honest.
Memory: tracemalloc over a repository cache holding N folded, staffed projects.
"""

from __future__ import annotations

import gc
import statistics
import time
import tracemalloc
from dataclasses import dataclass

from bench import servers, workload
from bench.report import Report, Result, median
from infra.clock import SystemClock
from infra.ids import new_id
from infra.jetstream_store import JetStreamEventStore
from services.projects import domain
from services.projects.handlers import ProjectsHandlers, Repository

WARM_COMMANDS = 50


@dataclass
class AggregateSizes:
    histories: tuple[int, ...]
    cached: tuple[int, ...]


async def _grow(store: JetStreamEventStore, project_id: str, n: int) -> None:
    """Append progress notes until the project has `n` events (1,000 per atomic append)."""
    history = await store.load("project", project_id)
    have, version = len(history.events), history.version
    scope = history.events[-1].envelope.workspace_scope
    while have < n:
        chunk = min(1000, n - have)
        notes = workload.project_story(project_id, SystemClock().now(), chunk)[-chunk:]
        events = workload.pending_events(notes, project_id, scope, SystemClock().now())
        version = (await store.append("project", project_id, events, version)).version
        have += chunk


async def _timings(
    client, history: int, repeats: int
) -> tuple[list[float], list[float], list[float]]:
    async with servers.fresh_stream(client) as stream:
        store = JetStreamEventStore(client, stream.name, stream.scheme)
        seeder = ProjectsHandlers(store, SystemClock(), new_id)
        await workload.network(seeder)
        project_id = await workload.staffed_project(seeder)
        await _grow(store, project_id, history)
        assert len((await store.load("project", project_id)).events) == history
        cold_loads, cold_commands, warm_commands = [], [], []
        for _ in range(repeats):
            fresh = ProjectsHandlers(store, SystemClock(), new_id)
            started = time.perf_counter()
            await fresh.projects.load(project_id)
            cold_loads.append((time.perf_counter() - started) * 1000)
            restarted = ProjectsHandlers(store, SystemClock(), new_id)
            started = time.perf_counter()
            await restarted.record_progress(
                project_id, workload.progress(), workload.meta(workload.COORDINATOR)
            )
            cold_commands.append((time.perf_counter() - started) * 1000)
            for _ in range(WARM_COMMANDS):
                started = time.perf_counter()
                await restarted.record_progress(
                    project_id, workload.progress(), workload.meta(workload.COORDINATOR)
                )
                warm_commands.append((time.perf_counter() - started) * 1000)
        return cold_loads, cold_commands, warm_commands


def _staffed_state(project_id: str) -> domain.Project:
    state = domain.Project(project_id=project_id)
    for event in workload.project_story(project_id, SystemClock().now())[:4]:
        state = domain.evolve_project(state, event)
    assert state.status == "staffed"
    return state


def _bytes_per_cached_project(count: int) -> float:
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        repository: Repository[domain.Project] = Repository(
            None,
            "project",
            lambda i: domain.Project(project_id=i),
            domain.evolve_project,  # type: ignore[arg-type]
        )
        repository.capacity = count
        for _ in range(count):
            project_id = new_id()
            repository.remember(project_id, _staffed_state(project_id), 1)
        gc.collect()
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    return used / count


async def measure(report: Report, sizes: AggregateSizes, runs: int) -> None:
    repeats = max(runs, 3)
    async with servers.embedded_nats(False) as nats, servers.nats_client(nats.url) as client:
        report.record_load("figure 7 start")
        measured = {h: await _timings(client, h, repeats) for h in sizes.histories}
    shortest = sizes.histories[0]
    base_cold = median(measured[shortest][0])
    base_warm = median(measured[shortest][2])
    for history, (cold_loads, cold_commands, warm_commands) in measured.items():
        warm = median(warm_commands)
        report.add(
            Result(
                "7",
                f"Project with {history:,} events: command on a warm cache (p50 ms; cold load "
                f"{median(cold_loads):.1f} ms, cold command {median(cold_commands):.1f} ms)",
                warm,
                "ms",
                f"same, {shortest} events",
                base_warm,
                "flat (≤ 1.5 x the 10-event time)",
                warm <= 1.5 * base_warm if history != shortest else None,
                warm_commands[:: max(1, len(warm_commands) // 20)],
                note=f"cold load vs {shortest} events: {median(cold_loads) / base_cold:.1f}x"
                if history != shortest
                else "",
                higher_is_better=False,
            )
        )
    per_project = {count: _bytes_per_cached_project(count) for count in sizes.cached}
    spread = statistics.pstdev(per_project.values()) / statistics.mean(per_project.values())
    for count, size in per_project.items():
        report.add(
            Result(
                "7m",
                f"Memory per cached staffed project, {count:,} projects in the cache",
                size / 1024,
                "KiB",
                "-",
                None,
                "grows linearly (same KiB per project)",
                spread < 0.2,
                [size / 1024],
                higher_is_better=False,
            )
        )
