"""Webhook endpoints, the delivery log and dead letters: the queries behind the API and CLI.

Callers decide who may do what (api.py checks tokens); this module only reads and writes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import asyncpg

from contracts.registry import EVENTS_BY_TYPE
from infra.ids import new_id
from services.notifications.projection import PROJECTION_NAME, PROJECTION_VERSION
from services.notifications.signing import new_secret

AGGREGATES = frozenset(event_type.split(".", 1)[0] for event_type in EVENTS_BY_TYPE)
DELIVERY_STATUSES = ("pending", "delivered", "dead", "cancelled")

ENDPOINT_COLUMNS = (
    "endpoint_id, workspace_id, url, event_types, description, paused, "
    "registered_after_seq, created_at, updated_at"
)
DELIVERY_COLUMNS = (
    "delivery_id, event_id, endpoint_id, workspace_id, sequence, type, status, attempts, "
    "round_attempts, next_attempt_at, created_at, delivered_at, last_status_code, last_error"
)


class NotRedeliverableError(ValueError):
    """Only dead-lettered deliveries to a live endpoint can be sent again."""


def check_event_types(event_types: Iterable[str]) -> tuple[str, ...]:
    """Known event types (`project.staffed`) or `<aggregate>.*`; sorted, without repeats."""
    checked = set()
    for event_type in event_types:
        aggregate, _, name = event_type.partition(".")
        if event_type in EVENTS_BY_TYPE or (name == "*" and aggregate in AGGREGATES):
            checked.add(event_type)
            continue
        known = ", ".join(sorted(EVENTS_BY_TYPE))
        raise ValueError(
            f"unknown event type {event_type!r}: use one of {known}, or <aggregate>.* "
            f"with an aggregate among {', '.join(sorted(AGGREGATES))}"
        )
    return tuple(sorted(checked))


def _record(row: asyncpg.Record | None) -> dict[str, Any] | None:
    return dict(row) if row is not None else None


class NotificationsRepository:
    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        projection: tuple[str, int] = (PROJECTION_NAME, PROJECTION_VERSION),
    ) -> None:
        self.pool = pool
        self.projection = projection

    # -- endpoints ------------------------------------------------------------------------

    async def create_endpoint(
        self,
        workspace_id: str,
        url: str,
        *,
        event_types: Iterable[str] = (),
        description: str = "",
        secret: str | None = None,
    ) -> tuple[dict[str, Any], str]:
        """Register an endpoint; return it and its signing secret (shown only here).

        It receives the events the service processes from now on: the projection's
        checkpoint is read under a share lock, so no batch commits in between.
        """
        secret = secret or new_secret()
        async with self.pool.acquire() as connection, connection.transaction():
            position = await connection.fetchval(
                "SELECT last_seq FROM projection_checkpoints "
                "WHERE projection = $1 AND version = $2 FOR SHARE",
                *self.projection,
            )
            row = await connection.fetchrow(
                "INSERT INTO webhook_endpoints (endpoint_id, workspace_id, url, secret, "
                "event_types, description, registered_after_seq) "
                f"VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {ENDPOINT_COLUMNS}",
                new_id(),
                workspace_id,
                url,
                secret,
                list(check_event_types(event_types)),
                description,
                position or 0,
            )
        return dict(row), secret

    async def get_endpoint(self, endpoint_id: str) -> dict[str, Any] | None:
        return _record(
            await self.pool.fetchrow(
                f"SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints "
                "WHERE endpoint_id = $1 AND removed_at IS NULL",
                endpoint_id,
            )
        )

    async def list_endpoints(self, workspace_id: str | None = None) -> list[dict[str, Any]]:
        rows = await self.pool.fetch(
            f"SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE removed_at IS NULL "
            "AND ($1::text IS NULL OR workspace_id = $1) ORDER BY workspace_id, created_at",
            workspace_id,
        )
        return [dict(row) for row in rows]

    async def update_endpoint(
        self,
        endpoint_id: str,
        *,
        url: str | None = None,
        event_types: Iterable[str] | None = None,
        description: str | None = None,
        paused: bool | None = None,
    ) -> dict[str, Any] | None:
        types = None if event_types is None else list(check_event_types(event_types))
        return _record(
            await self.pool.fetchrow(
                "UPDATE webhook_endpoints SET url = coalesce($2, url), "
                "event_types = coalesce($3, event_types), "
                "description = coalesce($4, description), paused = coalesce($5, paused), "
                "updated_at = now() WHERE endpoint_id = $1 AND removed_at IS NULL "
                f"RETURNING {ENDPOINT_COLUMNS}",
                endpoint_id,
                url,
                types,
                description,
                paused,
            )
        )

    async def remove_endpoint(self, endpoint_id: str) -> bool:
        """Stop delivering to it: pending deliveries are cancelled; the log is kept."""
        async with self.pool.acquire() as connection, connection.transaction():
            removed = await connection.fetchval(
                "UPDATE webhook_endpoints SET removed_at = now(), updated_at = now() "
                "WHERE endpoint_id = $1 AND removed_at IS NULL RETURNING endpoint_id",
                endpoint_id,
            )
            if removed is None:
                return False
            await connection.execute(
                "UPDATE webhook_deliveries SET status = 'cancelled', "
                "last_error = 'endpoint removed' WHERE endpoint_id = $1 AND status = 'pending'",
                endpoint_id,
            )
        return True

    # -- the delivery log -----------------------------------------------------------------

    async def list_deliveries(
        self,
        *,
        workspace_id: str | None = None,
        endpoint_id: str | None = None,
        status: str | None = None,
        event_id: str | None = None,
        before_sequence: int | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Newest first (by log sequence)."""
        rows = await self.pool.fetch(
            f"SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries "
            "WHERE ($1::text IS NULL OR workspace_id = $1) "
            "AND ($2::text IS NULL OR endpoint_id = $2) AND ($3::text IS NULL OR status = $3) "
            "AND ($4::text IS NULL OR event_id = $4) AND ($5::bigint IS NULL OR sequence < $5) "
            "ORDER BY sequence DESC, endpoint_id LIMIT $6",
            workspace_id,
            endpoint_id,
            status,
            event_id,
            before_sequence,
            limit,
        )
        return [dict(row) for row in rows]

    async def get_delivery(self, delivery_id: str) -> dict[str, Any] | None:
        """A delivery with all its attempts (oldest first)."""
        delivery = _record(
            await self.pool.fetchrow(
                f"SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE delivery_id = $1",
                delivery_id,
            )
        )
        if delivery is not None:
            delivery["attempt_log"] = await self.attempts(delivery_id)
        return delivery

    async def attempts(self, delivery_id: str) -> list[dict[str, Any]]:
        rows = await self.pool.fetch(
            "SELECT attempt, started_at, finished_at, outcome, status_code, latency_ms, error, "
            "response_excerpt FROM webhook_attempts WHERE delivery_id = $1 ORDER BY attempt",
            delivery_id,
        )
        return [dict(row) for row in rows]

    async def list_dead_letters(
        self,
        *,
        workspace_id: str | None = None,
        endpoint_id: str | None = None,
        include_redelivered: bool = False,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        rows = await self.pool.fetch(
            "SELECT delivery_id, endpoint_id, workspace_id, event_id, type, attempts, reason, "
            "dead_at, redelivered_at FROM webhook_dead_letters "
            "WHERE ($1::text IS NULL OR workspace_id = $1) "
            "AND ($2::text IS NULL OR endpoint_id = $2) AND ($3 OR redelivered_at IS NULL) "
            "ORDER BY dead_at DESC LIMIT $4",
            workspace_id,
            endpoint_id,
            include_redelivered,
            limit,
        )
        return [dict(row) for row in rows]

    async def redeliver(self, delivery_id: str) -> dict[str, Any]:
        """Send a dead-lettered delivery again, with a fresh budget of attempts."""
        async with self.pool.acquire() as connection, connection.transaction():
            row = await connection.fetchrow(
                "SELECT d.status, e.removed_at FROM webhook_deliveries d "
                "JOIN webhook_endpoints e USING (endpoint_id) WHERE d.delivery_id = $1 "
                "FOR UPDATE OF d",
                delivery_id,
            )
            if row is None:
                raise KeyError(delivery_id)
            if row["removed_at"] is not None:
                raise NotRedeliverableError("its endpoint has been removed")
            if row["status"] != "dead":
                raise NotRedeliverableError(
                    f"only dead-lettered deliveries can be redelivered; this one is {row['status']}"
                )
            await connection.execute(
                "UPDATE webhook_deliveries SET status = 'pending', round_attempts = 0, "
                "next_attempt_at = now() WHERE delivery_id = $1",
                delivery_id,
            )
            await connection.execute(
                "UPDATE webhook_dead_letters SET redelivered_at = now() WHERE delivery_id = $1",
                delivery_id,
            )
        return await self.get_delivery(delivery_id)  # type: ignore[return-value]

    async def redeliver_dead(self, endpoint_id: str) -> int:
        """Redeliver every dead letter of a live endpoint; return how many."""
        async with self.pool.acquire() as connection, connection.transaction():
            ids = await connection.fetch(
                "UPDATE webhook_deliveries d SET status = 'pending', round_attempts = 0, "
                "next_attempt_at = now() FROM webhook_endpoints e "
                "WHERE d.endpoint_id = $1 AND e.endpoint_id = d.endpoint_id "
                "AND e.removed_at IS NULL AND d.status = 'dead' RETURNING d.delivery_id",
                endpoint_id,
            )
            await connection.execute(
                "UPDATE webhook_dead_letters SET redelivered_at = now() "
                "WHERE delivery_id = ANY($1::text[])",
                [row["delivery_id"] for row in ids],
            )
        return len(ids)

    # -- a workspace's notifications (its feed, as logged) --------------------------------

    async def list_notifications(
        self, workspace_id: str, *, after_sequence: int = 0, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Oldest first from `after_sequence`: what the workspace's feed carried, with the
        event body (`event`), so a subscriber that was offline can catch up."""
        rows = await self.pool.fetch(
            "SELECT n.event_id, n.workspace_id, n.sequence, n.type, n.members, n.concerns, "
            "n.created_at, n.published_at, e.body FROM notifications n "
            "JOIN notification_events e ON e.event_id = n.event_id "
            "WHERE n.workspace_id = $1 AND n.sequence > $2 ORDER BY n.sequence LIMIT $3",
            workspace_id,
            after_sequence,
            limit,
        )
        return [{**dict(row), "event": json.loads(row["body"])} for row in rows]
