"""Events of workspaces (the multifactories) and of their members."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from contracts.base import Contract, Event, Identifier
from contracts.values import (
    CapabilityLevel,
    CountryCode,
    LanguageCode,
    LongText,
    Measure,
    MemberKind,
    ShortText,
    SpatialThing,
)


class WorkspaceProfile(Contract):
    """A workspace (a multifactory) as it presents itself to the network."""

    workspace_id: Identifier
    name: ShortText
    city: ShortText
    country: CountryCode
    location: SpatialThing
    languages: tuple[LanguageCode, ...] = Field(min_length=1)
    timezone: ShortText


class WorkspaceRegistered(WorkspaceProfile, Event):
    type: Literal["workspace.registered"] = "workspace.registered"


class MemberProfile(Contract):
    """A member (company, artisan, professional, collective): who they are, what they do."""

    name: ShortText
    kind: MemberKind
    capabilities: tuple[CapabilityLevel, ...] = Field(min_length=1)
    equipment: tuple[ShortText, ...] = ()
    weekly_capacity: Measure
    languages: tuple[LanguageCode, ...] = Field(min_length=1)
    presentation: LongText = ""


class MemberJoined(MemberProfile, Event):
    """A member joined a workspace.

    Version 2 gives every capability a level; version 1 listed bare capability ids
    (see contracts.upcasters).
    """

    type: Literal["member.joined"] = "member.joined"
    schema_version: ClassVar[int] = 2
    member_id: Identifier
    workspace_id: Identifier


class MemberCapabilitiesDeclared(Event):
    """The member's full, current list of capabilities and equipment (replaces the old one)."""

    type: Literal["member.capabilities_declared"] = "member.capabilities_declared"
    member_id: Identifier
    workspace_id: Identifier
    capabilities: tuple[CapabilityLevel, ...] = Field(min_length=1)
    equipment: tuple[ShortText, ...] = ()


class MemberCapacityChanged(Event):
    type: Literal["member.capacity_changed"] = "member.capacity_changed"
    member_id: Identifier
    workspace_id: Identifier
    weekly_capacity: Measure
