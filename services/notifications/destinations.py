"""Where webhooks may go: by default anywhere (a laptop's receiver is on 127.0.0.1), but a
shared deployment refuses addresses inside its own network, or any workspace could make the
service POST to the database's admin port or a cloud metadata endpoint.

With `MF_WEBHOOK_ALLOW_PRIVATE_NETWORKS=false` (infra/compose.yaml sets it) an endpoint
whose host is, or resolves to, a loopback, private, link-local or otherwise non-global
address is refused: at registration when the URL names such an address or `localhost`,
and before every delivery attempt after resolving the host (DNS may change after
registration). What is checked is what the resolver answers just before the request; a
resolver that answers differently a millisecond later (DNS rebinding) is not covered.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit


class DestinationRefused(ValueError):
    """The URL points into a network webhooks may not reach; says which address."""


def _non_global(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global


def check_registered_url(url: str) -> None:
    """Refuse a URL whose host is a non-global IP literal or `localhost` (no DNS asked)."""
    host = (urlsplit(url).hostname or "").rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        raise DestinationRefused(f"{host} is this machine: webhooks may not reach it")
    try:
        refused = _non_global(host)
    except ValueError:  # a name, not an address: checked when delivering
        return
    if refused:
        raise DestinationRefused(f"{host} is not a public address: webhooks may not reach it")


async def check_delivery_url(url: str) -> None:
    """Resolve the URL's host; refuse it when any address it resolves to is not global."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    check_registered_url(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        answers = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        return  # unresolvable: the request itself fails and says so
    for *_, address in answers:
        if _non_global(address[0]):
            raise DestinationRefused(
                f"{host} resolves to {address[0]}, not a public address: "
                "webhooks may not reach it (MF_WEBHOOK_ALLOW_PRIVATE_NETWORKS=false)"
            )
