"""A small network for matching tests: workspaces, members and projects as recorded events.

`World` numbers events like the log does and can feed them to a `Network` (unit tests) or
turn them into PendingEvents for a real store (integration tests).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from contracts.base import Event
from contracts.envelope import Envelope, PendingEvent, RecordedEvent
from contracts.matching import CandidatesProposed
from contracts.projects import (
    InvitationAccepted,
    InvitationDeclined,
    InvitationExpired,
    PartnerInvited,
    PartnerWithdrawn,
    ProjectCancelled,
    ProjectDelivered,
    ProjectProposed,
    RoleSpec,
)
from contracts.subjects import SubjectScheme
from contracts.values import CapabilityLevel, Measure, SpatialThing
from contracts.workspaces import (
    MemberCapabilitiesDeclared,
    MemberCapacityChanged,
    MemberJoined,
    WorkspaceRegistered,
)

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)

# A few real places of the network (lat, long).
PLACES = {
    "mage": (45.534, 9.238),  # Sesto San Giovanni
    "r84": (45.156, 10.791),  # Mantova
    "freiland": (52.391, 13.065),  # Potsdam
    "bloqs": (51.536, -0.063),  # London
}


def role(
    role_id: str,
    capability: str,
    hours: float = 40,
    *,
    seats: int = 1,
    max_distance_km: float | None = None,
    required_language: str | None = None,
) -> RoleSpec:
    return RoleSpec(
        role_id=role_id,
        capability=capability,
        effortQuantity=Measure(hasNumericalValue=hours),
        seats=seats,
        max_distance_km=max_distance_km,
        required_language=required_language,
    )


class World:
    def __init__(self, scheme: SubjectScheme | None = None) -> None:
        self.scheme = scheme or SubjectScheme()
        self.sequence = 0
        self.recorded: list[RecordedEvent] = []
        self.now = T0
        self._ids = 0

    def next_id(self, prefix: str = "e") -> str:
        self._ids += 1
        return f"{prefix}{self._ids:06d}"

    # -- events ----------------------------------------------------------------------------

    def envelope(self, event: Event, aggregate_id: str, *, scope=("mage",)) -> Envelope:
        return Envelope(
            event_id=self.next_id(),
            type=event.type,
            schema_version=type(event).schema_version,
            aggregate=event.aggregate(),
            aggregate_id=aggregate_id,
            occurred_at=self.now,
            actor="member:test",
            workspace_scope=tuple(scope),
            correlation_id=self.next_id("c"),
        )

    def record(self, event: Event, aggregate_id: str, **kwargs) -> RecordedEvent:
        self.sequence += 1
        recorded = RecordedEvent(
            sequence=self.sequence,
            recorded_at=self.now,
            subject=self.scheme.event_of_type(event.type, aggregate_id),
            envelope=self.envelope(event, aggregate_id, **kwargs),
            event=event,
        )
        self.recorded.append(recorded)
        return recorded

    def pending(self) -> list[tuple[str, str, PendingEvent]]:
        """(aggregate, id, PendingEvent) of everything recorded, to append to a store."""
        return [
            (r.envelope.aggregate, r.envelope.aggregate_id, PendingEvent(r.envelope, r.event))
            for r in self.recorded
        ]

    # -- the network -----------------------------------------------------------------------

    def workspace(self, workspace_id: str, place=None, languages=("en",)) -> RecordedEvent:
        lat, long = place or PLACES[workspace_id]
        return self.record(
            WorkspaceRegistered(
                workspace_id=workspace_id,
                name=workspace_id.upper(),
                city="City",
                country="IT",
                location=SpatialThing(lat=lat, long=long),
                languages=tuple(languages),
                timezone="Europe/Rome",
            ),
            workspace_id,
        )

    def member(
        self,
        member_id: str,
        workspace_id: str,
        capabilities: dict[str, int] | None = None,
        *,
        weekly_hours: float = 20,
        languages=("en",),
    ) -> RecordedEvent:
        return self.record(
            MemberJoined(
                member_id=member_id,
                workspace_id=workspace_id,
                name=member_id,
                kind="artisan",
                capabilities=tuple(
                    CapabilityLevel(capability=c, level=level)
                    for c, level in (capabilities or {"laser-cutting": 4}).items()
                ),
                weekly_capacity=Measure(hasNumericalValue=weekly_hours),
                languages=tuple(languages),
            ),
            member_id,
        )

    def capabilities(self, member_id: str, workspace_id: str, capabilities: dict[str, int]):
        return self.record(
            MemberCapabilitiesDeclared(
                member_id=member_id,
                workspace_id=workspace_id,
                capabilities=tuple(
                    CapabilityLevel(capability=c, level=level) for c, level in capabilities.items()
                ),
            ),
            member_id,
        )

    def capacity(self, member_id: str, workspace_id: str, weekly_hours: float):
        return self.record(
            MemberCapacityChanged(
                member_id=member_id,
                workspace_id=workspace_id,
                weekly_capacity=Measure(hasNumericalValue=weekly_hours),
            ),
            member_id,
        )

    def project(
        self,
        project_id: str,
        roles: tuple[RoleSpec, ...],
        *,
        coordinator: tuple[str, str] = ("coord", "mage"),
        place=None,
        due_in_days: float = 60,
    ) -> RecordedEvent:
        lat, long = place or PLACES["mage"]
        return self.record(
            ProjectProposed(
                project_id=project_id,
                coordinator_member_id=coordinator[0],
                coordinator_workspace_id=coordinator[1],
                title=f"Project {project_id}",
                deliverable="things",
                delivery_location=SpatialThing(lat=lat, long=long),
                due=self.now + timedelta(days=due_in_days),
                roles=roles,
            ),
            project_id,
            scope=(coordinator[1],),
        )

    def _ids_of(self, project_id, invitation_id, role_id, member_id, workspace_id) -> dict:
        return {
            "project_id": project_id,
            "invitation_id": invitation_id,
            "role_id": role_id,
            "member_id": member_id,
            "member_workspace_id": workspace_id,
        }

    def invite(self, project_id, invitation_id, role_id, member_id, workspace_id):
        ids = self._ids_of(project_id, invitation_id, role_id, member_id, workspace_id)
        return self.record(PartnerInvited(**ids), project_id)

    def accept(self, project_id, invitation_id, role_id, member_id, workspace_id):
        ids = self._ids_of(project_id, invitation_id, role_id, member_id, workspace_id)
        return self.record(InvitationAccepted(**ids), project_id)

    def decline(self, project_id, invitation_id, role_id, member_id, workspace_id):
        ids = self._ids_of(project_id, invitation_id, role_id, member_id, workspace_id)
        return self.record(InvitationDeclined(**ids, reason="busy"), project_id)

    def expire(self, project_id, invitation_id, role_id, member_id, workspace_id):
        ids = self._ids_of(project_id, invitation_id, role_id, member_id, workspace_id)
        return self.record(InvitationExpired(**ids), project_id)

    def withdraw(self, project_id, role_id, member_id, workspace_id):
        return self.record(
            PartnerWithdrawn(
                project_id=project_id,
                role_id=role_id,
                member_id=member_id,
                member_workspace_id=workspace_id,
            ),
            project_id,
        )

    def deliver(self, project_id):
        return self.record(ProjectDelivered(project_id=project_id), project_id)

    def cancel(self, project_id):
        return self.record(ProjectCancelled(project_id=project_id, reason="no budget"), project_id)

    def proposal(self, proposal: CandidatesProposed) -> RecordedEvent:
        """The matcher's proposal, as the publisher would append it to the log."""
        return self.record(proposal, proposal.project_id)
