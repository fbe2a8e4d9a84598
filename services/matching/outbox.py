"""Publishing proposals: the outbox rows the directory wrote, appended to the log once.

Fast path: right after the directory commits, it hands the new proposals over (`offer`) and
they are appended at once, then their rows marked. Everything else (a crash in between, the
log unreachable, another instance) is left to the drain, which polls the pending rows.

Both paths first read the project's `matching` aggregate: if the proposal's event id is
already there (a crash after the append, before the row was marked), nothing is appended.
Otherwise they append with `expected_version` = that aggregate's version, so a concurrent
append is refused rather than doubled. In the drain, each row is handled in its own
transaction holding the row lock, so two drains never handle the same row.

Rows that are stale by the time they are drained (the project was closed, or a later
trigger of the same project already has a proposal on the way) are skipped with the reason.
A row the log keeps refusing is marked failed after `max_attempts` with the last error:
parked, never retried forever, never silently dropped.
"""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg
import structlog

from contracts.envelope import PendingEvent
from contracts.registry import EventDecodeError
from contracts.wire import decode_body
from infra import metrics
from infra.eventstore import ConcurrencyError, EventStore, EventStoreError

log = structlog.get_logger(__name__)

_NEXT_ROWS = (
    "SELECT trigger_event_id FROM outbox WHERE status = 'pending' "
    "ORDER BY trigger_sequence LIMIT $1"
)
_LOCK_ROW = (
    "SELECT * FROM outbox WHERE trigger_event_id = $1 AND status = 'pending' FOR UPDATE SKIP LOCKED"
)
_SUPERSEDED = (
    "SELECT EXISTS (SELECT 1 FROM outbox WHERE project_id = $1 AND trigger_sequence > $2 "
    "AND status IN ('pending', 'published'))"
)


