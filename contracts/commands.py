"""What clients send: the bodies of command requests, validated at the edge.

Ids of new things, the actor and the time are added by the service, never taken from here.
"""

from __future__ import annotations

from pydantic import Field

from contracts.base import Contract, Identifier
from contracts.projects import ProjectTerms
from contracts.values import (
    AwareDatetime,
    CapabilityLevel,
    LongText,
    Measure,
    ShortText,
)
from contracts.workspaces import MemberProfile, WorkspaceProfile


class RegisterWorkspace(WorkspaceProfile):
    """Register a workspace in the network (ops)."""


class JoinWorkspace(MemberProfile):
    member_id: Identifier | None = None  # generated when absent


class DeclareCapabilities(Contract):
    capabilities: tuple[CapabilityLevel, ...] = Field(min_length=1)
    equipment: tuple[ShortText, ...] = ()


class ChangeCapacity(Contract):
    weekly_capacity: Measure


class ProposeProject(ProjectTerms):
    """Propose a joint project; the coordinator is whoever's token sends it."""


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
