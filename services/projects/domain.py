"""Workspaces, members and joint projects: `decide` (command -> events) and `evolve`
(state + event -> state). Pure: no I/O, no clock, no ids — they arrive with the command.

Project lifecycle:

    new ─propose─► proposed ─last seat accepted─► staffed ─start─► producing ─deliver─► delivered
                      ▲                              │
                      └────── a partner withdraws ───┘
    proposed | staffed | producing ─cancel─► cancelled
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from functools import reduce
from typing import Literal

from contracts import commands as requests
from contracts.base import Event
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
    RoleSpec,
    Seat,
)
from contracts.values import CapabilityLevel, Measure
from contracts.workspaces import (
    MemberCapabilitiesDeclared,
    MemberCapacityChanged,
    MemberJoined,
    WorkspaceRegistered,
)

Status = Literal["new", "proposed", "staffed", "producing", "delivered", "cancelled"]
InvitationStatus = Literal["pending", "accepted", "declined", "expired", "withdrawn"]


# -- errors: each names the rule that was broken -------------------------------------------


class DomainError(Exception):
    """A command that the rules refuse. `rule` is a stable, machine-readable name."""

    rule = "domain_rule"


class NotFoundError(DomainError):
    rule = "not_found"


class NotAllowedError(DomainError):
    rule = "not_allowed"


class AlreadyExistsError(DomainError):
    rule = "already_exists"


class IllegalTransitionError(DomainError):
    rule = "illegal_transition"


class InvalidCommandError(DomainError):
    rule = "invalid_command"


class RoleFullError(DomainError):
    rule = "role_full"


class AlreadyInvitedError(DomainError):
    rule = "already_invited"


class InvitationNotPendingError(DomainError):
    rule = "invitation_not_pending"


class InvitationExpiredError(DomainError):
    rule = "invitation_expired"


class NotAPartnerError(DomainError):
    rule = "not_a_partner"


# -- who acts --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Actor:
    workspace_id: str
    role: Literal["coordinator", "member", "ops", "system"]
    member_id: str | None = None


SYSTEM = Actor(workspace_id="system", role="system")


# -- workspaces and members ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Workspace:
    workspace_id: str = ""
    registered: bool = False
    name: str = ""


@dataclass(frozen=True, slots=True)
class Member:
    member_id: str = ""
    workspace_id: str = ""
    joined: bool = False
    name: str = ""
    capabilities: tuple[CapabilityLevel, ...] = ()
    weekly_capacity: Measure | None = None


@dataclass(frozen=True, slots=True)
class RegisterWorkspace:
    details: requests.RegisterWorkspace


@dataclass(frozen=True, slots=True)
class JoinWorkspace:
    member_id: str
    workspace: Workspace
    details: requests.JoinWorkspace


@dataclass(frozen=True, slots=True)
class DeclareCapabilities:
    details: requests.DeclareCapabilities


@dataclass(frozen=True, slots=True)
class ChangeCapacity:
    details: requests.ChangeCapacity


def decide_workspace(state: Workspace, command: RegisterWorkspace, actor: Actor) -> list[Event]:
    if actor.role != "ops":
        raise NotAllowedError("only ops can register a workspace")
    if state.registered:
        raise AlreadyExistsError(f"workspace {state.workspace_id} is already registered")
    return [WorkspaceRegistered(**command.details.model_dump())]


def evolve_workspace(state: Workspace, event: Event) -> Workspace:
    if isinstance(event, WorkspaceRegistered):
        return Workspace(event.workspace_id, True, event.name)
    return state


def decide_member(
    state: Member, command: JoinWorkspace | DeclareCapabilities | ChangeCapacity, actor: Actor
) -> list[Event]:
    if isinstance(command, JoinWorkspace):
        if state.joined:
            raise AlreadyExistsError(f"member {state.member_id} already exists")
        if not command.workspace.registered:
            raise NotFoundError(f"workspace {command.workspace.workspace_id} is not registered")
        workspace_id = command.workspace.workspace_id
        if not (actor.role == "ops" or _coordinates(actor, workspace_id)):
            raise NotAllowedError(f"only coordinators of {workspace_id} can add its members")
        fields = command.details.model_dump(exclude={"member_id"})
        return [MemberJoined(member_id=command.member_id, workspace_id=workspace_id, **fields)]
    if not state.joined:
        raise NotFoundError(f"member {state.member_id} does not exist")
    if not (actor.member_id == state.member_id or _coordinates(actor, state.workspace_id)):
        raise NotAllowedError("members change only their own profile (or their coordinators)")
    ids = {"member_id": state.member_id, "workspace_id": state.workspace_id}
    if isinstance(command, DeclareCapabilities):
        return [MemberCapabilitiesDeclared(**ids, **command.details.model_dump())]
    return [MemberCapacityChanged(**ids, weekly_capacity=command.details.weekly_capacity)]


def evolve_member(state: Member, event: Event) -> Member:
    if isinstance(event, MemberJoined):
        return Member(
            event.member_id,
            event.workspace_id,
            True,
            event.name,
            event.capabilities,
            event.weekly_capacity,
        )
    if isinstance(event, MemberCapabilitiesDeclared):
        return replace(state, capabilities=event.capabilities)
    if isinstance(event, MemberCapacityChanged):
        return replace(state, weekly_capacity=event.weekly_capacity)
    return state


def _coordinates(actor: Actor, workspace_id: str) -> bool:
    return actor.role == "coordinator" and actor.workspace_id == workspace_id


# -- joint projects --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Invitation:
    invitation_id: str
    role_id: str
    member_id: str
    workspace_id: str
    expires_at: datetime | None
    status: InvitationStatus = "pending"


@dataclass(frozen=True, slots=True)
class Project:
    project_id: str = ""
    status: Status = "new"
    coordinator_member_id: str = ""
    coordinator_workspace_id: str = ""
    title: str = ""
    due: datetime | None = None
    open_call: bool = True
    roles: tuple[RoleSpec, ...] = ()
    invitations: tuple[Invitation, ...] = ()

    def role(self, role_id: str) -> RoleSpec:
        for role in self.roles:
            if role.role_id == role_id:
                return role
        known = ", ".join(role.role_id for role in self.roles)
        raise InvalidCommandError(f"project has no role {role_id!r} (roles: {known})")

    def invitation(self, invitation_id: str) -> Invitation:
        for invitation in self.invitations:
            if invitation.invitation_id == invitation_id:
                return invitation
        raise NotFoundError(f"project {self.project_id} has no invitation {invitation_id}")

    def holding(self, role_id: str, *statuses: InvitationStatus) -> list[Invitation]:
        return [i for i in self.invitations if i.role_id == role_id and i.status in statuses]

    def open_seats(self, role_id: str) -> int:
        return self.role(role_id).seats - len(self.holding(role_id, "accepted"))

    @property
    def fully_staffed(self) -> bool:
        return all(self.open_seats(role.role_id) == 0 for role in self.roles)

    @property
    def team(self) -> tuple[Seat, ...]:
        return tuple(
            Seat(role_id=i.role_id, member_id=i.member_id, workspace_id=i.workspace_id)
            for i in self.invitations
            if i.status == "accepted"
        )

    @property
    def workspace_scope(self) -> tuple[str, ...]:
        """`inScopeOf`: the coordinator's workspace and every workspace ever invited."""
        invited = {invitation.workspace_id for invitation in self.invitations}
        return tuple(sorted({self.coordinator_workspace_id, *invited} - {""}))


