"""Large batches write the workspace view with COPY; the rows must be exactly those that
event-by-event application writes, and a COPY that meets an existing row must fall back."""

from __future__ import annotations

import asyncpg
import pytest

from infra.migrations import drop_schema
from infra.postgres import create_pool
from infra.projections import ProjectionRunner
from services.projects.views import COPY_FROM_ROWS, WorkspaceViewProjection
from tests.conftest import unique_name
from tests.integration.test_workspace_view import dump, write_history


async def build(store, database_url: str, batch_size: int) -> dict:
    schema = unique_name("bulk")
    pool = await create_pool(database_url, schema)
    try:
        runner = ProjectionRunner(
            WorkspaceViewProjection(), store, pool, schema, batch_size=batch_size
        )
        assert await runner.catch_up() == await store.last_sequence()
        return await dump(database_url, schema)
    finally:
        await pool.close()
        connection = await asyncpg.connect(database_url)
        await drop_schema(connection, schema)
        await connection.close()


@pytest.mark.slow
async def test_copy_batches_write_the_same_rows_as_one_event_at_a_time(
    jetstream_store, database_url
):
    await write_history(jetstream_store, projects=40)
    one_by_one = await build(jetstream_store, database_url, batch_size=1)
    assert len(one_by_one["timeline"]) > COPY_FROM_ROWS  # the big batch takes the COPY path
    assert await build(jetstream_store, database_url, batch_size=10_000) == one_by_one
    # batches that end mid-project: rows written by COPY, then updated by the next batch
    assert await build(jetstream_store, database_url, batch_size=37) == one_by_one


async def test_a_copy_meeting_an_existing_row_falls_back_to_event_by_event(
    jetstream_store, database_url, pg_pool, pg_schema
):
    await write_history(jetstream_store, projects=12)
    runner = ProjectionRunner(
        WorkspaceViewProjection(), jetstream_store, pg_pool, pg_schema, batch_size=10_000
    )
    await runner.prepare()
    events = [message.decode() for message in await jetstream_store.read(1, 10_000)]
    first = next(event for event in events if event.envelope.aggregate == "project")
    await pg_pool.execute(
        "INSERT INTO timeline VALUES ($1, $2, now(), now(), 'planted', 'test', 'planted')",
        first.envelope.aggregate_id,
        first.sequence,
    )

    assert await runner.catch_up() == events[-1].sequence

    assert await pg_pool.fetchval("SELECT count(*) FROM parked_events") == 0
    assert await pg_pool.fetchval("SELECT count(*) FROM projects") == 12
    timeline = await pg_pool.fetch("SELECT type FROM timeline ORDER BY sequence")
    projected = [event.type for event in events if event.envelope.aggregate == "project"]
    assert len(timeline) == len(projected) > COPY_FROM_ROWS
    assert timeline[0]["type"] == "planted"  # kept, as `ON CONFLICT DO NOTHING` does
