"""One contract for every EventStore: the in-memory twin and JetStream behave the same."""

from __future__ import annotations

import asyncio

import pytest

from infra.eventstore import ANY, ConcurrencyError, EventStoreError
from tests.factories import note, pending, project_proposed, workspace_registered


async def test_a_new_aggregate_starts_at_version_zero(any_store):
    history = await any_store.load("project", "p1")
    assert history.events == [] and history.version == 0


async def test_appended_events_load_back_in_order_with_their_envelopes(any_store):
    first = pending(project_proposed("p1"), "p1")
    result = await any_store.append("project", "p1", [first], expected_version=0)
    second = pending(note("p1", "frames cut"), "p1")
    result2 = await any_store.append("project", "p1", [second], expected_version=result.version)

    history = await any_store.load("project", "p1")
    assert [e.event for e in history.events] == [first.event, second.event]
    assert [e.envelope for e in history.events] == [first.envelope, second.envelope]
    assert [e.sequence for e in history.events] == [*result.sequences, *result2.sequences]
    assert history.version == result2.version == history.events[-1].sequence


async def test_several_events_are_appended_atomically_with_consecutive_sequences(any_store):
    events = [pending(project_proposed("p1"), "p1")] + [
        pending(note("p1", f"step {i}"), "p1") for i in range(5)
    ]
    result = await any_store.append("project", "p1", events, expected_version=0)
    assert len(result.sequences) == 6
    assert list(result.sequences) == list(range(result.sequences[0], result.sequences[0] + 6))
    assert (await any_store.load("project", "p1")).version == result.version


async def test_a_stale_expected_version_is_refused_with_the_actual_version(any_store):
    result = await any_store.append("project", "p1", [pending(project_proposed("p1"), "p1")], 0)
    with pytest.raises(ConcurrencyError) as refused:
        await any_store.append("project", "p1", [pending(note("p1", "late"), "p1")], 0)
    assert refused.value.expected == 0
    assert refused.value.actual == result.version
    assert "p1" in str(refused.value)


async def test_a_refused_batch_stores_nothing(any_store):
    await any_store.append("project", "p1", [pending(project_proposed("p1"), "p1")], 0)
    before = await any_store.last_sequence()
    batch = [pending(note("p1", f"n{i}"), "p1") for i in range(3)]
    with pytest.raises(ConcurrencyError):
        await any_store.append("project", "p1", batch, expected_version=0)
    assert await any_store.last_sequence() == before
    assert len((await any_store.load("project", "p1")).events) == 1


async def test_other_aggregates_do_not_move_a_version(any_store):
    await any_store.append("project", "p1", [pending(project_proposed("p1"), "p1")], 0)
    await any_store.append("project", "p2", [pending(project_proposed("p2"), "p2")], 0)
    # p10 shares a prefix with p1 but is another aggregate
    await any_store.append("project", "p10", [pending(project_proposed("p10"), "p10")], 0)
    history = await any_store.load("project", "p1")
    assert len(history.events) == 1
    await any_store.append("project", "p1", [pending(note("p1", "ok"), "p1")], history.version)


@pytest.mark.parametrize("size", [1, 3])
async def test_a_retried_append_is_not_stored_twice(any_store, size):
    events = [pending(project_proposed("p1"), "p1")] + [
        pending(note("p1", f"n{i}"), "p1") for i in range(size - 1)
    ]
    first = await any_store.append("project", "p1", events, expected_version=0)
    again = await any_store.append("project", "p1", events, expected_version=0)
    assert again.duplicate and again.sequences == first.sequences
    assert len((await any_store.load("project", "p1")).events) == size
    assert await any_store.last_sequence() == first.sequences[-1]


async def test_a_retried_append_without_a_version_check_is_not_stored_twice(any_store):
    events = [pending(workspace_registered("mage"), "mage")]
    first = await any_store.append("workspace", "mage", events, expected_version=ANY)
    again = await any_store.append("workspace", "mage", events, expected_version=ANY)
    assert again.duplicate and again.sequences == first.sequences
    assert await any_store.last_sequence() == 1


