"""The workspace view projection: exactly-once under a killed process, equal to a rebuild."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from contracts import commands as requests
from infra.ids import new_id
from infra.migrations import drop_schema
from infra.postgres import create_pool, quote_identifier
from infra.projections import ProjectionRunner
from services.projects import domain
from services.projects.handlers import CommandMetadata, ProjectsHandlers
from services.projects.views import SCHEMA_SQL, WorkspaceViewProjection
from tests.conftest import unique_name
from tests.e2e.seed import project_body
from tests.integration.test_projects_handlers import FixedClock, network

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
TABLES = {
    "workspaces": "workspace_id",
    "members": "member_id",
    "projects": "project_id",
    "invitations": "invitation_id",
    "timeline": "project_id, sequence",
}


async def write_history(store, projects: int) -> None:
    """A realistic log: projects proposed, invited, accepted, some declined or cancelled."""
    handlers = ProjectsHandlers(store, FixedClock(NOW), new_id)
    await network(handlers)
    ada = domain.Actor("mage", "coordinator", "ada")
    body = project_body()
    body["due"] = (NOW + timedelta(days=40)).isoformat()
    for index in range(projects):
        meta = CommandMetadata(actor=ada, correlation_id=new_id())
        created = await handlers.propose(requests.ProposeProject.model_validate(body), meta)
        project_id = created.aggregate_id
        invite = requests.InvitePartner(role_id="bags", member_id="lena")
        invited = await handlers.invite(project_id, invite, meta)
        lena = CommandMetadata(
            actor=domain.Actor("freiland", "member", "lena"), correlation_id=new_id()
        )
        invitation_id = invited.events[0].invitation_id
        if index % 3 == 0:
            await handlers.decline(
                project_id, invitation_id, requests.DeclineInvitation(reason="busy"), lena
            )
        else:
            await handlers.accept(project_id, invitation_id, lena)
        if index % 4 == 0:
            await handlers.cancel(project_id, requests.CancelProject(reason="client left"), meta)


async def dump(database_url: str, schema: str) -> dict[str, list[tuple]]:
    connection = await asyncpg.connect(database_url)
    try:
        tables = {}
        for table, key in TABLES.items():
            rows = await connection.fetch(
                f"SELECT * FROM {quote_identifier(schema)}.{table} ORDER BY {key}"
            )
            tables[table] = [tuple(row.values()) for row in rows]
        return tables
    finally:
        await connection.close()


async def rebuild(store, database_url: str) -> tuple[str, dict]:
    schema = unique_name("rebuild")
    pool = await create_pool(database_url, schema)
    try:
        await ProjectionRunner(WorkspaceViewProjection(), store, pool, schema).catch_up()
        return schema, await dump(database_url, schema)
    finally:
        await pool.close()


async def test_the_view_tables_are_created_by_the_projection(pg_pool, pg_schema, jetstream_store):
    await ProjectionRunner(WorkspaceViewProjection(), jetstream_store, pg_pool, pg_schema).prepare()
    for table in TABLES:
        assert await pg_pool.fetchval("SELECT to_regclass($1) IS NOT NULL", table)
    assert "CREATE TABLE IF NOT EXISTS" in SCHEMA_SQL


@pytest.mark.slow
async def test_a_view_killed_mid_batch_ends_exactly_like_a_fresh_rebuild(
    jetstream_store, nats_url, database_url, pg_pool, pg_schema
):
    await write_history(jetstream_store, projects=40)
    last = await jetstream_store.last_sequence()
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        str(Path(__file__).with_name("projection_child.py")),
        "workspace_view",
        nats_url,
        database_url,
        jetstream_store.stream,
        jetstream_store.scheme.root,
        pg_schema,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
    )
    applied = 0
    while applied < 2:  # the first batch commits; kill while the second is open
        line = (await asyncio.wait_for(child.stdout.readline(), 30)).decode()
        assert line, "the projection child exited early"
        applied += line.startswith("applied")
    child.send_signal(signal.SIGKILL)
    await child.wait()
    checkpoint = await pg_pool.fetchval("SELECT last_seq FROM projection_checkpoints")
    assert 0 < checkpoint < last

    runner = ProjectionRunner(WorkspaceViewProjection(), jetstream_store, pg_pool, pg_schema)
    assert await runner.catch_up() == last
    rebuilt_schema, rebuilt = await rebuild(jetstream_store, database_url)
    try:
        assert await dump(database_url, pg_schema) == rebuilt
        assert len(rebuilt["projects"]) == 40
        assert len(rebuilt["timeline"]) == sum(
            1
            for _ in await jetstream_store.read(
                1, 10_000, jetstream_store.scheme.events_of_aggregate_type("project")
            )
        )
    finally:
        connection = await asyncpg.connect(database_url)
        await drop_schema(connection, rebuilt_schema)
        await connection.close()
