"""One asyncio lock per key, e.g. per aggregate: same-process commands on one aggregate run
one after another (in arrival order) instead of racing to a concurrency conflict.

A key is present only while someone holds it, so the map never outgrows the commands in
flight. Taking a free key costs two dict operations: no coroutine, no task switch.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Generator, Hashable
from types import TracebackType

_FREE = object()


class _Done:
    """Awaiting it returns at once (an uncontended acquire or a release)."""

    __slots__ = ()

    def __await__(self) -> Generator[None, None, None]:
        return iter(())  # type: ignore[return-value]


_DONE = _Done()


class KeyedLock:
    def __init__(self) -> None:
        # key -> None while held with nobody waiting, else the waiters' futures in order
        self._held: dict[Hashable, deque[asyncio.Future[None]] | None] = {}

    def __len__(self) -> int:
        """Keys held right now."""
        return len(self._held)

    def __call__(self, key: Hashable) -> _Holding:
        """`async with lock(key):` holds `key` for the block."""
        return _Holding(self, key)

    def acquire(self, key: Hashable) -> Awaitable[None]:
        waiters = self._held.get(key, _FREE)
        if waiters is _FREE:
            self._held[key] = None
            return _DONE
        if waiters is None:
            waiters = self._held[key] = deque()
        return self._wait(key, waiters)

    async def _wait(self, key: Hashable, waiters: deque[asyncio.Future[None]]) -> None:
        future = asyncio.get_running_loop().create_future()
        waiters.append(future)
        try:
            await future
        except asyncio.CancelledError:
            if not future.cancelled():
                self.release(key)  # handed over just as we were cancelled: pass it on
            elif future in waiters:  # (a release may have skipped it already)
                waiters.remove(future)
            raise

    def release(self, key: Hashable) -> None:
        waiters = self._held[key]
        while waiters:
            future = waiters.popleft()
            if not future.done():
                future.set_result(None)  # the key passes to the next waiter, still held
                return
        del self._held[key]


class _Holding:
    __slots__ = ("_key", "_lock")

    def __init__(self, lock: KeyedLock, key: Hashable) -> None:
        self._lock = lock
        self._key = key

    def __aenter__(self) -> Awaitable[None]:
        return self._lock.acquire(self._key)

    def __aexit__(
        self,
        _type: type[BaseException] | None,
        _error: BaseException | None,
        _traceback: TracebackType | None,
    ) -> Awaitable[None]:
        self._lock.release(self._key)
        return _DONE
