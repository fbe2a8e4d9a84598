"""`mf webhooks ...`: endpoints, delivery log, dead letters and feeds, for operators.

Talks to the database of the running system (MF_DATABASE_URL, or the one `mf up` started),
with ops rights: --workspace selects whose endpoints and deliveries to act on. A running
service picks up redeliveries within its poll interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any, TypeVar

import asyncpg
import typer

from infra.http_server import serve_http
from infra.postgres import create_pool
from infra.settings import Settings
from infra.stack import resolve_urls
from services.notifications.receiver import Received, ReferenceReceiver
from services.notifications.repository import (
    DELIVERY_STATUSES,
    NotificationsRepository,
    NotRedeliverableError,
)

app = typer.Typer(
    help="Webhook endpoints, their delivery log and dead letters, and workspace feeds.",
    no_args_is_help=True,
)

T = TypeVar("T")
Workspace = Annotated[str | None, typer.Option("--workspace", "-w", help="Workspace id.")]
AsJson = Annotated[bool, typer.Option("--json", help="One JSON document per line.")]
Limit = Annotated[int, typer.Option(min=1, max=1000, help="At most this many rows.")]


@contextlib.asynccontextmanager
async def _repository() -> AsyncIterator[NotificationsRepository]:
    settings = Settings()
    _, database_url = resolve_urls(settings)
    if database_url is None:
        raise typer.BadParameter("no database: set MF_DATABASE_URL or start `mf up` first")
    pool = await create_pool(database_url, settings.schema("notifications"), max_size=2)
    try:
        if not await pool.fetchval("SELECT to_regclass('webhook_endpoints') IS NOT NULL"):
            raise typer.BadParameter("the notifications service has not run on this database yet")
        yield NotificationsRepository(pool)
    finally:
        await pool.close()


def _run(action: Callable[[NotificationsRepository], Awaitable[T]]) -> T:
    async def main() -> T:
        async with _repository() as repository:
            return await action(repository)

    try:
        return asyncio.run(main())
    except (OSError, asyncpg.PostgresError) as error:
        typer.echo(f"error: cannot reach the notifications database: {error}", err=True)
        raise typer.Exit(2) from error


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _emit(rows: list[dict[str, Any]], as_json: bool, columns: list[str]) -> None:
    if as_json:
        for row in rows:
            typer.echo(json.dumps({k: _plain(v) for k, v in row.items()}, ensure_ascii=False))
        return
    if not rows:
        typer.echo("(none)")
        return
    for row in rows:
        typer.echo("  ".join(f"{_plain(row.get(column))}" for column in columns))


@app.command("add")
def add(
    url: Annotated[str, typer.Argument(help="http(s) URL receiving the signed POSTs.")],
    workspace: Annotated[str, typer.Option("--workspace", "-w", help="Workspace id.")],
    event_type: Annotated[
        list[str] | None,
        typer.Option("--event-type", "-t", help="Only this type (repeatable); project.* works."),
    ] = None,
    description: Annotated[str, typer.Option(help="A note for humans.")] = "",
) -> None:
    """Register a webhook endpoint; prints its id and signing secret (shown only now)."""
    if not url.startswith(("http://", "https://")):
        raise typer.BadParameter("URL must start with http:// or https://", param_hint="url")
    try:
        endpoint, secret = _run(
            lambda repository: repository.create_endpoint(
                workspace, url, event_types=event_type or (), description=description
            )
        )
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--event-type") from error
    typer.echo(f"endpoint {endpoint['endpoint_id']} for {workspace} -> {url}")
    typer.echo(f"secret   {secret}   (verify Mf-Signature with it; it is not shown again)")


@app.command("listen")
def listen(
    secret: Annotated[str, typer.Option(help="The endpoint's signing secret (from `add`).")],
    port: Annotated[int, typer.Option(help="Port to listen on (127.0.0.1).")] = 9000,
    path: Annotated[str, typer.Option(help="Path registered in the endpoint's URL.")] = "/hooks",
) -> None:
    """Receive deliveries locally and print them with their signature check, to try
    webhooks: `mf webhooks add http://127.0.0.1:9000/hooks --workspace W`, then this
    with the secret it printed. Answers 200 to verified requests, 401 to the others."""

    def show(request: Received) -> None:
        try:
            event = json.loads(request.body).get("event", {})
        except ValueError:
            event = {}
        verdict = "verified" if request.signature_error is None else request.signature_error
        typer.echo(
            f"{request.status}  {event.get('type', '?')}  {request.event_id}  "
            f"{request.path}  signature: {verdict}"
        )

    receiver = ReferenceReceiver(secrets={path: secret}, on_received=show)

    async def main() -> None:
        async with serve_http(receiver.app(), "127.0.0.1", port) as served:
            typer.echo(f"listening on {served.url}{path} (Ctrl-C stops)")
            await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())


@app.command("list")
def list_endpoints(workspace: Workspace = None, as_json: AsJson = False) -> None:
    """List webhook endpoints (of one workspace, or all)."""
    rows = _run(lambda repository: repository.list_endpoints(workspace))
    _emit(rows, as_json, ["endpoint_id", "workspace_id", "url", "event_types", "paused"])


@app.command("remove")
def remove(endpoint_id: str) -> None:
    """Remove an endpoint: its pending deliveries are cancelled, its log kept."""
    if not _run(lambda repository: repository.remove_endpoint(endpoint_id)):
        typer.echo(f"no endpoint {endpoint_id}", err=True)
        raise typer.Exit(1)
    typer.echo(f"removed {endpoint_id}")


@app.command("deliveries")
def deliveries(
    workspace: Workspace = None,
    endpoint: Annotated[str | None, typer.Option(help="Endpoint id.")] = None,
    status: Annotated[
        str | None, typer.Option(help=f"One of {', '.join(DELIVERY_STATUSES)}.")
    ] = None,
    event: Annotated[str | None, typer.Option(help="Event id.")] = None,
    limit: Limit = 50,
    as_json: AsJson = False,
) -> None:
    """The delivery log, newest first."""
    if status is not None and status not in DELIVERY_STATUSES:
        raise typer.BadParameter(f"one of {', '.join(DELIVERY_STATUSES)}", param_hint="--status")
    rows = _run(
        lambda repository: repository.list_deliveries(
            workspace_id=workspace, endpoint_id=endpoint, status=status, event_id=event, limit=limit
        )
    )
    _emit(
        rows,
        as_json,
        ["delivery_id", "sequence", "type", "workspace_id", "status", "attempts", "last_error"],
    )


@app.command("attempts")
def attempts(delivery_id: str, as_json: AsJson = False) -> None:
    """Every attempt of one delivery: outcome, status code, latency, error."""
    rows = _run(lambda repository: repository.attempts(delivery_id))
    _emit(rows, as_json, ["attempt", "started_at", "outcome", "status_code", "latency_ms", "error"])


@app.command("dead-letters")
def dead_letters(
    workspace: Workspace = None,
    endpoint: Annotated[str | None, typer.Option(help="Endpoint id.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Include redelivered ones.")] = False,
    limit: Limit = 50,
    as_json: AsJson = False,
) -> None:
    """Deliveries that exhausted their attempts."""
    rows = _run(
        lambda repository: repository.list_dead_letters(
            workspace_id=workspace, endpoint_id=endpoint, include_redelivered=all_, limit=limit
        )
    )
    _emit(rows, as_json, ["delivery_id", "dead_at", "workspace_id", "type", "reason"])


@app.command("redeliver")
def redeliver(
    delivery_id: Annotated[str | None, typer.Argument(help="A dead-lettered delivery.")] = None,
    endpoint: Annotated[
        str | None, typer.Option(help="Redeliver every dead letter of this endpoint.")
    ] = None,
) -> None:
    """Send dead-lettered deliveries again, with a fresh budget of attempts."""
    if (delivery_id is None) == (endpoint is None):
        raise typer.BadParameter("give either a DELIVERY_ID or --endpoint")
    if endpoint is not None:
        count = _run(lambda repository: repository.redeliver_dead(endpoint))
        typer.echo(f"redelivering {count} dead letter(s) of {endpoint}")
        return
    try:
        _run(lambda repository: repository.redeliver(delivery_id))
    except KeyError:
        typer.echo(f"no delivery {delivery_id}", err=True)
        raise typer.Exit(1) from None
    except NotRedeliverableError as error:
        typer.echo(f"cannot redeliver {delivery_id}: {error}", err=True)
        raise typer.Exit(1) from error
    typer.echo(f"redelivering {delivery_id}")


@app.command("notifications")
def notifications(
    workspace: Annotated[str, typer.Option("--workspace", "-w", help="Workspace id.")],
    after: Annotated[int, typer.Option(help="Only after this log sequence.")] = 0,
    limit: Limit = 50,
    as_json: AsJson = False,
) -> None:
    """What a workspace's feed carried (mf.feed.<workspace>.>), oldest first."""
    rows = _run(
        lambda repository: repository.list_notifications(
            workspace, after_sequence=after, limit=limit
        )
    )
    _emit(rows, as_json, ["sequence", "type", "event_id", "members", "concerns", "published_at"])
