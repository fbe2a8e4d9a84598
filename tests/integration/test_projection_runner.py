"""The projection runner against real NATS and PostgreSQL: exactly-once, parking, retries."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from contracts.wire import HEADER_MSG_ID
from infra.projections import ProjectionRunner
from tests.factories import note, pending, project_proposed
from tests.integration.ledger_projection import LedgerProjection
from tests.waiting import eventually

ROOT = Path(__file__).resolve().parents[2]


async def append_projects(store, count: int, start: int = 0) -> None:
    for index in range(start, start + count):
        project_id = f"p{index}"
        await store.append(
            "project", project_id, [pending(project_proposed(project_id), project_id)], 0
        )


async def ledger(pool) -> list[int]:
    if not await pool.fetchval("SELECT to_regclass('ledger') IS NOT NULL"):
        return []
    rows = await pool.fetch("SELECT sequence FROM ledger ORDER BY sequence")
    return [row["sequence"] for row in rows]


@pytest.mark.embedded
async def test_every_event_is_applied_once_even_when_caught_up_twice(
    jetstream_store, pg_pool, pg_schema
):
    await append_projects(jetstream_store, 25)
    runner = ProjectionRunner(
        LedgerProjection(), jetstream_store, pg_pool, pg_schema, batch_size=10
    )
    assert await runner.catch_up() == 25
    assert await runner.catch_up() == 25
    # a second runner of the same projection version shares the checkpoint
    other = ProjectionRunner(LedgerProjection(), jetstream_store, pg_pool, pg_schema)
    await append_projects(jetstream_store, 5, start=25)
    await asyncio.gather(runner.catch_up(), other.catch_up())
    assert await ledger(pg_pool) == list(range(1, 31))


async def test_undecodable_messages_are_parked_with_reason_and_bytes(
    jetstream_store, nats_client, pg_pool, pg_schema
):
    await append_projects(jetstream_store, 2)
    subject = jetstream_store.scheme.event("project", "px", "proposed")
    js = nats_client.jetstream()
    await js.publish(
        subject, b"{not json", stream=jetstream_store.stream, headers={HEADER_MSG_ID: "bad-1"}
    )
    await js.publish(
        subject,
        b'{"type": "project.proposed", "data": {}}',
        stream=jetstream_store.stream,
        headers={HEADER_MSG_ID: "bad-2"},
    )
    await append_projects(jetstream_store, 1, start=2)

    runner = ProjectionRunner(LedgerProjection(), jetstream_store, pg_pool, pg_schema)
    assert await runner.catch_up() == 5
    assert await ledger(pg_pool) == [1, 2, 5]
    parked = await pg_pool.fetch(
        "SELECT sequence, reason, body FROM parked_events ORDER BY sequence"
    )
    assert [row["sequence"] for row in parked] == [3, 4]
    assert "not JSON" in parked[0]["reason"] and parked[0]["body"] == b"{not json"
    assert "event_id: Field required" in parked[1]["reason"]


async def test_an_event_the_projection_refuses_is_parked_and_the_rest_applied(
    jetstream_store, pg_pool, pg_schema
):
    result = await jetstream_store.append(
        "project", "p1", [pending(project_proposed("p1"), "p1")], 0
    )
    notes = [pending(note("p1", text), "p1") for text in ("cut", "poison", "welded")]
    await jetstream_store.append("project", "p1", notes, result.version)
    runner = ProjectionRunner(
        LedgerProjection(refuse_note="poison"), jetstream_store, pg_pool, pg_schema
    )
    await runner.catch_up()
    assert await ledger(pg_pool) == [1, 2, 4]
    reason = await pg_pool.fetchval("SELECT reason FROM parked_events WHERE sequence = 3")
    assert "poison" in reason and "refused by projection" in reason


async def test_a_transient_database_error_is_retried_not_parked(
    jetstream_store, pg_pool, pg_schema
):
    await append_projects(jetstream_store, 3)
    projection = LedgerProjection()
    failures = iter([ConnectionResetError("connection reset by peer")])
    original = projection.apply

    async def flaky(connection, events):
        failure = next(failures, None)
        if failure:
            raise failure
        return await original(connection, events)

    projection.apply = flaky
    runner = ProjectionRunner(projection, jetstream_store, pg_pool, pg_schema, retry_delay=0.01)
    await runner.catch_up()
    assert await ledger(pg_pool) == [1, 2, 3]
    assert await pg_pool.fetchval("SELECT count(*) FROM parked_events") == 0


async def test_a_running_projection_follows_the_log_and_signals_changes(
    jetstream_store, pg_pool, pg_schema
):
    projection = LedgerProjection()
    runner = ProjectionRunner(projection, jetstream_store, pg_pool, pg_schema)
    task = asyncio.create_task(runner.run())
    try:
        await append_projects(jetstream_store, 3)
        assert await eventually(lambda: ledger(pg_pool), until=lambda rows: len(rows) == 3) == [
            1,
            2,
            3,
        ]
        assert set().union(*projection.committed) == {"p0", "p1", "p2"}
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


@pytest.mark.slow
async def test_a_projection_killed_mid_batch_applies_everything_exactly_once(
    jetstream_store, nats_url, database_url, pg_pool, pg_schema
):
    await append_projects(jetstream_store, 120)
    command = [
        sys.executable,
        str(Path(__file__).with_name("projection_child.py")),
        "ledger",
        nats_url,
        database_url,
        jetstream_store.stream,
        jetstream_store.scheme.root,
        pg_schema,
    ]
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = await asyncio.create_subprocess_exec(
        *command, stdout=subprocess.PIPE, env=environment, cwd=ROOT
    )
    # Let it commit one batch of 50 and get halfway into the second, then kill it.
    while True:
        line = (await asyncio.wait_for(child.stdout.readline(), 30)).decode().strip()
        assert line, "the projection child exited early"
        if line == "applied 75":
            break
    child.send_signal(signal.SIGKILL)
    await child.wait()
    committed = await pg_pool.fetchval("SELECT last_seq FROM projection_checkpoints")
    assert committed == 50, "the half-applied batch must not be committed"
    assert await ledger(pg_pool) == list(range(1, 51))

    runner = ProjectionRunner(LedgerProjection(), jetstream_store, pg_pool, pg_schema)
    assert await runner.catch_up() == 120
    assert await ledger(pg_pool) == list(range(1, 121))
