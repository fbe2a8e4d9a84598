"""A small real projection for runner tests: one row per applied event, no unique key,
so an event applied twice would show up as two rows."""

from __future__ import annotations

import asyncio

import asyncpg

from contracts.envelope import RecordedEvent


class LedgerProjection:
    name = "ledger"
    version = 1
    subject_filter = None

    def __init__(self, *, delay_per_event: float = 0.0, refuse_note: str | None = None) -> None:
        self.delay_per_event = delay_per_event
        self.refuse_note = refuse_note
        self.committed: list[set[str]] = []
        self.on_apply = None

    async def setup(self, connection: asyncpg.Connection) -> None:
        await connection.execute(
            "CREATE TABLE IF NOT EXISTS ledger ("
            " sequence bigint NOT NULL, event_id text NOT NULL, type text NOT NULL)"
        )

    async def apply(self, connection: asyncpg.Connection, events: list[RecordedEvent]):
        for event in events:
            if self.refuse_note and getattr(event.event, "note", None) == self.refuse_note:
                raise ValueError(f"note {self.refuse_note!r} is not acceptable")
            await connection.execute(
                "INSERT INTO ledger (sequence, event_id, type) VALUES ($1, $2, $3)",
                event.sequence,
                event.event_id,
                event.type,
            )
            if self.on_apply:
                self.on_apply(event.sequence)
            if self.delay_per_event:
                await asyncio.sleep(self.delay_per_event)
        return {event.envelope.aggregate_id for event in events}

    async def after_commit(self, changed: set[str]) -> None:
        self.committed.append(changed)
