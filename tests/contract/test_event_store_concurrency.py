"""Many appends in flight at once: on JetStream they share atomic batches (group commit), and
the contract must not notice. Only the conflicting appends fail, nothing is stored twice,
and every acknowledged event is in the log where its acknowledgement says."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from infra.eventstore import ANY, ConcurrencyError
from infra.group_commit import GroupCommit
from infra.jetstream_store import JetStreamEventStore
from tests.factories import note, pending, project_proposed


async def _create(store, ids: list[str], acked: dict[str, int] | None = None) -> dict[str, int]:
    """Propose every project concurrently; returns their versions (and notes what was acked)."""

    async def one(project_id: str) -> tuple[str, int]:
        event = pending(project_proposed(project_id), project_id)
        result = await store.append("project", project_id, [event], 0)
        if acked is not None:
            acked[event.envelope.event_id] = result.sequences[0]
        return project_id, result.version

    return dict(await asyncio.gather(*(one(project_id) for project_id in ids)))


async def _everything(store) -> list:
    messages, position = [], 1
    while batch := await store.read(position, 1000):
        messages.extend(batch)
        position = batch[-1].sequence + 1
    return messages


async def _assert_log_holds_exactly(store, acked: dict[str, int]) -> None:
    """Every acknowledged event id is stored once, at the acknowledged sequence, and the log
    holds nothing else."""
    stored = [(message.decode().event_id, message.sequence) for message in await _everything(store)]
    counts = Counter(event_id for event_id, _ in stored)
    assert [event_id for event_id, n in counts.items() if n > 1] == []
    assert dict(stored) == acked


async def test_only_the_conflicting_appends_fail_among_many_in_flight(any_store):
    ids = [f"p{i}" for i in range(240)]
    acked: dict[str, int] = {}
    versions = await _create(any_store, ids, acked)
    stale = set(ids[::7])  # these writers decided on a version someone else has moved past
    for project_id in stale:
        meanwhile = pending(note(project_id, "meanwhile"), project_id)
        moved = await any_store.append("project", project_id, [meanwhile], ANY)
        acked[meanwhile.envelope.event_id] = moved.version
        versions[project_id], versions[f"{project_id}:before"] = moved.version, versions[project_id]

    async def write(index: int, project_id: str):
        size = 3 if index % 5 == 0 else 1  # some appends are atomic multi-event ones
        events = [pending(note(project_id, f"n{k}"), project_id) for k in range(size)]
        expected = versions[f"{project_id}:before"] if project_id in stale else versions[project_id]
        try:
            result = await any_store.append("project", project_id, events, expected)
        except ConcurrencyError as error:
            return project_id, events, error
        return project_id, events, result

    outcomes = await asyncio.gather(*(write(i, project_id) for i, project_id in enumerate(ids)))

    failed = {pid for pid, _, outcome in outcomes if isinstance(outcome, ConcurrencyError)}
    assert failed == stale
    if isinstance(any_store, JetStreamEventStore):  # the refusals came out of shared batches
        assert any_store.group_commit_stats.refusals_isolated > 0
    for project_id, _, outcome in outcomes:
        if project_id in stale:
            assert outcome.actual == versions[project_id]
            assert outcome.expected == versions[f"{project_id}:before"]
        else:
            assert not outcome.duplicate
            assert list(outcome.sequences) == list(
                range(outcome.sequences[0], outcome.sequences[0] + len(outcome.sequences))
            )
    for _, events, outcome in outcomes:
        if not isinstance(outcome, ConcurrencyError):
            acked.update(zip((e.envelope.event_id for e in events), outcome.sequences, strict=True))
    await _assert_log_holds_exactly(any_store, acked)
    for project_id, events, outcome in outcomes:
        history = await any_store.load("project", project_id)
        if project_id not in stale:
            assert history.version == outcome.version
            assert [e.event_id for e in history.events[-len(events) :]] == [
                e.envelope.event_id for e in events
            ]


async def test_retries_in_flight_with_new_appends_are_answered_as_duplicates(any_store):
    ids = [f"q{i}" for i in range(120)]
    first = [pending(project_proposed(project_id), project_id) for project_id in ids]
    originals = await asyncio.gather(
        *(any_store.append("project", e.envelope.aggregate_id, [e], 0) for e in first)
    )
    retried = ids[::4]

    async def write(index: int, project_id: str):
        if project_id in retried:  # a client retrying an append that did land
            event = first[index]
            expected = 0 if index % 8 == 0 else ANY
            return await any_store.append("project", project_id, [event], expected)
        event = pending(note(project_id, "next"), project_id)
        return await any_store.append("project", project_id, [event], originals[index].version)

    outcomes = await asyncio.gather(*(write(i, project_id) for i, project_id in enumerate(ids)))

    for index, (project_id, outcome) in enumerate(zip(ids, outcomes, strict=True)):
        if project_id in retried:
            assert outcome.duplicate
            assert outcome.sequences == originals[index].sequences
        else:
            assert not outcome.duplicate
    assert await any_store.last_sequence() == len(ids) + len(ids) - len(retried)
    if isinstance(any_store, JetStreamEventStore):  # duplicates were split out of batches
        assert any_store.group_commit_stats.resubmissions > 0
    stored_ids = [m.decode().event_id for m in await _everything(any_store)]
    assert len(stored_ids) == len(set(stored_ids))


async def test_writers_racing_on_one_aggregate_amid_others_have_one_winner(any_store):
    versions = await _create(any_store, ["hot", *(f"c{i}" for i in range(60))])

    async def hot(writer: int):
        try:
            return await any_store.append(
                "project", "hot", [pending(note("hot", f"w{writer}"), "hot")], versions["hot"]
            )
        except ConcurrencyError as error:
            return error

    async def cold(project_id: str):
        event = pending(note(project_id, "cold"), project_id)
        return await any_store.append("project", project_id, [event], versions[project_id])

    outcomes = await asyncio.gather(
        *(hot(w) for w in range(30)), *(cold(f"c{i}") for i in range(60))
    )
    hot_outcomes = outcomes[:30]
    winners = [o for o in hot_outcomes if not isinstance(o, ConcurrencyError)]
    assert len(winners) == 1
    assert all(o.actual == winners[0].version for o in hot_outcomes if o is not winners[0])
    assert len((await any_store.load("project", "hot")).events) == 2
    assert await any_store.last_sequence() == 61 + 1 + 60


# -- how JetStream gets there ------------------------------------------------------------------


@pytest.fixture
def batching_store(nats_client, stream_spec):
    config = GroupCommit(max_events=50, max_wait=0.005, max_batches_in_flight=4, min_batch=4)
    return JetStreamEventStore(
        nats_client, stream_spec.name, stream_spec.scheme, group_commit=config
    )


async def test_a_lone_append_goes_straight_out_and_a_crowd_shares_batches(batching_store):
    store = batching_store
    await store.append("project", "alone", [pending(project_proposed("alone"), "alone")], 0)
    assert store.group_commit_stats.direct == 1 and store.group_commit_stats.batches == 0

    await _create(store, [f"b{i}" for i in range(200)])
    stats = store.group_commit_stats
    assert stats.batched >= 150
    assert stats.batches <= stats.batched / 5  # many appends per batch
    assert await store.last_sequence() == 201


async def test_an_expectation_beyond_the_end_is_isolated_by_halving(batching_store):
    store = batching_store
    versions = await _create(store, [f"h{i}" for i in range(40)])

    async def write(project_id: str, expected: int):
        try:
            return await store.append(
                "project", project_id, [pending(note(project_id, "x"), project_id)], expected
            )
        except ConcurrencyError as error:
            return error

    # h3 claims a version it never reached: the server's refusal names sequence 0, no message.
    outcomes = await asyncio.gather(
        *(write(pid, 10_000 if pid == "h3" else v) for pid, v in versions.items())
    )
    refused = [o for o in outcomes if isinstance(o, ConcurrencyError)]
    assert [(e.aggregate_id, e.actual) for e in refused] == [("h3", versions["h3"])]
    assert await store.last_sequence() == 40 + 39


async def test_without_group_commit_every_append_goes_alone(nats_client, stream_spec):
    store = JetStreamEventStore(
        nats_client, stream_spec.name, stream_spec.scheme, group_commit=GroupCommit(enabled=False)
    )
    await _create(store, [f"s{i}" for i in range(50)])
    assert store.group_commit_stats.batched == 0
    assert await store.last_sequence() == 50


async def test_a_header_value_with_a_line_break_cannot_break_a_batch(any_store):
    events = [
        pending(project_proposed("p1"), "p1", correlation_id="line\r\nbreak"),
        pending(note("p1", "second"), "p1", correlation_id="another\nline"),
        pending(note("p1", "third"), "p1"),
    ]
    result = await any_store.append("project", "p1", events, 0)
    history = await any_store.load("project", "p1")
    assert [e.envelope.correlation_id for e in history.events] == [
        "line\r\nbreak",
        "another\nline",
        events[2].envelope.correlation_id,
    ]
    assert history.version == result.version


async def test_unchecked_appends_to_one_aggregate_all_land_one_batch_at_a_time(any_store):
    """Two requests for one aggregate never share a batch: the later ones wait their turn."""
    await _create(any_store, ["busy", *(f"o{i}" for i in range(40))])
    busy = [pending(note("busy", f"b{i}"), "busy") for i in range(60)]
    others = [pending(note(f"o{i}", "o"), f"o{i}") for i in range(40)]
    results = await asyncio.gather(
        *(any_store.append("project", "busy", [e], ANY) for e in busy),
        *(any_store.append("project", e.envelope.aggregate_id, [e], ANY) for e in others),
    )
    assert not any(r.duplicate for r in results)
    history = await any_store.load("project", "busy")
    assert sorted(e.event_id for e in history.events[1:]) == sorted(
        e.envelope.event_id for e in busy
    )
    assert await any_store.last_sequence() == 41 + 60 + 40
