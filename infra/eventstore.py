"""The event store port, its value types, and the in-memory twin of the JetStream store.

Versions are log positions: an aggregate's version is the stream sequence of its last event
(0 when it has none). Appending with `expected_version` succeeds only if that is still the
aggregate's version; `ANY` skips the check.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Final, Protocol

from contracts.envelope import PendingEvent, RecordedEvent
from contracts.subjects import SubjectScheme
from contracts.wire import HEADER_MSG_ID, decode_body, encode_body, encode_headers

ANY: Final = None  # expected_version meaning "no concurrency check"
MAX_EVENTS_PER_APPEND: Final = 1000  # JetStream's atomic batch limit


class EventStoreError(RuntimeError):
    """The log could not be written or read (unreachable, refused, timed out)."""


class ConcurrencyError(EventStoreError):
    """Someone else appended to the aggregate first."""

    def __init__(self, aggregate: str, aggregate_id: str, expected: int, actual: int) -> None:
        super().__init__(
            f"{aggregate} {aggregate_id} is at version {actual}, not the expected {expected}"
        )
        self.aggregate = aggregate
        self.aggregate_id = aggregate_id
        self.expected = expected
        self.actual = actual


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """One message exactly as the log holds it; decode() turns it into a RecordedEvent."""

    sequence: int
    subject: str
    recorded_at: datetime
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)

    def decode(self) -> RecordedEvent:
        envelope, event = decode_body(self.body)
        return RecordedEvent(self.sequence, self.recorded_at, self.subject, envelope, event)


@dataclass(frozen=True, slots=True)
class AppendResult:
    version: int  # the aggregate's version after the append
    sequences: tuple[int, ...]  # one per appended event
    duplicate: bool = False  # True when these events were already in the log (a retry)


@dataclass(frozen=True, slots=True)
class AggregateHistory:
    events: list[RecordedEvent]
    version: int


class EventStore(Protocol):
    scheme: SubjectScheme

    async def append(
        self,
        aggregate: str,
        aggregate_id: str,
        events: Sequence[PendingEvent],
        expected_version: int | None,
    ) -> AppendResult: ...

    async def load(
        self, aggregate: str, aggregate_id: str, *, after_version: int = 0
    ) -> AggregateHistory: ...

    async def read(
        self, from_sequence: int = 1, limit: int = 1000, subject_filter: str | None = None
    ) -> list[StoredMessage]: ...

    def follow(
        self, from_sequence: int = 1, *, max_batch: int = 1000, subject_filter: str | None = None
    ) -> AsyncIterator[list[StoredMessage]]: ...

    async def last_sequence(self) -> int: ...


def check_append(aggregate: str, aggregate_id: str, events: Sequence[PendingEvent]) -> None:
    """Refuse appends that no backend may accept: empty, too large, or mislabelled."""
    if not events:
        raise ValueError("nothing to append")
    if len(events) > MAX_EVENTS_PER_APPEND:
        raise ValueError(f"at most {MAX_EVENTS_PER_APPEND} events per append, got {len(events)}")
    for pending in events:
        envelope, event = pending.envelope, pending.event
        if (envelope.aggregate, envelope.aggregate_id) != (aggregate, aggregate_id):
            raise ValueError(
                f"event {envelope.event_id} belongs to {envelope.aggregate} "
                f"{envelope.aggregate_id}, not {aggregate} {aggregate_id}"
            )
        if envelope.type != event.type or envelope.schema_version != type(event).schema_version:
            raise ValueError(f"envelope of {envelope.event_id} does not match its event")
        if event.aggregate() != aggregate:
            raise ValueError(f"{event.type} cannot be appended to a {aggregate}")


def subject_matches(subject: str, pattern: str) -> bool:
    """NATS wildcard matching: `*` is one token, `>` the rest (one or more tokens)."""
    tokens, wanted = subject.split("."), pattern.split(".")
    for index, token in enumerate(wanted):
        if token == ">":
            return len(tokens) > index
        if index >= len(tokens) or (token != "*" and token != tokens[index]):
            return False
    return len(tokens) == len(wanted)


class InMemoryEventStore:
    """The twin of JetStreamEventStore for unit tests: same contract, same encoding."""

    def __init__(self, scheme: SubjectScheme | None = None) -> None:
        self.scheme = scheme or SubjectScheme()
        self._messages: list[StoredMessage] = []
        self._versions: dict[str, int] = {}  # aggregate filter subject -> last sequence
        self._sequence_by_event_id: dict[str, int] = {}
        self._appended = asyncio.Condition()

    async def append(
        self,
        aggregate: str,
        aggregate_id: str,
        events: Sequence[PendingEvent],
        expected_version: int | None,
    ) -> AppendResult:
        check_append(aggregate, aggregate_id, events)
        key = self.scheme.aggregate_events(aggregate, aggregate_id)
        ids = [pending.envelope.event_id for pending in events]
        known = [self._sequence_by_event_id.get(event_id) for event_id in ids]
        if all(known):
            return AppendResult(self._versions.get(key, 0), tuple(known), duplicate=True)
        actual = self._versions.get(key, 0)
        if expected_version is not ANY and expected_version != actual:
            raise ConcurrencyError(aggregate, aggregate_id, expected_version, actual)
        if any(known):
            raise EventStoreError("an append may not mix new events with already stored ones")
        sequences = []
        for pending in events:
            sequence = len(self._messages) + 1
            envelope = pending.envelope
            subject = self.scheme.event_of_type(envelope.type, aggregate_id)
            self._messages.append(
                StoredMessage(
                    sequence=sequence,
                    subject=subject,
                    recorded_at=datetime.now(UTC),
                    body=encode_body(pending),
                    headers=encode_headers(envelope),
                )
            )
            self._sequence_by_event_id[envelope.event_id] = sequence
            sequences.append(sequence)
        self._versions[key] = sequences[-1]
        async with self._appended:
            self._appended.notify_all()
        return AppendResult(sequences[-1], tuple(sequences))

    async def append_raw(self, subject: str, body: bytes, headers: Mapping[str, str]) -> int:
        """Store bytes as they come, as a foreign publisher could on the real stream."""
        sequence = len(self._messages) + 1
        msg_id = headers.get(HEADER_MSG_ID)
        self._messages.append(
            StoredMessage(sequence, subject, datetime.now(UTC), body, dict(headers))
        )
        if msg_id:
            self._sequence_by_event_id[msg_id] = sequence
        async with self._appended:
            self._appended.notify_all()
        return sequence

    async def load(
        self, aggregate: str, aggregate_id: str, *, after_version: int = 0
    ) -> AggregateHistory:
        key = self.scheme.aggregate_events(aggregate, aggregate_id)
        events = [
            message.decode()
            for message in self._messages[after_version:]
            if subject_matches(message.subject, key)
        ]
        return AggregateHistory(events, self._versions.get(key, 0))

    async def read(
        self, from_sequence: int = 1, limit: int = 1000, subject_filter: str | None = None
    ) -> list[StoredMessage]:
        pattern = subject_filter or self.scheme.all_events()
        found = []
        for message in self._messages[max(from_sequence, 1) - 1 :]:
            if subject_matches(message.subject, pattern):
                found.append(message)
                if len(found) >= limit:
                    break
        return found

    async def follow(
        self, from_sequence: int = 1, *, max_batch: int = 1000, subject_filter: str | None = None
    ) -> AsyncIterator[list[StoredMessage]]:
        position = max(from_sequence, 1)
        while True:
            batch = await self.read(position, max_batch, subject_filter)
            if batch:
                position = batch[-1].sequence + 1
                yield batch
                continue
            position = max(position, len(self._messages) + 1)
            async with self._appended:
                await self._appended.wait_for(partial(self._has_reached, position))

    def _has_reached(self, sequence: int) -> bool:
        return len(self._messages) >= sequence

    async def last_sequence(self) -> int:
        return len(self._messages)
