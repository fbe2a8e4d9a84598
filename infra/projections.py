"""The projection runner: the log, applied to PostgreSQL exactly once; and its rebuilds.

A projection is a named, versioned consumer whose tables live in one schema. The runner
reads the log in batches and, in ONE transaction per batch, applies the events and advances
`projection_checkpoints(projection, version, last_seq)`. Events at or below the checkpoint
are skipped, so a crash anywhere loses nothing and applies nothing twice.

Bad input never stops a projection: an undecodable message or an event the projection
refuses is parked in `parked_events` with the reason and the raw bytes, and the runner moves
on. A database outage is different: the batch is retried with backoff until it commits.

Rebuilds (a new generation in a shadow schema, swapped in atomically) are in
`infra/rebuild.py`; they run this same runner in `mode="rebuild"`, which never calls
`after_commit` and sets `rebuilding` while applying, so a rebuild fires no side effects.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import time
from collections.abc import Iterable
from typing import Literal, Protocol

import asyncpg
import structlog

from contracts.envelope import PendingEvent, RecordedEvent
from contracts.registry import EventDecodeError
from contracts.wire import HEADER_CORRELATION_ID, encode_body, encode_headers
from infra import metrics
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
    subject_filter text,
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
CREATE TABLE IF NOT EXISTS projection_builds (
    projection text NOT NULL,
    version integer NOT NULL,
    generation integer NOT NULL,
    from_seq bigint NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    swapped_at timestamptz,
    PRIMARY KEY (projection, version, generation)
);
"""
# The runner's own tables: never rebuilt, carried or compared as projection data.
RUNNER_BOOKKEEPING = frozenset({"projection_checkpoints", "parked_events", "projection_builds"})

# True while a Rebuild applies events (never re-fire side effects from a rebuild).
rebuilding: contextvars.ContextVar[bool] = contextvars.ContextVar("rebuilding", default=False)


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


# Optional, looked up with getattr on a projection:
#   apply_bulk(connection, events)   used instead of apply() by rebuilds (large batches into
#                                    empty tables: COPY, see copy_upsert)
#   preserved_tables: tuple[str, ...]  tables setup() creates that a rebuild must NOT
#                                    replace (an outbox of effects already sent): the live
#                                    ones are carried into the new generation at the swap
#   diff_ignore_columns: dict[str, Iterable[str]]  columns `mf replay --diff` skips


class EventRefusedError(Exception):
    """A projection raises this (or any non-transient error) for an event it cannot apply."""


class ProjectionSupersededError(RuntimeError):
    """The schema holds a newer version of this projection: this (older) code must stop."""