async def test_events_of_another_aggregate_are_refused_before_writing(any_store):
    with pytest.raises(ValueError, match="belongs to"):
        await any_store.append("project", "p2", [pending(project_proposed("p1"), "p1")], 0)
    with pytest.raises(ValueError, match="nothing"):
        await any_store.append("project", "p1", [], 0)
    assert await any_store.last_sequence() == 0


async def test_fifty_concurrent_writers_one_winner_per_version(any_store):
    result = await any_store.append("project", "hot", [pending(project_proposed("hot"), "hot")], 0)
    version = result.version
    winners = []
    for round_number in range(8):

        async def write(writer: int, expected: int = version, r: int = round_number):
            event = pending(note("hot", f"round {r} writer {writer}"), "hot")
            try:
                outcome = await any_store.append("project", "hot", [event], expected)
            except ConcurrencyError as error:
                assert error.actual > expected
                return None
            return event, outcome

        outcomes = await asyncio.gather(*(write(w) for w in range(50)))
        succeeded = [outcome for outcome in outcomes if outcome is not None]
        assert len(succeeded) == 1, f"round {round_number}: {len(succeeded)} winners"
        event, outcome = succeeded[0]
        winners.append(event.envelope.event_id)
        version = outcome.version

    history = await any_store.load("project", "hot")
    assert [e.event_id for e in history.events[1:]] == winners
    sequences = [e.sequence for e in history.events]
    assert sequences == sorted(set(sequences))
    assert await any_store.last_sequence() == 9


async def test_read_returns_the_log_from_a_global_position(any_store):
    for index in range(5):
        await any_store.append(
            "project", f"p{index}", [pending(project_proposed(f"p{index}"), f"p{index}")], 0
        )
    await any_store.append("workspace", "mage", [pending(workspace_registered(), "mage")], 0)
    everything = await any_store.read(1)
    assert [m.sequence for m in everything] == [1, 2, 3, 4, 5, 6]
    assert [m.sequence for m in await any_store.read(3, limit=2)] == [3, 4]
    only_workspaces = await any_store.read(
        1, subject_filter=any_store.scheme.events_of_aggregate_type("workspace")
    )
    assert [m.decode().type for m in only_workspaces] == ["workspace.registered"]
    assert await any_store.read(99) == []


async def test_load_after_a_version_returns_only_newer_events(any_store):
    result = await any_store.append("project", "p1", [pending(project_proposed("p1"), "p1")], 0)
    await any_store.append("project", "p1", [pending(note("p1", "a"), "p1")], result.version)
    newer = await any_store.load("project", "p1", after_version=result.version)
    assert [e.event.note for e in newer.events] == ["a"]
    nothing = await any_store.load("project", "p1", after_version=newer.version)
    assert nothing.events == [] and nothing.version == newer.version


async def test_follow_catches_up_then_stays_live(any_store):
    await any_store.append("project", "p1", [pending(project_proposed("p1"), "p1")], 0)
    await any_store.append("project", "p2", [pending(project_proposed("p2"), "p2")], 0)
    seen: list[int] = []
    enough = asyncio.Event()

    async def consume():
        async for batch in any_store.follow(2):
            seen.extend(message.sequence for message in batch)
            if len(seen) >= 3:
                enough.set()
                return

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.2)
    await any_store.append("project", "p3", [pending(project_proposed("p3"), "p3")], 0)
    await any_store.append("project", "p4", [pending(project_proposed("p4"), "p4")], 0)
    await asyncio.wait_for(enough.wait(), 10)
    await task
    assert seen == [2, 3, 4]


async def test_an_append_mixing_stored_and_new_ids_is_refused(any_store):
    first = pending(project_proposed("p1"), "p1")
    await any_store.append("project", "p1", [first], ANY)
    with pytest.raises(EventStoreError):
        await any_store.append("project", "p1", [first, pending(note("p1", "x"), "p1")], ANY)
