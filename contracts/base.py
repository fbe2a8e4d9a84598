"""Base classes every message derives from: frozen, strict, pinned names."""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import BaseModel, ConfigDict, StringConstraints

# Ids end up as NATS subject tokens: no dots, spaces or wildcards.
Identifier = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$", strip_whitespace=False)
]


class Contract(BaseModel):
    """A message shape shared between services: immutable, unknown fields rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class Event(Contract):
    """A past-tense fact. Subclasses pin `type` (a Literal field) and `schema_version`.

    `type` is "<aggregate>.<name>", e.g. "project.proposed"; it is never derived from the
    class or module name, so code can move without breaking the log.
    """

    type: str
    schema_version: ClassVar[int] = 1

    @classmethod
    def event_type(cls) -> str:
        return _names_of(cls)[0]

    @classmethod
    def aggregate(cls) -> str:
        return _names_of(cls)[1]

    @classmethod
    def event_name(cls) -> str:
        return _names_of(cls)[2]

    def data(self) -> dict:
        """The payload as JSON-ready data, without the pinned type."""
        return self.model_dump(mode="json", exclude={"type"}, by_alias=True)


# (type, aggregate, name) per event class: asked for on every append and read.
_NAMES: dict[type, tuple[str, str, str]] = {}


def _names_of(cls: type[Event]) -> tuple[str, str, str]:
    try:
        return _NAMES[cls]
    except KeyError:
        event_type = cls.model_fields["type"].default
        aggregate, _, name = event_type.partition(".")
        return _NAMES.setdefault(cls, (event_type, aggregate, name))