def _stop_if_cancelled() -> None:
    """Honour a cancellation a library swallowed. On Python 3.11, `asyncio.wait_for` (used
    inside nats-py's request) returns the result when the reply and a cancellation arrive
    together; the task stays "cancelling" but would loop forever (seen at shutdown)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class OutboxPublisher:
    def __init__(
        self,
        pool: asyncpg.Pool,
        store: EventStore,
        *,
        poll_interval: float = 1.0,
        max_attempts: int = 10,
        retry_delay: float = 0.5,
        max_retry_delay: float = 30.0,
    ) -> None:
        self.pool = pool
        self.store = store
        self.poll_interval = poll_interval
        self.max_attempts = max_attempts
        self.retry_delay = retry_delay
        self.max_retry_delay = max_retry_delay
        self._wake = asyncio.Event()
        self._offered: list[PendingEvent] = []

    def offer(self, proposals: list[PendingEvent]) -> None:
        """These proposals' rows were just committed: publish them now."""
        self._offered.extend(proposals)
        self._wake.set()

    async def run(self) -> None:
        delay = self.retry_delay
        while True:
            _stop_if_cancelled()
            self._wake.clear()
            try:
                await self.publish_offered()
                await self.drain()
                delay = self.retry_delay
                wait = self.poll_interval
            except EventStoreError as error:  # the log is unreachable: back off, keep rows
                log.warning("matching.publish_retrying", error=str(error), retry_in=delay)
                wait, delay = delay, min(delay * 2, self.max_retry_delay)
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a
            # cancellation that arrives as the wake-up does, and the loop never stops.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()

    async def publish_offered(self) -> None:
        """The fast path. The append's concurrency check (with the version just read) is
        what keeps it exactly-once; on any doubt the row stays pending for the drain."""
        while self._offered:
            _stop_if_cancelled()
            pending = self._offered.pop(0)
            envelope = pending.envelope
            with structlog.contextvars.bound_contextvars(
                correlation_id=envelope.correlation_id,
                causation_id=envelope.causation_id,
                project_id=envelope.aggregate_id,
            ):
                try:
                    history = await self.store.load("matching", envelope.aggregate_id)
                    if any(r.event_id == envelope.event_id for r in history.events):
                        continue  # appended already: the drain marks the row
                    result = await self.store.append(
                        "matching", envelope.aggregate_id, [pending], history.version
                    )
                except ConcurrencyError:
                    continue  # someone appended meanwhile: the drain sorts it out
                except EventStoreError:
                    self._offered.clear()  # the log is unreachable: the drain retries them
                    raise
                async with self.pool.acquire() as connection:
                    await connection.execute(
                        "UPDATE outbox SET status = 'published', outcome = $2, "
                        "published_sequence = $3, expected_version = $4, done_at = now() "
                        "WHERE trigger_event_id = $1 AND status = 'pending'",
                        envelope.causation_id,
                        "already in the log" if result.duplicate else "appended",
                        result.sequences[0],
                        history.version,
                    )
                metrics.MATCHING_PUBLISHED.inc(
                    outcome="duplicate" if result.duplicate else "appended"
                )
                log.info(
                    "matching.proposal_published",
                    sequence=result.sequences[0],
                    duplicate=result.duplicate,
                )

    async def drain(self, batch: int = 100) -> int:
        """Handle every pending row; return how many proposals were appended. Raises
        EventStoreError (after recording the attempt) when the log does not answer."""
        appended = 0
        while True:
            async with self.pool.acquire() as connection:
                ids = [row[0] for row in await connection.fetch(_NEXT_ROWS, batch)]
            if not ids:
                return appended
            progress = False
            for trigger_event_id in ids:
                _stop_if_cancelled()
                outcome, error = await self._handle(trigger_event_id)
                if outcome is not None:
                    metrics.MATCHING_PUBLISHED.inc(outcome=outcome)
                if error is not None:
                    raise error
                appended += outcome == "appended"
                progress = progress or outcome is not None
            if not progress:  # every row is locked by another publisher
                return appended

    async def _handle(self, trigger_event_id: str) -> tuple[str | None, EventStoreError | None]:
        async with self.pool.acquire() as connection, connection.transaction():
            row = await connection.fetchrow(_LOCK_ROW, trigger_event_id)
            if row is None:  # done meanwhile, or another publisher holds it
                return None, None
            with structlog.contextvars.bound_contextvars(
                causation_id=trigger_event_id, project_id=row["project_id"]
            ):
                try:
                    return await self._publish(connection, row), None
                except EventStoreError as error:
                    attempts = await connection.fetchval(
                        "UPDATE outbox SET attempts = attempts + 1, outcome = $2 "
                        "WHERE trigger_event_id = $1 RETURNING attempts",
                        trigger_event_id,
                        str(error)[:1000],
                    )
                    if attempts >= self.max_attempts:
                        await self._finish(connection, row, "failed", f"gave up: {error}")
                        log.error("matching.proposal_failed", attempts=attempts, error=str(error))
                        return "failed", None
                    if isinstance(error, ConcurrencyError):
                        # Someone appended to this project's proposals meanwhile: read again.
                        log.info("matching.publish_conflict", actual=error.actual)
                        return "retry", None
                    return "error", error

    async def _publish(self, connection: asyncpg.Connection, row: asyncpg.Record) -> str | None:
        project_id = row["project_id"]
        stale = await self._stale_reason(connection, row)
        if stale is not None:
            await self._finish(connection, row, "skipped", stale)
            log.info("matching.proposal_skipped", reason=stale)
            return "skipped"
        try:
            envelope, event = decode_body(row["body"])
        except EventDecodeError as error:  # written by an older release that we cannot read
            await self._finish(connection, row, "failed", f"undecodable: {error.reason}")
            log.error("matching.proposal_undecodable", reason=error.reason)
            return "failed"
        pending = PendingEvent(envelope, event)
        history = await self.store.load("matching", project_id)
        stored = next((r for r in history.events if r.event_id == envelope.event_id), None)
        if stored is not None:
            await self._finish(
                connection, row, "published", "already in the log", sequence=stored.sequence
            )
            log.info("matching.proposal_already_in_log", sequence=stored.sequence)
            return "duplicate"
        result = await self.store.append(
            "matching", project_id, [pending], expected_version=history.version
        )
        outcome = "already in the log" if result.duplicate else "appended"
        await self._finish(
            connection,
            row,
            "published",
            outcome,
            sequence=result.sequences[0],
            expected_version=history.version,
        )
        log.info(
            "matching.proposal_published",
            correlation_id=envelope.correlation_id,
            sequence=result.sequences[0],
            duplicate=result.duplicate,
        )
        return "appended" if not result.duplicate else "duplicate"

    async def _stale_reason(
        self, connection: asyncpg.Connection, row: asyncpg.Record
    ) -> str | None:
        project_id = row["project_id"]
        if not await connection.fetchval(
            "SELECT EXISTS (SELECT 1 FROM active_projects WHERE project_id = $1)", project_id
        ):
            return "the project was delivered or cancelled before the proposal was published"
        if await connection.fetchval(_SUPERSEDED, project_id, row["trigger_sequence"]):
            return "a later trigger of the same project has a newer proposal"
        return None

    async def _finish(
        self,
        connection: asyncpg.Connection,
        row: asyncpg.Record,
        status: str,
        outcome: str,
        *,
        sequence: int | None = None,
        expected_version: int | None = None,
    ) -> None:
        await connection.execute(
            "UPDATE outbox SET status = $2, outcome = $3, published_sequence = $4, "
            "expected_version = $5, done_at = now() WHERE trigger_event_id = $1",
            row["trigger_event_id"],
            status,
            outcome,
            sequence,
            expected_version,
        )