@dataclass(frozen=True, slots=True)
class Propose:
    project_id: str
    details: requests.ProposeProject


@dataclass(frozen=True, slots=True)
class Invite:
    invitation_id: str
    role_id: str
    invitee: Member
    expires_at: datetime
    message: str = ""


@dataclass(frozen=True, slots=True)
class Accept:
    invitation_id: str


@dataclass(frozen=True, slots=True)
class Decline:
    invitation_id: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Expire:
    invitation_id: str


@dataclass(frozen=True, slots=True)
class Withdraw:
    role_id: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class StartProduction:
    note: str = ""


@dataclass(frozen=True, slots=True)
class RecordProgress:
    note: str


@dataclass(frozen=True, slots=True)
class Deliver:
    note: str = ""


@dataclass(frozen=True, slots=True)
class Cancel:
    reason: str


ProjectCommand = (
    Propose
    | Invite
    | Accept
    | Decline
    | Expire
    | Withdraw
    | StartProduction
    | RecordProgress
    | Deliver
    | Cancel
)

# The lifecycle in one table: in which states each command may be given.
ALLOWED_IN: dict[type, frozenset[Status]] = {
    Propose: frozenset({"new"}),
    Invite: frozenset({"proposed"}),
    Accept: frozenset({"proposed"}),
    Decline: frozenset({"proposed", "staffed"}),
    # Expiry concerns the invitation, not the project's phase: leftovers expire at any time.
    Expire: frozenset({"proposed", "staffed", "producing", "delivered", "cancelled"}),
    Withdraw: frozenset({"proposed", "staffed"}),
    StartProduction: frozenset({"staffed"}),
    RecordProgress: frozenset({"staffed", "producing"}),
    Deliver: frozenset({"producing"}),
    Cancel: frozenset({"proposed", "staffed", "producing"}),
}

