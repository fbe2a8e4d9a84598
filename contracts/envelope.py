"""The envelope: metadata of every event, kept out of the payload."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import Field

from contracts.base import Contract, Event, Identifier


class Envelope(Contract):
    event_id: str = Field(min_length=1, max_length=64)
    type: str
    schema_version: int = Field(ge=1)
    aggregate: str
    aggregate_id: Identifier
    occurred_at: datetime
    actor: str = Field(min_length=1, max_length=128)
    # Valueflows `inScopeOf`: the workspaces allowed to see this event.
    workspace_scope: tuple[str, ...] = ()
    correlation_id: str = Field(min_length=1, max_length=64)
    causation_id: str | None = None
    traceparent: str | None = None

    @classmethod
    def of(cls, values: dict[str, Any]) -> Envelope:
        """`Envelope(**values)`, validated the same way, ~1 µs cheaper (no keyword-argument
        plumbing): for writers, which build one per event they append."""
        return cls.__pydantic_validator__.validate_python(values)


@dataclass(frozen=True, slots=True)
class PendingEvent:
    """An event on its way into the log: its envelope and its payload."""

    envelope: Envelope
    event: Event


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    """An event as read back from the log; sequence and time come from the log itself."""

    sequence: int
    recorded_at: datetime
    subject: str
    envelope: Envelope
    event: Event

    @property
    def type(self) -> str:
        return self.envelope.type

    @property
    def event_id(self) -> str:
        return self.envelope.event_id
