"""Events of joint projects: proposed -> staffed -> producing -> delivered (or cancelled)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from contracts.base import Contract, Event, Identifier
from contracts.values import (
    AwareDatetime,
    CapabilityId,
    LanguageCode,
    LongText,
    Measure,
    ShortText,
    SpatialThing,
)


class RoleSpec(Contract):
    """A role the project needs (Valueflows `Intent`): a capability, an effort, seats."""

    role_id: Identifier
    capability: CapabilityId
    effortQuantity: Measure
    seats: int = Field(default=1, ge=1, le=50)
    max_distance_km: float | None = Field(default=None, gt=0)
    required_language: LanguageCode | None = None


class Seat(Contract):
    """An accepted engagement (Valueflows `Commitment`) in a staffed team."""

    role_id: Identifier
    member_id: Identifier
    workspace_id: Identifier


class ProjectTerms(Contract):
    """What is to be made, where and by when, and the roles it needs: the coordinator's
    proposal (contracts.commands.ProposeProject) and, with ids, the event below."""

    title: ShortText
    description: LongText = ""
    deliverable: ShortText
    delivery_location: SpatialThing
    due: AwareDatetime
    roles: tuple[RoleSpec, ...] = Field(min_length=1, max_length=50)
    # Open calls are listed network-wide so any workspace can see and answer them.
    open_call: bool = True

    @model_validator(mode="after")
    def _unique_role_ids(self) -> ProjectTerms:
        ids = [role.role_id for role in self.roles]
        if len(ids) != len(set(ids)):
            raise ValueError("role_id values must be unique within a project")
        return self


class ProjectProposed(ProjectTerms, Event):
    type: Literal["project.proposed"] = "project.proposed"
    project_id: Identifier
    coordinator_member_id: Identifier
    coordinator_workspace_id: Identifier


class PartnerInvited(Event):
    type: Literal["project.partner_invited"] = "project.partner_invited"
    project_id: Identifier
    invitation_id: Identifier
    role_id: Identifier
    member_id: Identifier
    member_workspace_id: Identifier
    expires_at: AwareDatetime | None = None
    message: LongText = ""


class InvitationAccepted(Event):
    type: Literal["project.invitation_accepted"] = "project.invitation_accepted"
    project_id: Identifier
    invitation_id: Identifier
    role_id: Identifier
    member_id: Identifier
    member_workspace_id: Identifier


class InvitationDeclined(Event):
    type: Literal["project.invitation_declined"] = "project.invitation_declined"
    project_id: Identifier
    invitation_id: Identifier
    role_id: Identifier
    member_id: Identifier
    member_workspace_id: Identifier
    reason: LongText = ""


class InvitationExpired(Event):
    type: Literal["project.invitation_expired"] = "project.invitation_expired"
    project_id: Identifier
    invitation_id: Identifier
    role_id: Identifier
    member_id: Identifier
    member_workspace_id: Identifier


class PartnerWithdrawn(Event):
    type: Literal["project.partner_withdrawn"] = "project.partner_withdrawn"
    project_id: Identifier
    role_id: Identifier
    member_id: Identifier
    member_workspace_id: Identifier
    reason: LongText = ""


class ProjectStaffed(Event):
    type: Literal["project.staffed"] = "project.staffed"
    project_id: Identifier
    team: tuple[Seat, ...] = Field(min_length=1)


class ProductionStarted(Event):
    type: Literal["project.production_started"] = "project.production_started"
    project_id: Identifier
    note: LongText = ""


class ProgressNoted(Event):
    type: Literal["project.progress_noted"] = "project.progress_noted"
    project_id: Identifier
    note: LongText = Field(min_length=1)


class ProjectDelivered(Event):
    type: Literal["project.delivered"] = "project.delivered"
    project_id: Identifier
    note: LongText = ""


class ProjectCancelled(Event):
    type: Literal["project.cancelled"] = "project.cancelled"
    project_id: Identifier
    reason: ShortText
