"""`mf status`: every projection and durable consumer, its checkpoint, lag and health.

Projections are found in PostgreSQL (every schema with a `projection_checkpoints` table,
under the configured schema prefix); durable JetStream consumers on the event stream. Lag is
counted in events (those matching the consumer's subject filter, exactly) and in seconds
(the age of the oldest event not yet processed). A consumer is stuck when two samples taken
`interval` seconds apart show lag and no progress.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import asyncpg

from infra.eventstore import EventStore
from infra.postgres import quote_identifier
from infra.rebuild import SHADOW_SUFFIX
from services.ops.positions import pending_after


@dataclass(frozen=True, slots=True)
class ConsumerState:
    kind: Literal["projection", "consumer"]
    location: str  # the schema, or the stream
    name: str
    version: int | None
    position: int  # checkpoint (projection) or ack floor (consumer)
    lag_events: int
    lag_seconds: float
    parked: int | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None
    updated_at: datetime | None = None
    note: str = ""  # "rebuilding", "superseded by version 2", ...

    @property
    def key(self) -> tuple:
        return (self.kind, self.location, self.name, self.version)

    @property
    def label(self) -> str:
        version = f" v{self.version}" if self.version is not None else ""
        return f"{self.location}/{self.name}{version}"

    @property
    def watched(self) -> bool:
        """Whether it should make progress (a rebuild or an old version need not)."""
        return not self.note


@dataclass(frozen=True, slots=True)
class StatusReport:
    head: int
    states: list[ConsumerState]
    stuck: list[ConsumerState]

    @property
    def healthy(self) -> bool:
        return not self.stuck


async def sample(
    store: EventStore, pool: asyncpg.Pool, *, schema_prefix: str = ""
) -> list[ConsumerState]:
    now = datetime.now(UTC)
    states = await _projections(store, pool, schema_prefix, now)
    states.extend(await _consumers(store, now))
    return states


def find_stuck(first: list[ConsumerState], second: list[ConsumerState]) -> list[ConsumerState]:
    """Lag in both samples and the same position: no progress while there is work."""
    before = {state.key: state for state in first}
    stuck = []
    for state in second:
        earlier = before.get(state.key)
        if earlier is None or not state.watched:
            continue
        if earlier.lag_events > 0 and state.lag_events > 0 and state.position <= earlier.position:
            stuck.append(state)
    return stuck


async def status(
    store: EventStore, pool: asyncpg.Pool, *, schema_prefix: str = "", interval: float = 2.0
) -> StatusReport:
    first = await sample(store, pool, schema_prefix=schema_prefix)
    await asyncio.sleep(interval)
    second = await sample(store, pool, schema_prefix=schema_prefix)
    return StatusReport(await store.last_sequence(), second, find_stuck(first, second))


def render(report: StatusReport) -> list[str]:
    stuck = {state.key for state in report.stuck}
    lines = [f"log head: sequence {report.head}"]
    header = (
        f"{'':2}{'projection / consumer':<52} {'position':>9} {'lag':>7} {'lag s':>8} {'parked':>6}"
    )
    lines.append(header)
    for state in sorted(report.states, key=lambda s: (s.kind, s.label)):
        flag = "!!" if state.key in stuck else "  "
        parked = "-" if state.parked is None else str(state.parked)
        line = (
            f"{flag}{state.label:<52} {state.position:>9} {state.lag_events:>7} "
            f"{state.lag_seconds:>8.1f} {parked:>6}"
        )
        if state.note:
            line += f"  ({state.note})"
        if state.last_error:
            line += f"  last error {state.last_error_at:%H:%M:%S}: {state.last_error[:120]}"
        lines.append(line)
    if report.stuck:
        names = ", ".join(state.label for state in report.stuck)
        lines.append(f"STUCK (lag and no progress): {names}")
    else:
        lines.append("all consumers are making progress or caught up")
    return lines


def document(report: StatusReport) -> dict:
    stuck = {state.key for state in report.stuck}
    return {
        "head": report.head,
        "healthy": report.healthy,
        "consumers": [
            {
                "kind": s.kind,
                "location": s.location,
                "name": s.name,
                "version": s.version,
                "position": s.position,
                "lag_events": s.lag_events,
                "lag_seconds": round(s.lag_seconds, 3),
                "parked": s.parked,
                "last_error": s.last_error,
                "last_error_at": s.last_error_at.isoformat() if s.last_error_at else None,
                "updated_at": s.updated_at.isoformat() if s.updated_at else None,
                "note": s.note,
                "stuck": s.key in stuck,
            }
            for s in report.states
        ],
    }


# -- sources ---------------------------------------------------------------------------------


async def projection_schemas(connection: asyncpg.Connection, schema_prefix: str) -> list[str]:
    rows = await connection.fetch(
        "SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relname = 'projection_checkpoints' AND c.relkind = 'r'"
        " AND starts_with(n.nspname, $1) ORDER BY n.nspname",
        schema_prefix,
    )
    return [row["nspname"] for row in rows]


async def _projections(
    store: EventStore, pool: asyncpg.Pool, schema_prefix: str, now: datetime
) -> list[ConsumerState]:
    states = []
    async with pool.acquire() as connection:
        for schema in await projection_schemas(connection, schema_prefix):
            quoted = quote_identifier(schema)
            try:
                rows = await connection.fetch(
                    f"SELECT c.*, (SELECT count(*) FROM {quoted}.parked_events p"
                    " WHERE p.projection = c.projection AND p.version = c.version) AS parked,"
                    " max(c.version) OVER (PARTITION BY c.projection) AS newest"
                    f" FROM {quoted}.projection_checkpoints c"
                )
            except asyncpg.UndefinedTableError:  # swapped or dropped meanwhile
                continue
            for row in rows:
                note = ""
                if schema.endswith(SHADOW_SUFFIX):
                    note = "rebuilding"
                elif row["version"] < row["newest"]:
                    note = f"superseded by version {row['newest']}"
                pending = await pending_after(store, row["last_seq"], row.get("subject_filter"))
                states.append(
                    ConsumerState(
                        kind="projection",
                        location=schema,
                        name=row["projection"],
                        version=row["version"],
                        position=row["last_seq"],
                        lag_events=pending.events,
                        lag_seconds=pending.age(now),
                        parked=row["parked"],
                        last_error=row["last_error"],
                        last_error_at=row["last_error_at"],
                        updated_at=row["updated_at"],
                        note=note,
                    )
                )
    return states


async def _consumers(store: EventStore, now: datetime) -> list[ConsumerState]:
    """Durable JetStream consumers of the event stream (services using faststream)."""
    client, stream = getattr(store, "client", None), getattr(store, "stream", None)
    if client is None or not isinstance(stream, str):
        return []
    states, offset = [], 0
    while True:
        reply = await client.request(
            f"$JS.API.CONSUMER.LIST.{stream}", json.dumps({"offset": offset}).encode(), timeout=5
        )
        page = json.loads(reply.data)
        consumers = page.get("consumers") or []
        for info in consumers:
            config = info.get("config", {})
            durable = config.get("durable_name")
            if not durable:
                continue  # ordered/ephemeral readers (projection runners, tails)
            floor = info.get("ack_floor", {}).get("stream_seq", 0)
            filters = config.get("filter_subjects") or [config.get("filter_subject") or None]
            pending = await pending_after(store, floor, filters[0] if len(filters) == 1 else None)
            lag = info.get("num_pending", 0) + info.get("num_ack_pending", 0)
            states.append(
                ConsumerState(
                    kind="consumer",
                    location=stream,
                    name=durable,
                    version=None,
                    position=floor,
                    lag_events=lag,
                    lag_seconds=pending.age(now) if lag else 0.0,
                    note="paused" if info.get("paused") else "",
                )
            )
        offset += len(consumers)
        if not consumers or offset >= page.get("total", 0):
            return states
