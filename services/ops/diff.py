"""`mf replay <projection> --diff`: rebuild into a shadow schema and compare it with the live
tables row by row, both at the same log position.

Zero differences is a completeness proof: the live tables hold exactly what the log says,
no event lost, none applied twice. Rows are compared as jsonb (every column type compares),
paired by primary key to show which columns changed. Runner bookkeeping, the projection's
`preserved_tables` and tables its setup() does not create are not compared; nor are columns
filled by the database clock (`DEFAULT now()`) or listed in `diff_ignore_columns`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import asyncpg

from infra.eventstore import EventStore
from infra.postgres import quote_identifier
from infra.projections import RUNNER_BOOKKEEPING, Projection
from infra.rebuild import Progress, Rebuild, projection_tables

MAX_ROWS_PER_SIDE = 1000  # differences listed per table and side; all are counted
_CLOCK_DEFAULT = re.compile(
    r"now\(\)|current_timestamp|clock_timestamp|statement_timestamp|transaction_timestamp"
    r"|localtimestamp|random\(\)|gen_random_uuid",
    re.IGNORECASE,
)

Kind = Literal["missing_in_live", "missing_in_rebuild", "changed"]


@dataclass(frozen=True, slots=True)
class RowDifference:
    table: str
    kind: Kind
    key: dict
    live: dict | None
    rebuilt: dict | None

    @property
    def columns(self) -> list[str]:
        """The columns that differ (all of them when the row exists on one side only)."""
        if self.live is None or self.rebuilt is None:
            return sorted((self.live or self.rebuilt or {}).keys())
        names = set(self.live) | set(self.rebuilt)
        return sorted(name for name in names if self.live.get(name) != self.rebuilt.get(name))


@dataclass(slots=True)
class TableComparison:
    table: str
    live_rows: int
    rebuilt_rows: int
    only_live: int = 0  # rows (with multiplicity) only in the live table
    only_rebuilt: int = 0
    ignored_columns: tuple[str, ...] = ()
    problem: str | None = None  # e.g. the table exists on one side only


@dataclass(slots=True)
class DiffReport:
    projection: str
    schema: str
    position: int  # both sides hold exactly the events up to this sequence
    tables: list[TableComparison] = field(default_factory=list)
    differences: list[RowDifference] = field(default_factory=list)
    not_compared: list[str] = field(default_factory=list)

    @property
    def difference_count(self) -> int:
        """Rows that differ (a changed row counts once), plus tables that differ as such."""
        listed = len(self.differences)
        covered = sum(2 if d.kind == "changed" else 1 for d in self.differences)
        unlisted = sum(t.only_live + t.only_rebuilt for t in self.tables) - covered
        return listed + max(unlisted, 0) + sum(1 for t in self.tables if t.problem)

    @property
    def identical(self) -> bool:
        return self.difference_count == 0


async def diff_projection(
    projection: Projection,
    store: EventStore,
    pool: asyncpg.Pool,
    schema: str,
    *,
    from_sequence: int = 1,
    batch_size: int = 5000,
    on_progress: Callable[[Progress], None] | None = None,
) -> DiffReport:
    """Rebuild `projection` into a shadow, hold the live one at the same position, compare."""
    rebuild = Rebuild(
        projection,
        store,
        pool,
        schema,
        from_sequence=from_sequence,
        batch_size=batch_size,
        on_progress=on_progress,
    )
    async with rebuild:

        async def inspect(connection: asyncpg.Connection, position: int) -> DiffReport:
            report = DiffReport(projection.name, schema, position)
            await compare_schemas(connection, schema, rebuild.shadow, projection, report)
            return report

        return await rebuild.hold_at_live_position(inspect)


async def compare_schemas(
    connection: asyncpg.Connection,
    live: str,
    rebuilt: str,
    projection: Projection,
    report: DiffReport,
) -> None:
    live_tables = set(await projection_tables(connection, live))
    rebuilt_tables = set(await projection_tables(connection, rebuilt))
    preserved = set(getattr(projection, "preserved_tables", ()))
    report.not_compared = sorted((live_tables - rebuilt_tables) | (preserved & live_tables))
    ignore = {
        table: set(columns)
        for table, columns in getattr(projection, "diff_ignore_columns", {}).items()
    }
    for table in sorted(rebuilt_tables - preserved - RUNNER_BOOKKEEPING):
        if table not in live_tables:
            count = await _count(connection, rebuilt, table)
            report.tables.append(
                TableComparison(table, 0, count, 0, count, problem="missing in the live schema")
            )
            continue
        comparison, differences = await compare_table(
            connection, live, rebuilt, table, ignore.get(table, set())
        )
        report.tables.append(comparison)
        report.differences.extend(differences)


async def compare_table(
    connection: asyncpg.Connection, live: str, rebuilt: str, table: str, ignore: set[str]
) -> tuple[TableComparison, list[RowDifference]]:
    live_columns = await _columns(connection, live, table)
    rebuilt_columns = await _columns(connection, rebuilt, table)
    clock_filled = {name for name, default in rebuilt_columns.items() if _clock(default)}
    skipped = (ignore | clock_filled) & (set(live_columns) | set(rebuilt_columns))
    columns = [name for name in rebuilt_columns if name in live_columns and name not in skipped]
    comparison = TableComparison(
        table,
        await _count(connection, live, table),
        await _count(connection, rebuilt, table),
        ignored_columns=tuple(sorted(skipped)),
    )
    if set(live_columns) - skipped != set(rebuilt_columns) - skipped:
        comparison.problem = (
            f"columns differ: live has {sorted(set(live_columns) - set(rebuilt_columns))} "
            f"extra, the rebuild {sorted(set(rebuilt_columns) - set(live_columns))}"
        )
    projected = ", ".join(quote_identifier(name) for name in columns)

    def rows_of(schema: str) -> str:
        qualified = f"{quote_identifier(schema)}.{quote_identifier(table)}"
        return f"SELECT to_jsonb(r) AS row FROM (SELECT {projected} FROM {qualified}) r"

    only_live_sql = f"{rows_of(live)} EXCEPT ALL {rows_of(rebuilt)}"
    only_rebuilt_sql = f"{rows_of(rebuilt)} EXCEPT ALL {rows_of(live)}"
    comparison.only_live = await connection.fetchval(f"SELECT count(*) FROM ({only_live_sql}) d")
    comparison.only_rebuilt = await connection.fetchval(
        f"SELECT count(*) FROM ({only_rebuilt_sql}) d"
    )
    if not comparison.only_live and not comparison.only_rebuilt:
        return comparison, []
    only_live = await _fetch_rows(connection, only_live_sql)
    only_rebuilt = await _fetch_rows(connection, only_rebuilt_sql)
    key = [name for name in await _primary_key(connection, rebuilt, table) if name in columns]
    return comparison, pair_rows(table, key or columns, only_live, only_rebuilt)


def pair_rows(
    table: str, key: list[str], only_live: list[dict], only_rebuilt: list[dict]
) -> list[RowDifference]:
    """Rows on both sides with the same key are one `changed` difference."""

    def key_of(row: dict) -> str:
        return json.dumps([row.get(name) for name in key], sort_keys=True)

    rebuilt_by_key: dict[str, list[dict]] = {}
    for row in only_rebuilt:
        rebuilt_by_key.setdefault(key_of(row), []).append(row)
    differences = []
    for row in only_live:
        matches = rebuilt_by_key.get(key_of(row))
        identity = {name: row.get(name) for name in key}
        if matches:
            differences.append(RowDifference(table, "changed", identity, row, matches.pop(0)))
        else:
            differences.append(RowDifference(table, "missing_in_rebuild", identity, row, None))
    for rows in rebuilt_by_key.values():
        for row in rows:
            identity = {name: row.get(name) for name in key}
            differences.append(RowDifference(table, "missing_in_live", identity, None, row))
    return differences


def render(report: DiffReport) -> list[str]:
    """Human-readable lines, the verdict last."""
    lines = [f"{report.projection} in {report.schema}, both at log sequence {report.position}:"]
    for table in report.tables:
        verdict = "identical"
        if table.problem:
            verdict = table.problem
        elif table.only_live or table.only_rebuilt:
            verdict = f"{table.only_live} rows only live, {table.only_rebuilt} only rebuilt"
        ignored = f" (ignoring {', '.join(table.ignored_columns)})" if table.ignored_columns else ""
        lines.append(
            f"  {table.table}: {table.live_rows} live / {table.rebuilt_rows} rebuilt rows, "
            f"{verdict}{ignored}"
        )
    for difference in report.differences:
        key = ", ".join(f"{k}={v}" for k, v in difference.key.items())
        if difference.kind == "changed":
            lines.append(f"  ~ {difference.table} [{key}]")
            for column in difference.columns:
                live = json.dumps(difference.live.get(column), ensure_ascii=False)
                rebuilt = json.dumps(difference.rebuilt.get(column), ensure_ascii=False)
                lines.append(f"      {column}: live {live} != rebuilt {rebuilt}")
        elif difference.kind == "missing_in_live":
            row = json.dumps(difference.rebuilt, ensure_ascii=False)
            lines.append(f"  + {difference.table} [{key}] missing in live: {row}")
        else:
            row = json.dumps(difference.live, ensure_ascii=False)
            lines.append(f"  - {difference.table} [{key}] not in the log: {row}")
    if report.not_compared:
        lines.append(f"  not compared (not rebuilt by the projection): {report.not_compared}")
    if report.identical:
        lines.append("0 differences: the live projection is exactly the log.")
    else:
        lines.append(f"{report.difference_count} differences.")
    return lines


def _clock(default: str | None) -> bool:
    return bool(default and _CLOCK_DEFAULT.search(default))


async def _columns(connection: asyncpg.Connection, schema: str, table: str) -> dict[str, str]:
    rows = await connection.fetch(
        "SELECT column_name, column_default FROM information_schema.columns"
        " WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position",
        schema,
        table,
    )
    return {row["column_name"]: row["column_default"] for row in rows}


async def _primary_key(connection: asyncpg.Connection, schema: str, table: str) -> list[str]:
    rows = await connection.fetch(
        "SELECT a.attname FROM pg_index i"
        " JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)"
        " WHERE i.indrelid = to_regclass($1) AND i.indisprimary"
        " ORDER BY array_position(i.indkey::int2[], a.attnum)",
        f"{quote_identifier(schema)}.{quote_identifier(table)}",
    )
    return [row["attname"] for row in rows]


async def _count(connection: asyncpg.Connection, schema: str, table: str) -> int:
    return await connection.fetchval(
        f"SELECT count(*) FROM {quote_identifier(schema)}.{quote_identifier(table)}"
    )


async def _fetch_rows(connection: asyncpg.Connection, query: str) -> list[dict]:
    rows = await connection.fetch(f"{query} LIMIT {MAX_ROWS_PER_SIDE}")
    return [json.loads(row["row"]) for row in rows]
