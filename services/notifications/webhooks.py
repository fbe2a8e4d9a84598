"""Webhook delivery: signed POSTs, at-least-once, in order per project, with retries.

The audience projection writes pending deliveries (the outbox). The dispatcher finds the
endpoints with a delivery due and runs one worker per endpoint; a worker holds a lease on
its endpoint (one service instance at a time delivers to it) and sends, in log order, the
due *head* of each ordering key — the oldest pending delivery of each project — so event
n+1 of a project never goes before event n has succeeded or been dead-lettered, while
another project's events to the same endpoint, and every other endpoint, go on.

Each attempt is logged before the request (`in_flight`) and completed after it, so a
process that dies mid-request leaves an `interrupted` attempt, and the delivery is sent
again (at-least-once; receivers dedup on Mf-Event-Id). A delivery becomes `delivered`
once, by a guarded update, so it is never logged twice as a success.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg
import httpx
import structlog

from infra.metrics import record_webhook
from services.notifications.destinations import DestinationRefused, check_delivery_url
from services.notifications.signing import (
    HEADER_ATTEMPT,
    HEADER_DELIVERY_ID,
    HEADER_EVENT_ID,
    HEADER_EVENT_TYPE,
    HEADER_SEQUENCE,
    signature_headers,
)

log = structlog.get_logger(__name__)

USER_AGENT = "multifactory-webhooks/1"
EXCERPT_CHARS = 300


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    max_attempts: int = 8  # per round; then dead-lettered
    base_delay: float = 2.0  # seconds before the 2nd attempt; doubles after each failure
    max_delay: float = 900.0
    jitter: float = 0.5  # up to this fraction of each delay is taken off at random
    timeout: float = 10.0  # seconds for a whole request (connect + response)
    max_in_flight: int = 32  # concurrent requests over all endpoints
    lease_seconds: float = 60.0  # how long an endpoint stays claimed without renewal
    poll_interval: float = 1.0  # how often due retries (and other instances' work) are sought
    batch_size: int = 50  # due deliveries taken per worker round
    # False: refuse endpoints that resolve to non-global addresses (destinations.py)
    allow_private_networks: bool = True

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter is a fraction between 0 and 1")
        if self.base_delay < 0 or self.max_delay < self.base_delay:
            raise ValueError("need 0 <= base_delay <= max_delay")
        if self.timeout <= 0 or self.lease_seconds < 2 * self.timeout + 1:
            raise ValueError("lease_seconds must exceed twice the request timeout (+1 s)")


def retry_delay(policy: DeliveryPolicy, failed_attempts: int, draw: float) -> float:
    """Seconds to wait after the `failed_attempts`-th failure of a round; `draw` in [0, 1)."""
    exponent = max(failed_attempts - 1, 0)
    delay = policy.max_delay if exponent >= 64 else policy.base_delay * 2.0**exponent
    delay = min(policy.max_delay, delay)
    return delay * (1 - policy.jitter * draw)


@dataclass(frozen=True, slots=True)
class Endpoint:
    endpoint_id: str
    workspace_id: str
    url: str
    secret: str


@dataclass(frozen=True, slots=True)
class Outcome:
    status_code: int | None
    error: str | None
    latency_ms: float
    excerpt: str | None

    @property
    def delivered(self) -> bool:
        return self.error is None


class WebhookDispatcher:
    def __init__(
        self,
        pool: asyncpg.Pool,
        client: httpx.AsyncClient,
        policy: DeliveryPolicy,
        *,
        owner: str,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self.pool = pool
        self.client = client
        self.policy = policy
        self.owner = owner
        self._draw = draw
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(policy.max_in_flight)
        self._workers: dict[str, asyncio.Task] = {}

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        """Start a worker for every endpoint with a due delivery, until cancelled."""
        try:
            while True:
                self._wake.clear()
                next_due = await self._start_due_workers()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._wake.wait(), max(0.0, min(self.policy.poll_interval, next_due))
                    )
        finally:
            workers = list(self._workers.values())
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            await self._release_all()

    async def _start_due_workers(self) -> float:
        """Start missing workers; return the seconds until the next not-yet-due head."""
        rows = await self.pool.fetch(
            "WITH heads AS ("
            " SELECT DISTINCT ON (endpoint_id, ordering_key) endpoint_id, next_attempt_at"
            " FROM webhook_deliveries WHERE status = 'pending'"
            " ORDER BY endpoint_id, ordering_key, sequence) "
            "SELECT h.endpoint_id, EXTRACT(EPOCH FROM min(h.next_attempt_at) - now()) AS due_in "
            "FROM heads h JOIN webhook_endpoints e USING (endpoint_id) "
            "WHERE NOT e.paused AND e.removed_at IS NULL "
            "AND (e.lease_owner IS NULL OR e.lease_owner = $1 OR e.lease_until < now()) "
            "GROUP BY h.endpoint_id",
            self.owner,
        )
        next_due = float("inf")
        for row in rows:
            due_in = float(row["due_in"])
            if due_in > 0:
                next_due = min(next_due, due_in)
            elif row["endpoint_id"] not in self._workers:
                self._start_worker(row["endpoint_id"])
        return next_due

    def _start_worker(self, endpoint_id: str) -> None:
        task = asyncio.create_task(self._worker(endpoint_id), name=f"webhook:{endpoint_id}")
        self._workers[endpoint_id] = task

        def finished(done: asyncio.Task) -> None:
            if self._workers.get(endpoint_id) is done:
                del self._workers[endpoint_id]
            if not done.cancelled():
                self.wake()  # something may have become due while it worked

        task.add_done_callback(finished)

    async def _worker(self, endpoint_id: str) -> None:
        with structlog.contextvars.bound_contextvars(endpoint_id=endpoint_id):
            try:
                await self._serve(endpoint_id)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.exception("webhook.worker_failed", error=repr(error))
                await asyncio.sleep(self.policy.poll_interval)  # no hot loop on a DB outage
            finally:
                with contextlib.suppress(Exception):
                    await self.pool.execute(
                        "UPDATE webhook_endpoints SET lease_owner = NULL, lease_until = NULL "
                        "WHERE endpoint_id = $1 AND lease_owner = $2",
                        endpoint_id,
                        self.owner,
                    )

    async def _serve(self, endpoint_id: str) -> None:
        if await self._claim(endpoint_id) is None:
            return
        await self.pool.execute(
            "UPDATE webhook_attempts a SET outcome = 'interrupted', finished_at = now(), "
            "error = 'the service stopped before the response arrived' "
            "FROM webhook_deliveries d WHERE a.delivery_id = d.delivery_id "
            "AND d.endpoint_id = $1 AND a.outcome = 'in_flight'",
            endpoint_id,
        )
        while True:
            heads = await self.pool.fetch(
                "SELECT * FROM ("
                " SELECT DISTINCT ON (ordering_key) delivery_id, event_id, workspace_id,"
                " sequence, type, attempts, next_attempt_at"
                " FROM webhook_deliveries WHERE endpoint_id = $1 AND status = 'pending'"
                " ORDER BY ordering_key, sequence) AS heads "
                "WHERE next_attempt_at <= now() ORDER BY sequence LIMIT $2",
                endpoint_id,
                self.policy.batch_size,
            )
            if not heads:
                return
            for head in heads:
                endpoint = await self._claim(endpoint_id)  # renews the lease, rereads the URL
                if endpoint is None:
                    return
                async with self._slots:
                    await self._attempt(endpoint, head)

    async def _claim(self, endpoint_id: str) -> Endpoint | None:
        row = await self.pool.fetchrow(
            "UPDATE webhook_endpoints SET lease_owner = $2, "
            "lease_until = now() + make_interval(secs => $3) "
            "WHERE endpoint_id = $1 AND removed_at IS NULL AND NOT paused "
            "AND (lease_owner IS NULL OR lease_owner = $2 OR lease_until < now()) "
            "RETURNING endpoint_id, workspace_id, url, secret",
            endpoint_id,
            self.owner,
            self.policy.lease_seconds,
        )
        return Endpoint(**dict(row)) if row else None

    async def _release_all(self) -> None:
        with contextlib.suppress(Exception):
            await self.pool.execute(
                "UPDATE webhook_endpoints SET lease_owner = NULL, lease_until = NULL "
                "WHERE lease_owner = $1",
                self.owner,
            )

    async def _attempt(self, endpoint: Endpoint, head: asyncpg.Record) -> None:
        delivery_id = head["delivery_id"]
        attempt = head["attempts"] + 1
        async with self.pool.acquire() as connection, connection.transaction():
            started = await connection.fetchval(
                "UPDATE webhook_deliveries SET attempts = attempts + 1, "
                "round_attempts = round_attempts + 1 "
                "WHERE delivery_id = $1 AND status = 'pending' AND attempts = $2 "
                "RETURNING round_attempts",
                delivery_id,
                head["attempts"],
            )
            if started is None:
                return  # changed meanwhile (removed endpoint, another instance)
            await connection.execute(
                "INSERT INTO webhook_attempts (delivery_id, attempt, outcome) "
                "VALUES ($1, $2, 'in_flight')",
                delivery_id,
                attempt,
            )
            context = await connection.fetchrow(
                "SELECT e.body, e.headers, n.members, n.concerns FROM notification_events e "
                "JOIN notifications n ON n.event_id = e.event_id AND n.workspace_id = $2 "
                "WHERE e.event_id = $1",
                head["event_id"],
                head["workspace_id"],
            )
            if context is None:  # cannot happen unless rows were deleted by hand
                await connection.execute(
                    "UPDATE webhook_deliveries SET status = 'cancelled', "
                    "last_error = 'event no longer recorded' WHERE delivery_id = $1",
                    delivery_id,
                )
                missing = Outcome(None, "event no longer recorded", 0.0, None)
                await self._finish_attempt(delivery_id, attempt, "failed", missing, connection)
                return
        correlation = json.loads(context["headers"]).get("Mf-Correlation-Id")
        with structlog.contextvars.bound_contextvars(
            delivery_id=delivery_id,
            event_id=head["event_id"],
            correlation_id=correlation,
            attempt=attempt,
        ):
            body = _payload(head, context)
            try:
                outcome = await self._post(endpoint, head, attempt, body)
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    await self._finish_attempt(delivery_id, attempt, "interrupted", None)
                raise
            await self._record(endpoint, head, attempt, started, outcome)

    async def _post(
        self, endpoint: Endpoint, head: asyncpg.Record, attempt: int, body: bytes
    ) -> Outcome:
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            HEADER_EVENT_ID: head["event_id"],
            HEADER_EVENT_TYPE: head["type"],
            HEADER_DELIVERY_ID: head["delivery_id"],
            HEADER_SEQUENCE: str(head["sequence"]),
            HEADER_ATTEMPT: str(attempt),
            **signature_headers(endpoint.secret, body, timestamp=int(time.time())),
        }
        started = time.perf_counter()
        if not self.policy.allow_private_networks:
            try:
                await check_delivery_url(endpoint.url)
            except DestinationRefused as refused:
                return Outcome(None, f"refused: {refused}", _since(started), None)
        try:
            response = await self.client.post(
                endpoint.url, content=body, headers=headers, timeout=self.policy.timeout
            )
        except httpx.TimeoutException:
            error = f"timed out after {self.policy.timeout:g}s"
            return Outcome(None, error, _since(started), None)
        except httpx.HTTPError as failure:
            error = f"{type(failure).__name__}: {failure}"[:500]
            return Outcome(None, error, _since(started), None)
        excerpt = response.text[:EXCERPT_CHARS]
        error = None if response.is_success else f"HTTP {response.status_code}"
        return Outcome(response.status_code, error, _since(started), excerpt)

    async def _finish_attempt(
        self,
        delivery_id: str,
        attempt: int,
        outcome: str,
        result: Outcome | None,
        connection: asyncpg.Connection | None = None,
    ) -> None:
        target = connection or self.pool
        await target.execute(
            "UPDATE webhook_attempts SET outcome = $3, finished_at = now(), status_code = $4, "
            "latency_ms = $5, error = $6, response_excerpt = $7 "
            "WHERE delivery_id = $1 AND attempt = $2 AND outcome = 'in_flight'",
            delivery_id,
            attempt,
            outcome,
            result.status_code if result else None,
            result.latency_ms if result else None,
            result.error if result else "the service stopped before the response arrived",
            result.excerpt if result else None,
        )

    async def _record(
        self,
        endpoint: Endpoint,
        head: asyncpg.Record,
        attempt: int,
        round_attempts: int,
        outcome: Outcome,
    ) -> None:
        delivery_id = head["delivery_id"]
        record_webhook("delivered" if outcome.delivered else "failed", outcome.latency_ms / 1000)
        async with self.pool.acquire() as connection, connection.transaction():
            await self._finish_attempt(
                delivery_id,
                attempt,
                "delivered" if outcome.delivered else "failed",
                outcome,
                connection,
            )
            if outcome.delivered:
                await connection.execute(
                    "UPDATE webhook_deliveries SET status = 'delivered', delivered_at = now(), "
                    "last_status_code = $2, last_error = NULL "
                    "WHERE delivery_id = $1 AND status = 'pending'",
                    delivery_id,
                    outcome.status_code,
                )
                log.info("webhook.delivered", latency_ms=round(outcome.latency_ms, 1))
                return
            if round_attempts >= self.policy.max_attempts:
                await self._dead_letter(connection, endpoint, head, outcome)
                return
            delay = retry_delay(self.policy, round_attempts, self._draw())
            await connection.execute(
                "UPDATE webhook_deliveries SET next_attempt_at = now() + make_interval(secs => $2),"
                " last_status_code = $3, last_error = $4 "
                "WHERE delivery_id = $1 AND status = 'pending'",
                delivery_id,
                delay,
                outcome.status_code,
                outcome.error,
            )
        log.warning("webhook.retrying", error=outcome.error, retry_in=round(delay, 3))

    async def _dead_letter(
        self,
        connection: asyncpg.Connection,
        endpoint: Endpoint,
        head: asyncpg.Record,
        outcome: Outcome,
    ) -> None:
        attempts = await connection.fetchval(
            "UPDATE webhook_deliveries SET status = 'dead', last_status_code = $2, "
            "last_error = $3 WHERE delivery_id = $1 AND status = 'pending' RETURNING attempts",
            head["delivery_id"],
            outcome.status_code,
            outcome.error,
        )
        if attempts is None:
            return
        reason = f"{self.policy.max_attempts} attempts failed; last: {outcome.error}"
        await connection.execute(
            "INSERT INTO webhook_dead_letters "
            "(delivery_id, endpoint_id, workspace_id, event_id, type, attempts, reason) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (delivery_id) DO UPDATE SET "
            "attempts = EXCLUDED.attempts, reason = EXCLUDED.reason, dead_at = now(), "
            "redelivered_at = NULL",
            head["delivery_id"],
            endpoint.endpoint_id,
            endpoint.workspace_id,
            head["event_id"],
            head["type"],
            attempts,
            reason,
        )
        log.error("webhook.dead_lettered", reason=reason)


def _payload(head: asyncpg.Record, context: asyncpg.Record) -> bytes:
    """What is POSTed (and signed): the log's event with where it is in the log and whom
    it concerns in the receiving workspace. The same bytes on every attempt."""
    document = {
        "delivery_id": head["delivery_id"],
        "workspace_id": head["workspace_id"],
        "sequence": head["sequence"],
        "members": list(context["members"]),
        "concerns": list(context["concerns"]),
        "event": json.loads(context["body"]),
    }
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def _since(started: float) -> float:
    return (time.perf_counter() - started) * 1000