Mode = Literal["live", "rebuild"]
# A batch's events, and the messages to park with the reason they cannot be decoded.
Decoded = tuple[list[RecordedEvent], list[tuple[StoredMessage, str]]]


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
        mode: Mode = "live",
    ) -> None:
        self.projection = projection
        self.store = store
        self.pool = pool
        self.schema = schema
        self.batch_size = batch_size
        self.retry_delay = retry_delay
        self.max_retry_delay = max_retry_delay
        self.mode = mode
        self._key = (projection.name, projection.version)
        self._search_path = f"SET LOCAL search_path TO {quote_identifier(schema)}, public"
        self._prepared = False
        bulk = getattr(projection, "apply_bulk", None) if mode == "rebuild" else None
        self._apply = bulk or projection.apply
        self._labels = {"projection": projection.name, "mode": mode}

    async def prepare(self) -> None:
        async with self.pool.acquire() as connection, connection.transaction():
            await connection.execute(
                "SELECT pg_advisory_xact_lock(hashtext($1))", f"projection:{self.schema}"
            )
            await connection.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_identifier(self.schema)}")
            await connection.execute(self._search_path)
            await connection.execute(RUNNER_TABLES)
            await _upgrade_runner_tables(connection)
            newer = await connection.fetchval(
                "SELECT max(version) FROM projection_checkpoints WHERE projection = $1",
                self.projection.name,
            )
            if newer is not None and newer > self.projection.version:
                raise ProjectionSupersededError(_superseded(self.projection, self.schema, newer))
            await connection.execute(
                "INSERT INTO projection_checkpoints (projection, version, subject_filter) "
                "VALUES ($1, $2, $3) ON CONFLICT (projection, version) DO UPDATE "
                "SET subject_filter = excluded.subject_filter WHERE "
                "projection_checkpoints.subject_filter IS DISTINCT FROM excluded.subject_filter",
                *self._key,
                self.projection.subject_filter,
            )
            await self.projection.setup(connection)
        self._prepared = True

    async def position(self) -> int:
        async with self.pool.acquire() as connection:
            position = await connection.fetchval(
                f"SELECT last_seq FROM {quote_identifier(self.schema)}.projection_checkpoints "
                "WHERE projection = $1 AND version = $2",
                *self._key,
            )
        if position is None and self._prepared:
            raise ProjectionSupersededError(await self._superseded_message())
        return position

    async def run(self) -> None:
        """Catch up from the checkpoint, then follow the log until cancelled."""
        await self._prepare_with_retry()
        start = await self.position() + 1
        log.info("projection.started", projection=self.projection.name, from_sequence=start)
        async for batch in self.store.follow(
            start, max_batch=self.batch_size, subject_filter=self.projection.subject_filter
        ):
            await self.process(batch)

    async def catch_up(self, until: int | None = None) -> int:
        """Apply everything in the log now (or up to `until`), then return the checkpoint."""
        await self._prepare_with_retry()
        position = await self.position()
        while until is None or position < until:
            batch = await self.store.read(
                position + 1, self.batch_size, self.projection.subject_filter
            )
            if until is not None:
                batch = [message for message in batch if message.sequence <= until]
            if not batch:
                break
            await self.process(batch)
            position = batch[-1].sequence
        return await self.position()

    async def process(self, batch: list[StoredMessage], decoded: Decoded | None = None) -> None:
        """Apply a batch and advance the checkpoint, in one transaction (retried while the
        database is unreachable). `decoded`: `decode(batch)`, when the caller has it."""
        delay = self.retry_delay
        while True:
            try:
                changed = await self._commit(batch, decoded)
                break
            except Exception as error:
                if not retryable(error):
                    raise
                log.warning(
                    "projection.retrying",
                    projection=self.projection.name,
                    from_sequence=batch[0].sequence,
                    error=repr(error),
                    retry_in=delay,
                )
                metrics.PROJECTION_RETRIES.inc(projection=self.projection.name)
                await self._record_error(repr(error))
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_retry_delay)
        if changed and self.mode == "live":
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
                if not retryable(error):
                    raise
                log.warning("projection.waiting_for_database", error=repr(error))
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_retry_delay)

    async def _commit(self, batch: list[StoredMessage], decoded: Decoded | None) -> set[str]:
        started = time.perf_counter()
        async with self.pool.acquire() as connection, connection.transaction():
            await connection.execute(self._search_path)
            changed, applied = await self.apply_batch(connection, batch, decoded)
        if applied:
            metrics.PROJECTION_EVENTS.inc(applied, **self._labels)
            metrics.PROJECTION_BATCH_EVENTS.observe(applied, **self._labels)
            metrics.PROJECTION_BATCH_SECONDS.observe(time.perf_counter() - started, **self._labels)
            if self.mode == "live":
                metrics.PROJECTION_CHECKPOINT.set(
                    batch[-1].sequence, projection=self.projection.name, schema=self.schema
                )
        return changed

    async def apply_batch(
        self,
        connection: asyncpg.Connection,
        batch: list[StoredMessage],
        decoded: Decoded | None = None,
    ) -> tuple[set[str], int]:
        """Apply a batch inside the caller's transaction (search_path: this schema) and
        advance the checkpoint. Returns the changed keys and how many messages were new."""
        last = await connection.fetchval(
            "SELECT last_seq FROM projection_checkpoints "
            "WHERE projection = $1 AND version = $2 FOR UPDATE",
            *self._key,
        )
        if last is None:
            raise ProjectionSupersededError(await self._superseded_message(connection))
        fresh = [message for message in batch if message.sequence > last]
        if not fresh:
            return set(), 0
        if decoded is None or len(fresh) != len(batch):
            decoded = decode(fresh)
        events, parked = decoded[0], list(decoded[1])
        changed: set[str] = set()
        token = rebuilding.set(self.mode == "rebuild")
        try:
            if events:
                try:
                    async with connection.transaction():
                        changed.update(await self._apply(connection, events) or ())
                except Exception as error:
                    if retryable(error):
                        raise
                    isolated, refused = await self._apply_one_by_one(connection, events)
                    changed.update(isolated)
                    parked.extend(refused)
        finally:
            rebuilding.reset(token)
        if parked:
            await self._park(connection, parked)
        await connection.execute(
            "UPDATE projection_checkpoints SET last_seq = $3, updated_at = now(), "
            "last_error = NULL WHERE projection = $1 AND version = $2",
            *self._key,
            fresh[-1].sequence,
        )
        return changed, len(fresh)

    async def _apply_one_by_one(
        self, connection: asyncpg.Connection, events: list[RecordedEvent]
    ) -> tuple[set[str], list[tuple[StoredMessage, str]]]:
        """Find the events the projection refuses; apply all the others."""
        changed: set[str] = set()
        refused = []
        for event in events:
            try:
                with structlog.contextvars.bound_contextvars(
                    correlation_id=event.envelope.correlation_id, sequence=event.sequence
                ):
                    async with connection.transaction():
                        changed.update(await self.projection.apply(connection, [event]) or ())
            except Exception as error:
                if retryable(error):
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
                mode=self.mode,
                correlation_id=message.headers.get(HEADER_CORRELATION_ID),
            )
        metrics.PROJECTION_PARKED.inc(len(parked), projection=self.projection.name)
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

    async def _superseded_message(self, connection: asyncpg.Connection | None = None) -> str:
        query = (
            f"SELECT max(version) FROM {quote_identifier(self.schema)}.projection_checkpoints "
            "WHERE projection = $1"
        )
        if connection is not None:
            newer = await connection.fetchval(query, self.projection.name)
        else:
            async with self.pool.acquire() as fresh:
                newer = await fresh.fetchval(query, self.projection.name)
        return _superseded(self.projection, self.schema, newer)


