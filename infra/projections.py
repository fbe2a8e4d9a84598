"""The projection runner: the log, applied to PostgreSQL exactly once.

A projection is a named, versioned consumer whose tables live in one schema. The runner
reads the log in batches and, in ONE transaction per batch, applies the events and advances
`projection_checkpoints(projection, version, last_seq)`. Events at or below the checkpoint
are skipped, so a crash anywhere loses nothing and applies nothing twice.

Bad input never stops a projection: an undecodable message or an event the projection
refuses is parked in `parked_events` with the reason and the raw bytes, and the runner moves
on. A database outage is different: the batch is retried with backoff until it commits.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from typing import Protocol

import asyncpg
import structlog

from contracts.envelope import PendingEvent, RecordedEvent
from contracts.registry import EventDecodeError
from contracts.wire import encode_body, encode_headers
from infra.eventstore import EventStore, StoredMessage
from infra.postgres import is_transient, quote_identifier

log = structlog.get_logger(__name__)

RUNNER_TABLES = """
CREATE TABLE IF NOT EXISTS projection_checkpoints (
    projection text NOT NULL,
    version integer NOT NULL,
    last_seq bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now(),
    last_error text,
    last_error_at timestamptz,
    PRIMARY KEY (projection, version)
);
CREATE TABLE IF NOT EXISTS parked_events (
    projection text NOT NULL,
    version integer NOT NULL,
    sequence bigint NOT NULL,
    subject text NOT NULL,
    reason text NOT NULL,
    body bytea NOT NULL,
    headers jsonb NOT NULL DEFAULT '{}',
    parked_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (projection, version, sequence)
);
"""


class Projection(Protocol):
    name: str
    version: int
    # Only these subjects are read (None: the whole log).
    subject_filter: str | None

    async def setup(self, connection: asyncpg.Connection) -> None:
        """Create the projection's tables (idempotent); search_path is its schema."""

    async def apply(
        self, connection: asyncpg.Connection, events: list[RecordedEvent]
    ) -> Iterable[str] | None:
        """Apply events inside the runner's transaction; return the keys that changed."""

    async def after_commit(self, changed: set[str]) -> None:
        """Called once the batch is committed, with the union of changed keys."""


class EventRefusedError(Exception):
    """A projection raises this (or any non-transient error) for an event it cannot apply."""


