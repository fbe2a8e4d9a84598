"""Matching benchmark: proposal latency over a warm directory of 1,000 spaces and 100,000
members, for 5-role projects. Results go to docs/benchmarks.md ("Matching").

    .venv/bin/python -m bench.matching_latency                 # the issue's numbers
    .venv/bin/python -m bench.matching_latency --members 20000 --projects 100   # quicker

What is timed: folding one `project.proposed` into the directory and computing its
`CandidatesProposed` (every role ranked and explained, the team suggested) — the work the
service does per trigger between reading the event and writing its outbox row. The log and
PostgreSQL round trips around it are measured by `--end-to-end` (bench/matching_e2e.py).

The network is synthetic but shaped like the real one: spaces spread over Europe with their
country's language (and often English), 100 members per space with 1-3 capabilities of the
taxonomy's leaves at levels 1-5, 5-40 h a week. The warm-up proposes, invites and accepts
seats on earlier projects, so members carry load, reliability and fairness history.
Requests mix exact capabilities with broader terms, distance limits and required languages.
"""

from __future__ import annotations

import argparse
import gc
import platform
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from contracts.envelope import Envelope, RecordedEvent
from contracts.matching import CandidatesProposed
from contracts.projects import (
    InvitationAccepted,
    PartnerInvited,
    ProjectDelivered,
    ProjectProposed,
    RoleSpec,
)
from contracts.values import CapabilityLevel, Measure, SpatialThing
from contracts.workspaces import MemberJoined, WorkspaceRegistered
from services.matching.network import Network
from services.matching.taxonomy import load_taxonomy
from services.matching.weights import active_weights

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
COUNTRIES = [  # (country, language, lat range, long range)
    ("IT", "it", (38.0, 46.5), (7.5, 16.0)),
    ("DE", "de", (48.0, 54.5), (7.0, 14.5)),
    ("FR", "fr", (43.5, 50.5), (-1.5, 7.5)),
    ("ES", "es", (37.0, 43.5), (-8.0, 2.5)),
    ("GB", "en", (50.5, 55.5), (-4.0, 1.0)),
    ("NL", "nl", (51.5, 53.2), (4.0, 6.8)),
    ("PL", "pl", (50.0, 54.0), (15.5, 23.5)),
    ("PT", "pt", (37.5, 41.8), (-8.8, -7.0)),
]


def report(line: str) -> None:
    """One line of this benchmark's output (stdout, read by bench/hook_matching.py too)."""
    sys.stdout.write(line + "\n")


