"""`python -m bench` (or `mf bench`): every figure of docs/benchmarks.md in one run.

    python -m bench              full sizes (1,000,000 events for the projection; ~20 min)
    python -m bench --quick      small sizes, one run per figure (< 1 min; prints its table,
                                 leaves docs/benchmarks.md alone unless --output is given)
    python -m bench --only 1,7   some figures only
    python -m bench --runs 5     medians of 5 runs

Servers: embedded nats-server processes of its own (default and durable configs), and
PostgreSQL from MF_DATABASE_URL, else 127.0.0.1:5432/test when it answers, else embedded.
Names are unique per run and removed afterwards.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import traceback
from pathlib import Path

import asyncpg
import structlog

from bench import report as reporting
from bench.sizes import FULL, QUICK, SMOKE, Sizes
from infra.runtime import run_service_loop, tune_gc

FIGURES = ("1", "2", "3", "4", "5", "6", "7", "8")
DEFAULT_OUTPUT = Path("docs/benchmarks.md")

PREAMBLE = """# Benchmarks

Produced by `python -m bench` (`mf bench`); see bench/ for what each figure does. The figures
and targets come from issue 7. Every figure is measured next to its raw limit or a peer in
the same run on the same machine; the table shows medians, every run is listed below it.
"""


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one run (< 2 min)")
    parser.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)  # for tests
    parser.add_argument("--runs", type=int, help="runs per figure (median); default 3, quick 1")
    parser.add_argument("--only", help="comma-separated figures, e.g. 1,2,7")
    parser.add_argument(
        "--output",
        type=Path,
        help=f"markdown file to update (default: {DEFAULT_OUTPUT} for a full run; a --quick "
        "run only prints its table unless given one)",
    )
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument("--events", type=int, help="override the projection's event count")
    parser.add_argument(
        "--embedded-postgres",
        action="store_true",
        help="PostgreSQL as `mf up` starts it (embedded), not MF_DATABASE_URL or :5432/test",
    )
    return parser.parse_args(argv)


async def _postgres_version(url: str) -> str:
    connection = await asyncpg.connect(url)
    try:
        version = (await connection.fetchval("SHOW server_version")).split()[0]
        fsync = await connection.fetchval("SHOW fsync")
        synchronous = await connection.fetchval("SHOW synchronous_commit")
        return f"{version} (fsync={fsync}, synchronous_commit={synchronous})"
    finally:
        await connection.close()


async def run(options: argparse.Namespace) -> reporting.Report:
    from bench import (
        aggregates,
        commands,
        e2e,
        hook_matching,
        http,
        peer,
        projection,
        servers,
    )

    sizes: Sizes = SMOKE if options.smoke else QUICK if options.quick else FULL
    if options.events:
        sizes = sizes.with_events(options.events)
    runs = options.runs or (1 if options.quick or options.smoke else 3)
    wanted = set(options.only.split(",")) if options.only else set(FIGURES)
    async with servers.postgres(options.embedded_postgres) as database_url:
        machine = reporting.Machine.describe(await _postgres_version(database_url))
        report = reporting.Report(
            machine,
            reporting.now(),
            "smoke" if options.smoke else "quick" if options.quick else "full",
            runs,
        )
        report.command = " ".join(["python -m bench", *options.argv])
        report.record_load("start")
        steps = [
            (
                "1",
                "commands (default config)",
                lambda: commands.measure(report, sizes.commands, runs, durable=False),
            ),
            (
                "2",
                "commands (durable config)",
                lambda: commands.measure(report, sizes.commands, runs, durable=True),
            ),
            ("3", "HTTP API", lambda: http.measure(report, sizes.http, runs, database_url)),
            (
                "4",
                "projection rebuild",
                lambda: projection.measure(report, sizes.projection, runs, database_url),
            ),
            ("5", "end-to-end latency", lambda: e2e.measure(report, sizes.e2e, database_url)),
            (
                "6",
                "matching",
                lambda: hook_matching.measure(report, options.quick or options.smoke),
            ),
            ("7", "aggregate load", lambda: aggregates.measure(report, sizes.aggregates, runs)),
            (
                "8",
                "peer: eventsourcing",
                lambda: peer.measure(report, sizes.peer, runs, database_url),
            ),
        ]
        for figure, title, step in steps:
            if figure not in wanted:
                continue
            sys.stderr.write(f"bench: figure {figure}: {title} (load {reporting.load_average()})\n")
            try:
                await step()
            except Exception as error:  # one broken figure must not lose the others
                report.failures.append(f"{figure} ({title}): {error!r}")
                traceback.print_exc()
        report.record_load("end")
    return report


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    options = parse(argv)
    shown, skip = [], False  # the command line for the report, without output paths
    for arg in argv:
        if skip or arg.startswith(("--output", "--json")):
            skip = arg in ("--output", "--json")
            continue
        shown.append(arg)
    options.argv = shown
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )
    tune_gc()  # as every service process does (infra.stack.open_infrastructure)
    # the loop the services run on (uvloop), except with an embedded PostgreSQL
    report = run_service_loop(run(options), use_uvloop=not options.embedded_postgres)
    output = options.output or (None if options.quick or options.smoke else DEFAULT_OUTPUT)
    if output is not None:
        reporting.write(output, report, PREAMBLE)
    if options.json:
        options.json.write_text(
            json.dumps([r.as_dict() for r in report.results], indent=2, default=str)
        )
    sys.stdout.write(report.markdown() + "\n")
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
