"""Figure 8: the peer — the Python `eventsourcing` library with PostgreSQL persistence —
doing the same load-decide-append commands and a projection into PostgreSQL, in this run.

Commands: a staffed project takes progress notes (refused unless staffed), loaded through
the application's repository (aggregate cache on, as ours), saved with its optimistic
concurrency (unique originator version), `threads` threads each owning its projects (the
library is synchronous). Durability: PostgreSQL's default `synchronous_commit = on`, so it
compares with our durable figure 2.
Projection: the library's ProjectionRunner with a PostgreSQL tracking recorder upserting a
row per project (notes, last note) in the same transaction as its tracking record, over
`projection_events` events; compared with our catch-up (figure 4b).

Needs the optional `bench` extra (`pip install -e '.[bench]'`).
"""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from bench import servers
from bench.report import Report, Result, median


@dataclass
class PeerSizes:
    commands: int
    projects: int
    threads: int
    projection_events: int


@functools.cache
def _classes():
    """Defined once, on first use: the library is an optional extra."""
    from functools import singledispatchmethod

    from eventsourcing.application import Application
    from eventsourcing.domain import Aggregate, event
    from eventsourcing.persistence import Tracking
    from eventsourcing.postgres import PostgresTrackingRecorder
    from eventsourcing.projection import Projection
    from psycopg.sql import SQL, Identifier

    class Project(Aggregate):
        @event("Proposed")
        def __init__(self, title: str, coordinator: str) -> None:
            self.title = title
            self.coordinator = coordinator
            self.status = "proposed"
            self.partners: list[str] = []
            self.notes = 0

        @event("PartnerAccepted")
        def accept(self, member: str) -> None:
            self.partners.append(member)
            self.status = "staffed"

        def record_progress(self, note: str) -> None:
            if self.status != "staffed":  # decide
                raise ValueError(f"cannot record progress: project is {self.status}")
            self._progress_noted(note)

        @event("ProgressNoted")
        def _progress_noted(self, note: str) -> None:
            self.notes += 1

    class Projects(Application):
        def staffed_project(self) -> uuid.UUID:
            project = Project("Cargo bike frame", "ada")
            project.accept("lena")
            self.save(project)
            return project.id

        def record_progress(self, project_id: uuid.UUID, note: str) -> None:
            project = self.repository.get(project_id)
            project.record_progress(note)
            self.save(project)

    class ViewRecorder(PostgresTrackingRecorder):
        def __init__(self, datastore: Any, **kwargs: Any) -> None:
            super().__init__(datastore, **kwargs)
            self.sql_create_statements.append(
                SQL(
                    "CREATE TABLE IF NOT EXISTS {0}.project_view (project_id uuid PRIMARY KEY,"
                    " title text, notes integer NOT NULL DEFAULT 0, last_note text)"
                ).format(Identifier(self.datastore.schema))
            )

        def upsert(self, project_id, title, note, tracking: Tracking) -> None:
            with self.datastore.transaction(commit=True) as cursor:
                cursor.execute(
                    SQL(
                        "INSERT INTO {0}.project_view (project_id, title, notes, last_note)"
                        " VALUES (%s, %s, %s, %s) ON CONFLICT (project_id) DO UPDATE SET"
                        " notes = project_view.notes + excluded.notes,"
                        " last_note = excluded.last_note"
                    ).format(Identifier(self.datastore.schema)),
                    (project_id, title, 1 if note else 0, note),
                    prepare=True,
                )
                self._insert_tracking(cursor, tracking)

    class View(Projection[ViewRecorder]):
        name = "projectsview"

        @singledispatchmethod
        def process_event(self, domain_event: Any, tracking: Tracking) -> None:
            self.view.insert_tracking(tracking)

        @process_event.register(Project.Created)
        def _(self, domain_event, tracking: Tracking) -> None:
            self.view.upsert(domain_event.originator_id, domain_event.title, None, tracking)

        @process_event.register(Project.ProgressNoted)
        def _(self, domain_event, tracking: Tracking) -> None:
            self.view.upsert(domain_event.originator_id, None, domain_event.note, tracking)

    return Projects, View, ViewRecorder


