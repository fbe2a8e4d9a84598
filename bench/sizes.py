"""How big each benchmark is: full (the figures of the issue) and quick (a smoke run)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from bench.aggregates import AggregateSizes
from bench.commands import CommandSizes
from bench.e2e import E2eSizes
from bench.http import HttpSizes
from bench.peer import PeerSizes
from bench.projection import ProjectionSizes


@dataclass(frozen=True)
class Sizes:
    commands: CommandSizes
    http: HttpSizes
    projection: ProjectionSizes
    e2e: E2eSizes
    aggregates: AggregateSizes
    peer: PeerSizes

    def with_events(self, events: int) -> Sizes:
        return replace(self, projection=replace(self.projection, events=events))


FULL = Sizes(
    commands=CommandSizes(
        commands=30_000, projects=2048, concurrency=1024, hot_commands=600, hot_writers=8
    ),
    http=HttpSizes(seconds=8.0, connections=64, projects=256),
    projection=ProjectionSizes(events=1_000_000, catch_up=100_000),
    e2e=E2eSizes(rate=1000, seconds=20.0, workspaces=20, projects_per_workspace=5),
    aggregates=AggregateSizes(histories=(10, 1_000, 10_000), cached=(1_000, 10_000, 50_000)),
    peer=PeerSizes(commands=5_000, projects=256, threads=8, projection_events=20_000),
)

QUICK = Sizes(
    commands=CommandSizes(
        commands=2_000, projects=128, concurrency=64, hot_commands=60, hot_writers=4
    ),
    http=HttpSizes(seconds=1.5, connections=16, projects=32),
    projection=ProjectionSizes(events=10_000, catch_up=2_000),
    e2e=E2eSizes(rate=200, seconds=2.0, workspaces=4, projects_per_workspace=2),
    aggregates=AggregateSizes(histories=(10, 100, 1_000), cached=(100, 1_000)),
    peer=PeerSizes(commands=300, projects=16, threads=4, projection_events=1_000),
)

# For tests/integration/test_bench_smoke.py: every figure runs, nothing is meaningful.
SMOKE = Sizes(
    commands=CommandSizes(
        commands=256, projects=32, concurrency=16, hot_commands=16, hot_writers=2
    ),
    http=HttpSizes(seconds=0.5, connections=4, projects=8),
    projection=ProjectionSizes(events=2_000, catch_up=500),
    e2e=E2eSizes(rate=50, seconds=1.0, workspaces=2, projects_per_workspace=2),
    aggregates=AggregateSizes(histories=(10, 50), cached=(50, 100)),
    peer=PeerSizes(commands=40, projects=4, threads=2, projection_events=50),
)
