"""Shared fixtures: real servers (see tests/backends.py), unique names per test, cleanup."""

from __future__ import annotations

import itertools
import os
import uuid

import asyncpg
import pytest

from contracts.subjects import SubjectScheme
from infra.eventstore import InMemoryEventStore
from infra.jetstream_store import JetStreamEventStore
from infra.migrations import drop_schema, drop_schemas_with_prefix
from infra.nats_connection import connect_nats
from infra.postgres import create_pool
from infra.settings import Settings
from infra.stack import open_infrastructure
from infra.streams import EventStreamSpec, delete_stream, ensure_event_stream
from tests.backends import nats_backend, postgres_backend

RUN_ID = f"t{uuid.uuid4().hex[:8]}"
_counter = itertools.count(1)


def unique_name(kind: str = "") -> str:
    """A name no other test (in this run or any other) uses: `t1a2b3c4d_7`."""
    return f"{RUN_ID}_{kind}{next(_counter)}"


@pytest.fixture(scope="session")
async def nats_url():
    async with nats_backend() as (url, _kind):
        yield url


@pytest.fixture(scope="session")
async def database_url():
    async with postgres_backend() as (url, _kind):
        yield url


@pytest.fixture(scope="session")
async def nats_client(nats_url):
    client = await connect_nats(nats_url, name="mf-tests")
    yield client
    await client.close()


@pytest.fixture
def scheme() -> SubjectScheme:
    return SubjectScheme(root=unique_name("mf"))


@pytest.fixture
async def stream_spec(nats_client, scheme):
    spec = EventStreamSpec(name=scheme.root.upper(), scheme=scheme)
    await ensure_event_stream(nats_client, spec)
    yield spec
    await delete_stream(nats_client, spec.name)


@pytest.fixture
async def jetstream_store(nats_client, stream_spec):
    return JetStreamEventStore(nats_client, stream_spec.name, stream_spec.scheme)


@pytest.fixture
def memory_store(scheme):
    return InMemoryEventStore(scheme)


@pytest.fixture(params=["memory", "jetstream"])
def any_store(request):
    """The contract suite runs once per backend: the fake must behave like the real store."""
    return request.getfixturevalue(f"{request.param}_store")


@pytest.fixture
async def pg_schema(database_url):
    name = unique_name("s")
    yield name
    connection = await asyncpg.connect(database_url)
    try:
        await drop_schema(connection, name)
    finally:
        await connection.close()


@pytest.fixture
async def pg_pool(database_url, pg_schema):
    pool = await create_pool(database_url, pg_schema, max_size=5)
    yield pool
    await pool.close()


@pytest.fixture
async def infrastructure(nats_url, database_url, stream_spec, tmp_path):
    """What a service gets in production, on the test servers, with unique names."""
    prefix = unique_name("x") + "_"
    settings = Settings(
        nats_url=nats_url,
        database_url=database_url,
        data_dir=tmp_path / "data",
        stream=stream_spec.name,
        subject_root=stream_spec.scheme.root,
        schema_prefix=prefix,
        token_secret="test-token-secret",
    )
    async with open_infrastructure(settings, client_name="mf-test-service") as infra:
        yield infra
    await drop_schemas_with_prefix(database_url, prefix)


def pytest_report_header(config):
    return [
        f"mf test run id: {RUN_ID}",
        f"MF_NATS_URL={os.environ.get('MF_NATS_URL', '(embedded/testcontainers)')}",
        f"MF_DATABASE_URL={os.environ.get('MF_DATABASE_URL', '(embedded/testcontainers)')}",
    ]
