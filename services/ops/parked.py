"""`mf parked list|retry|drop`: the events a projection parked (undecodable, or refused).

Retry re-applies a parked event through the projection, in one transaction with the removal
of its parked row: it either lands and leaves the list, or stays with its new reason. The
event is read again from the log (the store of record); the parked bytes are the fallback.
The checkpoint does not move: the projection went past the event when it parked it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg
import structlog

from contracts.registry import EventDecodeError
from infra.eventstore import EventStore, StoredMessage
from infra.postgres import quote_identifier
from infra.projections import Projection, retryable

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class ParkedMessage:
    schema: str
    projection: str
    version: int
    sequence: int
    subject: str
    reason: str
    parked_at: datetime
    body: bytes
    headers: dict


@dataclass(slots=True)
class RetryResult:
    applied: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)  # sequence -> why, still parked


async def list_parked(
    pool: asyncpg.Pool, schema: str, projection: str | None = None, limit: int = 1000
) -> list[ParkedMessage]:
    async with pool.acquire() as connection:
        if not await connection.fetchval(
            "SELECT to_regclass($1) IS NOT NULL", f"{quote_identifier(schema)}.parked_events"
        ):
            return []
        rows = await connection.fetch(
            f"SELECT * FROM {quote_identifier(schema)}.parked_events"
            " WHERE $1::text IS NULL OR projection = $1 ORDER BY sequence LIMIT $2",
            projection,
            limit,
        )
    return [
        ParkedMessage(
            schema,
            row["projection"],
            row["version"],
            row["sequence"],
            row["subject"],
            row["reason"],
            row["parked_at"],
            row["body"],
            json.loads(row["headers"]) if isinstance(row["headers"], str) else row["headers"],
        )
        for row in rows
    ]


async def retry_parked(
    projection: Projection,
    store: EventStore,
    pool: asyncpg.Pool,
    schema: str,
    sequences: list[int] | None = None,
) -> RetryResult:
    """Re-apply parked events of the projection's current version (all, or `sequences`)."""
    result = RetryResult()
    parked = [
        message
        for message in await list_parked(pool, schema, projection.name, limit=1_000_000)
        if message.version == projection.version
        and (sequences is None or message.sequence in sequences)
    ]
    for message in parked:
        changed = await _retry_one(projection, store, pool, schema, message, result)
        if changed:
            try:
                await projection.after_commit(changed)
            except Exception as error:  # a lost live signal is not a failed retry
                log.warning("parked.after_commit_failed", error=repr(error))
    return result


async def _retry_one(
    projection: Projection,
    store: EventStore,
    pool: asyncpg.Pool,
    schema: str,
    parked: ParkedMessage,
    result: RetryResult,
) -> set[str]:
    message = await _from_log(store, parked)
    try:
        event = message.decode()
    except EventDecodeError as error:
        reason = f"undecodable: {error.reason}"
        await _update_reason(pool, schema, parked, reason)
        result.failed[parked.sequence] = reason
        return set()
    try:
        async with pool.acquire() as connection, connection.transaction():
            await connection.execute(f"SET LOCAL search_path TO {quote_identifier(schema)}, public")
            with structlog.contextvars.bound_contextvars(
                correlation_id=event.envelope.correlation_id
            ):
                changed = set(await projection.apply(connection, [event]) or ())
            await connection.execute(
                "DELETE FROM parked_events WHERE projection = $1 AND version = $2"
                " AND sequence = $3",
                parked.projection,
                parked.version,
                parked.sequence,
            )
    except Exception as error:
        if retryable(error):
            raise
        reason = f"refused by projection: {error!r}"
        await _update_reason(pool, schema, parked, reason)
        result.failed[parked.sequence] = reason
        return set()
    log.info(
        "parked.retried", projection=parked.projection, sequence=parked.sequence, schema=schema
    )
    result.applied.append(parked.sequence)
    return changed


async def drop_parked(
    pool: asyncpg.Pool, schema: str, projection: str, sequences: list[int] | None = None
) -> list[int]:
    """Forget parked events for good (they stay in the log). Returns the dropped sequences."""
    async with pool.acquire() as connection:
        rows = await connection.fetch(
            f"DELETE FROM {quote_identifier(schema)}.parked_events WHERE projection = $1"
            " AND ($2::bigint[] IS NULL OR sequence = any($2::bigint[])) RETURNING sequence",
            projection,
            sequences,
        )
    dropped = sorted(row["sequence"] for row in rows)
    log.warning("parked.dropped", projection=projection, schema=schema, sequences=dropped)
    return dropped


async def _from_log(store: EventStore, parked: ParkedMessage) -> StoredMessage:
    found = await store.read(parked.sequence, 1)
    if found and found[0].sequence == parked.sequence:
        return found[0]
    return StoredMessage(
        parked.sequence, parked.subject, parked.parked_at, parked.body, parked.headers
    )


async def _update_reason(
    pool: asyncpg.Pool, schema: str, parked: ParkedMessage, reason: str
) -> None:
    async with pool.acquire() as connection:
        await connection.execute(
            f"UPDATE {quote_identifier(schema)}.parked_events SET reason = $4"
            " WHERE projection = $1 AND version = $2 AND sequence = $3",
            parked.projection,
            parked.version,
            parked.sequence,
            reason[:2000],
        )
