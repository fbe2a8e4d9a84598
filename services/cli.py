"""`mf`: the one command line. It wires infra and services together; nothing imports it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from contracts.registry import EventDecodeError, describe_validation_error
from contracts.schema_export import export_json_schemas
from contracts.subjects import SubjectScheme
from infra.auth import load_or_create_secret, mint_token
from infra.eventstore import StoredMessage
from infra.jetstream_store import JetStreamEventStore
from infra.logging import configure_logging
from infra.nats_connection import connect_nats
from infra.runtime import run_service_loop
from infra.settings import Settings
from infra.stack import (
    Infrastructure,
    open_infrastructure,
    read_runtime,
    record_runtime,
    resolve_urls,
    runtime_file,
)
from services.matching import app as matching_app
from services.matching.commands import app as matching_commands
from services.notifications import app as notifications_app
from services.notifications.commands import app as webhooks_app
from services.ops.commands import register as register_ops
from services.projects import app as projects_app
from services.projects.api import openapi_document as projects_openapi
from services.projects.app import view_projection
from services.projects.demo import DemoError, run_demo

app = typer.Typer(help="Multifactory Backbone: joint projects across shared workspaces.")
events_app = typer.Typer(help="Read the event log.")
contracts_app = typer.Typer(help="The message contracts.")
tokens_app = typer.Typer(help="Bearer tokens for the HTTP APIs.")
openapi_app = typer.Typer(help="The HTTP API description.")
app.add_typer(events_app, name="events")
app.add_typer(tokens_app, name="tokens")
app.add_typer(openapi_app, name="openapi")
app.add_typer(webhooks_app, name="webhooks")
app.add_typer(matching_commands, name="matching")
register_ops(
    app,
    events_app,
    lambda infra: {
        "workspace_view": view_projection(infra),
        "matching_directory": matching_app.directory_projection(infra),
        "notifications_audience": notifications_app.audience_projection(infra),
    },
)
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
    settings = _settings()
    _serve_forever(_up(settings), settings)


SERVICES = ("projects", "matching", "notifications")  # what `mf up` runs, in one process
# `mf serve` also runs the live-view projection alone (with MF_PROJECTS_VIEW_IN_API=false)
SERVABLE = (*SERVICES, "projects-view")


def _serve_forever(main_coroutine, settings: Settings) -> None:
    """uvloop when the servers are configured; a laptop's embedded servers (`mf up` with no
    URLs) run on asyncio's loop (see infra.runtime.run_service_loop)."""
    run_service_loop(main_coroutine, use_uvloop=bool(settings.nats_url and settings.database_url))


def _service(name: str, infra: Infrastructure, settings: Settings, names: tuple[str, ...]):
    """The running context of one service, on its configured port."""
    host = settings.http_host
    if name == "projects":
        return projects_app.running(
            infra,
            http_host=host,
            http_port=settings.http_port,
            view_runner=settings.projects_view_in_api or len(names) > 1,
        )
    if name == "projects-view":
        return projects_app.running_view(infra)
    if name == "matching":
        return matching_app.running(infra, http_host=host, http_port=settings.matching_http_port)
    if name == "notifications":
        return notifications_app.running(
            infra, http_host=host, http_port=settings.notifications_http_port
        )
    raise typer.BadParameter(f"unknown service {name!r} (one of {', '.join(SERVABLE)})")


