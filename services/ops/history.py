"""Time travel: a project or a workspace as it was at a log sequence or a moment, and the
timeline of who did what up to then.

State is the fold of the aggregate's events up to the cut with the domain's own `evolve`
(services/projects/domain.py), so it is what the command side knew at that point. "As of
TIME" cuts at the last event the log had recorded by then (its own clock, never the
writer's `occurred_at`, which a skewed clock could reorder).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import reduce

from contracts.base import Event
from contracts.envelope import RecordedEvent
from contracts.registry import EventDecodeError
from contracts.workspaces import (
    MemberCapabilitiesDeclared,
    MemberCapacityChanged,
    MemberJoined,
    WorkspaceRegistered,
)
from infra.eventstore import EventStore
from services.ops.positions import last_sequence_at
from services.projects import domain
from services.projects.timeline import describe


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    sequence: int
    recorded_at: datetime
    occurred_at: datetime
    type: str
    aggregate: str
    aggregate_id: str
    actor: str
    summary: str
    event_id: str
    correlation_id: str


@dataclass(frozen=True, slots=True)
class ProjectHistory:
    project_id: str
    at_sequence: int  # the cut: events up to here
    version: int  # the project's last sequence at the cut (0: it did not exist yet)
    state: domain.Project
    timeline: list[TimelineEntry]


@dataclass(slots=True)
class WorkspaceHistory:
    workspace_id: str
    at_sequence: int
    workspace: domain.Workspace
    members: dict[str, domain.Member] = field(default_factory=dict)
    projects: dict[str, domain.Project] = field(default_factory=dict)
    timeline: list[TimelineEntry] = field(default_factory=list)


class HistoryError(ValueError):
    pass


async def cut_sequence(
    store: EventStore, *, at_seq: int | None = None, as_of: datetime | None = None
) -> int:
    """The last sequence included: `at_seq`, the last one recorded by `as_of`, or the head."""
    if at_seq is not None and as_of is not None:
        raise HistoryError("give --at-seq or --as-of, not both")
    head = await store.last_sequence()
    if at_seq is not None:
        if at_seq < 0:
            raise HistoryError("--at-seq must be >= 0")
        return min(at_seq, head)
    if as_of is not None:
        return await last_sequence_at(store, as_of)
    return head


async def project_history(
    store: EventStore,
    project_id: str,
    *,
    at_seq: int | None = None,
    as_of: datetime | None = None,
) -> ProjectHistory:
    cut = await cut_sequence(store, at_seq=at_seq, as_of=as_of)
    project = [r for r in (await store.load("project", project_id)).events if r.sequence <= cut]
    matching = [r for r in (await store.load("matching", project_id)).events if r.sequence <= cut]
    state = domain.fold_project([recorded.event for recorded in project])
    timeline = [entry(r) for r in sorted([*project, *matching], key=lambda r: r.sequence)]
    version = project[-1].sequence if project else 0
    return ProjectHistory(project_id, cut, version, state, timeline)


async def workspace_history(
    store: EventStore,
    workspace_id: str,
    *,
    at_seq: int | None = None,
    as_of: datetime | None = None,
) -> WorkspaceHistory:
    """The workspace, its members, and the projects it coordinated or took part in (any
    event in its scope), each folded up to the cut; the timeline of what it could see."""
    cut = await cut_sequence(store, at_seq=at_seq, as_of=as_of)
    own = [r for r in (await store.load("workspace", workspace_id)).events if r.sequence <= cut]
    history = WorkspaceHistory(
        workspace_id,
        cut,
        reduce(
            domain.evolve_workspace,
            (r.event for r in own),
            domain.Workspace(workspace_id=workspace_id),
        ),
    )
    seen = list(own)
    member_events = await _scan(store, store.scheme.events_of_aggregate_type("member"), cut)
    for recorded in member_events:
        if getattr(recorded.event, "workspace_id", None) != workspace_id:
            continue
        member_id = recorded.envelope.aggregate_id
        before = history.members.get(member_id, domain.Member(member_id=member_id))
        history.members[member_id] = domain.evolve_member(before, recorded.event)
        seen.append(recorded)
    project_events = await _scan(store, store.scheme.events_of_aggregate_type("project"), cut)
    involved = {
        r.envelope.aggregate_id
        for r in project_events
        if workspace_id in r.envelope.workspace_scope
    }
    by_project: dict[str, list[Event]] = {}
    for recorded in project_events:
        project_id = recorded.envelope.aggregate_id
        if project_id in involved:
            by_project.setdefault(project_id, []).append(recorded.event)
            if workspace_id in recorded.envelope.workspace_scope:
                seen.append(recorded)
    history.projects = {pid: domain.fold_project(events) for pid, events in by_project.items()}
    history.timeline = [entry(r) for r in sorted(seen, key=lambda r: r.sequence)]
    return history


async def _scan(store: EventStore, subject_filter: str, cut: int) -> list[RecordedEvent]:
    found: list[RecordedEvent] = []
    position = 1
    while position <= cut:
        batch = await store.read(position, 1000, subject_filter)
        for message in batch:
            if message.sequence > cut:
                return found
            try:
                found.append(message.decode())
            except EventDecodeError:  # parked by the projections; not part of any state
                continue
        if not batch:
            break
        position = batch[-1].sequence + 1
    return found


def entry(recorded: RecordedEvent) -> TimelineEntry:
    envelope = recorded.envelope
    return TimelineEntry(
        sequence=recorded.sequence,
        recorded_at=recorded.recorded_at,
        occurred_at=envelope.occurred_at,
        type=recorded.type,
        aggregate=envelope.aggregate,
        aggregate_id=envelope.aggregate_id,
        actor=envelope.actor,
        summary=summary(recorded.event),
        event_id=envelope.event_id,
        correlation_id=envelope.correlation_id,
    )


def summary(event: Event) -> str:
    match event:
        case WorkspaceRegistered():
            return f"Workspace {event.name} registered ({event.city}, {event.country})"
        case MemberJoined():
            skills = ", ".join(f"{c.capability} {c.level}" for c in event.capabilities)
            return f"{event.name} joined {event.workspace_id} ({skills})"
        case MemberCapabilitiesDeclared():
            skills = ", ".join(f"{c.capability} {c.level}" for c in event.capabilities)
            return f"{event.member_id} declared {skills}"
        case MemberCapacityChanged():
            hours = event.weekly_capacity.hasNumericalValue
            return f"{event.member_id} now has {hours:g} h/week"
    return describe(event)


# -- documents (API, --json) and lines (CLI) ---------------------------------------------------


def timeline_document(timeline: list[TimelineEntry]) -> list[dict]:
    return [
        {
            "sequence": item.sequence,
            "recorded_at": item.recorded_at.isoformat(),
            "occurred_at": item.occurred_at.isoformat(),
            "type": item.type,
            "aggregate": item.aggregate,
            "aggregate_id": item.aggregate_id,
            "actor": item.actor,
            "summary": item.summary,
            "event_id": item.event_id,
            "correlation_id": item.correlation_id,
        }
        for item in timeline
    ]


def project_state_document(state: domain.Project) -> dict:
    roles = []
    for role in state.roles:
        roles.append(
            {
                "role_id": role.role_id,
                "capability": role.capability,
                "seats": role.seats,
                "accepted": len(state.holding(role.role_id, "accepted")),
                "invited": len(state.holding(role.role_id, "pending")),
            }
        )
    return {
        "project_id": state.project_id,
        "status": state.status,
        "title": state.title,
        "coordinator_member_id": state.coordinator_member_id,
        "coordinator_workspace_id": state.coordinator_workspace_id,
        "due": state.due.isoformat() if state.due else None,
        "open_call": state.open_call,
        "roles": roles,
        "invitations": [
            {
                "invitation_id": i.invitation_id,
                "role_id": i.role_id,
                "member_id": i.member_id,
                "workspace_id": i.workspace_id,
                "status": i.status,
                "expires_at": i.expires_at.isoformat() if i.expires_at else None,
            }
            for i in state.invitations
        ],
        "team": [seat.model_dump(mode="json") for seat in state.team],
        "workspace_scope": list(state.workspace_scope),
    }


def project_document(history: ProjectHistory) -> dict:
    return {
        "project_id": history.project_id,
        "at_sequence": history.at_sequence,
        "version": history.version,
        "state": project_state_document(history.state),
        "timeline": timeline_document(history.timeline),
    }


def workspace_document(history: WorkspaceHistory) -> dict:
    return {
        "workspace_id": history.workspace_id,
        "at_sequence": history.at_sequence,
        "registered": history.workspace.registered,
        "name": history.workspace.name,
        "members": [
            {
                "member_id": m.member_id,
                "name": m.name,
                "capabilities": [c.model_dump(mode="json") for c in m.capabilities],
                "weekly_capacity_hours": (
                    m.weekly_capacity.hasNumericalValue if m.weekly_capacity else None
                ),
            }
            for m in history.members.values()
        ],
        "projects": [project_state_document(p) for p in history.projects.values()],
        "timeline": timeline_document(history.timeline),
    }


def render_timeline(timeline: list[TimelineEntry]) -> list[str]:
    return [
        f"{item.sequence:>8}  {item.recorded_at:%Y-%m-%d %H:%M:%S}  {item.actor:<28} {item.summary}"
        for item in timeline
    ]


def render_project(history: ProjectHistory) -> list[str]:
    state = history.state
    if state.status == "new":
        return [f"project {history.project_id} did not exist at sequence {history.at_sequence}"]
    lines = [
        f"project {state.project_id} at sequence {history.at_sequence} "
        f"(version {history.version}): {state.status}",
        f"  “{state.title}” coordinated by {state.coordinator_member_id} "
        f"({state.coordinator_workspace_id}), due {state.due:%Y-%m-%d}",
    ]
    for role in project_state_document(state)["roles"]:
        lines.append(
            f"  role {role['role_id']} ({role['capability']}): {role['accepted']}/{role['seats']}"
            f" accepted, {role['invited']} invited"
        )
    for invitation in state.invitations:
        lines.append(
            f"  invitation {invitation.invitation_id}: {invitation.member_id} "
            f"({invitation.workspace_id}) for {invitation.role_id}: {invitation.status}"
        )
    lines.append("timeline:")
    lines.extend(render_timeline(history.timeline))
    return lines


def render_workspace(history: WorkspaceHistory) -> list[str]:
    if not history.workspace.registered:
        return [
            f"workspace {history.workspace_id} was not registered at sequence {history.at_sequence}"
        ]
    lines = [
        f"workspace {history.workspace_id} ({history.workspace.name}) at sequence "
        f"{history.at_sequence}: {len(history.members)} members, "
        f"{len(history.projects)} projects"
    ]
    for member in history.members.values():
        skills = ", ".join(f"{c.capability} {c.level}" for c in member.capabilities)
        lines.append(f"  member {member.member_id} {member.name}: {skills}")
    for project in history.projects.values():
        role = (
            "coordinator"
            if project.coordinator_workspace_id == history.workspace_id
            else ("partner")
        )
        lines.append(f"  project {project.project_id} “{project.title}”: {project.status} ({role})")
    lines.append("timeline:")
    lines.extend(render_timeline(history.timeline))
    return lines
