"""Zero-downtime rebuilds of real projections: the old generation serves until one swap,
the new one equals it, the live runner carries on, and a rebuild fires no side effects."""

from __future__ import annotations

import asyncio

import pytest

from infra.clock import SystemClock
from infra.ids import new_id
from infra.postgres import create_pool
from infra.projections import ProjectionRunner, ProjectionSupersededError
from infra.rebuild import Rebuild, RebuildError
from services.ops.diff import diff_projection
from services.ops.replay import replay
from services.projects import queries
from services.projects.app import view_projection
from services.projects.handlers import ProjectsHandlers
from services.projects.views import WorkspaceViewProjection
from tests.integration.counts_projection import CountsProjection
from tests.integration.ledger_projection import LedgerProjection
from tests.integration.ops_network import run_project, seed_network
from tests.waiting import eventually


class SlowView(WorkspaceViewProjection):
    """The real workspace view, slowed down so reads can happen mid-rebuild; counts the
    side effects it is asked to fire."""

    def __init__(self, *args, delay: float = 0.0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.delay = delay
        self.signals = 0

    async def apply(self, connection, events):
        await asyncio.sleep(self.delay)
        return await super().apply(connection, events)

    async def after_commit(self, changed):
        self.signals += 1
        await super().after_commit(changed)


async def views_of(pool) -> dict:
    async with pool.acquire() as connection:
        return {
            space: await queries.workspace_view(connection, space)
            for space in ("mage", "freiland", "bloqs")
        }


async def test_a_rebuild_serves_the_old_generation_until_one_swap_and_equals_it(
    infrastructure,
):
    network = await seed_network(infrastructure.store, projects=4)
    projection, schema = view_projection(infrastructure)
    runner_pool = await create_pool(infrastructure.database_url, schema, max_size=2)
    view_pool = await create_pool(infrastructure.database_url, schema, max_size=2)
    admin = await create_pool(infrastructure.database_url, "public", max_size=4)
    live = ProjectionRunner(projection, infrastructure.store, runner_pool, schema)
    await live.prepare()  # as the service does before serving reads
    following = asyncio.create_task(live.run())
    try:
        head = await infrastructure.store.last_sequence()
        await eventually(live.position, until=lambda position: position == head)
        before = await views_of(view_pool)
        assert len(before["mage"]["projects"]) == 4

        shadow = SlowView(infrastructure.nats, infrastructure.scheme, delay=0.03)
        progress = []
        rebuild = Rebuild(
            shadow,
            infrastructure.store,
            admin,
            schema,
            batch_size=5,
            on_progress=progress.append,
            progress_interval=0,
        )
        async with rebuild:
            building = asyncio.create_task(rebuild.build())
            await eventually(lambda: asyncio.sleep(0, len(progress)), until=lambda n: n >= 2)
            assert not building.done()
            # the old generation keeps serving while the new one is half built
            assert await views_of(view_pool) == before
            # writes go on: the live runner applies them, the rebuild will too
            network.projects.append(await run_project(network.handlers, 7))
            await building
            swapped = await rebuild.swap()

        assert swapped.generation == 2
        assert shadow.signals == 0, "a rebuild never calls after_commit"
        assert progress[-1].done == progress[-1].total and progress[-1].eta == 0
        head = await infrastructure.store.last_sequence()
        await eventually(live.position, until=lambda position: position == head)
        after = await views_of(view_pool)
        assert len(after["mage"]["projects"]) == 5
        # the swapped-in generation equals what the live runner alone would have built
        report = await diff_projection(projection, infrastructure.store, admin, schema)
        assert report.identical, report.differences
        # and the live runner carries on, on the new generation
        await run_project(network.handlers, 8)
        await eventually(
            lambda: views_of(view_pool), until=lambda views: len(views["mage"]["projects"]) == 6
        )
        assert await admin.fetchval(f'SELECT count(*) FROM "{schema}".projection_builds') == 1
    finally:
        following.cancel()
        await asyncio.gather(following, return_exceptions=True)
        for pool in (runner_pool, view_pool, admin):
            await pool.close()


async def test_a_rebuild_fires_no_live_signals(infrastructure, nats_client):
    await seed_network(infrastructure.store, projects=2)
    projection, schema = view_projection(infrastructure)
    admin = await create_pool(infrastructure.database_url, "public", max_size=4)
    try:
        signals = []

        async def received(msg) -> None:
            signals.append(msg.subject)

        subscription = await nats_client.subscribe(infrastructure.scheme.all_live(), cb=received)
        await replay(projection, infrastructure.store, admin, schema)
        await nats_client.flush()
        await asyncio.sleep(0.1)
        await subscription.unsubscribe()
        assert signals == []
        # a first replay into a schema that had no live generation simply becomes live
        async with admin.acquire() as connection:
            await connection.execute(f'SET search_path TO "{schema}"')
            assert len((await queries.workspace_view(connection, "mage"))["projects"]) == 2
    finally:
        await admin.close()


async def test_replay_from_a_sequence_or_a_time_starts_there(infrastructure):
    store = infrastructure.store
    await seed_network(store, projects=2)
    events = await store.read(1, 1000)
    schema = infrastructure.schema("ledger")
    admin = await create_pool(infrastructure.database_url, "public", max_size=4)
    try:
        result = await replay(LedgerProjection(), store, admin, schema, from_seq=10)
        assert result.from_sequence == 10
        sequences = [r["sequence"] for r in await admin.fetch(f'SELECT * FROM "{schema}".ledger')]
        assert sorted(sequences) == [m.sequence for m in events if m.sequence >= 10]

        moment = events[14].recorded_at  # the 15th event (sequence 15)
        result = await replay(LedgerProjection(), store, admin, schema, from_time=moment)
        assert result.from_sequence == 15
        assert result.swap.generation == 2  # the first replay built generation 1
        rows = await admin.fetch(f'SELECT sequence FROM "{schema}".ledger ORDER BY sequence')
        assert [r["sequence"] for r in rows] == list(range(15, len(events) + 1))
    finally:
        await admin.close()


async def test_a_rebuild_that_parks_what_the_live_version_applied_is_not_swapped(
    infrastructure,
):
    store = infrastructure.store
    await seed_network(store, projects=2)
    projection, schema = view_projection(infrastructure)
    admin = await create_pool(infrastructure.database_url, "public", max_size=4)
    try:
        await ProjectionRunner(projection, store, admin, schema).catch_up()
        # from sequence 9, project events arrive for a project the shadow never saw
        with pytest.raises(RebuildError, match="parked"):
            await replay(projection, store, admin, schema, from_seq=9)
        report = await diff_projection(projection, store, admin, schema)
        assert report.identical  # the live generation is untouched
        shadows = await admin.fetchval(
            "SELECT count(*) FROM pg_namespace WHERE nspname = $1", f"{schema}__rebuild"
        )
        assert shadows == 0
    finally:
        await admin.close()


async def test_a_new_version_supersedes_the_old_runner(infrastructure):
    store = infrastructure.store
    await seed_network(store, projects=1)
    schema = infrastructure.schema("ledger")
    admin = await create_pool(infrastructure.database_url, "public", max_size=4)
    try:
        old = ProjectionRunner(LedgerProjection(), store, admin, schema)
        await old.catch_up()
        newer = LedgerProjection()
        newer.version = 2
        result = await replay(newer, store, admin, schema)
        assert result.swap.position == await store.last_sequence()
        await run_project(ProjectsHandlers(store, SystemClock(), new_id), 9)
        with pytest.raises(ProjectionSupersededError, match="version 2"):
            await old.catch_up()
        with pytest.raises(ProjectionSupersededError):
            await ProjectionRunner(LedgerProjection(), store, admin, schema).prepare()
        assert await ProjectionRunner(newer, store, admin, schema).catch_up() == (
            await store.last_sequence()
        )
    finally:
        await admin.close()


async def test_only_one_rebuild_of_a_schema_at_a_time(infrastructure):
    await seed_network(infrastructure.store, projects=1)
    projection, schema = view_projection(infrastructure)
    admin = await create_pool(infrastructure.database_url, "public", max_size=6)
    try:
        async with Rebuild(projection, infrastructure.store, admin, schema):
            with pytest.raises(RebuildError, match="another rebuild"):
                async with Rebuild(projection, infrastructure.store, admin, schema):
                    pass
    finally:
        await admin.close()


async def test_rebuilds_use_the_bulk_path_and_match_the_live_path(infrastructure):
    store = infrastructure.store
    await seed_network(store, projects=4)
    schema = infrastructure.schema("counts")
    admin = await create_pool(infrastructure.database_url, "public", max_size=4)
    try:
        live = CountsProjection()
        await ProjectionRunner(live, store, admin, schema, batch_size=7).catch_up()
        rebuilt = CountsProjection()
        report = await diff_projection(rebuilt, store, admin, schema, batch_size=10)
        assert report.identical, report.differences
        assert rebuilt.bulk_batches >= 3 and rebuilt.single_batches == 0
        assert live.bulk_batches == 0
    finally:
        await admin.close()
