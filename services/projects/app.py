"""Wiring of the projects service: migrations, the live-view projection, the invitation
expiry sweep and the HTTP API, inside one context."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import structlog

from infra.clock import SystemClock
from infra.http_server import serve_http
from infra.ids import new_id
from infra.migrations import migrate_database
from infra.postgres import create_pool
from infra.projections import ProjectionRunner
from infra.stack import Infrastructure
from infra.supervision import background
from services.ops.api import ops_router
from services.ops.metrics import metrics_route
from services.projects import domain, queries
from services.projects.api import ApiPorts, create_api
from services.projects.handlers import CommandMetadata, ProjectsHandlers
from services.projects.idempotency import IdempotencyKeys
from services.projects.views import WorkspaceViewProjection

log = structlog.get_logger(__name__)

SQL = Path(__file__).with_name("sql")


@dataclass(frozen=True, slots=True)
class ProjectsService:
    url: str
    handlers: ProjectsHandlers
    runner: ProjectionRunner
    view_schema: str


def view_projection(infra: Infrastructure) -> tuple[WorkspaceViewProjection, str]:
    return WorkspaceViewProjection(infra.nats, infra.scheme), infra.schema("projects_view")


@contextlib.asynccontextmanager
async def running(
    infra: Infrastructure,
    *,
    http_host: str = "127.0.0.1",
    http_port: int = 0,
    sweep_every: float = 30.0,
    view_runner: bool = True,
) -> AsyncIterator[ProjectsService]:
    """Run the API until the block exits. view_runner=False leaves the live-view projection
    to its own process (`running_view`, `mf serve projects-view`): under load its many
    short database round trips then no longer queue behind every HTTP request on one event
    loop (docs/benchmarks.md, figure 5)."""
    schema = infra.schema("projects")
    await migrate_database(infra.database_url, schema, SQL)
    projection, view_schema = view_projection(infra)
    async with contextlib.AsyncExitStack() as stack:
        service_pool = await create_pool(infra.database_url, schema, max_size=5)
        stack.push_async_callback(service_pool.close)
        view_pool = await create_pool(infra.database_url, view_schema, max_size=10)
        stack.push_async_callback(view_pool.close)
        runner_pool = await create_pool(infra.database_url, view_schema, max_size=2)
        stack.push_async_callback(runner_pool.close)

        clock = SystemClock()
        handlers = ProjectsHandlers(infra.store, clock, new_id)
        runner = ProjectionRunner(projection, infra.store, runner_pool, view_schema)
        await runner.prepare()  # the view's tables exist before the API serves reads
        api = create_api(
            ApiPorts(
                handlers=handlers,
                store=infra.store,
                views=view_pool,
                idempotency=IdempotencyKeys(service_pool),
                nats=infra.nats,
                scheme=infra.scheme,
                token_secret=infra.token_secret,
            )
        )

        api.include_router(
            ops_router(
                store=infra.store,
                pool=service_pool,
                token_secret=infra.token_secret,
                schema_prefix=infra.settings.schema_prefix,
            )
        )
        # Lag of every projection in every schema is measured here, once for the system.
        metrics_route(
            api, store=infra.store, pool=service_pool, schema_prefix=infra.settings.schema_prefix
        )

        async def sweep_expired_invitations() -> None:
            while True:
                await expire_invitations(handlers, view_pool, clock)
                await asyncio.sleep(sweep_every)

        loops = {"projects.invitation_expiry": sweep_expired_invitations}
        if view_runner:
            loops["projects.workspace_view"] = runner.run
        await stack.enter_async_context(background(loops))
        served = await stack.enter_async_context(serve_http(api, http_host, http_port))
        log.info("projects.started", url=served.url)
        yield ProjectsService(served.url, handlers, runner, view_schema)


@dataclass(frozen=True, slots=True)
class ViewService:
    runner: ProjectionRunner
    view_schema: str
    url: str | None = None  # no HTTP: the API serves the view


@contextlib.asynccontextmanager
async def running_view(infra: Infrastructure) -> AsyncIterator[ViewService]:
    """Only the live-view projection (its change signals reach the API's live streams
    over NATS), for deployments that run it apart from the API."""
    projection, view_schema = view_projection(infra)
    async with contextlib.AsyncExitStack() as stack:
        pool = await create_pool(infra.database_url, view_schema, max_size=2)
        stack.push_async_callback(pool.close)
        runner = ProjectionRunner(projection, infra.store, pool, view_schema)
        await runner.prepare()
        await stack.enter_async_context(background({"projects.workspace_view": runner.run}))
        log.info("projects_view.started", schema=view_schema)
        yield ViewService(runner, view_schema)


async def expire_invitations(
    handlers: ProjectsHandlers, view_pool: asyncpg.Pool, clock: SystemClock
) -> int:
    """Expire every pending invitation whose time has passed; returns how many."""
    async with view_pool.acquire() as connection:
        due = await queries.expired_invitations(connection, clock.now())
    expired = 0
    for project_id, invitation_id in due:
        meta = CommandMetadata(actor=domain.SYSTEM, correlation_id=new_id())
        try:
            await handlers.expire(project_id, invitation_id, meta)
            expired += 1
        except domain.DomainError as error:  # answered meanwhile: nothing to expire
            log.info("projects.expiry_skipped", invitation_id=invitation_id, reason=str(error))
    return expired
