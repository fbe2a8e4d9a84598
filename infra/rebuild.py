"""Rebuilding a projection without downtime: a shadow schema, bulk writes, one swap.

A `Rebuild` builds a new generation of a projection from the log into `<schema>__rebuild`
in large batches (through the projection's `apply_bulk` when it has one; `copy_upsert` gives
it COPY speed), while the live schema keeps serving reads and its runner keeps following the
log. The next batch is read while one is applied, and the shadow tables are ANALYZEd as they
grow (planned on empty tables, the projection's lookups would turn into sequential scans).
`swap()` applies the last events and exchanges the schemas in ONE transaction, after which
the live runner continues on the new generation. `hold_at_live_position()` stops both
at the same log position so they can be compared (`mf replay --diff`).

A rebuild never fires side effects: `after_commit` is not called, and
`infra.projections.rebuilding` is True while it applies events.
See docs/adr/2026-11-25-rebuild-and-swap.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg
import structlog

from infra.eventstore import EventStore, EventStoreError, StoredMessage
from infra.migrations import drop_schema
from infra.postgres import quote_identifier
from infra.projections import (
    RUNNER_BOOKKEEPING,
    Decoded,
    Projection,
    ProjectionRunner,
    decode,
    rebuilding,
)

log = structlog.get_logger(__name__)

T = TypeVar("T")

SHADOW_SUFFIX = "__rebuild"
RETIRED_SUFFIX = "__retired"
# The shadow's statistics are refreshed after this many events, then each time the count
# has grown this much (a handful of ANALYZEs, whatever the log's length).
FIRST_ANALYZE = 20_000
ANALYZE_GROWTH = 4


class RebuildError(RuntimeError):
    """A rebuild cannot start, or its result must not replace the live version."""


# -- bulk writes ------------------------------------------------------------------------------


async def copy_upsert(
    connection: asyncpg.Connection,
    table: str,
    columns: Sequence[str],
    records: Iterable[Sequence[Any]],
    *,
    key: Sequence[str],
    update: Sequence[str] | None = None,
) -> int:
    """Upsert many rows at COPY speed: COPY into a temporary table, then one
    `INSERT … SELECT … ON CONFLICT (key) DO UPDATE` (or DO NOTHING when `update` is empty).
    Rows sharing a key keep the last one. Returns how many distinct rows were written."""
    positions = [list(columns).index(column) for column in key]
    distinct: dict[tuple, Sequence[Any]] = {}
    for record in records:
        distinct[tuple(record[position] for position in positions)] = record
    if not distinct:
        return 0
    temp = quote_identifier(f"_mf_copy_{table}")
    target = quote_identifier(table)
    names = ", ".join(quote_identifier(column) for column in columns)
    await connection.execute(
        f"CREATE TEMP TABLE {temp} ON COMMIT DROP AS SELECT {names} FROM {target} WITH NO DATA"
    )
    await connection.copy_records_to_table(
        f"_mf_copy_{table}", records=list(distinct.values()), columns=list(columns)
    )
    conflict = ", ".join(quote_identifier(column) for column in key)
    if update:
        assignments = ", ".join(
            f"{quote_identifier(column)} = excluded.{quote_identifier(column)}" for column in update
        )
        action = f"DO UPDATE SET {assignments}"
    else:
        action = "DO NOTHING"
    await connection.execute(
        f"INSERT INTO {target} ({names}) SELECT {names} FROM {temp} "
        f"ON CONFLICT ({conflict}) {action}"
    )
    await connection.execute(f"DROP TABLE {temp}")
    return len(distinct)


# -- rebuilds ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Progress:
    """How far a rebuild is: log positions from `start` to `head`, at `rate` events/s."""

    projection: str
    start: int  # first sequence of the rebuild
    position: int  # everything up to here has been read
    head: int  # the log's last sequence when last asked
    events: int  # messages applied so far
    elapsed: float  # seconds

    @property
    def total(self) -> int:
        return max(self.head - self.start + 1, 0)

    @property
    def done(self) -> int:
        return max(min(self.position, self.head) - self.start + 1, 0)

    @property
    def rate(self) -> float:
        return self.done / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def eta(self) -> float | None:
        if self.done >= self.total:
            return 0.0
        return (self.total - self.done) / self.rate if self.rate > 0 else None


@dataclass(frozen=True, slots=True)
class SwapResult:
    schema: str
    position: int  # the checkpoint of the generation now live
    generation: int
    carried_tables: tuple[str, ...]  # moved unchanged from the old generation
    locked_seconds: float  # how long the swap transaction held the live tables


def shadow_schema(schema: str) -> str:
    return f"{schema}{SHADOW_SUFFIX}"


class Rebuild:
    """A new generation of a projection, built from the log into `<schema>__rebuild`.

        async with Rebuild(projection, store, pool, schema) as rebuild:
            await rebuild.build()          # the live schema keeps serving meanwhile
            await rebuild.swap()           # one transaction; else the shadow is dropped

    Only one rebuild per schema runs at a time (a session advisory lock).
    """

    def __init__(
        self,
        projection: Projection,
        store: EventStore,
        pool: asyncpg.Pool,
        schema: str,
        *,
        from_sequence: int = 1,
        batch_size: int = 5000,
        on_progress: Callable[[Progress], None] | None = None,
        progress_interval: float = 0.25,
        swap_lock_timeout: float = 10.0,
    ) -> None:
        self.projection = projection
        self.store = store
        self.pool = pool
        self.schema = schema
        self.shadow = shadow_schema(schema)
        self.from_sequence = max(from_sequence, 1)
        self.on_progress = on_progress
        self.progress_interval = progress_interval
        self.swap_lock_timeout = swap_lock_timeout
        self.runner = ProjectionRunner(
            projection, store, pool, self.shadow, batch_size=batch_size, mode="rebuild"
        )
        self.generation = 0
        self.position = self.from_sequence - 1  # everything up to here is in the shadow
        self._lock: asyncpg.Connection | None = None
        self._events = 0
        self._analyze_at = FIRST_ANALYZE
        self._started = 0.0
        self._reported = 0.0
        self._swapped = False

    async def __aenter__(self) -> Rebuild:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Take the rebuild lock, create an empty shadow schema and its checkpoint."""
        self._lock = await self.pool.acquire()
        locked = await self._lock.fetchval(
            "SELECT pg_try_advisory_lock(hashtext($1))", f"rebuild:{self.schema}"
        )
        if not locked:
            await self.pool.release(self._lock)
            self._lock = None
            raise RebuildError(f"another rebuild of {self.schema} is running")
        try:
            await self._create_shadow()
        except BaseException:
            await self.close()
            raise
        self._started = time.monotonic()
        log.info(
            "rebuild.started",
            projection=self.projection.name,
            schema=self.schema,
            generation=self.generation,
            from_sequence=self.from_sequence,
        )

    async def _create_shadow(self) -> None:
        self.generation = await self._live_generation() + 1
        async with self.pool.acquire() as connection:
            await drop_schema(connection, self.shadow)
        await self.runner.prepare()
        async with self.pool.acquire() as connection, connection.transaction():
            await connection.execute(f"SET LOCAL search_path TO {quote_identifier(self.shadow)}")
            await connection.execute(
                "UPDATE projection_checkpoints SET last_seq = $3 WHERE projection = $1"
                " AND version = $2",
                self.projection.name,
                self.projection.version,
                self.position,
            )
            await connection.execute(
                "INSERT INTO projection_builds (projection, version, generation, from_seq)"
                " VALUES ($1, $2, $3, $4)",
                self.projection.name,
                self.projection.version,
                self.generation,
                self.from_sequence,
            )
            tables = set(await _tables(connection, self.shadow)) - RUNNER_BOOKKEEPING
        if not tables:
            raise RebuildError(
                f"projection {self.projection.name} creates no tables in setup(), so it "
                "cannot be rebuilt into a shadow schema"
            )

    async def close(self) -> None:
        """Drop the shadow unless it was swapped in; release the rebuild lock."""
        if self._lock is None:
            return
        try:
            if not self._swapped:
                await self.discard()
            with contextlib.suppress(Exception):
                await self._lock.execute(
                    "SELECT pg_advisory_unlock(hashtext($1))", f"rebuild:{self.schema}"
                )
        finally:
            await self.pool.release(self._lock)
            self._lock = None

    async def discard(self) -> None:
        async with self.pool.acquire() as connection:
            await drop_schema(connection, self.shadow)

    async def build(self, until: int | None = None) -> int:
        """Apply the log into the shadow up to `until` (default: the head when called, and
        again until no more events arrive). Returns the sequence covered."""
        while True:
            head = await self.store.last_sequence()
            target = head if until is None else min(until, head)
            if self.position >= target:
                self._report(head, force=True)
                return self.position
            async with contextlib.aclosing(self._read_ahead(self.position + 1, target)) as batches:
                async for batch, decoded in batches:
                    await self.runner.process(batch, decoded)
                    self._events += len(batch)
                    self.position = batch[-1].sequence
                    self._report(head)
                    if self._events >= self._analyze_at:
                        await self._analyze()
            self.position = max(self.position, target)  # the rest are other subjects
            if until is not None and self.position >= until:
                self._report(head, force=True)
                return self.position

    async def swap(self) -> SwapResult:
        """Finish the last events and make the shadow the live schema, in one transaction.

        The live runner's checkpoint table is locked first (its next commit waits, then
        continues on the new generation); readers keep reading until the renames."""
        attempts = 3
        for attempt in range(1, attempts + 1):
            try:
                return await self._swap_once()
            except asyncpg.exceptions.LockNotAvailableError:
                if attempt == attempts:
                    raise
                log.warning("rebuild.swap_lock_timeout", schema=self.schema, attempt=attempt)
        raise AssertionError("unreachable")

    async def hold_at_live_position(
        self, inspect: Callable[[asyncpg.Connection, int], Awaitable[T]]
    ) -> T:
        """Bring the shadow to exactly the live checkpoint, hold the live runner there, and
        call `inspect(connection, position)` inside that transaction (to compare them)."""
        live = await self._live_position_unlocked()
        await self.build(until=live)
        async with self.pool.acquire() as connection, connection.transaction():
            live = await self._lock_live(connection)
            if live < self.position:
                raise RebuildError(f"live checkpoint {live} is behind the rebuild {self.position}")
            await self._finish_in(connection, live)
            return await inspect(connection, live)

    # -- internals ----------------------------------------------------------------------------

    async def _read_ahead(
        self, first: int, last: int
    ) -> AsyncIterator[tuple[list[StoredMessage], Decoded]]:
        """The log from `first` to `last` in decoded batches. The next batch is read and
        decoded while the caller applies this one (while PostgreSQL writes it)."""
        reading: asyncio.Future | None = asyncio.ensure_future(self._read_batch(first, last))
        try:
            while reading is not None:
                batch, decoded = await reading
                reading = None
                if not batch:
                    return
                if batch[-1].sequence < last:
                    reading = asyncio.ensure_future(self._read_batch(batch[-1].sequence + 1, last))
                yield batch, decoded
        finally:
            if reading is not None:
                reading.cancel()
                with contextlib.suppress(asyncio.CancelledError, EventStoreError):
                    await reading

    async def _read_batch(self, first: int, last: int) -> tuple[list[StoredMessage], Decoded]:
        batch = await self.store.read(first, self.runner.batch_size, self.projection.subject_filter)
        batch = [message for message in batch if message.sequence <= last]
        return batch, decode(batch)

    async def _analyze(self) -> None:
        """Refresh the shadow tables' statistics: planned on empty tables, the projection's
        `= any($1)` lookups turn into sequential scans as the tables grow."""
        self._analyze_at = self._events * ANALYZE_GROWTH
        async with self.pool.acquire() as connection:
            for table in await projection_tables(connection, self.shadow):
                await connection.execute(
                    f"ANALYZE {quote_identifier(self.shadow)}.{quote_identifier(table)}"
                )
        log.debug("rebuild.analyzed", schema=self.shadow, events=self._events)

    def _report(self, head: int, *, force: bool = False) -> None:
        if self.on_progress is None:
            return
        now = time.monotonic()
        if not force and now - self._reported < self.progress_interval:
            return
        self._reported = now
        self.on_progress(
            Progress(
                self.projection.name,
                self.from_sequence,
                self.position,
                head,
                self._events,
                now - self._started,
            )
        )

    async def _swap_once(self) -> SwapResult:
        started = time.monotonic()
        live_q, shadow_q = quote_identifier(self.schema), quote_identifier(self.shadow)
        retired = quote_identifier(f"{self.schema}{RETIRED_SUFFIX}")
        await self.build()  # close to the head before taking any lock
        async with self.pool.acquire() as connection, connection.transaction():
            timeout_ms = int(self.swap_lock_timeout * 1000)
            await connection.execute(f"SET LOCAL lock_timeout = {timeout_ms}")
            locked_at = time.monotonic()
            await connection.execute(
                "SELECT pg_advisory_xact_lock(hashtext($1))", f"projection:{self.schema}"
            )
            live = await self._lock_live(connection)
            await self._finish_in(connection, live)
            parked = await self._newly_parked(connection)
            if parked:
                raise RebuildError(
                    f"the rebuild parked {len(parked)} events the live version did not "
                    f"(sequences {parked[:10]}); not swapping: fix the projection first"
                )
            position = max(self.position, live)
            await connection.execute(
                f"UPDATE {shadow_q}.projection_checkpoints SET last_seq = $3, updated_at = now()"
                " WHERE projection = $1 AND version = $2",
                self.projection.name,
                self.projection.version,
                position,
            )
            carried = await self._carry_tables(connection)
            if await _schema_exists(connection, self.schema):
                await connection.execute(f"ALTER SCHEMA {live_q} RENAME TO {retired}")
                await connection.execute(f"ALTER SCHEMA {shadow_q} RENAME TO {live_q}")
                await connection.execute(f"DROP SCHEMA {retired} CASCADE")
            else:
                await connection.execute(f"ALTER SCHEMA {shadow_q} RENAME TO {live_q}")
            await connection.execute(
                f"UPDATE {live_q}.projection_builds SET swapped_at = now()"
                " WHERE projection = $1 AND version = $2 AND generation = $3",
                self.projection.name,
                self.projection.version,
                self.generation,
            )
            locked_seconds = time.monotonic() - locked_at
        self._swapped = True
        self.position = position
        result = SwapResult(self.schema, position, self.generation, carried, locked_seconds)
        log.info(
            "rebuild.swapped",
            projection=self.projection.name,
            schema=self.schema,
            generation=self.generation,
            position=position,
            carried_tables=list(carried),
            locked_seconds=round(locked_seconds, 4),
            seconds=round(time.monotonic() - started, 3),
        )
        return result

    async def _lock_live(self, connection: asyncpg.Connection) -> int:
        """Pause the live runner (it waits on its checkpoint table) and return its position."""
        if not await _table_exists(connection, self.schema, "projection_checkpoints"):
            return 0
        table = f"{quote_identifier(self.schema)}.projection_checkpoints"
        await connection.execute(f"LOCK TABLE {table} IN EXCLUSIVE MODE")
        position = await connection.fetchval(
            f"SELECT max(last_seq) FROM {table} WHERE projection = $1", self.projection.name
        )
        return position or 0

    async def _live_position_unlocked(self) -> int:
        async with self.pool.acquire() as connection:
            if not await _table_exists(connection, self.schema, "projection_checkpoints"):
                return 0
            position = await connection.fetchval(
                f"SELECT max(last_seq) FROM {quote_identifier(self.schema)}.projection_checkpoints"
                " WHERE projection = $1",
                self.projection.name,
            )
        return position or 0

    async def _finish_in(self, connection: asyncpg.Connection, until: int) -> None:
        """Apply the events up to `until` the shadow lacks, inside the caller's transaction."""
        shadow = quote_identifier(self.shadow)
        await connection.execute(f"SET LOCAL search_path TO {shadow}, public")
        while self.position < until:
            batch = await self.store.read(
                self.position + 1, self.runner.batch_size, self.projection.subject_filter
            )
            batch = [message for message in batch if message.sequence <= until]
            if not batch:
                self.position = until
                break
            token = rebuilding.set(True)
            try:
                _, applied = await self.runner.apply_batch(connection, batch)
            finally:
                rebuilding.reset(token)
            self._events += applied
            self.position = batch[-1].sequence
        await connection.execute("SET LOCAL search_path TO public")

    async def _carry_tables(self, connection: asyncpg.Connection) -> tuple[str, ...]:
        """Move the live tables a rebuild must not replace into the shadow: the projection's
        `preserved_tables`, and any table its setup() does not create (not its data)."""
        if not await _schema_exists(connection, self.schema):
            return ()
        live = set(await _tables(connection, self.schema)) - RUNNER_BOOKKEEPING
        shadow = set(await _tables(connection, self.shadow))
        preserved = set(getattr(self.projection, "preserved_tables", ()))
        carried = sorted(table for table in live if table in preserved or table not in shadow)
        for table in carried:
            if table in shadow:
                await connection.execute(
                    f"DROP TABLE {quote_identifier(self.shadow)}.{quote_identifier(table)}"
                )
            await connection.execute(
                f"ALTER TABLE {quote_identifier(self.schema)}.{quote_identifier(table)}"
                f" SET SCHEMA {quote_identifier(self.shadow)}"
            )
        return tuple(carried)

    async def _live_generation(self) -> int:
        async with self.pool.acquire() as connection:
            if not await _table_exists(connection, self.schema, "projection_builds"):
                return 1 if await _schema_exists(connection, self.schema) else 0
            generation = await connection.fetchval(
                f"SELECT max(generation) FROM {quote_identifier(self.schema)}.projection_builds"
                " WHERE projection = $1",
                self.projection.name,
            )
        return generation or 1

    async def _newly_parked(self, connection: asyncpg.Connection) -> list[int]:
        """Events the rebuild parked that the live version applied: a broken new version."""
        query = "SELECT sequence FROM {}.parked_events WHERE projection = $1"
        shadow = {
            row["sequence"]
            for row in await connection.fetch(
                query.format(quote_identifier(self.shadow)), self.projection.name
            )
        }
        if not shadow or not await _table_exists(connection, self.schema, "parked_events"):
            return sorted(shadow)
        live = {
            row["sequence"]
            for row in await connection.fetch(
                query.format(quote_identifier(self.schema)), self.projection.name
            )
        }
        return sorted(shadow - live)


async def _schema_exists(connection: asyncpg.Connection, schema: str) -> bool:
    query = "SELECT to_regnamespace($1) IS NOT NULL"
    return await connection.fetchval(query, quote_identifier(schema))


async def _table_exists(connection: asyncpg.Connection, schema: str, table: str) -> bool:
    name = f"{quote_identifier(schema)}.{quote_identifier(table)}"
    return await connection.fetchval("SELECT to_regclass($1) IS NOT NULL", name)


async def _tables(connection: asyncpg.Connection, schema: str) -> list[str]:
    rows = await connection.fetch(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') ORDER BY c.relname",
        schema,
    )
    return [row["relname"] for row in rows]


async def projection_tables(connection: asyncpg.Connection, schema: str) -> list[str]:
    """The tables of a schema that hold projection data (not the runner's bookkeeping)."""
    return [table for table in await _tables(connection, schema) if table not in RUNNER_BOOKKEEPING]
