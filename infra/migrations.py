"""Numbered SQL migrations per schema, each applied once and recorded in a table."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import structlog

from infra.postgres import quote_identifier

log = structlog.get_logger(__name__)

_MIGRATION_FILE = re.compile(r"^(\d{3,})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    number: int
    name: str
    sql: str


def discover(directory: Path) -> list[Migration]:
    migrations = []
    for path in sorted(directory.glob("*.sql")):
        match = _MIGRATION_FILE.match(path.name)
        if match is None:
            raise ValueError(f"{path.name}: migration files are named NNN_description.sql")
        migrations.append(Migration(int(match.group(1)), match.group(2), path.read_text()))
    numbers = [migration.number for migration in migrations]
    if len(numbers) != len(set(numbers)):
        raise ValueError(f"{directory}: two migrations share a number")
    return sorted(migrations, key=lambda migration: migration.number)


async def migrate(connection: asyncpg.Connection, schema: str, directory: Path) -> list[str]:
    """Apply the not-yet-applied migrations of `directory` inside `schema`. Returns their names.

    Unqualified names in the SQL land in `schema`. Concurrent migrators wait on a lock.
    """
    quoted = quote_identifier(schema)
    applied_now = []
    async with connection.transaction():
        await connection.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"migrate:{schema}")
        await connection.execute(f"CREATE SCHEMA IF NOT EXISTS {quoted}")
        await connection.execute(
            f"CREATE TABLE IF NOT EXISTS {quoted}.schema_migrations ("
            " number integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {
            row["number"]
            for row in await connection.fetch(f"SELECT number FROM {quoted}.schema_migrations")
        }
        await connection.execute(f"SET LOCAL search_path TO {quoted}, public")
        for migration in discover(directory):
            if migration.number in done:
                continue
            await connection.execute(migration.sql)
            await connection.execute(
                f"INSERT INTO {quoted}.schema_migrations (number, name) VALUES ($1, $2)",
                migration.number,
                migration.name,
            )
            applied_now.append(f"{migration.number:03d}_{migration.name}")
    if applied_now:
        log.info("migrations.applied", schema=schema, migrations=applied_now)
    return applied_now


async def migrate_database(database_url: str, schema: str, directory: Path) -> list[str]:
    """`migrate` on a connection of its own (a service's start-up)."""
    connection = await asyncpg.connect(database_url)
    try:
        return await migrate(connection, schema, directory)
    finally:
        await connection.close()


async def drop_schema(connection: asyncpg.Connection, schema: str) -> None:
    await connection.execute(f"DROP SCHEMA IF EXISTS {quote_identifier(schema)} CASCADE")


async def drop_schemas_with_prefix(database_url: str, prefix: str) -> list[str]:
    """Drop every schema whose name starts with `prefix` (a test or bench run's); returns
    their names."""
    connection = await asyncpg.connect(database_url)
    try:
        rows = await connection.fetch(
            "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, $1)", prefix
        )
        for row in rows:
            await drop_schema(connection, row["nspname"])
        return [row["nspname"] for row in rows]
    finally:
        await connection.close()
