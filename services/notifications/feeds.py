"""Per-workspace NATS feeds: drains the notifications outbox to `<root>.feed.<ws>.<type>`.

In one transaction: take the publisher lock (one instance publishes at a time, so each
feed stays in log order), read unpublished notifications in log order, publish them, flush
(the server has them), mark them published, commit. A crash between the flush and the
commit publishes them again after a restart: the feed is at-least-once and every copy
carries the event id and the log sequence for dedup (contracts/feeds.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json

import asyncpg
import structlog
from nats.aio.client import Client as NatsClient

from contracts.feeds import feed_headers
from contracts.subjects import SubjectScheme

log = structlog.get_logger(__name__)


class FeedPublisher:
    def __init__(
        self,
        pool: asyncpg.Pool,
        nats: NatsClient,
        scheme: SubjectScheme,
        *,
        lock_name: str,
        poll_interval: float = 1.0,
        batch_size: int = 500,
        flush_timeout: float = 5.0,
    ) -> None:
        self.pool = pool
        self.nats = nats
        self.scheme = scheme
        self.lock_name = lock_name
        self.poll_interval = poll_interval
        self.batch_size = batch_size
        self.flush_timeout = flush_timeout
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            self._wake.clear()
            if await self.publish_pending() == self.batch_size:
                continue  # more are waiting
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_interval)

    async def publish_pending(self) -> int:
        """Publish one batch of unpublished notifications; return how many."""
        async with self.pool.acquire() as connection, connection.transaction():
            if not await connection.fetchval(
                "SELECT pg_try_advisory_xact_lock(hashtext($1))", self.lock_name
            ):
                return 0  # another instance is publishing
            rows = await connection.fetch(
                "SELECT n.event_id, n.workspace_id, n.sequence, n.type, n.members, n.concerns, "
                "e.body, e.headers FROM notifications n "
                "JOIN notification_events e ON e.event_id = n.event_id "
                "WHERE n.published_at IS NULL ORDER BY n.sequence, n.workspace_id LIMIT $1",
                self.batch_size,
            )
            if not rows:
                return 0
            for row in rows:
                headers = feed_headers(
                    json.loads(row["headers"]),
                    event_id=row["event_id"],
                    sequence=row["sequence"],
                    workspace_id=row["workspace_id"],
                    members=row["members"],
                    concerns=row["concerns"],
                )
                subject = self.scheme.feed(row["workspace_id"], row["type"])
                await self.nats.publish(subject, row["body"], headers=headers)
            await self.nats.flush(timeout=self.flush_timeout)
            await connection.execute(
                "UPDATE notifications SET published_at = now() "
                "FROM unnest($1::text[], $2::text[]) AS done(event_id, workspace_id) "
                "WHERE notifications.event_id = done.event_id "
                "AND notifications.workspace_id = done.workspace_id",
                [row["event_id"] for row in rows],
                [row["workspace_id"] for row in rows],
            )
        log.debug("feed.published", count=len(rows), last_sequence=rows[-1]["sequence"])
        return len(rows)
