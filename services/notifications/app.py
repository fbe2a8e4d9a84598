"""Wiring of the notifications service: migrations, pool, loops, HTTP API.

    async with running(infra, http_port=8003) as service:
        service.url   # the API, when http_port is not None

Three supervised loops: the audience projection (log -> facts + outbox, exactly once), the
webhook dispatcher (outbox -> signed POSTs) and the feed publisher (outbox -> NATS feeds).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import structlog

from infra.http_server import serve_http
from infra.ids import new_id
from infra.migrations import migrate_database
from infra.postgres import create_pool
from infra.projections import ProjectionRunner
from infra.stack import Infrastructure
from infra.supervision import background
from services.notifications.api import create_app
from services.notifications.feeds import FeedPublisher
from services.notifications.projection import AudienceProjection
from services.notifications.repository import NotificationsRepository
from services.notifications.webhooks import USER_AGENT, DeliveryPolicy, WebhookDispatcher
from services.ops.metrics import metrics_route

log = structlog.get_logger(__name__)

SERVICE = "notifications"
SQL_DIRECTORY = Path(__file__).parent / "sql"


@dataclass
class NotificationsService:
    schema: str
    pool: asyncpg.Pool
    repository: NotificationsRepository
    runner: ProjectionRunner
    dispatcher: WebhookDispatcher
    feed: FeedPublisher
    url: str | None = None  # the HTTP API, when served

    def wake(self) -> None:
        """Look for due deliveries and unpublished feed messages now."""
        self.dispatcher.wake()
        self.feed.wake()


def audience_projection(infra: Infrastructure) -> tuple[AudienceProjection, str]:
    """Who is concerned by what, and its schema (what `mf replay notifications_audience`
    rebuilds; the delivery log and endpoints are carried over, never re-fired)."""
    return AudienceProjection(), infra.schema(SERVICE)


@contextlib.asynccontextmanager
async def running(
    infra: Infrastructure,
    *,
    http_host: str = "127.0.0.1",
    http_port: int | None = 0,
    policy: DeliveryPolicy | None = None,
    feed_poll_interval: float = 1.0,
    projection_batch_size: int = 500,
    instance_id: str | None = None,
    pool_size: int = 10,
) -> AsyncIterator[NotificationsService]:
    """Run the service until the block exits.

    http_port: 0 = any free port, None = no HTTP API. policy: retries, timeouts, dead-letter
    threshold and concurrency of webhook deliveries. instance_id names this process in
    endpoint leases (generated when absent).
    """
    policy = policy or DeliveryPolicy(
        allow_private_networks=infra.settings.webhook_allow_private_networks
    )
    schema = infra.schema(SERVICE)
    await migrate_database(infra.database_url, schema, SQL_DIRECTORY)
    async with contextlib.AsyncExitStack() as stack:
        pool = await create_pool(infra.database_url, schema, max_size=pool_size)
        stack.push_async_callback(pool.close)
        projection = AudienceProjection()
        runner = ProjectionRunner(
            projection, infra.store, pool, schema, batch_size=projection_batch_size
        )
        await runner.prepare()
        client = httpx.AsyncClient(
            follow_redirects=False,
            trust_env=False,
            headers={"User-Agent": USER_AGENT},
            limits=httpx.Limits(max_connections=policy.max_in_flight),
        )
        stack.push_async_callback(client.aclose)
        dispatcher = WebhookDispatcher(pool, client, policy, owner=instance_id or new_id())
        feed = FeedPublisher(
            pool,
            infra.nats,
            infra.scheme,
            lock_name=f"{schema}:feed-publisher",
            poll_interval=feed_poll_interval,
        )
        repository = NotificationsRepository(pool, projection=(projection.name, projection.version))
        service = NotificationsService(schema, pool, repository, runner, dispatcher, feed)
        projection.on_commit = lambda _changed: service.wake()
        await stack.enter_async_context(
            background(
                {
                    "notifications.audience": runner.run,
                    "notifications.webhooks": dispatcher.run,
                    "notifications.feed": feed.run,
                }
            )
        )
        if http_port is not None:
            api = create_app(
                repository,
                infra.token_secret,
                wake=dispatcher.wake,
                allow_private_networks=policy.allow_private_networks,
            )
            metrics_route(api)
            served = await stack.enter_async_context(serve_http(api, http_host, http_port))
            service.url = served.url
        log.info("notifications.started", schema=schema, api=service.url)
        yield service
