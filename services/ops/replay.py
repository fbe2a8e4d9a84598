"""`mf replay <projection>`: rebuild it as a new generation and swap it in without downtime.

The rebuild runs in a shadow schema from sequence 1 (or `--from-seq` / `--from-time`), the
live generation keeps serving reads and following the log, and the swap is one transaction
(infra/rebuild.py). Side effects are never fired again: a rebuild calls no `after_commit`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import asyncpg
import structlog

from infra.eventstore import EventStore
from infra.projections import Projection
from infra.rebuild import Progress, Rebuild, SwapResult
from services.ops.positions import first_sequence_at

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class ReplayResult:
    projection: str
    from_sequence: int
    swap: SwapResult
    seconds: float


async def start_sequence(
    store: EventStore, from_seq: int | None = None, from_time: datetime | None = None
) -> int:
    if from_seq is not None and from_time is not None:
        raise ValueError("give --from-seq or --from-time, not both")
    if from_time is not None:
        return await first_sequence_at(store, from_time)
    return max(from_seq or 1, 1)


async def replay(
    projection: Projection,
    store: EventStore,
    pool: asyncpg.Pool,
    schema: str,
    *,
    from_seq: int | None = None,
    from_time: datetime | None = None,
    batch_size: int = 5000,
    on_progress: Callable[[Progress], None] | None = None,
) -> ReplayResult:
    started = time.monotonic()
    first = await start_sequence(store, from_seq, from_time)
    async with Rebuild(
        projection,
        store,
        pool,
        schema,
        from_sequence=first,
        batch_size=batch_size,
        on_progress=on_progress,
    ) as rebuild:
        await rebuild.build()
        swapped = await rebuild.swap()
    result = ReplayResult(projection.name, first, swapped, time.monotonic() - started)
    log.info(
        "replay.done",
        projection=projection.name,
        schema=schema,
        from_sequence=first,
        position=swapped.position,
        generation=swapped.generation,
        seconds=round(result.seconds, 2),
    )
    return result
