"""Stop PostgreSQL under load and start it again: the projection runner backs off while it is
down, catches up when it is back, loses nothing and applies nothing twice."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
import structlog

from infra import metrics
from infra.embedded import EmbeddedPostgres
from infra.postgres import create_pool
from infra.projections import ProjectionRunner
from tests.factories import pending, project_proposed
from tests.integration.ledger_projection import LedgerProjection
from tests.waiting import eventually

pytestmark = pytest.mark.slow


async def steady_writes(store, stop: asyncio.Event, written: list[int]) -> None:
    index = 0
    while not stop.is_set():
        project_id = f"p{index}"
        result = await store.append(
            "project", project_id, [pending(project_proposed(project_id), project_id)], 0
        )
        written.append(result.version)
        index += 1
        await asyncio.sleep(0.005)


async def test_the_runner_backs_off_through_a_database_outage_and_catches_up_exactly_once(
    jetstream_store, tmp_path
):
    store = jetstream_store
    async with EmbeddedPostgres(tmp_path / "pg") as postgres:
        pool = await create_pool(postgres.url, "ledger", max_size=2)
        runner = ProjectionRunner(
            LedgerProjection(), store, pool, "ledger", retry_delay=0.05, max_retry_delay=0.4
        )
        await runner.prepare()
        retries_before = metrics.PROJECTION_RETRIES.value(projection="ledger") or 0
        stop, written = asyncio.Event(), []
        writes = asyncio.create_task(steady_writes(store, stop, written))
        following = asyncio.create_task(runner.run())
        try:
            await eventually(runner.position, until=lambda position: position >= 50)
            with structlog.testing.capture_logs() as logs:
                await postgres.stop()
                at_outage = len(written)
                await eventually(
                    lambda: asyncio.sleep(0, len(written)), until=lambda n: n >= at_outage + 150
                )
                await postgres.start()
                await eventually(
                    lambda: asyncio.sleep(0, len(written)), until=lambda n: n >= at_outage + 250
                )
                stop.set()
                await writes
                head = await store.last_sequence()
                await eventually(_position_or_none(runner), until=lambda p: p == head, timeout=20)

            retrying = [entry for entry in logs if entry["event"] == "projection.retrying"]
            assert len(retrying) >= 3, "the runner retried while the database was down"
            delays = [entry["retry_in"] for entry in retrying]
            assert delays[:4] == sorted(delays[:4]) and max(delays) <= 0.4, delays
            assert (metrics.PROJECTION_RETRIES.value(projection="ledger") or 0) > retries_before

            rows = await pool.fetch("SELECT sequence FROM ledger ORDER BY sequence")
            assert [row["sequence"] for row in rows] == list(range(1, head + 1))
            assert head == len(written)
            error = await pool.fetchval("SELECT last_error FROM projection_checkpoints")
            assert error is None  # cleared by the first commit after the outage
        finally:
            stop.set()
            following.cancel()
            await asyncio.gather(writes, following, return_exceptions=True)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pool.close(), 5)


def _position_or_none(runner: ProjectionRunner):
    async def probe() -> int | None:
        try:
            return await runner.position()
        except Exception:  # still reconnecting
            return None

    return probe
