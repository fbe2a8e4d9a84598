"""The client side of figure 5, in its own process: commands at a fixed rate over HTTP, and
one Server-Sent Events stream per workspace; for every accepted command, how long until its
workspace's SSE stream pushed the project at (at least) the new version, in a `view` event
or a `project` event (one changed project).

    python -m bench.e2e_client --url http://127.0.0.1:8000 --plan plan.json

Plan: {"rate": 1000, "seconds": 10, "connections": 16,
       "commands": [[workspace_id, token, project_id], ...], "streams": [[workspace_id, token]]}
Prints one JSON object: commands, matched, p50/p99/max ms, rate.
"""

from __future__ import annotations

import asyncio
import json
import time
from urllib.parse import urlsplit

import httpx

from bench.http_load import _request, serve_plan


async def run(url: str, plan: dict) -> dict:
    parts = urlsplit(url)
    host, port = parts.hostname, parts.port
    loop = asyncio.get_running_loop()
    seen: dict[str, list[tuple[int, float]]] = {}  # project -> [(version, when pushed)]
    accepted: list[tuple[str, int, float]] = []  # (project, version, when accepted)
    ready = asyncio.Event()
    connected = 0

    async def stream(workspace_id: str, token: str) -> None:
        nonlocal connected
        headers = {"Authorization": f"Bearer {token}"}
        async with (
            httpx.AsyncClient(base_url=url, timeout=None) as client,
            client.stream("GET", f"/workspaces/{workspace_id}/live", headers=headers) as response,
        ):
            event = None
            async for line in response.aiter_lines():
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:") and event in ("view", "project"):
                    when = loop.time()
                    data = json.loads(line[5:])
                    for project in _workspace_projects(event, data):
                        seen.setdefault(project["project_id"], []).append(
                            (project["version"], when)
                        )
                    if event == "view" and not ready.is_set():
                        connected += 1
                        if connected == len(plan["streams"]):
                            ready.set()

    streams = [asyncio.create_task(stream(w, t)) for w, t in plan["streams"]]
    await asyncio.wait_for(ready.wait(), 30)
    connections = plan["connections"]
    interval = connections / plan["rate"]
    start = loop.time() + 0.1
    end = start + plan["seconds"]
    body = json.dumps({"note": "frames cut and welded"}).encode()

    async def commander(index: int) -> None:
        reader, writer = await asyncio.open_connection(host, port)
        mine = plan["commands"][index::connections] or plan["commands"]
        due, sent = start + index * interval / connections, 0
        try:
            while due < end:
                delay = due - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                due += interval
                _workspace, token, project_id = mine[sent % len(mine)]
                sent += 1
                request = _request(
                    f"{host}:{port}",
                    "POST",
                    f"/projects/{project_id}/progress",
                    body,
                    {"Authorization": f"Bearer {token}", "Connection": "keep-alive"},
                )
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                )
                answer = json.loads(await reader.readexactly(length))
                if int(head.split(b" ", 2)[1]) < 400:
                    accepted.append((project_id, answer["version"], loop.time()))
        finally:
            writer.close()

    began = time.perf_counter()
    await asyncio.gather(*(commander(i) for i in range(connections)))
    elapsed = time.perf_counter() - began
    await asyncio.sleep(1.0)  # the last pushes
    for task in streams:
        task.cancel()
    await asyncio.gather(*streams, return_exceptions=True)

    latencies, unmatched = [], 0
    for project_id, version, when in accepted:
        pushes = [t for v, t in seen.get(project_id, ()) if v >= version]
        if not pushes:
            unmatched += 1
            continue
        latencies.append(max(min(pushes) - when, 0.0) * 1000)
    latencies.sort()

    def pct(fraction: float) -> float:
        return (
            latencies[min(len(latencies) - 1, int(fraction * len(latencies)))]
            if latencies
            else float("nan")
        )

    return {
        "commands": len(accepted),
        "matched": len(latencies),
        "unmatched": unmatched,
        "rate": len(accepted) / elapsed,
        "p50_ms": pct(0.5),
        "p99_ms": pct(0.99),
        "max_ms": latencies[-1] if latencies else float("nan"),
    }


def _workspace_projects(event: str, data: dict) -> list[dict]:
    """The workspace's own projects in a `view` event, or the one of a `project` event."""
    if event == "view":
        return data.get("projects", [])
    return [data["project"]] if "projects" in data["sections"] else []


if __name__ == "__main__":
    serve_plan(run)
