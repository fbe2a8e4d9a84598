"""A rebuild reads the next batch while it applies one, and keeps the shadow's statistics
fresh as it grows; neither may change what it builds."""

from __future__ import annotations

from contracts.wire import HEADER_MSG_ID
from infra import rebuild as rebuilds
from infra.postgres import create_pool
from infra.projections import ProjectionRunner
from infra.rebuild import Rebuild
from services.projects.views import WorkspaceViewProjection
from tests.integration.test_workspace_view import TABLES, dump, write_history


async def test_small_read_ahead_batches_build_the_whole_view_with_statistics(
    jetstream_store, database_url, pg_schema, monkeypatch
):
    monkeypatch.setattr(rebuilds, "FIRST_ANALYZE", 10)
    await write_history(jetstream_store, projects=6)
    head = await jetstream_store.last_sequence()
    pool = await create_pool(database_url, "public", max_size=4)
    try:
        async with Rebuild(
            WorkspaceViewProjection(), jetstream_store, pool, pg_schema, batch_size=7
        ) as rebuild:
            assert await rebuild.build(until=head - 3) == head - 3  # stops where it is told
            assert await rebuild.build() == head
            analyzed = await pool.fetch(
                "SELECT relname FROM pg_stat_user_tables WHERE schemaname = $1"
                " AND last_analyze IS NOT NULL",
                rebuild.shadow,
            )
            await rebuild.swap()
        assert set(TABLES) <= {row["relname"] for row in analyzed}
        view = await dump(database_url, pg_schema)
        assert len(view["projects"]) == 6
        assert len(view["timeline"]) == sum(
            1
            for _ in await jetstream_store.read(
                1, 10_000, jetstream_store.scheme.events_of_aggregate_type("project")
            )
        )
    finally:
        await pool.close()


async def test_messages_decoded_ahead_are_parked_as_the_live_runner_parks_them(
    jetstream_store, nats_client, database_url, pg_pool, pg_schema
):
    await write_history(jetstream_store, projects=3)
    js = nats_client.jetstream()
    await js.publish(
        jetstream_store.scheme.event("project", "px", "proposed"),
        b"{not json",
        stream=jetstream_store.stream,
        headers={HEADER_MSG_ID: "bad-1"},
    )
    live = ProjectionRunner(WorkspaceViewProjection(), jetstream_store, pg_pool, pg_schema)
    await live.catch_up()
    parked_live = await pg_pool.fetch("SELECT sequence, reason, body FROM parked_events")

    pool = await create_pool(database_url, "public", max_size=4)
    try:
        async with Rebuild(
            WorkspaceViewProjection(), jetstream_store, pool, pg_schema, batch_size=5
        ) as rebuild:
            await rebuild.build()
            parked_rebuild = await pool.fetch(
                f"SELECT sequence, reason, body FROM {rebuild.shadow}.parked_events"
            )
            await rebuild.swap()  # the live version parked it too: nothing newly broken
    finally:
        await pool.close()
    assert len(parked_live) == 1 and parked_live[0]["reason"].startswith("undecodable")
    assert [tuple(row) for row in parked_rebuild] == [tuple(row) for row in parked_live]