def rss_mb() -> float:
    """Resident memory of this process (Linux /proc), in MB."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        import os

        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Log:
    """Numbers events like the stream does."""

    def __init__(self) -> None:
        self.sequence = 0
        self.now = T0

    def record(self, event, aggregate_id: str, scope: tuple[str, ...] = ()) -> RecordedEvent:
        self.sequence += 1
        envelope = Envelope(
            event_id=f"e{self.sequence:09d}",
            type=event.type,
            schema_version=type(event).schema_version,
            aggregate=event.aggregate(),
            aggregate_id=aggregate_id,
            occurred_at=self.now,
            actor="bench",
            workspace_scope=scope,
            correlation_id=f"c{self.sequence:09d}",
        )
        return RecordedEvent(self.sequence, self.now, "", envelope, event)


def network_events(rng: random.Random, log: Log, spaces: int, members: int, leaves: list[str]):
    per_space = members // spaces
    for s in range(spaces):
        country, language, (lat0, lat1), (lon0, lon1) = rng.choice(COUNTRIES)
        ws = f"ws{s:04d}"
        languages = (language,) if language == "en" else (language, "en")
        yield log.record(
            WorkspaceRegistered(
                workspace_id=ws,
                name=f"Space {s}",
                city="City",
                country=country,
                location=SpatialThing(lat=rng.uniform(lat0, lat1), long=rng.uniform(lon0, lon1)),
                languages=languages,
                timezone="Europe/Rome",
            ),
            ws,
        )
        for m in range(per_space):
            member_id = f"m{s:04d}x{m:03d}"
            chosen = rng.sample(leaves, rng.choice((1, 1, 2, 2, 3)))
            spoken = (language, "en") if rng.random() < 0.6 and language != "en" else (language,)
            yield log.record(
                MemberJoined(
                    member_id=member_id,
                    workspace_id=ws,
                    name=member_id,
                    kind=rng.choice(("company", "artisan", "professional", "collective")),
                    capabilities=tuple(
                        CapabilityLevel(capability=c, level=rng.randint(1, 5)) for c in chosen
                    ),
                    weekly_capacity=Measure(hasNumericalValue=rng.choice((5, 10, 20, 30, 40))),
                    languages=spoken,
                ),
                member_id,
            )


def random_project(rng: random.Random, log: Log, index: int, concepts: list[str]):
    _, language, (lat0, lat1), (lon0, lon1) = rng.choice(COUNTRIES)
    roles = []
    for r, capability in enumerate(rng.sample(concepts, 5)):
        roles.append(
            RoleSpec(
                role_id=f"r{r}",
                capability=capability,
                effortQuantity=Measure(hasNumericalValue=rng.choice((8, 16, 24, 40, 80, 120))),
                seats=rng.choice((1, 1, 1, 2, 3)),
                max_distance_km=rng.choice((None, None, None, 300, 800)),
                required_language=rng.choice((None, None, None, "en", language)),
            )
        )
    project_id = f"p{index:06d}"
    return log.record(
        ProjectProposed(
            project_id=project_id,
            coordinator_member_id="coordinator",
            coordinator_workspace_id=f"ws{rng.randrange(10):04d}",
            title=f"Project {index}",
            deliverable="things",
            delivery_location=SpatialThing(
                lat=rng.uniform(lat0, lat1), long=rng.uniform(lon0, lon1)
            ),
            due=log.now + timedelta(weeks=rng.randint(3, 16)),
            roles=tuple(roles),
        ),
        project_id,
        scope=("ws0000",),
    )


def staff_from(rng: random.Random, log: Log, proposal: CandidatesProposed):
    """What coordinators do with a proposal: invite the suggested team; most accept."""
    for n, pick in enumerate(proposal.team.members if proposal.team else ()):
        invitation = f"{proposal.project_id}-i{n}"
        ids = {
            "project_id": proposal.project_id,
            "invitation_id": invitation,
            "role_id": pick.role_id,
            "member_id": pick.member_id,
            "member_workspace_id": pick.workspace_id,
        }
        yield log.record(PartnerInvited(**ids), proposal.project_id)
        if rng.random() < 0.8:
            yield log.record(InvitationAccepted(**ids), proposal.project_id)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spaces", type=int, default=1000)
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--warmup", type=int, default=500, help="projects before measuring")
    parser.add_argument("--projects", type=int, default=300, help="projects measured")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    rng = random.Random(args.seed)
    taxonomy = load_taxonomy()
    weights = active_weights()
    leaves = sorted(
        c for c in taxonomy.broader if not any(c in p for p in taxonomy.broader.values())
    )
    concepts = sorted(taxonomy.broader)  # requests use broader terms too
    network = Network(taxonomy, weights)
    log = Log()

    gc.collect()
    before = rss_mb()
    started = time.perf_counter()
    folded = 0
    for recorded in network_events(rng, log, args.spaces, args.members, leaves):
        network.apply(recorded)
        folded += 1
    network.take_changes()
    fold_seconds = time.perf_counter() - started
    gc.collect()
    directory_mb = rss_mb() - before

    # Warm-up: projects proposed, their teams invited and mostly accepted, some delivered.
    for index in range(args.warmup):
        log.now += timedelta(minutes=30)
        trigger = network.apply(random_project(rng, log, index, concepts))
        proposal = network.propose(trigger)
        network.apply(log.record(proposal, proposal.project_id))
        for recorded in staff_from(rng, log, proposal):
            network.apply(recorded)
        if index % 3 == 0 and index > 30:
            old = f"p{index - 30:06d}"
            if old in network.projects:
                network.apply(log.record(ProjectDelivered(project_id=old), old))
    network.take_changes()
    gc.collect()
    gc.freeze()  # as the service does once the directory is loaded (services/matching/app.py)

    latencies = []
    roles_without = 0
    candidates = 0
    for index in range(args.warmup, args.warmup + args.projects):
        log.now += timedelta(minutes=30)
        recorded = random_project(rng, log, index, concepts)
        started = time.perf_counter()
        trigger = network.apply(recorded)
        proposal = network.propose(trigger)
        latencies.append((time.perf_counter() - started) * 1000)
        roles_without += sum(1 for p in proposal.proposals if not p.candidates)
        candidates += sum(len(p.candidates) for p in proposal.proposals)
        network.apply(log.record(proposal, proposal.project_id))
        network.take_changes()

    stats = network.stats()
    report(
        f"machine: {platform.machine()}, {platform.processor() or platform.platform()}, "
        f"Python {platform.python_version()}"
    )
    report(
        f"directory: {stats['workspaces']} spaces, {stats['members']} members, "
        f"{stats['index_entries']} index entries, {stats['active_projects']} active projects, "
        f"{stats['history_entries']} fairness history entries"
    )
    report(f"fold: {folded} events in {fold_seconds:.1f} s ({folded / fold_seconds:,.0f} events/s)")
    report(f"memory: directory + index ~{directory_mb:.0f} MB RSS; process {rss_mb():.0f} MB")
    report(
        f"proposal latency over {len(latencies)} 5-role projects (ms): "
        f"p50 {percentile(latencies, 50):.2f}  p95 {percentile(latencies, 95):.2f}  "
        f"p99 {percentile(latencies, 99):.2f}  max {max(latencies):.2f}  "
        f"mean {statistics.mean(latencies):.2f}"
    )
    report(
        f"candidates listed per project: {candidates / len(latencies):.1f}; roles with no "
        f"candidates: {roles_without} of {5 * len(latencies)}"
    )


if __name__ == "__main__":
    main()
