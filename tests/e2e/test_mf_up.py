"""`mf up` on the embedded default: starts, answers, stops, and keeps history across restarts."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import asyncpg
import httpx
import pytest

from infra.jetstream_store import JetStreamEventStore
from infra.nats_connection import connect_nats
from tests.factories import pending, workspace_registered

pytestmark = [pytest.mark.embedded, pytest.mark.slow]

MF = Path(sys.executable).with_name("mf")


async def start_mf_up(data_dir: Path) -> tuple[asyncio.subprocess.Process, dict[str, str]]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MF_")}
    environment["MF_DATA_DIR"] = str(data_dir)
    for port in ("MF_HTTP_PORT", "MF_NOTIFICATIONS_HTTP_PORT", "MF_MATCHING_HTTP_PORT"):
        environment[port] = "0"
    process = await asyncio.create_subprocess_exec(
        str(MF), "up", stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=environment
    )
    urls: dict[str, str] = {}
    output = []
    while True:
        line = (await asyncio.wait_for(process.stdout.readline(), 60)).decode()
        output.append(line)
        assert line, f"mf up exited early:\n{''.join(output)}"
        if found := re.match(r"\s+NATS\s+(\S+)", line):
            urls["nats"] = found.group(1)
        if found := re.match(r"\s+Postgres\s+(\S+)", line):
            urls["postgres"] = found.group(1)
        if found := re.match(r"\s+Projects\s+(\S+)", line):
            urls["projects"] = found.group(1)
        if line.startswith("Ready."):
            return process, urls


async def stop(process: asyncio.subprocess.Process) -> None:
    process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(process.wait(), 30) == 0


async def test_mf_up_answers_stops_cleanly_and_keeps_history(tmp_path):
    process, urls = await start_mf_up(tmp_path / "data")
    try:
        client = await connect_nats(urls["nats"])
        store = JetStreamEventStore(client)
        event = pending(workspace_registered("mage"), "mage")
        await store.append("workspace", "mage", [event], expected_version=0)
        await client.close()
        connection = await asyncpg.connect(urls["postgres"])
        assert await connection.fetchval("SELECT 1") == 1
        await connection.close()
        async with httpx.AsyncClient() as http:
            assert (await http.get(f"{urls['projects']}/health")).json() == {"status": "ok"}
    finally:
        await stop(process)
    assert not (tmp_path / "data" / "runtime.json").exists()

    process, urls = await start_mf_up(tmp_path / "data")
    try:
        client = await connect_nats(urls["nats"])
        history = await JetStreamEventStore(client).load("workspace", "mage")
        await client.close()
        assert [e.event_id for e in history.events] == [event.envelope.event_id]
    finally:
        await stop(process)
