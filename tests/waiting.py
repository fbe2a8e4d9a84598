"""Waiting for asynchronous effects without fixed sleeps."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T]], *, until: Callable[[T], bool] = bool, timeout: float = 10
) -> T:
    """Poll `probe` until `until(result)` holds; fail with the last result after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        result = await probe()
        if until(result):
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"still not there after {timeout}s: {result!r}")
        await asyncio.sleep(0.02)
