"""Long-running background loops that restart after an unexpected crash, with backoff."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import structlog

log = structlog.get_logger(__name__)


async def supervise(
    name: str,
    loop: Callable[[], Awaitable[None]],
    *,
    first_delay: float = 0.5,
    max_delay: float = 30.0,
) -> None:
    """Run `loop()` until cancelled; if it crashes or returns, log and start it again."""
    delay = first_delay
    while True:
        try:
            await loop()
            log.warning("supervised.returned", task=name)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            log.exception("supervised.crashed", task=name, error=repr(error), restart_in=delay)
        await asyncio.sleep(delay)
        delay = min(delay * 2, max_delay)


@contextlib.asynccontextmanager
async def background(
    loops: dict[str, Callable[[], Awaitable[None]]],
) -> AsyncIterator[dict[str, asyncio.Task]]:
    """Supervise several named loops for the duration of the block; cancel them after."""
    tasks = {
        name: asyncio.create_task(supervise(name, loop), name=name) for name, loop in loops.items()
    }
    try:
        yield tasks
    finally:
        for task in tasks.values():
            task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)
