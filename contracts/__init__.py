"""The one definition of every message shared between services."""

from contracts.base import Contract, Event, Identifier
from contracts.envelope import Envelope, PendingEvent, RecordedEvent
from contracts.registry import EVENT_CLASSES, EVENTS_BY_TYPE, EventDecodeError, decode_event
from contracts.subjects import DEFAULT_ROOT, DEFAULT_STREAM, SubjectScheme

__all__ = [
    "DEFAULT_ROOT",
    "DEFAULT_STREAM",
    "EVENTS_BY_TYPE",
    "EVENT_CLASSES",
    "Contract",
    "Envelope",
    "Event",
    "EventDecodeError",
    "Identifier",
    "PendingEvent",
    "RecordedEvent",
    "SubjectScheme",
    "decode_event",
]
