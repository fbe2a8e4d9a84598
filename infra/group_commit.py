"""Group commit: concurrent appends to distinct aggregates share one atomic batch.

With `sync_interval: always` JetStream fsyncs every single publish, but an atomic batch costs
about one fsync. So under load, appends are coalesced into batches (bounded by `max_events`
and `max_wait`); a lone append still goes straight out, since a batch has a fixed cost.
Writers woken together (by one acknowledgement) share the next group rather than the first
going alone, and a group too small to be a batch waits for company while a batch is in flight.

Each request keeps its own concurrency check on its first message. JetStream evaluates every
check in a batch against the state *before* the batch, so two requests for the same aggregate
never share one: the second waits for the next batch. A batch is all or nothing, and a refusal
names no culprit, so it is found and only it gets the refusal:
- 10071 `wrong last sequence: N`: message N belongs to the conflicting aggregate (one Direct
  Get); that request gets the refusal, the others are resubmitted. When N names no request
  (N = 0: an expectation beyond the aggregate's end), the batch is halved until it does.
- 10201 (a request's event id is already stored: a retry): halved until the request is alone,
  where the store's duplicate detection answers it.
Too many batches in flight on the stream (10210, or 10176 when a staged message was dropped)
stores nothing; the sender retries those after a short backoff.

Every request is answered with the acknowledgement it would have got if sent alone.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

from infra.eventstore import EventStoreError, subject_matches

log = structlog.get_logger(__name__)

ERR_WRONG_LAST_SEQUENCE = 10071
ERR_BATCH_DUPLICATE_MSG_ID = 10201
SERVER_MAX_BATCH = 1000  # messages per atomic batch
SERVER_MAX_BATCHES_PER_STREAM = 50  # atomic batches in flight per stream
_EXPECTED = "Nats-Expected-Last-Subject-Sequence"

Outgoing = tuple[str, bytes, dict[str, str]]  # subject, body, headers
Send = Callable[[list[Outgoing]], Awaitable[dict]]  # one publish, or one atomic batch
SubjectAt = Callable[[int], Awaitable[str | None]]  # the subject of the message at a sequence


@dataclass(frozen=True, slots=True)
class GroupCommit:
    """How appends are coalesced. `enabled=False` sends every append on its own."""

    enabled: bool = True
    max_events: int = 500  # per batch (the server allows 1000)
    max_wait: float = 0.002  # seconds the first request of a batch may wait for company
    max_batches_in_flight: int = 16  # of ours; the server allows 50 per stream in all
    # A batch costs the server ~1.7 ms of CPU whatever its size (nats-server 2.15), as much
    # as ~100 plain publishes without fsync or ~7 with: smaller groups go out as pipelined
    # plain publishes instead.
    min_batch: int = 32

    def __post_init__(self) -> None:
        if not 2 <= self.max_events <= SERVER_MAX_BATCH:
            raise ValueError(f"max_events must be within 2..{SERVER_MAX_BATCH}")
        if not 1 <= self.max_batches_in_flight <= SERVER_MAX_BATCHES_PER_STREAM:
            raise ValueError("max_batches_in_flight must be within 1..50")
        if self.max_wait < 0:
            raise ValueError("max_wait must not be negative")
        if self.min_batch < 2:
            raise ValueError("min_batch must be at least 2")


OFF = GroupCommit(enabled=False)


class _Request:
    __slots__ = ("future", "key", "messages")

    def __init__(self, key: str, messages: list[Outgoing], future: asyncio.Future[dict]) -> None:
        self.key = key
        self.messages = messages
        self.future = future

    def answer(self, ack: dict) -> None:
        if not self.future.done():
            self.future.set_result(ack)

    def fail(self, error: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(error)

    @property
    def expected(self) -> int | None:
        value = self.messages[0][2].get(_EXPECTED)
        return int(value) if value is not None else None


@dataclass(slots=True)
class GroupCommitStats:
    direct: int = 0  # requests sent on their own, with nothing else in flight
    batched: int = 0  # requests that went through a group
    batches: int = 0  # atomic batches sent for groups (resubmissions included)
    refusals_isolated: int = 0  # requests answered with their own refusal out of a batch
    resubmissions: int = 0  # batches sent again after a refusal or pressure


class GroupCommitter:
    """Coalesces `submit(key, messages)` calls; `key` is the aggregate's concurrency subject."""

    def __init__(self, config: GroupCommit, send: Send, subject_at: SubjectAt) -> None:
        self.config = config
        self.stats = GroupCommitStats()
        self._send = send
        self._subject_at = subject_at
        self._open: list[_Request] = []
        self._open_keys: set[str] = set()
        self._open_events = 0
        self._open_due = False  # its wait is over, but every batch slot was busy
        self._close_scheduled = False
        self._waking = False  # writers just answered run in this turn of the loop
        self._deferred: deque[_Request] = deque()  # same aggregate as a request in _open
        self._deferred_keys: Counter[str] = Counter()
        self._closed: deque[list[_Request]] = deque()
        self._in_flight = 0  # sends of any kind
        self._batches = 0  # group sends holding a batch slot
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task] = set()
        self._batch_ids = (f"{os.urandom(6).hex()}{n}" for n in itertools.count())

    def new_batch_id(self) -> str:
        return next(self._batch_ids)

    @property
    def idle(self) -> bool:
        return not (self._open or self._closed or self._deferred or self._in_flight)

    async def submit(self, key: str, messages: list[Outgoing]) -> dict:
        """The acknowledgement of `messages` (or its refusal), as if they were sent alone."""
        if (self.idle and not self._waking) or len(messages) > self.config.max_events:
            return await self._direct(messages)
        self.stats.batched += 1
        request = _Request(key, messages, asyncio.get_running_loop().create_future())
        self._enqueue(request)
        return await request.future

    async def _direct(self, messages: list[Outgoing]) -> dict:
        self.stats.direct += 1
        self._in_flight += 1
        try:
            return await self._send(messages)
        finally:
            self._in_flight -= 1
            self._after_send()

    # -- forming groups --------------------------------------------------------------------

    def _defer(self, request: _Request) -> None:
        self._deferred.append(request)
        self._deferred_keys[request.key] += 1

    def _enqueue(self, request: _Request) -> None:
        if request.key in self._open_keys or request.key in self._deferred_keys:
            self._defer(request)
            return
        if self._open_events + len(request.messages) > self.config.max_events:
            self._close()
        self._join(request)
        if self._open_events >= self.config.max_events:
            self._close()
        elif self._in_flight == 0:  # nothing to wait for: the group goes now
            self._close_soon()

    def _join(self, request: _Request) -> None:
        self._open.append(request)
        self._open_keys.add(request.key)
        self._open_events += len(request.messages)
        if self._timer is None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self.config.max_wait, self._wait_over)

    def _wait_over(self) -> None:
        self._timer = None
        if not self._open:
            return
        if self._open_events < self.config.min_batch and self._batches:
            # Too small for a batch, and one is in flight: its acknowledgement wakes many
            # writers, so keep filling until a send returns (one round trip at most).
            self._open_due = True
        elif self._batches < self.config.max_batches_in_flight:
            self._close()
        else:  # keep filling it until a slot frees: bigger batches under saturation
            self._open_due = True

    def _close_soon(self) -> None:
        """Close the open group at the end of this turn of the event loop: tasks already
        woken (say, by the acknowledgement of a batch) join it first instead of leaving
        behind a group of one."""
        if not self._close_scheduled:
            self._close_scheduled = True
            asyncio.get_running_loop().call_soon(self._close_if_due)

    def _close_if_due(self) -> None:
        self._close_scheduled = False
        if self._open and not self._closed and (self._open_due or self._in_flight == 0):
            self._close()

    def _close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._open:
            self._closed.append(self._open)
        self._open, self._open_keys, self._open_events, self._open_due = [], set(), 0, False
        waiting, self._deferred, self._deferred_keys = self._deferred, deque(), Counter()
        for request in waiting:  # the next group takes one request per aggregate, in order
            if request.key in self._open_keys or request.key in self._deferred_keys:
                self._defer(request)
            elif self._open_events + len(request.messages) <= self.config.max_events:
                self._join(request)
            else:
                self._defer(request)
        self._dispatch()

    def _dispatch(self) -> None:
        while self._closed and self._batches < self.config.max_batches_in_flight:
            group = self._closed.popleft()
            self._batches += 1
            self._in_flight += 1
            task = asyncio.get_running_loop().create_task(self._run(group))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _after_send(self) -> None:
        self._dispatch()
        if self._open and not self._closed and (self._open_due or self._in_flight == 0):
            self._close_soon()

    async def _run(self, group: list[_Request]) -> None:
        try:
            await self._commit(group)
        except BaseException as error:  # answer everyone, whatever happened
            failure = error if isinstance(error, Exception) else EventStoreError("cancelled")
            for request in group:
                request.fail(failure)
            if not isinstance(error, Exception):
                raise
        finally:
            self._batches -= 1
            self._in_flight -= 1
            self._mark_waking()
            self._after_send()

    def _mark_waking(self) -> None:
        """The writers a group just answered run in the next turn of the loop, and most
        append again at once: until that turn is over, an append joins a group even when
        nothing is in flight, so they share one instead of the first going alone."""
        if not self._waking:
            self._waking = True
            asyncio.get_running_loop().call_soon(self._woken)

    def _woken(self) -> None:
        self._waking = False

    # -- sending a group and isolating refusals -------------------------------------------

    async def _commit(self, group: list[_Request]) -> None:
        pending = list(group)
        while pending:
            messages = [message for request in pending for message in request.messages]
            if len(pending) == 1 or len(messages) < self.config.min_batch:
                await asyncio.gather(*(self._alone(request) for request in pending))
                return
            self.stats.batches += 1
            ack = await self._send(messages)
            error = ack.get("error")
            if error is None:
                position = int(ack["seq"]) - len(messages)
                for request in pending:
                    position += len(request.messages)
                    request.answer({**ack, "seq": position, "count": len(request.messages)})
                return
            code = error.get("err_code")
            self.stats.resubmissions += 1
            if code == ERR_WRONG_LAST_SEQUENCE:
                culprit = await self._culprit(pending, error)
                if culprit is not None:
                    self.stats.refusals_isolated += 1
                    culprit.answer(ack)
                    pending.remove(culprit)
                    continue
            if code in (ERR_WRONG_LAST_SEQUENCE, ERR_BATCH_DUPLICATE_MSG_ID):
                half = len(pending) // 2
                await self._commit(pending[:half])
                await self._commit(pending[half:])
                return
            for request in pending:  # refused for a reason that concerns all of them
                request.answer(ack)
            return

    async def _alone(self, request: _Request) -> None:
        try:
            request.answer(await self._send(request.messages))
        except Exception as error:
            request.fail(error)

    async def _culprit(self, pending: list[_Request], error: dict) -> _Request | None:
        """The request whose check failed: the one owning the message the server names."""
        description = error.get("description", "")
        head, _, number = description.rpartition(" ")
        if not head.startswith("wrong last sequence") or not number.isdigit():
            return None
        sequence = int(number)
        if sequence == 0:
            return None
        subject = await self._subject_at(sequence)
        if subject is None:
            return None
        for request in pending:
            if subject_matches(subject, request.key):
                # Its check must be the failed one; anything else means we misread the error.
                return request if request.expected not in (None, sequence) else None
        return None

    async def close(self) -> None:
        """Wait for every group already formed to be answered."""
        while not self.idle:
            if self._open:
                self._close()
            tasks = list(self._tasks)
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
            else:
                await asyncio.sleep(self.config.max_wait)