# ... and the state each event leads to (events not listed keep the state).
STATUS_AFTER: dict[type, Status] = {
    ProjectProposed: "proposed",
    ProjectStaffed: "staffed",
    PartnerWithdrawn: "proposed",
    ProductionStarted: "producing",
    ProjectDelivered: "delivered",
    ProjectCancelled: "cancelled",
}


def decide_project(
    state: Project, command: ProjectCommand, actor: Actor, now: datetime
) -> list[Event]:
    allowed = ALLOWED_IN[type(command)]
    if state.status not in allowed:
        if state.status == "new":
            raise NotFoundError(f"project {state.project_id} does not exist")
        raise IllegalTransitionError(
            f"cannot {_verb(command)}: project is {state.status} "
            f"(allowed when {' or '.join(sorted(allowed))})"
        )
    match command:
        case Propose():
            return _propose(command, actor, now)
        case Invite():
            return _invite(state, command, actor, now)
        case Accept():
            return _accept(state, command, actor, now)
        case Decline():
            invitation = _pending_invitation_of(state, command.invitation_id, actor)
            return [InvitationDeclined(**_invitation_ids(state, invitation), reason=command.reason)]
        case Expire():
            return _expire(state, command, actor, now)
        case Withdraw():
            return _withdraw(state, command, actor)
        case StartProduction():
            _require_coordinator(state, actor)
            return [ProductionStarted(project_id=state.project_id, note=command.note)]
        case RecordProgress():
            if not command.note.strip():
                raise InvalidCommandError("a progress note cannot be empty")
            if not (_is_coordinator(state, actor) or _is_partner(state, actor)):
                raise NotAllowedError("only the coordinators and partners record progress")
            return [ProgressNoted(project_id=state.project_id, note=command.note)]
        case Deliver():
            _require_coordinator(state, actor)
            return [ProjectDelivered(project_id=state.project_id, note=command.note)]
        case Cancel():
            if not command.reason.strip():
                raise InvalidCommandError("a cancellation needs a reason")
            _require_coordinator(state, actor)
            return [ProjectCancelled(project_id=state.project_id, reason=command.reason)]
    raise InvalidCommandError(f"unknown command {type(command).__name__}")


def _propose(command: Propose, actor: Actor, now: datetime) -> list[Event]:
    if actor.role != "coordinator" or not actor.member_id:
        raise NotAllowedError("only a coordinator (a member acting for a workspace) proposes")
    details = command.details
    if details.due <= now:
        raise InvalidCommandError(f"due {details.due.isoformat()} is not in the future")
    return [
        ProjectProposed(
            project_id=command.project_id,
            coordinator_member_id=actor.member_id,
            coordinator_workspace_id=actor.workspace_id,
            **details.model_dump(),
        )
    ]


def _invite(state: Project, command: Invite, actor: Actor, now: datetime) -> list[Event]:
    _require_coordinator(state, actor)
    role = state.role(command.role_id)
    invitee = command.invitee
    if not invitee.joined:
        raise NotFoundError(f"member {invitee.member_id} does not exist")
    if command.expires_at <= now:
        raise InvalidCommandError("the invitation would expire before it is sent")
    if any(i.invitation_id == command.invitation_id for i in state.invitations):
        raise AlreadyExistsError(
            f"invitation {command.invitation_id} already exists on project {state.project_id}"
        )
    current = [
        invitation
        for invitation in state.holding(role.role_id, "pending", "accepted")
        if not _lapsed(invitation, now)
    ]
    if any(invitation.member_id == invitee.member_id for invitation in current):
        raise AlreadyInvitedError(
            f"member {invitee.member_id} is already invited to or holds a {role.role_id} seat"
        )
    if state.open_seats(role.role_id) <= 0:
        raise RoleFullError(f"every {role.role_id} seat is taken")
    return [
        PartnerInvited(
            project_id=state.project_id,
            invitation_id=command.invitation_id,
            role_id=role.role_id,
            member_id=invitee.member_id,
            member_workspace_id=invitee.workspace_id,
            expires_at=command.expires_at,
            message=command.message,
        )
    ]


def _accept(state: Project, command: Accept, actor: Actor, now: datetime) -> list[Event]:
    invitation = _pending_invitation_of(state, command.invitation_id, actor)
    if invitation.expires_at is not None and invitation.expires_at <= now:
        raise InvitationExpiredError(f"invitation {invitation.invitation_id} has expired")
    if state.open_seats(invitation.role_id) <= 0:
        raise RoleFullError(f"every {invitation.role_id} seat was taken meanwhile")
    accepted = InvitationAccepted(**_invitation_ids(state, invitation))
    after = evolve_project(state, accepted)
    if after.fully_staffed:
        return [accepted, ProjectStaffed(project_id=state.project_id, team=after.team)]
    return [accepted]