def _env(database_url: str, schema: str, pool: int) -> dict[str, str]:
    parts = urlsplit(database_url)
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": parts.path.lstrip("/") or "postgres",
        "POSTGRES_HOST": parts.hostname or "127.0.0.1",
        "POSTGRES_PORT": str(parts.port or 5432),
        "POSTGRES_USER": parts.username or "postgres",
        "POSTGRES_PASSWORD": parts.password or "",
        "POSTGRES_SCHEMA": schema,
        "POSTGRES_POOL_SIZE": str(pool),
        "POSTGRES_MAX_OVERFLOW": "0",
        "AGGREGATE_CACHE_MAXSIZE": "100000",
        "CREATE_TABLE": "true",
    }


def _commands(env: dict, sizes: PeerSizes) -> float:
    projects_app, _view, _recorder = _classes()
    app = projects_app(env=env)
    try:
        projects = [app.staffed_project() for _ in range(sizes.projects)]
        per_thread = sizes.commands // sizes.threads

        def worker(index: int) -> None:
            mine = projects[index :: sizes.threads]
            for k in range(per_thread):
                app.record_progress(mine[k % len(mine)], "frames cut and welded")

        started = time.perf_counter()
        with ThreadPoolExecutor(sizes.threads) as pool:
            list(pool.map(worker, range(sizes.threads)))
        return per_thread * sizes.threads / (time.perf_counter() - started)
    finally:
        app.close()


def _projection(env: dict, sizes: PeerSizes) -> tuple[float, int]:
    from eventsourcing.projection import ProjectionRunner

    projects_app, view, recorder = _classes()
    app = projects_app(env=env)
    try:  # the log to project: notes on a few hundred projects
        projects = [app.staffed_project() for _ in range(max(sizes.projects, 1))]
        for k in range(sizes.projection_events):
            app.record_progress(projects[k % len(projects)], f"note {k}")
        head = app.recorder.max_notification_id()
    finally:
        app.close()
    started = time.perf_counter()
    with ProjectionRunner(
        application_class=projects_app, projection_class=view, view_class=recorder, env=env
    ) as runner:
        runner.wait(head, timeout=600)
    return head / (time.perf_counter() - started), head


async def measure(report: Report, sizes: PeerSizes, runs: int, database_url: str) -> None:
    schema = servers.unique("es")
    async with servers.schemas(database_url, schema):
        connection = await asyncpg.connect(database_url)
        try:
            for run in range(runs + 1):
                await connection.execute(f'CREATE SCHEMA "{schema}_{run}"')
        finally:
            await connection.close()
        report.record_load("figure 8 start")
        rates = []
        for run in range(runs):
            env = _env(database_url, f"{schema}_{run}", sizes.threads + 2)
            rates.append(await asyncio.to_thread(_commands, env, sizes))
        projection_rate, events = await asyncio.to_thread(
            _projection, _env(database_url, f"{schema}_{runs}", 4), sizes
        )
        report.record_load("figure 8 end")
    ours = {r.figure: r.value for r in report.results}
    report.add(
        Result(
            "8",
            f"Peer: `eventsourcing` + PostgreSQL, load-decide-append commands/s "
            f"({sizes.threads} threads, distinct projects)",
            median(rates),
            "/s",
            "ours, durable (figure 2)" if "2" in ours else "ours: figure 2 not run",
            ours.get("2"),
            "-",
            None,
            rates,
            note="ratio < 1 means ours is faster",
        )
    )
    report.add(
        Result(
            "8b",
            f"Peer: `eventsourcing` projection into PostgreSQL, {events:,} events (events/s)",
            projection_rate,
            "/s",
            "ours, catch-up (figure 4b)" if "4b" in ours else "ours: figure 4 not run",
            ours.get("4b"),
            "-",
            None,
            [projection_rate],
            note="one transaction per event (the library's design)",
        )
    )
