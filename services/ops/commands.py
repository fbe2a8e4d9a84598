"""The ops commands of `mf`: replay (and --diff), history, status, parked, events export/import.

They talk to the servers of a running `mf up` (or MF_NATS_URL / MF_DATABASE_URL); with
neither, they start the embedded servers on the data directory for the command's duration.
`services/cli.py` registers them:

    register(app, events_app, projections)

where `projections(infra)` returns `{name: (projection, schema)}` of every replayable view.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, TypeVar

import asyncpg
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn
from rich.progress import Progress as ProgressBar

from infra.logging import configure_logging
from infra.postgres import create_pool
from infra.projections import Projection
from infra.rebuild import Progress, RebuildError
from infra.settings import Settings
from infra.stack import Infrastructure, open_infrastructure, resolve_urls
from services.ops import archive, diff, history, parked, replay, status

T = TypeVar("T")
Projections = Callable[[Infrastructure], dict[str, tuple[Projection, str]]]

err = Console(stderr=True)


AsOf = Annotated[
    str | None, typer.Option(help="ISO 8601 time (UTC if no offset): state at that moment.")
]
AtSeq = Annotated[int | None, typer.Option(help="State after this log sequence.")]
AsJson = Annotated[bool, typer.Option("--json", help="One JSON document.")]
Sequences = Annotated[
    list[int] | None, typer.Option("--seq", help="A parked sequence (repeatable).")
]
Every = Annotated[bool, typer.Option("--all", help="Every parked event of the projection.")]


@dataclass
class Session:
    infra: Infrastructure
    pool: asyncpg.Pool
    projections: dict[str, tuple[Projection, str]]

    def projection(self, name: str) -> tuple[Projection, str]:
        if name not in self.projections:
            known = ", ".join(sorted(self.projections)) or "none registered"
            raise typer.BadParameter(f"unknown projection {name!r} (known: {known})")
        return self.projections[name]


def _settings() -> Settings:
    settings = Settings()
    # Ops commands print their results; info logs (servers started, ...) would bury them.
    level = "warning" if settings.log_level == "info" else settings.log_level
    configure_logging(settings.log_format, level)
    nats_url, database_url = resolve_urls(settings)
    return settings.model_copy(update={"nats_url": nats_url, "database_url": database_url})


@contextlib.asynccontextmanager
async def _session(projections: Projections) -> AsyncIterator[Session]:
    settings = _settings()
    async with open_infrastructure(settings, client_name="mf-ops") as infra:
        pool = await create_pool(infra.database_url, "public", min_size=1, max_size=5)
        try:
            yield Session(infra, pool, projections(infra))
        finally:
            await pool.close()


def _run(projections: Projections, work: Callable[[Session], Awaitable[T]]) -> T:
    async def main() -> T:
        async with _session(projections) as session:
            return await work(session)

    return asyncio.run(main())


def _time(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{option}: {value!r} is not an ISO 8601 time") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class _Bar:
    """A rich progress bar with rate and ETA, fed by rebuild Progress reports (on stderr)."""

    def __init__(self, description: str) -> None:
        self.bar = ProgressBar(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]} events/s  ETA {task.fields[eta]}"),
            console=err,
        )
        self.task = self.bar.add_task(description, total=None, rate="-", eta="-")

    def __enter__(self) -> _Bar:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.bar.__exit__(*exc_info)

    def __call__(self, progress: Progress) -> None:
        eta = "-" if progress.eta is None else f"{progress.eta:,.0f} s"
        self.bar.update(
            self.task,
            completed=progress.done,
            total=max(progress.total, 1),
            rate=f"{progress.rate:,.0f}",
            eta=eta,
        )


def register(app: typer.Typer, events_app: typer.Typer, projections: Projections) -> None:
    """Add replay, history, status, parked and events export/import to `mf`."""
    history_app = typer.Typer(help="A project or workspace as it was, with who did what.")
    parked_app = typer.Typer(help="Events the projections parked (dead-lettered).")
    app.add_typer(history_app, name="history")
    app.add_typer(parked_app, name="parked")

    @app.command("replay")
    def replay_command(
        projection: Annotated[str, typer.Argument(help="The projection to rebuild.")],
        check: Annotated[
            bool,
            typer.Option("--diff", help="Rebuild into a shadow and compare; do not swap."),
        ] = False,
        from_seq: Annotated[
            int | None, typer.Option(help="Start at this log sequence (default 1).")
        ] = None,
        from_time: Annotated[
            str | None, typer.Option(help="Start at the first event recorded at/after this.")
        ] = None,
        batch_size: Annotated[int, typer.Option(help="Events per rebuild batch.")] = 5000,
    ) -> None:
        """Rebuild a projection as a new generation while the current one keeps serving,
        then swap in one transaction. With --diff, compare row by row instead (exit 1 on
        any difference). Side effects are never fired again."""

        async def work(session: Session) -> int:
            target, schema = session.projection(projection)
            store = session.infra.store
            first = await replay.start_sequence(store, from_seq, _time(from_time, "--from-time"))
            with _Bar(f"{'diff' if check else 'replay'} {projection}") as bar:
                if check:
                    report = await diff.diff_projection(
                        target,
                        store,
                        session.pool,
                        schema,
                        from_sequence=first,
                        batch_size=batch_size,
                        on_progress=bar,
                    )
                else:
                    result = await replay.replay(
                        target,
                        store,
                        session.pool,
                        schema,
                        from_seq=first,
                        batch_size=batch_size,
                        on_progress=bar,
                    )
            if check:
                for line in diff.render(report):
                    typer.echo(line)
                return 0 if report.identical else 1
            swapped = result.swap
            typer.echo(
                f"{projection}: generation {swapped.generation} is live in {schema} at "
                f"sequence {swapped.position} (from sequence {result.from_sequence}, "
                f"{result.seconds:.1f} s; swap held the live tables {swapped.locked_seconds:.3f} s)"
            )
            if swapped.carried_tables:
                typer.echo(f"  carried over unchanged: {', '.join(swapped.carried_tables)}")
            return 0

        try:
            code = _run(projections, work)
        except (RebuildError, ValueError) as error:
            typer.echo(f"replay failed: {error}", err=True)
            raise typer.Exit(2) from error
        raise typer.Exit(code)

    def history_command(kind: str, identifier: str, as_of, at_seq, as_json: bool) -> None:
        when = _time(as_of, "--as-of")

        async def work(session: Session) -> list[str]:
            store = session.infra.store
            if kind == "project":
                found = await history.project_history(store, identifier, at_seq=at_seq, as_of=when)
                if as_json:
                    return [json.dumps(history.project_document(found), ensure_ascii=False)]
                return history.render_project(found)
            found = await history.workspace_history(store, identifier, at_seq=at_seq, as_of=when)
            if as_json:
                return [json.dumps(history.workspace_document(found), ensure_ascii=False)]
            return history.render_workspace(found)

        try:
            lines = _run(projections, work)
        except history.HistoryError as error:
            raise typer.BadParameter(str(error)) from error
        for line in lines:
            typer.echo(line)

    @history_app.command("project")
    def history_project(
        project_id: str, as_of: AsOf = None, at_seq: AtSeq = None, as_json: AsJson = False
    ) -> None:
        """The project's state as it was, and its timeline with actors."""
        history_command("project", project_id, as_of, at_seq, as_json)

    @history_app.command("workspace")
    def history_workspace(
        workspace_id: str, as_of: AsOf = None, at_seq: AtSeq = None, as_json: AsJson = False
    ) -> None:
        """The workspace, its members and projects as they were, and its timeline."""
        history_command("workspace", workspace_id, as_of, at_seq, as_json)

    @app.command("status")
    def status_command(
        interval: Annotated[
            float, typer.Option(help="Seconds between the two samples (stuck detection).")
        ] = 2.0,
        as_json: AsJson = False,
    ) -> None:
        """Per projection and consumer: checkpoint, lag (events, seconds), last error,
        parked. Exits 1 when one is stuck: lag and no progress between two samples."""

        async def work(session: Session) -> status.StatusReport:
            prefix = session.infra.settings.schema_prefix
            return await status.status(
                session.infra.store, session.pool, schema_prefix=prefix, interval=interval
            )

        report = _run(projections, work)
        if as_json:
            typer.echo(json.dumps(status.document(report)))
        else:
            for line in status.render(report):
                typer.echo(line)
        raise typer.Exit(0 if report.healthy else 1)

    @parked_app.command("list")
    def parked_list(
        projection: Annotated[str | None, typer.Option(help="Only this projection.")] = None,
    ) -> None:
        """Parked events with their reason."""

        async def work(session: Session) -> list[parked.ParkedMessage]:
            found = []
            async with session.pool.acquire() as connection:
                schemas = await status.projection_schemas(
                    connection, session.infra.settings.schema_prefix
                )
            for schema in schemas:
                found.extend(await parked.list_parked(session.pool, schema, projection))
            return found

        found = _run(projections, work)
        for message in found:
            typer.echo(
                f"{message.schema}/{message.projection} v{message.version}  "
                f"seq {message.sequence}  {message.subject}  parked "
                f"{message.parked_at:%Y-%m-%d %H:%M:%S}: {message.reason}"
            )
        typer.echo(f"{len(found)} parked")

    def _chosen(sequences: list[int] | None, every: bool) -> list[int] | None:
        if not sequences and not every:
            raise typer.BadParameter("name the events with --seq N (repeatable) or --all")
        return None if every else sequences

    @parked_app.command("retry")
    def parked_retry(projection: str, seq: Sequences = None, every: Every = False) -> None:
        """Re-apply parked events through the projection (each in one transaction)."""
        chosen = _chosen(seq, every)

        async def work(session: Session) -> parked.RetryResult:
            target, schema = session.projection(projection)
            return await parked.retry_parked(
                target, session.infra.store, session.pool, schema, chosen
            )

        result = _run(projections, work)
        typer.echo(f"applied: {result.applied or 'none'}")
        for sequence, reason in sorted(result.failed.items()):
            typer.echo(f"still parked: {sequence}: {reason}")
        raise typer.Exit(1 if result.failed else 0)

    @parked_app.command("drop")
    def parked_drop(projection: str, seq: Sequences = None, every: Every = False) -> None:
        """Forget parked events (they stay in the log; a replay would park them again)."""
        chosen = _chosen(seq, every)

        async def work(session: Session) -> list[int]:
            target, schema = session.projection(projection)
            return await parked.drop_parked(session.pool, schema, target.name, chosen)

        dropped = _run(projections, work)
        typer.echo(f"dropped: {dropped or 'none'}")

    @events_app.command("export")
    def events_export(
        to: Annotated[Path, typer.Option("--to", help="JSON lines file to write.")],
        from_seq: Annotated[int, typer.Option(help="First sequence.")] = 1,
        subject: Annotated[str | None, typer.Option(help="Only these subjects.")] = None,
    ) -> None:
        """Write the log to JSON lines (sequence, subject, time, headers, body)."""

        async def work(session: Session) -> archive.ArchiveResult:
            return await archive.export_events(
                session.infra.store, to, from_sequence=from_seq, subject_filter=subject
            )

        result = _run(projections, work)
        typer.echo(f"exported {result.count} events (sequences {result.first}..{result.last})")

    @events_app.command("import")
    def events_import(
        source: Annotated[Path, typer.Option("--from", help="JSON lines from `events export`.")],
    ) -> None:
        """Load an export into an EMPTY stream, in order (archives, sandbox replays)."""
        if not source.is_file():
            raise typer.BadParameter(f"{source} is not a file")

        async def work(session: Session) -> archive.ArchiveResult:
            return await archive.import_events(session.infra.store, source)

        try:
            result = _run(projections, work)
        except archive.ArchiveError as error:
            typer.echo(f"import refused: {error}", err=True)
            raise typer.Exit(1) from error
        same = "same sequences as exported" if result.same_sequences else "renumbered"
        typer.echo(f"imported {result.count} events ({result.first}..{result.last}, {same})")
