"""Log positions for ops: which sequence a time falls on, and what a consumer has not read.

On JetStream these are single Direct Get requests (`start_time`, and `Nats-Num-Pending` of a
one-message batch); on any other EventStore (the in-memory twin) they fall back to reads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import nats.errors

from infra.eventstore import EventStore, EventStoreError, StoredMessage

_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class Pending:
    """What a consumer at `after` has not processed: how many events, and the oldest one."""

    events: int
    oldest: StoredMessage | None

    def age(self, now: datetime) -> float:
        if self.oldest is None:
            return 0.0
        return max((now - self.oldest.recorded_at).total_seconds(), 0.0)


def _jetstream(store: EventStore) -> tuple[object, str] | None:
    client, stream = getattr(store, "client", None), getattr(store, "stream", None)
    return (client, stream) if client is not None and isinstance(stream, str) else None


async def _direct_get(client, stream: str, request: dict) -> tuple[dict[str, str], bytes] | None:
    try:
        reply = await client.request(
            f"$JS.API.DIRECT.GET.{stream}", json.dumps(request).encode(), timeout=_TIMEOUT
        )
    except (TimeoutError, nats.errors.Error) as error:
        raise EventStoreError(f"direct get on {stream} failed: {error!r}") from error
    headers = dict(reply.headers or {})
    status = headers.get("Status")
    if status == "404":
        return None
    if status is not None:
        raise EventStoreError(f"direct get on {stream}: {status} {headers.get('Description')}")
    return headers, reply.data


async def pending_after(
    store: EventStore, after: int, subject_filter: str | None = None
) -> Pending:
    """Events matching `subject_filter` with a sequence above `after`."""
    pattern = subject_filter or store.scheme.all_events()
    js = _jetstream(store)
    if js is None:
        count, oldest, position = 0, None, after + 1
        while batch := await store.read(position, 1000, pattern):
            oldest = oldest or batch[0]
            count += len(batch)
            position = batch[-1].sequence + 1
        return Pending(count, oldest)
    client, stream = js
    found = await _direct_get(
        client, stream, {"next_by_subj": pattern, "seq": after + 1, "batch": 1}
    )
    if found is None:
        return Pending(0, None)
    headers, body = found
    oldest = StoredMessage(
        sequence=int(headers["Nats-Sequence"]),
        subject=headers["Nats-Subject"],
        recorded_at=_parse_time(headers["Nats-Time-Stamp"]),
        body=body,
    )
    return Pending(1 + int(headers.get("Nats-Num-Pending", "0")), oldest)


async def first_sequence_at(store: EventStore, when: datetime) -> int:
    """The first sequence recorded at or after `when` (last sequence + 1 if none)."""
    when = _aware(when)
    js = _jetstream(store)
    if js is not None:
        client, stream = js
        found = await _direct_get(
            client,
            stream,
            {"start_time": when.isoformat(), "next_by_subj": store.scheme.all_events()},
        )
        if found is None:
            return await store.last_sequence() + 1
        return int(found[0]["Nats-Sequence"])
    low, high = 1, await store.last_sequence() + 1  # answer in [low, high]
    while low < high:
        middle = (low + high) // 2
        batch = await store.read(middle, 1)
        if not batch:
            high = middle
        elif batch[0].recorded_at >= when:
            high = middle
        else:
            low = batch[0].sequence + 1
    return low


async def last_sequence_at(store: EventStore, when: datetime) -> int:
    """The last sequence recorded at or before `when` (0 if none). Log times have
    nanoseconds; `when` microseconds: an event whose recorded_at (truncated) equals `when`
    counts as recorded by then."""
    return await first_sequence_at(store, _aware(when) + timedelta(microseconds=1)) - 1


def _aware(when: datetime) -> datetime:
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value).astimezone(UTC)
