"""The per-key lock: one holder per key, waiters served in arrival order, and a key kept
only while someone holds it — whatever ends the holders (success, errors, cancellation)."""

from __future__ import annotations

import asyncio

import pytest

from infra.keyed_lock import KeyedLock


async def test_holders_of_one_key_take_turns_in_arrival_order():
    lock, inside, order = KeyedLock(), [], []

    async def hold(n: int) -> None:
        async with lock("a"):
            inside.append(n)
            assert len(inside) == 1, "two holders at once"
            await asyncio.sleep(0)
            order.append(n)
            inside.remove(n)

    await asyncio.gather(*(hold(n) for n in range(8)))
    assert order == list(range(8))
    assert len(lock) == 0


async def test_different_keys_do_not_wait_for_each_other():
    lock = KeyedLock()
    async with lock("a"):
        async with asyncio.timeout(1):
            async with lock("b"):
                assert len(lock) == 2
    assert len(lock) == 0


async def test_a_holder_that_fails_releases_the_key():
    lock = KeyedLock()

    async def fail() -> None:
        async with lock("a"):
            await asyncio.sleep(0)
            raise ValueError("refused")

    results = await asyncio.gather(*(fail() for _ in range(3)), return_exceptions=True)
    assert all(isinstance(r, ValueError) for r in results)
    assert len(lock) == 0


async def test_a_cancelled_waiter_leaves_neither_a_key_nor_a_gap():
    lock, served = KeyedLock(), []
    release_first = asyncio.Event()

    async def hold(n: int, until: asyncio.Event | None = None) -> None:
        async with lock("a"):
            if until is not None:
                await until.wait()
            served.append(n)

    first = asyncio.create_task(hold(1, release_first))
    await asyncio.sleep(0)
    cancelled = asyncio.create_task(hold(2))
    third = asyncio.create_task(hold(3))
    await asyncio.sleep(0)
    cancelled.cancel()
    release_first.set()
    await asyncio.gather(first, third)
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert served == [1, 3]
    assert len(lock) == 0


async def test_a_waiter_cancelled_as_the_key_is_handed_to_it_passes_it_on():
    lock, served = KeyedLock(), []

    async def hold(n: int) -> None:
        async with lock("a"):
            served.append(n)

    await lock.acquire("a")
    second = asyncio.create_task(hold(2))
    third = asyncio.create_task(hold(3))
    await asyncio.sleep(0)
    lock.release("a")  # handed to the second ...
    second.cancel()  # ... which is cancelled before it could run
    await asyncio.gather(second, third, return_exceptions=True)
    assert served == [3]
    assert len(lock) == 0
