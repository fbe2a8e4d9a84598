"""A projection with a bulk path for rebuilds: events per aggregate, upserted row by row when
live and with COPY (copy_upsert) when rebuilding; both must give the same table."""

from __future__ import annotations

from collections import Counter

import asyncpg

from contracts.envelope import RecordedEvent
from infra.rebuild import copy_upsert


class CountsProjection:
    name = "counts"
    version = 1
    subject_filter = None

    def __init__(self) -> None:
        self.single_batches = 0
        self.bulk_batches = 0

    async def setup(self, connection: asyncpg.Connection) -> None:
        await connection.execute(
            "CREATE TABLE IF NOT EXISTS counts (aggregate text, aggregate_id text,"
            " events integer NOT NULL, last_seq bigint NOT NULL,"
            " PRIMARY KEY (aggregate, aggregate_id))"
        )

    async def apply(self, connection: asyncpg.Connection, events: list[RecordedEvent]):
        self.single_batches += 1
        await connection.executemany(
            "INSERT INTO counts VALUES ($1, $2, 1, $3) ON CONFLICT (aggregate, aggregate_id)"
            " DO UPDATE SET events = counts.events + 1, last_seq = excluded.last_seq",
            [(e.envelope.aggregate, e.envelope.aggregate_id, e.sequence) for e in events],
        )

    async def apply_bulk(self, connection: asyncpg.Connection, events: list[RecordedEvent]):
        self.bulk_batches += 1
        added = Counter((e.envelope.aggregate, e.envelope.aggregate_id) for e in events)
        last = {(e.envelope.aggregate, e.envelope.aggregate_id): e.sequence for e in events}
        existing = {
            (row["aggregate"], row["aggregate_id"]): row["events"]
            for row in await connection.fetch("SELECT aggregate, aggregate_id, events FROM counts")
        }
        await copy_upsert(
            connection,
            "counts",
            ("aggregate", "aggregate_id", "events", "last_seq"),
            [(*key, existing.get(key, 0) + n, last[key]) for key, n in added.items()],
            key=("aggregate", "aggregate_id"),
            update=("events", "last_seq"),
        )

    async def after_commit(self, changed: set[str]) -> None:
        return None
