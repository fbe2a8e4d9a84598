"""UUIDv7 ids: valid RFC 9562 version 7, ordered as generated, unique, also across fork."""

from __future__ import annotations

import os
import uuid

from infra.ids import new_id, uuid7


def test_ids_are_uuid7_in_generation_order_and_unique():
    ids = [new_id() for _ in range(20_000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    parsed = uuid.UUID(hex=ids[0])
    assert (parsed.version, parsed.variant) == (7, uuid.RFC_4122)
    assert len(ids[0]) == 32 and ids[-1] < uuid7().hex


def test_a_forked_child_does_not_repeat_its_parents_random_bits():
    new_id()  # the parent has a block of random bits in hand
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(write, new_id().encode())
        os._exit(0)
    child = os.read(read, 64).decode()
    os.waitpid(pid, 0)
    assert child[-15:] != new_id()[-15:]