def retryable(error: BaseException) -> bool:
    """Worth retrying the batch: the database is unreachable, or the connection broke under
    us (asyncpg then reports its protocol state, e.g. "cannot switch to state 15; another
    operation is in progress", seen when PostgreSQL shuts down mid-batch)."""
    return is_transient(error) or isinstance(error, asyncpg.exceptions.InternalClientError)


def _superseded(projection: Projection, schema: str, newer: int | None) -> str:
    return (
        f"{schema} holds version {newer} of projection {projection.name}, not version "
        f"{projection.version}: a rebuild replaced it; run the code of version {newer}"
    )


async def _upgrade_runner_tables(connection: asyncpg.Connection) -> None:
    """Bring runner tables created by older code up to date (without locking them if not)."""
    has_filter = await connection.fetchval(
        "SELECT count(*) FROM information_schema.columns WHERE table_schema = current_schema()"
        " AND table_name = 'projection_checkpoints' AND column_name = 'subject_filter'"
    )
    if not has_filter:
        await connection.execute(
            "ALTER TABLE projection_checkpoints ADD COLUMN IF NOT EXISTS subject_filter text"
        )


def decode(messages: list[StoredMessage]) -> Decoded:
    """The events of a batch, and the messages to park with the reason they cannot be read."""
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
