"""The network as the matcher knows it, folded from the log in order.

`Network.apply(recorded)` folds one event (workspaces, members, projects, the matcher's own
proposals) and returns a `Trigger` when the event calls for a proposal (a project proposed, an
invitation declined or expired, a partner withdrawn); `propose(trigger)`
then computes `CandidatesProposed` from exactly the state at that log position. Pure: no
I/O, no clock ("now" is the trigger's occurred_at; "lately" is measured on the log clock,
the latest occurred_at folded so far), so the same log gives the same proposals.

Candidates are found through the capability index (index.py), which this module keeps up
to date as members join, change and win or lose fairness.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from contracts.envelope import Envelope, RecordedEvent
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
    RoleSpec,
)
from contracts.workspaces import (
    MemberCapabilitiesDeclared,
    MemberCapacityChanged,
    MemberJoined,
    WorkspaceRegistered,
)
from services.matching.index import CapabilityIndex, Member, Workspace
from services.matching.scoring import (
    ALGORITHM_VERSION,
    Commitment,
    RoleRequest,
    WeightsLike,
    no_candidates_reason,
    role_proposal_data,
    suggest_team,
)
from services.matching.taxonomy import Taxonomy

HistoryKey = tuple[str, str, str]  # project_id, role_id, member_id


@dataclass(slots=True)
class Invitation:
    role_id: str
    member_id: str
    workspace_id: str
    status: str  # pending | accepted | declined | expired | withdrawn


@dataclass(slots=True)
class Project:
    project_id: str
    coordinator_member_id: str
    coordinator_workspace_id: str
    status: str  # proposed | staffed | producing (closed projects are dropped)
    due: datetime
    delivery: tuple[float, float]
    roles: tuple[RoleSpec, ...]
    invitations: dict[str, Invitation] = field(default_factory=dict)

    def role(self, role_id: str) -> RoleSpec | None:
        return next((role for role in self.roles if role.role_id == role_id), None)

    def open_seats(self, role: RoleSpec) -> int:
        taken = sum(
            1
            for invitation in self.invitations.values()
            if invitation.role_id == role.role_id and invitation.status in ("pending", "accepted")
        )
        return max(0, role.seats - taken)

    def represented(self) -> frozenset[str]:
        return frozenset(
            {self.coordinator_workspace_id}
            | {
                invitation.workspace_id
                for invitation in self.invitations.values()
                if invitation.status in ("pending", "accepted")
            }
        )

    def excluded(self) -> frozenset[str]:
        """The coordinator, and members invited, on the project, who declined or withdrew.
        (An expired invitation does not exclude: the member may simply have missed it.)"""
        return frozenset(
            {self.coordinator_member_id}
            | {
                invitation.member_id
                for invitation in self.invitations.values()
                if invitation.status != "expired"
            }
        )


@dataclass(slots=True)
class HistoryEntry:
    """A member's part in one (project, role) lately: listed by the matcher, chosen
    (invited, or picked for the suggested team), or both. `at` is the log clock."""

    listed: bool
    chosen: bool
    at: datetime


@dataclass(frozen=True, slots=True)
class Trigger:
    project_id: str
    event_id: str
    sequence: int
    type: str
    envelope: Envelope

    @property
    def occurred_at(self) -> datetime:
        return self.envelope.occurred_at


@dataclass
class Changes:
    """Keys changed since the last `take_changes()`: what the durable copy must rewrite."""

    workspaces: set[str] = field(default_factory=set)
    members: set[str] = field(default_factory=set)
    projects: set[str] = field(default_factory=set)
    history: set[HistoryKey] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.workspaces or self.members or self.projects or self.history)


class Network:
    def __init__(self, taxonomy: Taxonomy, weights: WeightsLike) -> None:
        self.taxonomy = taxonomy
        self.weights = weights
        self.position = 0  # sequence of the last event folded
        self.clock: datetime | None = None  # the latest occurred_at folded (never goes back)
        self.workspaces: dict[str, Workspace] = {}
        self.members: dict[str, Member] = {}
        self.projects: dict[str, Project] = {}
        self.history: dict[HistoryKey, HistoryEntry] = {}
        self.changes = Changes()
        self._window: deque[tuple[datetime, HistoryKey]] = deque()
        self._tally: dict[str, list[int]] = {}  # member_id -> [passed_over, chosen]
        self._interned: dict[frozenset[str], frozenset[str]] = {}
        self.index = CapabilityIndex(taxonomy, weights, self.members, self.workspaces)

    # -- folding the log ---------------------------------------------------------------------

    def apply(self, recorded: RecordedEvent) -> Trigger | None:
        """Fold one event; return a trigger if it calls for a proposal. Idempotent."""
        if recorded.sequence <= self.position:
            return None
        self._advance_clock(recorded.envelope.occurred_at)
        trigger = self._fold(recorded)
        self.position = recorded.sequence
        return trigger

    def _fold(self, recorded: RecordedEvent) -> Trigger | None:
        event = recorded.event
        match event:
            case WorkspaceRegistered():
                self.workspaces[event.workspace_id] = Workspace(
                    event.workspace_id,
                    event.name,
                    event.city,
                    event.country,
                    (event.location.lat, event.location.long),
                    self.intern(event.languages),
                )
                self.changes.workspaces.add(event.workspace_id)
            case MemberJoined():
                previous = self.members.get(event.member_id)
                self.add_member(
                    Member(
                        member_id=event.member_id,
                        workspace_id=event.workspace_id,
                        name=event.name,
                        capabilities={c.capability: c.level for c in event.capabilities},
                        equipment=tuple(event.equipment),
                        weekly_hours=event.weekly_capacity.hasNumericalValue,
                        languages=self.intern(event.languages),
                        delivered=previous.delivered if previous else 0,
                        withdrawn=previous.withdrawn if previous else 0,
                        commitments=previous.commitments if previous else {},
                    )
                )
            case MemberCapabilitiesDeclared():
                member = self.members.get(event.member_id)
                if member is not None:
                    self.index.remove(member)
                    member.capabilities = {c.capability: c.level for c in event.capabilities}
                    member.equipment = tuple(event.equipment)
                    self.index.add(member)
                    self.changes.members.add(member.member_id)
            case MemberCapacityChanged():
                member = self.members.get(event.member_id)
                if member is not None:
                    member.weekly_hours = event.weekly_capacity.hasNumericalValue
                    self.index.refresh_hours(member.workspace_id)
                    self.changes.members.add(member.member_id)
            case ProjectProposed():
                self.projects[event.project_id] = Project(
                    project_id=event.project_id,
                    coordinator_member_id=event.coordinator_member_id,
                    coordinator_workspace_id=event.coordinator_workspace_id,
                    status="proposed",
                    due=event.due,
                    delivery=(event.delivery_location.lat, event.delivery_location.long),
                    roles=tuple(event.roles),
                )
                self.changes.projects.add(event.project_id)
                return self._trigger(recorded, event.project_id)
            case CandidatesProposed():
                for proposal in event.proposals:
                    for candidate in proposal.candidates:
                        self._touch((event.project_id, proposal.role_id, candidate.member_id))
                for picked in event.team.members if event.team else ():
                    key = (event.project_id, picked.role_id, picked.member_id)
                    self._touch(key, chosen=True)
            case _:
                return self._fold_project(recorded)
        return None

    def _fold_project(self, recorded: RecordedEvent) -> Trigger | None:
        event = recorded.event
        project = self.projects.get(getattr(event, "project_id", ""))
        if project is None:  # closed, or never proposed: nothing to keep
            return None
        self.changes.projects.add(project.project_id)
        match event:
            case PartnerInvited():
                project.invitations[event.invitation_id] = Invitation(
                    event.role_id, event.member_id, event.member_workspace_id, "pending"
                )
                self._touch((project.project_id, event.role_id, event.member_id), chosen=True)
            case InvitationAccepted():
                self._set_invitation(project, event.invitation_id, "accepted")
                role = project.role(event.role_id)
                member = self.members.get(event.member_id)
                if role is not None and member is not None:
                    member.commitments[(project.project_id, role.role_id)] = Commitment(
                        role.effortQuantity.hasNumericalValue, project.due
                    )
            case InvitationDeclined() | InvitationExpired():
                status = "declined" if isinstance(event, InvitationDeclined) else "expired"
                self._set_invitation(project, event.invitation_id, status)
                return self._trigger(recorded, project.project_id)
            case PartnerWithdrawn():
                for invitation in project.invitations.values():
                    if (invitation.role_id, invitation.member_id, invitation.status) == (
                        event.role_id,
                        event.member_id,
                        "accepted",
                    ):
                        invitation.status = "withdrawn"
                        break
                project.status = "proposed"
                member = self.members.get(event.member_id)
                if member is not None:
                    member.commitments.pop((project.project_id, event.role_id), None)
                    member.withdrawn += 1
                    self._rekey(member)
                    self.changes.members.add(member.member_id)
                return self._trigger(recorded, project.project_id)
            case ProjectStaffed():
                project.status = "staffed"
            case ProductionStarted():
                project.status = "producing"
            case ProjectDelivered() | ProjectCancelled():
                self._close(project, delivered=isinstance(event, ProjectDelivered))
        return None

    def _trigger(self, recorded: RecordedEvent, project_id: str) -> Trigger:
        return Trigger(
            project_id, recorded.event_id, recorded.sequence, recorded.type, recorded.envelope
        )

    def _set_invitation(self, project: Project, invitation_id: str, status: str) -> None:
        invitation = project.invitations.get(invitation_id)
        if invitation is not None:
            invitation.status = status

    def _close(self, project: Project, *, delivered: bool) -> None:
        partners = {
            invitation.member_id
            for invitation in project.invitations.values()
            if invitation.status == "accepted"
        }
        for member_id in sorted(partners):
            member = self.members.get(member_id)
            if member is None:
                continue
            for key in [key for key in member.commitments if key[0] == project.project_id]:
                del member.commitments[key]
            if delivered:
                member.delivered += 1
                self._rekey(member)
                self.changes.members.add(member_id)
        del self.projects[project.project_id]

    # -- fairness history ("lately", on the log clock) ---------------------------------------

    def _advance_clock(self, occurred_at: datetime) -> None:
        if self.clock is not None and occurred_at <= self.clock:
            return
        self.clock = occurred_at
        horizon = occurred_at - timedelta(days=self.weights.fairness_window_days)
        while self._window and self._window[0][0] < horizon:
            at, key = self._window.popleft()
            entry = self.history.get(key)
            if entry is not None and entry.at == at:
                self._count(key[2], entry, -1)
                del self.history[key]
                self.changes.history.add(key)
                self._rekey_id(key[2])

    def _touch(self, key: HistoryKey, *, chosen: bool = False) -> None:
        """Record that a member was listed for (or chosen for) a project's role, now."""
        assert self.clock is not None  # an event was folded first
        entry = self.history.get(key)
        counted_again = True
        if entry is None:
            entry = self.history[key] = HistoryEntry(listed=False, chosen=chosen, at=self.clock)
            self._count(key[2], entry, +1)
        elif chosen and not entry.chosen:
            self._count(key[2], entry, -1)
            entry.chosen = True
            self._count(key[2], entry, +1)
        else:
            counted_again = False
        if not chosen:
            entry.listed = True
        entry.at = self.clock
        self._window.append((self.clock, key))
        self.changes.history.add(key)
        if counted_again:
            self._rekey_id(key[2])

    def _count(self, member_id: str, entry: HistoryEntry, sign: int) -> None:
        tally = self._tally.setdefault(member_id, [0, 0])
        if entry.chosen:
            tally[1] += sign
        else:
            tally[0] += sign
        if tally == [0, 0]:
            del self._tally[member_id]

    def _rekey_id(self, member_id: str) -> None:
        member = self.members.get(member_id)
        if member is not None:
            self._rekey(member)

    # -- the index -----------------------------------------------------------------------------

    def add_member(self, member: Member) -> None:
        previous = self.members.get(member.member_id)
        if previous is not None:
            self.index.remove(previous)
        self.members[member.member_id] = member
        member.passed_over, member.chosen = self._tally.get(member.member_id, (0, 0))
        self.index.add(member)
        self.changes.members.add(member.member_id)

    def _rekey(self, member: Member) -> None:
        member.passed_over, member.chosen = self._tally.get(member.member_id, (0, 0))
        self.index.rekey(member)

    def intern(self, languages: Iterable[str]) -> frozenset[str]:
        value = frozenset(languages)
        return self._interned.setdefault(value, value)

    # -- proposing -----------------------------------------------------------------------------

    def propose(self, trigger: Trigger) -> CandidatesProposed | None:
        """The proposal for every open role of the trigger's project, or None when the
        project is not open for partners (staffed, closed, unknown) or has no open seat."""
        project = self.projects.get(trigger.project_id)
        if project is None or project.status != "proposed":
            return None
        requests = self.role_requests(project, trigger.occurred_at)
        if not requests:
            return None
        places = self.index.places(project.delivery, requests[0].represented)
        ranked_roles = []
        proposals = []
        for request in requests:
            ranked = self.index.search(request, places)
            reason = (
                None if ranked else no_candidates_reason(request, self.index.filter_counts(request))
            )
            ranked_roles.append((request, ranked))
            proposals.append(role_proposal_data(request, ranked, self.weights, reason))
        return CandidatesProposed.model_validate(
            {
                "project_id": project.project_id,
                "proposals": proposals,
                "team": suggest_team(ranked_roles, self.weights),
                "weights_version": self.weights.version,
                "algorithm_version": ALGORITHM_VERSION,
                "trigger_event_id": trigger.event_id,
                "trigger_sequence": trigger.sequence,
                "trigger_type": trigger.type,
                "taxonomy_version": self.taxonomy.version,
            }
        )

    def role_requests(self, project: Project, now: datetime) -> list[RoleRequest]:
        coordinator_space = self.workspaces.get(project.coordinator_workspace_id)
        spoken = coordinator_space.languages if coordinator_space else frozenset()
        represented, excluded = project.represented(), project.excluded()
        requests = []
        for role in project.roles:
            seats = project.open_seats(role)
            if seats == 0:
                continue
            wanted = spoken | {role.required_language} if role.required_language else spoken
            requests.append(
                RoleRequest(
                    project_id=project.project_id,
                    role_id=role.role_id,
                    capability=role.capability,
                    effort_hours=role.effortQuantity.hasNumericalValue,
                    open_seats=seats,
                    now=now,
                    due=project.due,
                    delivery=project.delivery,
                    max_distance_km=role.max_distance_km,
                    required_language=role.required_language,
                    wanted_languages=self.intern(wanted),
                    represented=represented,
                    excluded=excluded,
                )
            )
        return requests

    # -- the durable copy ------------------------------------------------------------------------

    def take_changes(self) -> Changes:
        changes, self.changes = self.changes, Changes()
        return changes

    def restore_history(self, entries: Iterable[tuple[HistoryKey, HistoryEntry]]) -> None:
        """Load fairness history (before the members, so their keys are right at once)."""
        for key, entry in sorted(entries, key=lambda item: (item[1].at, item[0])):
            self.history[key] = entry
            self._window.append((entry.at, key))
            self._count(key[2], entry, +1)

    def restore_project(self, project: Project) -> None:
        self.projects[project.project_id] = project
        for invitation in project.invitations.values():
            if invitation.status != "accepted":
                continue
            role = project.role(invitation.role_id)
            member = self.members.get(invitation.member_id)
            if role is not None and member is not None:
                member.commitments[(project.project_id, role.role_id)] = Commitment(
                    role.effortQuantity.hasNumericalValue, project.due
                )

    def stats(self) -> dict[str, int]:
        return {
            "position": self.position,
            "workspaces": len(self.workspaces),
            "members": len(self.members),
            "active_projects": len(self.projects),
            "history_entries": len(self.history),
            "index_entries": self.index.entries(),
        }
