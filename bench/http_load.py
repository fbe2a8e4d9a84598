"""A small HTTP/1.1 load generator, run in its own process so the server keeps its CPU.

    python -m bench.http_load --url http://127.0.0.1:8000 --plan plan.json

The plan (JSON): {"mode": "closed" | "open", "seconds": 5, "connections": 32, "rate": 500,
"requests": [[method, path, body-or-null], ...], "headers": {...}}. Connection i sends
requests i, i + connections, ... in turn (so a caller can give each connection its own
projects). Closed: every connection sends its next request as soon as the previous answer
is in (the maximum rate). Open: requests are due at a fixed rate, spread over connections,
and latency runs from when a request was due, so a stalled server is not hidden
(no coordinated omission). Prints one JSON object: count, rate, errors, statuses, p50/p99 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from urllib.parse import urlsplit


def _request(host: str, method: str, path: str, body: bytes | None, headers: dict) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")


async def _exchange(reader, writer, request: bytes) -> int:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length:
        await reader.readexactly(length)
    return status


async def run(url: str, plan: dict) -> dict:
    parts = urlsplit(url)
    host, port = parts.hostname, parts.port
    connections = plan["connections"]
    requests = [
        _request(
            f"{host}:{port}",
            m,
            p,
            json.dumps(b).encode() if b is not None else None,
            plan.get("headers", {}),
        )
        for m, p, b in plan["requests"]
    ]
    seconds, mode = plan["seconds"], plan["mode"]
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    errors = 0
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.05
    end = start + seconds
    interval = connections / plan["rate"] if mode == "open" else 0.0

    async def connection(index: int) -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(host, port)
        mine = requests[index::connections] or requests
        sent = 0
        due = start + (index * interval / connections if mode == "open" else 0.0)
        try:
            while True:
                if mode == "open":
                    if due >= end:
                        break
                    delay = due - loop.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    began = due
                    due += interval
                else:
                    began = loop.time()
                    if began >= end:
                        break
                    began = max(began, start)
                try:
                    status = await _exchange(reader, writer, mine[sent % len(mine)])
                except (OSError, asyncio.IncompleteReadError, ValueError):
                    errors += 1
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
                    continue
                sent += 1
                statuses[status] += 1
                latencies.append((loop.time() - began) * 1000)
        finally:
            writer.close()

    wall = time.perf_counter()
    await asyncio.gather(*(connection(i) for i in range(connections)))
    elapsed = time.perf_counter() - wall - 0.05
    ordered = sorted(latencies)

    def pct(fraction: float) -> float:
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0

    ok = sum(n for status, n in statuses.items() if status < 400)
    return {
        "count": len(latencies),
        "ok": ok,
        "rate": ok / max(elapsed, 1e-9),
        "errors": errors,
        "statuses": {str(k): v for k, v in statuses.items()},
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "max_ms": ordered[-1] if ordered else 0.0,
        "cpu_seconds": time.process_time(),
    }


def serve_plan(run_plan) -> None:
    """The entry point of a load process (`bench.stack.load_process` starts it): run the
    plan given by --plan against --url, print the result as one JSON line."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--plan", required=True, help="path of the plan JSON")
    options = parser.parse_args()
    with open(options.plan) as file:
        plan = json.load(file)
    sys.stdout.write(json.dumps(asyncio.run(run_plan(options.url, plan))) + "\n")


if __name__ == "__main__":
    serve_plan(run)
