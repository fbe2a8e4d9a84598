"""The servers a benchmark runs on: its own embedded nats-server (default or durable config)
and PostgreSQL (MF_DATABASE_URL, else the machine's 127.0.0.1:5432/test, else embedded).
Every run uses unique stream, subject root and schema names and removes them afterwards."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from nats.aio.client import Client as NatsClient

from contracts.subjects import SubjectScheme
from infra.embedded import EmbeddedNats, EmbeddedPostgres
from infra.migrations import drop_schemas_with_prefix
from infra.nats_connection import connect_nats
from infra.streams import EventStreamSpec, delete_stream, ensure_event_stream

MACHINE_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"


def unique(kind: str) -> str:
    return f"bench{kind}{uuid.uuid4().hex[:8]}"


@dataclass
class Nats:
    server: EmbeddedNats
    durable: bool

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def label(self) -> str:
        return "sync_interval: always" if self.durable else "default (no fsync before ack)"


@contextlib.asynccontextmanager
async def embedded_nats(durable: bool) -> AsyncIterator[Nats]:
    directory = Path(tempfile.mkdtemp(prefix="mf-bench-nats-"))
    try:
        server = EmbeddedNats(directory, durable=durable, server_name="mf-bench")
        async with server:
            yield Nats(server, durable)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@dataclass
class Stream:
    client: NatsClient
    spec: EventStreamSpec

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def scheme(self) -> SubjectScheme:
        return self.spec.scheme


@contextlib.asynccontextmanager
async def fresh_stream(client: NatsClient) -> AsyncIterator[Stream]:
    scheme = SubjectScheme(unique("r"))
    spec = EventStreamSpec(scheme.root.upper(), scheme)
    await ensure_event_stream(client, spec)
    try:
        yield Stream(client, spec)
    finally:
        with contextlib.suppress(Exception):
            await delete_stream(client, spec.name)


@contextlib.asynccontextmanager
async def nats_client(url: str, name: str = "mf-bench") -> AsyncIterator[NatsClient]:
    client = await connect_nats(url, name=name, max_reconnect_attempts=3)
    try:
        yield client
    finally:
        with contextlib.suppress(Exception):
            await client.close()


async def _reachable(url: str) -> bool:
    try:
        connection = await asyncpg.connect(url, timeout=2)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
        return False
    await connection.close()
    return True


@contextlib.asynccontextmanager
async def postgres(embedded: bool = False) -> AsyncIterator[str]:
    """A database URL: MF_DATABASE_URL, the machine's test database, or an embedded server
    (always the embedded one, as `mf up` starts it, when `embedded`)."""
    url = None if embedded else os.environ.get("MF_DATABASE_URL")
    if url is None and not embedded and await _reachable(MACHINE_POSTGRES):
        url = MACHINE_POSTGRES
    if url is not None:
        yield url
        return
    directory = Path(tempfile.mkdtemp(prefix="mf-bench-pg-"))
    try:
        async with EmbeddedPostgres(directory / "pg") as server:
            yield server.url
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@contextlib.asynccontextmanager
async def schemas(database_url: str, prefix: str) -> AsyncIterator[str]:
    """A unique schema-name prefix; every schema starting with it is dropped afterwards."""
    try:
        yield prefix
    finally:
        await drop_schemas_with_prefix(database_url, prefix)