def _expire(state: Project, command: Expire, actor: Actor, now: datetime) -> list[Event]:
    if actor.role != "system":
        raise NotAllowedError("invitations expire by themselves")
    invitation = state.invitation(command.invitation_id)
    if invitation.status != "pending":
        raise InvitationNotPendingError(
            f"invitation {invitation.invitation_id} is {invitation.status}"
        )
    if invitation.expires_at is None or invitation.expires_at > now:
        raise InvalidCommandError(f"invitation {invitation.invitation_id} has not expired yet")
    return [InvitationExpired(**_invitation_ids(state, invitation))]


def _withdraw(state: Project, command: Withdraw, actor: Actor) -> list[Event]:
    seats = [
        i for i in state.holding(command.role_id, "accepted") if i.member_id == actor.member_id
    ]
    if not seats:
        raise NotAPartnerError(f"you hold no {command.role_id} seat on this project")
    seat = seats[0]
    return [
        PartnerWithdrawn(
            project_id=state.project_id,
            role_id=seat.role_id,
            member_id=seat.member_id,
            member_workspace_id=seat.workspace_id,
            reason=command.reason,
        )
    ]


def _lapsed(invitation: Invitation, now: datetime) -> bool:
    """A pending invitation past its expiry, not yet marked expired by the sweep."""
    return (
        invitation.status == "pending"
        and invitation.expires_at is not None
        and invitation.expires_at <= now
    )


def _pending_invitation_of(state: Project, invitation_id: str, actor: Actor) -> Invitation:
    invitation = state.invitation(invitation_id)
    if invitation.member_id != actor.member_id:
        raise NotAllowedError("only the invited member answers an invitation")
    if invitation.status != "pending":
        raise InvitationNotPendingError(f"invitation {invitation_id} is {invitation.status}")
    return invitation


def _invitation_ids(state: Project, invitation: Invitation) -> dict:
    return {
        "project_id": state.project_id,
        "invitation_id": invitation.invitation_id,
        "role_id": invitation.role_id,
        "member_id": invitation.member_id,
        "member_workspace_id": invitation.workspace_id,
    }


def _is_coordinator(state: Project, actor: Actor) -> bool:
    return _coordinates(actor, state.coordinator_workspace_id)


def _require_coordinator(state: Project, actor: Actor) -> None:
    if not _is_coordinator(state, actor):
        raise NotAllowedError(
            f"only coordinators of {state.coordinator_workspace_id} can do this on the project"
        )


def _is_partner(state: Project, actor: Actor) -> bool:
    return any(seat.member_id == actor.member_id for seat in state.team)


def _verb(command: ProjectCommand) -> str:
    return {
        Propose: "propose",
        Invite: "invite",
        Accept: "accept",
        Decline: "decline",
        Expire: "expire an invitation",
        Withdraw: "withdraw",
        StartProduction: "start production",
        RecordProgress: "record progress",
        Deliver: "deliver",
        Cancel: "cancel",
    }[type(command)]


def _set_invitation(state: Project, invitation_id: str, status: InvitationStatus) -> Project:
    return replace(
        state,
        invitations=tuple(
            replace(i, status=status) if i.invitation_id == invitation_id else i
            for i in state.invitations
        ),
    )


def evolve_project(state: Project, event: Event) -> Project:
    status = STATUS_AFTER.get(type(event), state.status)
    match event:
        case ProjectProposed():
            return Project(
                project_id=event.project_id,
                status=status,
                coordinator_member_id=event.coordinator_member_id,
                coordinator_workspace_id=event.coordinator_workspace_id,
                title=event.title,
                due=event.due,
                open_call=event.open_call,
                roles=event.roles,
            )
        case PartnerInvited():
            invitation = Invitation(
                event.invitation_id,
                event.role_id,
                event.member_id,
                event.member_workspace_id,
                event.expires_at,
            )
            return replace(state, invitations=(*state.invitations, invitation))
        case InvitationAccepted():
            return _set_invitation(state, event.invitation_id, "accepted")
        case InvitationDeclined():
            return _set_invitation(state, event.invitation_id, "declined")
        case InvitationExpired():
            return _set_invitation(state, event.invitation_id, "expired")
        case PartnerWithdrawn():
            seat = next(
                i
                for i in state.invitations
                if i.role_id == event.role_id
                and i.member_id == event.member_id
                and i.status == "accepted"
            )
            return replace(_set_invitation(state, seat.invitation_id, "withdrawn"), status=status)
    return replace(state, status=status) if status != state.status else state


def fold_project(events: list[Event], state: Project | None = None) -> Project:
    return reduce(evolve_project, events, state or Project())
