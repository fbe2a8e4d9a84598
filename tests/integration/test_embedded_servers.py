"""The embedded servers keep data across restarts, stop cleanly and never outlive their parent."""

import asyncio
import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import httpx
import nats
import psutil
import pytest
from nats.js.api import StreamConfig

from infra.embedded import EmbeddedNats, EmbeddedPostgres, EmbeddedServerError, free_port

pytestmark = pytest.mark.embedded


@pytest.fixture
def closed_dir(tmp_path: Path) -> Path:
    """A directory the postgres OS user (used when we run as root) may not enter."""
    tmp_path.chmod(0o700)
    return tmp_path


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as a server binds
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


async def wait_gone(pid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)


async def test_nats_keeps_a_published_event_across_a_restart(tmp_path: Path) -> None:
    async with EmbeddedNats(tmp_path / "nats") as server:
        nc = await nats.connect(server.url)
        version = nc.connected_server_version
        assert (version.major, version.minor) >= (2, 12)
        js = nc.jetstream()
        await js.add_stream(StreamConfig(name="ORDERS", subjects=["orders.>"]))
        ack = await js.publish("orders.1", b"placed")
        await nc.close()
        async with httpx.AsyncClient() as http:
            varz = (await http.get(f"http://127.0.0.1:{server.monitor_port}/varz")).json()
        assert varz["jetstream"]["config"]["sync_always"]  # fsync before every ack

    async with EmbeddedNats(tmp_path / "nats") as restarted:
        nc = await nats.connect(restarted.url)
        message = await nc.jetstream().get_msg("ORDERS", ack.seq)
        await nc.close()
    assert message.data == b"placed"


async def test_postgres_keeps_a_committed_row_across_a_restart(closed_dir: Path) -> None:
    async with EmbeddedPostgres(closed_dir / "pg") as server:
        connection = await asyncpg.connect(server.url)
        await connection.execute("create table projects (name text primary key)")
        await connection.execute("insert into projects values ('bike frame')")
        await connection.close()
    assert mode(closed_dir / "pg" / "pgdata") == 0o700
    assert mode(closed_dir) == 0o700  # left as it was: no chmod of the parents

    async with EmbeddedPostgres(closed_dir / "pg") as restarted:
        connection = await asyncpg.connect(restarted.url)
        names = await connection.fetch("select name from projects")
        await connection.close()
    assert [row["name"] for row in names] == ["bike frame"]


async def test_postgres_restarts_on_another_port_after_being_killed(tmp_path: Path) -> None:
    server = EmbeddedPostgres(tmp_path / "pg")
    await server.start()
    await server.kill()
    assert (tmp_path / "pg" / "pgdata" / "postmaster.pid").exists()  # stale, left by the kill

    async with EmbeddedPostgres(tmp_path / "pg") as restarted:
        assert restarted.port != server.port
        connection = await asyncpg.connect(restarted.url)
        assert await connection.fetchval("select 1") == 1
        await connection.close()


async def test_no_server_outlives_a_killed_parent(tmp_path: Path) -> None:
    parent = await asyncio.create_subprocess_exec(
        sys.executable,
        str(Path(__file__).with_name("embedded_child.py")),
        str(tmp_path),
        stdout=subprocess.PIPE,
        cwd=Path(__file__).parents[2],
    )
    try:
        pids = json.loads(await asyncio.wait_for(parent.stdout.readline(), 60))
        postgres_children = [child.pid for child in psutil.Process(pids["postgres"]).children()]
        assert postgres_children  # checkpointer, walwriter, ...

        parent.send_signal(signal.SIGKILL)
        await parent.wait()

        for pid in [pids["nats"], pids["postgres"], *postgres_children]:
            assert await wait_gone(pid), f"process {pid} outlived its parent"
    finally:
        if parent.returncode is None:
            parent.kill()
            await parent.wait()


async def test_stop_ends_the_processes_and_frees_the_ports(tmp_path: Path) -> None:
    nats_server = EmbeddedNats(tmp_path / "nats")
    postgres = EmbeddedPostgres(tmp_path / "pg")
    await nats_server.start()
    await postgres.start()
    pids = [nats_server.pid, postgres.pid]
    await nats_server.start()  # idempotent
    assert nats_server.pid == pids[0]

    await nats_server.stop()
    await postgres.stop()
    await postgres.stop()  # idempotent

    assert nats_server.pid is None and postgres.pid is None
    for pid in pids:
        assert await wait_gone(pid, timeout=0)
    for port in (nats_server.port, nats_server.monitor_port, postgres.port):
        assert port_is_free(port)

    async with nats_server, postgres:  # the same ports again, at once
        assert nats_server.pid not in (None, *pids) and postgres.pid not in (None, *pids)


async def test_a_port_in_use_is_named_in_the_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(EmbeddedServerError, match=f"port {port} .* in use"):
            await EmbeddedNats(tmp_path / "nats", port=port).start()


async def test_a_failed_start_reports_the_end_of_the_server_log(tmp_path: Path) -> None:
    server = EmbeddedNats(tmp_path / "nats", extra_config="this is { not valid")
    with pytest.raises(EmbeddedServerError, match="exited with code 1(.|\n)*Parse error"):
        await server.start()
    assert server.pid is None


def test_servers_set_up_together_never_get_the_same_port():
    # Ports are picked when a server is set up; both are set up before either listens.
    ports = [free_port() for _ in range(5000)]
    assert len(set(ports)) == len(ports)