async def _up(settings: Settings, names: tuple[str, ...] = SERVICES) -> None:
    async with contextlib.AsyncExitStack() as stack:
        infra = await stack.enter_async_context(
            open_infrastructure(settings, client_name=f"mf-{'-'.join(names)}")
        )
        urls = {}
        for name in names:
            service = await stack.enter_async_context(_service(name, infra, settings, names))
            if getattr(service, "url", None):
                urls[name] = service.url
        record_runtime(settings, **{f"{name}_url": url for name, url in urls.items()})
        stack.callback(runtime_file(settings).unlink, missing_ok=True)
        last = await infra.store.last_sequence()
        typer.echo("Multifactory Backbone is up." if names == SERVICES else f"Serving {names[0]}.")
        for line in infra.embedded:
            typer.echo(f"  embedded  {line}")
        typer.echo(f"  NATS      {infra.nats_url}  (stream {settings.stream}, {last} events)")
        typer.echo(f"  Postgres  {infra.database_url}")
        if "projects" in urls:
            typer.echo(f"  Projects  {urls['projects']}  (live view page, API docs at /docs)")
        if "matching" in urls:
            typer.echo(f"  Matching  {urls['matching']}/metrics  (proposals: GET /projects/{{id}})")
        if "notifications" in urls:
            typer.echo(f"  Webhooks  {urls['notifications']}  (endpoints, delivery log)")
        if names == SERVICES:
            typer.echo("  Try:      mf demo        (seeds a network, runs a project to delivery)")
            typer.echo("            mf events tail --from-start")
        typer.echo("Ready. Ctrl-C stops everything.")
        await _wait_for_stop_signal()
        typer.echo("Stopping ...")


@app.command()
def serve(
    service: Annotated[str, typer.Argument(help=f"One of: {', '.join(SERVABLE)}.")],
) -> None:
    """Run one service in this process (production runs one process per service)."""
    if service not in SERVABLE:
        raise typer.BadParameter(f"unknown service {service!r} (one of {', '.join(SERVABLE)})")
    settings = _settings()
    _serve_forever(_up(settings, (service,)), settings)


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)
def bench(context: typer.Context) -> None:
    """Run the benchmark suite (`python -m bench`; pass --help for its options). Needs the
    optional `bench` dependencies (the peer library and profilers): see the README."""
    checkout = Path(__file__).resolve().parents[1]
    if not (checkout / "bench" / "__main__.py").exists():
        raise typer.BadParameter("bench/ ships with the source checkout, not with the package")
    command = [sys.executable, "-m", "bench", *context.args]
    raise typer.Exit(subprocess.call(command, cwd=checkout))


@tokens_app.command("create")
def tokens_create(
    workspace: Annotated[str, typer.Option(help="The workspace the token acts for.")],
    role: Annotated[str, typer.Option(help="coordinator, member or ops.")] = "coordinator",
    member: Annotated[
        str | None, typer.Option(help="The member acting (coordinators and members).")
    ] = None,
    days: Annotated[int, typer.Option(help="Valid for this many days (0: no expiry).")] = 90,
) -> None:
    """Mint a bearer token bound to a workspace and a role."""
    settings = _settings()
    expires_at = datetime.now(UTC) + timedelta(days=days) if days else None
    try:
        token = mint_token(_token_secret(settings), workspace, role, member, expires_at=expires_at)
    except ValidationError as error:
        raise typer.BadParameter(describe_validation_error(error)) from error
    typer.echo(token)


def _token_secret(settings: Settings) -> str:
    return settings.token_secret or load_or_create_secret(settings.data_dir / "token-secret")


@app.command()
def demo(
    pace: Annotated[float, typer.Option(help="Seconds between steps.")] = 2.0,
    url: Annotated[
        str | None, typer.Option(help="Projects API (default: the running `mf up`).")
    ] = None,
) -> None:
    """Seed MAGE, FreiLand, Building BloQs, R84 and more, then run a joint project from
    proposal to delivery while you watch the live view."""
    settings = _settings()
    base_url = url or (read_runtime(settings) or {}).get("projects_url")
    if not base_url:
        raise typer.BadParameter("no running system found: start `mf up` first (or pass --url)")
    try:
        asyncio.run(run_demo(base_url, _token_secret(settings), typer.echo, pace))
    except DemoError as error:
        typer.echo(f"demo failed: {error}", err=True)
        raise typer.Exit(1) from error


@openapi_app.command("export")
def openapi_export(
    out: Annotated[Path, typer.Option(help="File to write.")] = Path("docs/openapi.json"),
) -> None:
    """Write the OpenAPI document of the projects API."""
    document = projects_openapi()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document, indent=2) + "\n")
    typer.echo(f"wrote {out} ({len(document['paths'])} paths)")


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
