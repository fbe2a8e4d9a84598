"""Time-ordered unique ids (UUIDv7, RFC 9562) for events, commands and correlations."""

from __future__ import annotations

import os
import struct
import threading
import time
import uuid

_lock = threading.Lock()
_last_ms = 0
_counter = 0

# Random bits come from the OS in blocks of 512 ids (one getrandom call, not one per id).
# A forked child must not reuse its parent's block, so it starts with an empty one.
_BLOCK = struct.Struct("<512Q")
_random_block: list[int] = []
os.register_at_fork(after_in_child=_random_block.clear)

_MS_MASK = (1 << 48) - 1
_RANDOM_MASK = (1 << 62) - 1
_VERSION_AND_VARIANT = (0x7 << 76) | (0b10 << 62)


def _uuid7_int() -> int:
    """48-bit Unix milliseconds, then a 12-bit counter and 62 random bits.

    The counter keeps ids generated in the same millisecond in order.
    """
    global _last_ms, _counter
    with _lock:
        now_ms = time.time_ns() // 1_000_000
        if now_ms <= _last_ms:
            _counter += 1
            if _counter > 0xFFF:  # counter exhausted: borrow the next millisecond
                _last_ms += 1
                _counter = 0
            now_ms = _last_ms
        else:
            _last_ms = now_ms
            _counter = 0
        counter = _counter
    try:
        random_bits = _random_block.pop() & _RANDOM_MASK
    except IndexError:
        _random_block.extend(_BLOCK.unpack(os.urandom(_BLOCK.size)))
        random_bits = _random_block.pop() & _RANDOM_MASK
    return ((now_ms & _MS_MASK) << 80) | _VERSION_AND_VARIANT | (counter << 64) | random_bits


def uuid7() -> uuid.UUID:
    """A UUIDv7 (RFC 9562)."""
    return uuid.UUID(int=_uuid7_int())


def new_id() -> str:
    """A UUIDv7 as 32 hex digits: valid as a NATS subject token and a URL segment.

    Formatted straight from the integer (`uuid.UUID(...).hex` costs ~2 µs more per id;
    commands make one or two of them each)."""
    return f"{_uuid7_int():032x}"
