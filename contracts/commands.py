"""What clients send: the bodies of command requests, validated at the edge.

Ids of new things, the actor and the time are added by the service, never taken from here.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from contracts.base import Contract, Identifier
from contracts.projects import RoleSpec
from contracts.values import (
    AwareDatetime,
    CapabilityLevel,
    CountryCode,
    LanguageCode,
    LongText,
    Measure,
    MemberKind,
    ShortText,
    SpatialThing,
)


class RegisterWorkspace(Contract):
    workspace_id: Identifier
    name: ShortText
    city: ShortText
    country: CountryCode
    location: SpatialThing
    languages: tuple[LanguageCode, ...] = Field(min_length=1)
    timezone: ShortText


class JoinWorkspace(Contract):
    member_id: Identifier | None = None  # generated when absent
    name: ShortText
    kind: MemberKind
    capabilities: tuple[CapabilityLevel, ...] = Field(min_length=1)
    equipment: tuple[ShortText, ...] = ()
    weekly_capacity: Measure
    languages: tuple[LanguageCode, ...] = Field(min_length=1)
    presentation: LongText = ""


class DeclareCapabilities(Contract):
    capabilities: tuple[CapabilityLevel, ...] = Field(min_length=1)
    equipment: tuple[ShortText, ...] = ()


class ChangeCapacity(Contract):
    weekly_capacity: Measure


class ProposeProject(Contract):
    title: ShortText
    description: LongText = ""
    deliverable: ShortText
    delivery_location: SpatialThing
    due: AwareDatetime
    roles: tuple[RoleSpec, ...] = Field(min_length=1, max_length=50)
    open_call: bool = True

    @model_validator(mode="after")
    def _unique_role_ids(self) -> ProposeProject:
        ids = [role.role_id for role in self.roles]
        if len(ids) != len(set(ids)):
            raise ValueError("role_id values must be unique within a project")
        return self


class InvitePartner(Contract):
    role_id: Identifier
    member_id: Identifier
    expires_at: AwareDatetime | None = None  # default: 7 days
    message: LongText = ""


class InviteFromProposal(Contract):
    """Invite the candidate ranked `rank` (default: the best) in the latest proposal."""

    role_id: Identifier
    rank: int = Field(default=1, ge=1)
    expires_at: AwareDatetime | None = None
    message: LongText = ""


class DeclineInvitation(Contract):
    reason: LongText = ""


class WithdrawPartner(Contract):
    role_id: Identifier
    reason: LongText = ""


class Note(Contract):
    note: LongText = ""


class ProgressNote(Contract):
    note: LongText = Field(min_length=1)


class CancelProject(Contract):
    reason: ShortText
