"""Wiring of the matching service: migrations, the directory projection (which computes the
proposals) and the outbox publisher (which appends them), inside one context.

The service has no HTTP API: coordinators read proposals through the projects service,
which projects the `matching` events of the log like any other.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import structlog

from contracts.envelope import PendingEvent
from infra.http_server import serve_http
from infra.migrations import migrate_database
from infra.postgres import create_pool
from infra.projections import ProjectionRunner
from infra.stack import Infrastructure
from infra.supervision import background
from services.matching.directory import DirectoryProjection
from services.matching.outbox import OutboxPublisher
from services.matching.taxonomy import load_taxonomy
from services.matching.weights import Weights, active_weights
from services.ops.metrics import metrics_app

log = structlog.get_logger(__name__)

SQL = Path(__file__).with_name("sql")


@dataclass(frozen=True, slots=True)
class MatchingService:
    schema: str  # the service's own tables (the outbox)
    directory_schema: str  # the directory projection (rebuildable with `mf replay`)
    weights_version: str
    projection: DirectoryProjection
    runner: ProjectionRunner
    publisher: OutboxPublisher
    url: str | None = None  # serves only /metrics (no API: proposals are read via projects)


def directory_projection(
    infra: Infrastructure,
    *,
    network: str = "default",
    weights: Weights | None = None,
    on_proposals: Callable[[list[PendingEvent]], None] | None = None,
) -> tuple[DirectoryProjection, str]:
    """The directory projection and its schema (also what `mf replay` rebuilds)."""
    projection = DirectoryProjection(
        load_taxonomy(),
        weights or active_weights(network),
        infra.schema("matching"),
        on_proposals=on_proposals,
    )
    return projection, infra.schema("matching_directory")


def _settle_heap(_network) -> None:
    """The directory is hundreds of thousands of long-lived objects: move them out of the
    cyclic GC's reach, or every full collection walks them all (~0.5 s pauses at 100k
    members, measured in bench/matching_latency.py)."""
    gc.collect()
    gc.freeze()


@contextlib.asynccontextmanager
async def running(
    infra: Infrastructure,
    *,
    network: str = "default",
    weights: Weights | None = None,
    publish: bool = True,
    poll_interval: float = 1.0,
    http_host: str = "127.0.0.1",
    http_port: int | None = None,
) -> AsyncIterator[MatchingService]:
    """Run the matcher until the block exits. `publish=False` computes and stores proposals
    in the outbox without appending them (ops: a dry run, or tests of a crash in between).
    http_port: where `GET /metrics` answers (0 = any free port, None = no HTTP at all)."""
    schema = infra.schema("matching")
    await migrate_database(infra.database_url, schema, SQL)
    weights = weights or active_weights(network)
    async with contextlib.AsyncExitStack() as stack:
        projection, directory_schema = directory_projection(infra, weights=weights)
        directory_pool = await create_pool(infra.database_url, directory_schema, max_size=2)
        stack.push_async_callback(directory_pool.close)
        pool = await create_pool(
            infra.database_url, schema, max_size=2, search_path=directory_schema
        )
        stack.push_async_callback(pool.close)
        publisher = OutboxPublisher(pool, infra.store, poll_interval=poll_interval)
        projection.on_proposals = publisher.offer if publish else None
        projection.on_loaded = _settle_heap
        runner = ProjectionRunner(projection, infra.store, directory_pool, directory_schema)
        await runner.prepare()
        async with directory_pool.acquire() as connection:
            await projection.warm(connection)  # the index is ready before the first event
        loops = {"matching.directory": runner.run}
        if publish:
            loops["matching.outbox"] = publisher.run
        await stack.enter_async_context(background(loops))
        url = None
        if http_port is not None:
            served = await stack.enter_async_context(
                serve_http(metrics_app(), http_host, http_port)
            )
            url = served.url
        log.info(
            "matching.started",
            schema=schema,
            directory_schema=directory_schema,
            weights=weights.version,
            taxonomy=projection.taxonomy.version,
            publish=publish,
            metrics_url=url and f"{url}/metrics",
        )
        yield MatchingService(
            schema, directory_schema, weights.version, projection, runner, publisher, url
        )
        log.info("matching.stopping")
