"""The one list of event types, and the decoder: upcast, then validate through one union."""

from __future__ import annotations

from typing import Annotated, Any, Union

from pydantic import Field, TypeAdapter, ValidationError

from contracts.base import Event
from contracts.matching import CandidatesProposed
from contracts.projects import (
    InvitationAccepted,
    InvitationDeclined,
    InvitationExpired,
    PartnerInvited,
    PartnerWithdrawn,
    ProductionStarted,
    ProgressNoted,
    ProjectCancelled,
    ProjectDelivered,
    ProjectProposed,
    ProjectStaffed,
)
from contracts.upcasters import UpcastError, upcast
from contracts.workspaces import (
    MemberCapabilitiesDeclared,
    MemberCapacityChanged,
    MemberJoined,
    WorkspaceRegistered,
)

EVENT_CLASSES: tuple[type[Event], ...] = (
    WorkspaceRegistered,
    MemberJoined,
    MemberCapabilitiesDeclared,
    MemberCapacityChanged,
    ProjectProposed,
    PartnerInvited,
    InvitationAccepted,
    InvitationDeclined,
    InvitationExpired,
    PartnerWithdrawn,
    ProjectStaffed,
    ProductionStarted,
    ProgressNoted,
    ProjectDelivered,
    ProjectCancelled,
    CandidatesProposed,
)

EVENTS_BY_TYPE: dict[str, type[Event]] = {cls.event_type(): cls for cls in EVENT_CLASSES}

AnyEvent = Annotated[Union[tuple(EVENT_CLASSES)], Field(discriminator="type")]  # noqa: UP007
_ANY_EVENT = TypeAdapter(AnyEvent)


class EventDecodeError(ValueError):
    """A stored or received event that cannot become a current contract model."""

    def __init__(self, reason: str, event_type: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.event_type = event_type


def describe_validation_error(error: ValidationError, skip: int = 0) -> str:
    """`field.path: reason; ...` — `skip` drops leading location parts (a union's tag)."""
    problems = []
    for item in error.errors(include_url=False):
        location = ".".join(str(part) for part in item["loc"][skip:]) or "(root)"
        problems.append(f"{location}: {item['msg']}")
    return "; ".join(problems)


def decode_event(event_type: str, schema_version: int, data: Any) -> Event:
    cls = EVENTS_BY_TYPE.get(event_type)
    if cls is None:
        raise EventDecodeError(f"unknown event type {event_type!r}", event_type)
    if not isinstance(data, dict):
        raise EventDecodeError(f"{event_type}: data must be an object", event_type)
    current = cls.schema_version
    if not isinstance(schema_version, int) or schema_version < 1:
        raise EventDecodeError(f"{event_type}: invalid schema_version {schema_version!r}")
    if schema_version > current:
        raise EventDecodeError(
            f"{event_type} schema_version {schema_version} is newer than this code knows "
            f"(v{current}); upgrade the reader",
            event_type,
        )
    try:
        data = upcast(event_type, schema_version, current, data)
    except UpcastError as error:
        raise EventDecodeError(str(error), event_type) from error
    if "type" in data:
        raise EventDecodeError(f"{event_type}: data must not carry its own 'type'", event_type)
    try:
        return _ANY_EVENT.validate_python({"type": event_type, **data})
    except ValidationError as error:
        raise EventDecodeError(
            f"{event_type} v{schema_version}: {describe_validation_error(error, skip=1)}",
            event_type,
        ) from error