class ProjectionRunner:
    def __init__(
        self,
        projection: Projection,
        store: EventStore,
        pool: asyncpg.Pool,
        schema: str,
        *,
        batch_size: int = 1000,
        retry_delay: float = 0.2,
        max_retry_delay: float = 5.0,
    ) -> None:
        self.projection = projection
        self.store = store
        self.pool = pool
        self.schema = schema
        self.batch_size = batch_size
        self.retry_delay = retry_delay
        self.max_retry_delay = max_retry_delay
        self._key = (projection.name, projection.version)
        self._search_path = f"SET LOCAL search_path TO {quote_identifier(schema)}, public"
        self._prepared = False

    async def prepare(self) -> None:
        async with self.pool.acquire() as connection, connection.transaction():
            await connection.execute(
                "SELECT pg_advisory_xact_lock(hashtext($1))", f"projection:{self.schema}"
            )
            await connection.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_identifier(self.schema)}")
            await connection.execute(self._search_path)
            await connection.execute(RUNNER_TABLES)
            await connection.execute(
                "INSERT INTO projection_checkpoints (projection, version) VALUES ($1, $2) "
                "ON CONFLICT DO NOTHING",
                *self._key,
            )
            await self.projection.setup(connection)
        self._prepared = True

    async def position(self) -> int:
        async with self.pool.acquire() as connection:
            return await connection.fetchval(
                f"SELECT last_seq FROM {quote_identifier(self.schema)}.projection_checkpoints "
                "WHERE projection = $1 AND version = $2",
                *self._key,
            )

    async def run(self) -> None:
        """Catch up from the checkpoint, then follow the log until cancelled."""
        await self._prepare_with_retry()
        start = await self.position() + 1
        log.info("projection.started", projection=self.projection.name, from_sequence=start)
        async for batch in self.store.follow(
            start, max_batch=self.batch_size, subject_filter=self.projection.subject_filter
        ):
            await self.process(batch)

    async def catch_up(self) -> int:
        """Apply everything in the log now, then return the checkpoint (for replays/tests)."""
        await self._prepare_with_retry()
        position = await self.position()
        while True:
            batch = await self.store.read(
                position + 1, self.batch_size, self.projection.subject_filter
            )
            if not batch:
                return position
            await self.process(batch)
            position = batch[-1].sequence

    async def process(self, batch: list[StoredMessage]) -> None:
        delay = self.retry_delay
        while True:
            try:
                changed = await self._commit(batch)
                break
            except Exception as error:
                if not is_transient(error):
                    raise
                log.warning(
                    "projection.retrying",
                    projection=self.projection.name,
                    from_sequence=batch[0].sequence,
                    error=repr(error),
                    retry_in=delay,
                )
                await self._record_error(repr(error))
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_retry_delay)
        if changed:
            try:
                await self.projection.after_commit(changed)
            except Exception as error:  # a lost signal must not stop the projection
                log.warning(
                    "projection.after_commit_failed",
                    projection=self.projection.name,
                    error=repr(error),
                )

    async def _prepare_with_retry(self) -> None:
        delay = self.retry_delay
        while not self._prepared:
            try:
                await self.prepare()
            except Exception as error:
                if not is_transient(error):
                    raise
                log.warning("projection.waiting_for_database", error=repr(error))
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_retry_delay)

    async def _commit(self, batch: list[StoredMessage]) -> set[str]:
        async with self.pool.acquire() as connection, connection.transaction():
            await connection.execute(self._search_path)
            last = await connection.fetchval(
                "SELECT last_seq FROM projection_checkpoints "
                "WHERE projection = $1 AND version = $2 FOR UPDATE",
                *self._key,
            )
            fresh = [message for message in batch if message.sequence > last]
            if not fresh:
                return set()
            events, parked = _decode(fresh)
            changed: set[str] = set()
            if events:
                try:
                    async with connection.transaction():
                        changed.update(await self.projection.apply(connection, events) or ())
                except Exception as error:
                    if is_transient(error):
                        raise
                    isolated, refused = await self._apply_one_by_one(connection, events)
                    changed.update(isolated)
                    parked.extend(refused)
            if parked:
                await self._park(connection, parked)
            await connection.execute(
                "UPDATE projection_checkpoints SET last_seq = $3, updated_at = now(), "
                "last_error = NULL WHERE projection = $1 AND version = $2",
                *self._key,
                fresh[-1].sequence,
            )
        return changed

    async def _apply_one_by_one(
        self, connection: asyncpg.Connection, events: list[RecordedEvent]
    ) -> tuple[set[str], list[tuple[StoredMessage, str]]]:
        """Find the events the projection refuses; apply all the others."""
        changed: set[str] = set()
        refused = []
        for event in events:
            try:
                async with connection.transaction():
                    changed.update(await self.projection.apply(connection, [event]) or ())
            except Exception as error:
                if is_transient(error):
                    raise
                refused.append((_as_stored(event), f"refused by projection: {error!r}"))
        return changed, refused

    async def _park(
        self, connection: asyncpg.Connection, parked: list[tuple[StoredMessage, str]]
    ) -> None:
        for message, reason in parked:
            log.error(
                "projection.event_parked",
                projection=self.projection.name,
                sequence=message.sequence,
                subject=message.subject,
                reason=reason,
            )
        await connection.executemany(
            "INSERT INTO parked_events "
            "(projection, version, sequence, subject, reason, body, headers) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb) ON CONFLICT DO NOTHING",
            [
                (
                    *self._key,
                    message.sequence,
                    message.subject,
                    reason,
                    message.body,
                    json.dumps(dict(message.headers)),
                )
                for message, reason in parked
            ],
        )

    async def _record_error(self, error: str) -> None:
        try:
            async with self.pool.acquire() as connection:
                await connection.execute(
                    f"UPDATE {quote_identifier(self.schema)}.projection_checkpoints "
                    "SET last_error = $3, last_error_at = now() "
                    "WHERE projection = $1 AND version = $2",
                    *self._key,
                    error[:1000],
                )
        except Exception:  # the database is down: that is the error we are recording
            return


def _decode(
    messages: list[StoredMessage],
) -> tuple[list[RecordedEvent], list[tuple[StoredMessage, str]]]:
    events, parked = [], []
    for message in messages:
        try:
            events.append(message.decode())
        except EventDecodeError as error:
            parked.append((message, f"undecodable: {error.reason}"))
    return events, parked


def _as_stored(event: RecordedEvent) -> StoredMessage:
    body = encode_body(PendingEvent(event.envelope, event.event))
    return StoredMessage(
        event.sequence, event.subject, event.recorded_at, body, encode_headers(event.envelope)
    )
