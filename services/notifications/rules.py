"""Who must hear about an event: pure rules over the facts known before the event.

    audience(facts, event, envelope) -> (Recipient(workspace, members, concerns), ...)

Concerned by a project event: the coordinator's workspace, every workspace with an invited
or accepted member, and the member the event is about (invited, accepting, declining,
expiring, withdrawn). An open call (`ProjectProposed` with `open_call`) also reaches every
workspace with a member holding one of the roles' capabilities. A private project never
reaches anyone else. Member and workspace events reach their own workspace; the matcher's
proposals reach the coordinator's.

Pure: imports only the standard library and contracts; the caller loads the facts and
stores `evolve_project(facts, event)` afterwards.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

from contracts.base import Event
from contracts.envelope import Envelope
from contracts.matching import CandidatesProposed
from contracts.projects import (
    InvitationAccepted,
    InvitationDeclined,
    InvitationExpired,
    PartnerInvited,
    PartnerWithdrawn,
    ProductionStarted,
    ProjectCancelled,
    ProjectDelivered,
    ProjectProposed,
    ProjectStaffed,
)
from contracts.workspaces import (
    MemberCapabilitiesDeclared,
    MemberCapacityChanged,
    MemberJoined,
    WorkspaceRegistered,
)

Concern = Literal["coordinator", "participant", "invitee", "open_call", "workspace", "scope"]
ParticipantStatus = Literal["invited", "accepted"]
ProjectStatus = Literal["proposed", "staffed", "producing", "delivered", "cancelled"]

# Events that name one member of one workspace as their subject.
_ABOUT_A_MEMBER = (
    PartnerInvited,
    InvitationAccepted,
    InvitationDeclined,
    InvitationExpired,
    PartnerWithdrawn,
)


@dataclass(frozen=True, slots=True)
class Participant:
    """A member holding (or invited to) a seat of a role."""

    role_id: str
    member_id: str
    workspace_id: str
    status: ParticipantStatus


@dataclass(frozen=True, slots=True)
class ProjectFacts:
    """What the rules need to know about one project, as of the last event applied."""

    project_id: str
    coordinator_workspace_id: str
    coordinator_member_id: str
    open_call: bool
    capabilities: tuple[str, ...]
    status: ProjectStatus = "proposed"
    participants: tuple[Participant, ...] = ()


@dataclass(frozen=True, slots=True)
class Facts:
    """The state an event is judged against: its project, and who holds which capability."""

    project: ProjectFacts | None = None
    # capability -> workspaces with at least one member holding it (open calls only).
    capability_holders: Mapping[str, frozenset[str]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Recipient:
    workspace_id: str
    members: tuple[str, ...]  # the members of this workspace the event is about
    concerns: tuple[Concern, ...]  # why this workspace hears about it


def project_id_of(event: Event) -> str | None:
    """The project an event belongs to (the matcher's proposals belong to theirs)."""
    if isinstance(event, CandidatesProposed):
        return event.project_id
    return getattr(event, "project_id", None) if event.aggregate() == "project" else None


def ordering_key(event: Event, envelope: Envelope) -> str:
    """Deliveries to one endpoint keep the log order within this key: per project."""
    project_id = project_id_of(event)
    if project_id is not None:
        return f"project:{project_id}"
    return f"{envelope.aggregate}:{envelope.aggregate_id}"


def needed_capabilities(event: Event) -> tuple[str, ...]:
    """The capabilities whose holders the rules must know for this event (open calls)."""
    if isinstance(event, ProjectProposed) and event.open_call:
        return tuple(sorted({role.capability for role in event.roles}))
    return ()


class _Audience:
    def __init__(self) -> None:
        self._members: dict[str, set[str]] = {}
        self._concerns: dict[str, set[str]] = {}

    def add(self, workspace_id: str, concern: Concern, members: Iterable[str] = ()) -> None:
        self._members.setdefault(workspace_id, set()).update(members)
        self._concerns.setdefault(workspace_id, set()).add(concern)

    def recipients(self) -> tuple[Recipient, ...]:
        return tuple(
            Recipient(
                workspace_id,
                tuple(sorted(self._members[workspace_id])),
                tuple(sorted(self._concerns[workspace_id])),  # type: ignore[arg-type]
            )
            for workspace_id in sorted(self._members)
        )


def audience(facts: Facts, event: Event, envelope: Envelope) -> tuple[Recipient, ...]:
    """The workspaces (and their members) concerned by `event`, judged on the facts known
    before it. Sorted by workspace id; empty when nobody is concerned."""
    found = _Audience()
    if isinstance(event, WorkspaceRegistered):
        found.add(event.workspace_id, "workspace")
    elif isinstance(event, MemberJoined | MemberCapabilitiesDeclared | MemberCapacityChanged):
        found.add(event.workspace_id, "workspace", [event.member_id])
    elif isinstance(event, ProjectProposed):
        _proposed(found, facts, event)
    elif project_id_of(event) is not None:
        _project_event(found, facts.project, event, envelope)
    return found.recipients()


def _proposed(found: _Audience, facts: Facts, event: ProjectProposed) -> None:
    found.add(event.coordinator_workspace_id, "coordinator", [event.coordinator_member_id])
    if not event.open_call:
        return
    for role in event.roles:
        for workspace_id in facts.capability_holders.get(role.capability, ()):
            found.add(workspace_id, "open_call")


def _project_event(
    found: _Audience, project: ProjectFacts | None, event: Event, envelope: Envelope
) -> None:
    if isinstance(event, CandidatesProposed):
        # Proposals are for the coordinator; candidates hear of a project once invited.
        if project is not None:
            found.add(
                project.coordinator_workspace_id, "coordinator", [project.coordinator_member_id]
            )
        return
    if project is None:
        # Never seen its proposal (parked as bad input): fall back to the scope its writer
        # declared, which is exactly who may see it.
        for workspace_id in envelope.workspace_scope:
            found.add(workspace_id, "scope")
    else:
        found.add(project.coordinator_workspace_id, "coordinator", [project.coordinator_member_id])
        for participant in project.participants:
            found.add(participant.workspace_id, "participant", [participant.member_id])
    if isinstance(event, _ABOUT_A_MEMBER):
        found.add(event.member_workspace_id, "invitee", [event.member_id])
    if isinstance(event, ProjectStaffed):
        for seat in event.team:
            found.add(seat.workspace_id, "participant", [seat.member_id])


def evolve_project(project: ProjectFacts | None, event: Event) -> ProjectFacts | None:
    """The project's facts after `event` (unchanged for events that do not move them)."""
    if isinstance(event, ProjectProposed):
        return ProjectFacts(
            project_id=event.project_id,
            coordinator_workspace_id=event.coordinator_workspace_id,
            coordinator_member_id=event.coordinator_member_id,
            open_call=event.open_call,
            capabilities=tuple(sorted({role.capability for role in event.roles})),
        )
    if project is None:
        return None
    if isinstance(event, PartnerInvited):
        return _seat(project, event.role_id, event.member_id, event.member_workspace_id, "invited")
    if isinstance(event, InvitationAccepted):
        return _seat(project, event.role_id, event.member_id, event.member_workspace_id, "accepted")
    if isinstance(event, InvitationDeclined | InvitationExpired | PartnerWithdrawn):
        remaining = tuple(
            p
            for p in project.participants
            if (p.role_id, p.member_id) != (event.role_id, event.member_id)
        )
        # A withdrawal from a staffed project means it is proposed again.
        status = "proposed" if project.status == "staffed" else project.status
        return replace(project, participants=remaining, status=status)
    if isinstance(event, ProjectStaffed):
        for seat in event.team:
            project = _seat(project, seat.role_id, seat.member_id, seat.workspace_id, "accepted")
        return replace(project, status="staffed")
    if isinstance(event, ProductionStarted):
        return replace(project, status="producing")
    if isinstance(event, ProjectDelivered):
        return replace(project, status="delivered")
    if isinstance(event, ProjectCancelled):
        return replace(project, status="cancelled")
    return project  # progress notes and the matcher's proposals move no facts


def declared_capabilities(event: Event) -> tuple[str, str, tuple[str, ...]] | None:
    """(member, workspace, capabilities) when `event` sets a member's capability list."""
    if isinstance(event, MemberJoined | MemberCapabilitiesDeclared):
        capabilities = tuple(sorted({held.capability for held in event.capabilities}))
        return event.member_id, event.workspace_id, capabilities
    return None


def _seat(
    project: ProjectFacts,
    role_id: str,
    member_id: str,
    workspace_id: str,
    status: ParticipantStatus,
) -> ProjectFacts:
    others = [p for p in project.participants if (p.role_id, p.member_id) != (role_id, member_id)]
    seated = Participant(role_id, member_id, workspace_id, status)
    participants = tuple(sorted([*others, seated], key=lambda p: (p.role_id, p.member_id)))
    return replace(project, participants=participants)
