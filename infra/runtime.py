"""Process-level settings for a service process (called once, at start-up, by wiring code).

The garbage collector: with CPython's default first threshold (700 allocations) a service
under load ran ~120 young collections per 30,000 commands at ~2 ms each — 11-14 µs of CPU
per command, about a fifth of all of it (measured by bench/, see docs/benchmarks.md).
Reference cycles are rare in this code; collecting young objects every 20,000 allocations
instead of 700 removes that cost for a little more memory between collections (20,000:
a further 7-12 % CPU per event off rebuilds and catch-ups, measured 2026-11-26).
"""

from __future__ import annotations

import asyncio
import gc

GC_THRESHOLDS = (20_000, 20, 20)


def tune_gc() -> None:
    """Raise the collector's thresholds (idempotent; the same for every service process)."""
    if gc.get_threshold() != GC_THRESHOLDS:
        gc.set_threshold(*GC_THRESHOLDS)


def run_service_loop(main, *, use_uvloop: bool = True):
    """Run `main` to completion on uvloop when installed and allowed (it comes with
    uvicorn[standard]: less CPU per HTTP request and NATS message), else on asyncio's loop.
    Not allowed with an embedded PostgreSQL started as root: it drops privileges when it
    starts, which uvloop's subprocesses cannot do."""
    try:
        import uvloop
    except ImportError:
        uvloop = None
    if uvloop is None or not use_uvloop:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)
