"""Value objects shared by several events, named after Valueflows where it has a term."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, StringConstraints

from contracts.base import Contract

CapabilityId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$", max_length=64)]
LanguageCode = Annotated[str, StringConstraints(pattern=r"^[a-z]{2,3}$")]
CountryCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]
LongText = Annotated[str, StringConstraints(max_length=5000)]


def _require_timezone(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("must include a timezone offset, e.g. 2026-12-01T17:00:00Z")
    return value.astimezone(UTC)


AwareDatetime = Annotated[datetime, AfterValidator(_require_timezone)]


class SpatialThing(Contract):
    """A place (Valueflows `SpatialThing`)."""

    lat: float = Field(ge=-90, le=90)
    long: float = Field(ge=-180, le=180)
    mappableAddress: str | None = Field(default=None, max_length=300)


class Measure(Contract):
    """A quantity with its unit (Valueflows `Measure`)."""

    hasNumericalValue: float = Field(gt=0, le=100_000)
    hasUnit: Literal["hour"] = "hour"


MemberKind = Literal["company", "artisan", "professional", "collective"]


class CapabilityLevel(Contract):
    """A capability (Valueflows `ResourceSpecification`) a member has, at a level 1..5."""

    capability: CapabilityId
    level: int = Field(ge=1, le=5)
