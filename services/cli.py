"""`mf`: the one command line. It wires infra and services together; nothing imports it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from pathlib import Path
from typing import Annotated

import typer

from contracts.registry import EventDecodeError
from contracts.schema_export import export_json_schemas
from contracts.subjects import SubjectScheme
from infra.eventstore import StoredMessage
from infra.jetstream_store import JetStreamEventStore
from infra.logging import configure_logging
from infra.nats_connection import connect_nats
from infra.settings import Settings
from infra.stack import open_infrastructure, resolve_urls

app = typer.Typer(help="Multifactory Backbone: joint projects across shared workspaces.")
events_app = typer.Typer(help="Read the event log.")
contracts_app = typer.Typer(help="The message contracts.")
app.add_typer(events_app, name="events")
app.add_typer(contracts_app, name="contracts")


def main() -> None:
    app()


def _settings() -> Settings:
    settings = Settings()
    configure_logging(settings.log_format, settings.log_level)
    return settings


async def _wait_for_stop_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for received in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(received, stop.set)
    await stop.wait()


@app.command()
def up() -> None:
    """Run the whole system. Starts embedded NATS and PostgreSQL when MF_NATS_URL /
    MF_DATABASE_URL are unset (data kept in MF_DATA_DIR, default ./.mf-data)."""
    asyncio.run(_up(_settings()))


async def _up(settings: Settings) -> None:
    async with open_infrastructure(settings, client_name="mf-up") as infra:
        last = await infra.store.last_sequence()
        typer.echo("Multifactory Backbone is up.")
        for line in infra.embedded:
            typer.echo(f"  embedded  {line}")
        typer.echo(f"  NATS      {infra.nats_url}  (stream {settings.stream}, {last} events)")
        typer.echo(f"  Postgres  {infra.database_url}")
        typer.echo("  Watch the log:  mf events tail --from-start")
        typer.echo("Ready. Ctrl-C stops everything.", err=False)
        await _wait_for_stop_signal()
        typer.echo("Stopping ...")


@events_app.command("tail")
def events_tail(
    from_start: Annotated[bool, typer.Option(help="Print the whole log first.")] = False,
    from_seq: Annotated[int, typer.Option(help="Start at this stream sequence.")] = 0,
    subject: Annotated[
        str | None, typer.Option(help="Subject filter, e.g. mf.events.project.>")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document per event.")] = False,
    limit: Annotated[int, typer.Option(help="Stop after this many events (0: never).")] = 0,
) -> None:
    """Print the event log as it grows."""
    asyncio.run(_tail(_settings(), from_start, from_seq, subject, as_json, limit))


async def _tail(
    settings: Settings,
    from_start: bool,
    from_seq: int,
    subject: str | None,
    as_json: bool,
    limit: int,
) -> None:
    nats_url, _ = resolve_urls(settings)
    if nats_url is None:
        raise typer.BadParameter("no NATS to read: set MF_NATS_URL or start `mf up` first")
    client = await connect_nats(nats_url, name="mf-tail")
    store = JetStreamEventStore(client, settings.stream, SubjectScheme(settings.subject_root))
    start = 1 if from_start else from_seq or await store.last_sequence() + 1
    printed = 0
    try:
        async for batch in store.follow(start, subject_filter=subject):
            for message in batch:
                typer.echo(_format_message(message, as_json))
                printed += 1
                if limit and printed >= limit:
                    return
    finally:
        with contextlib.suppress(Exception):
            await client.close()


def _format_message(message: StoredMessage, as_json: bool) -> str:
    try:
        recorded = message.decode()
    except EventDecodeError as error:
        return f"{message.sequence:>8}  {message.subject}  UNDECODABLE: {error.reason}"
    envelope = recorded.envelope
    if as_json:
        return json.dumps(
            {
                "sequence": recorded.sequence,
                "recorded_at": recorded.recorded_at.isoformat(),
                "subject": recorded.subject,
                "envelope": envelope.model_dump(mode="json"),
                "data": recorded.event.data(),
            },
            ensure_ascii=False,
        )
    when = recorded.recorded_at.strftime("%Y-%m-%d %H:%M:%S")
    return (
        f"{recorded.sequence:>8}  {when}  {envelope.type:<32} "
        f"{envelope.aggregate_id:<34} by {envelope.actor}"
    )


@contracts_app.command("export")
def contracts_export(
    out: Annotated[Path, typer.Option(help="Directory to write into.")] = Path("docs/contracts"),
) -> None:
    """Write the JSON Schema of every event and of the envelope."""
    written = export_json_schemas(out)
    typer.echo(f"wrote {len(written)} JSON Schemas to {out}")
