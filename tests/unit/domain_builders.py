"""Small builders for the domain unit tests: people, requests and the events of a history.

A cargo-bike project coordinated by MAGE: one "frame" seat and two "bags" seats.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from contracts import commands as requests
from contracts.base import Event
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
    Seat,
)
from contracts.values import CapabilityLevel, Measure, SpatialThing
from contracts.workspaces import MemberJoined, WorkspaceRegistered
from services.projects.domain import Actor, Member, Project, Workspace, fold_project

NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
DUE = NOW + timedelta(days=60)
EXPIRES = NOW + timedelta(days=7)
PROJECT = "p1"


@dataclass(frozen=True)
class Person:
    member_id: str
    workspace_id: str

    @property
    def member(self) -> Member:
        """The member aggregate, as the handler loads it for an invitation."""
        return Member(member_id=self.member_id, workspace_id=self.workspace_id, joined=True)

    @property
    def as_member(self) -> Actor:
        return Actor(workspace_id=self.workspace_id, role="member", member_id=self.member_id)

    @property
    def as_coordinator(self) -> Actor:
        return Actor(workspace_id=self.workspace_id, role="coordinator", member_id=self.member_id)


ADA = Person("member-ada", "mage")  # coordinates the project
ARI = Person("member-ari", "mage")  # another coordinator of MAGE
BEA = Person("member-bea", "freiland")
CAL = Person("member-cal", "bloqs")
DAN = Person("member-dan", "r84")
EVE = Person("member-eve", "r84")
OPS = Actor(workspace_id="ops", role="ops")
COORDINATOR = ADA.as_coordinator


# -- workspaces and members ------------------------------------------------------------------


def workspace_details(workspace_id: str = "mage") -> requests.RegisterWorkspace:
    return requests.RegisterWorkspace(
        workspace_id=workspace_id,
        name="MAGE",
        city="Sesto San Giovanni",
        country="IT",
        location=SpatialThing(lat=45.534, long=9.238),
        languages=("it", "en"),
        timezone="Europe/Rome",
    )


def workspace(workspace_id: str = "mage") -> Workspace:
    return Workspace(workspace_id=workspace_id, registered=True, name="MAGE")


def join_details(name: str = "Officina Rossi", member_id: str | None = None):
    return requests.JoinWorkspace(
        member_id=member_id,
        name=name,
        kind="artisan",
        capabilities=(CapabilityLevel(capability="leather-sewing", level=4),),
        equipment=("industrial sewing machine",),
        weekly_capacity=Measure(hasNumericalValue=20),
        languages=("it",),
        presentation="Leather goods since 1987.",
    )


def member_joined(person: Person) -> MemberJoined:
    return MemberJoined(
        member_id=person.member_id,
        workspace_id=person.workspace_id,
        **join_details().model_dump(exclude={"member_id"}),
    )


def workspace_registered(workspace_id: str = "mage") -> WorkspaceRegistered:
    return WorkspaceRegistered(**workspace_details(workspace_id).model_dump())


# -- projects --------------------------------------------------------------------------------


def role(role_id: str, seats: int = 1, capability: str = "frame-welding") -> RoleSpec:
    return RoleSpec(
        role_id=role_id,
        capability=capability,
        effortQuantity=Measure(hasNumericalValue=40),
        seats=seats,
    )


ROLES = (role("frame"), role("bags", seats=2, capability="leather-sewing"))


def proposal(*, due: datetime = DUE, roles: tuple[RoleSpec, ...] = ROLES):
    return requests.ProposeProject(
        title="Cargo bike with leather panniers",
        deliverable="3 cargo bikes",
        delivery_location=SpatialThing(lat=45.54, long=9.24, mappableAddress="Sesto"),
        due=due,
        roles=roles,
    )


def proposed(roles: tuple[RoleSpec, ...] = ROLES, by: Person = ADA) -> ProjectProposed:
    return ProjectProposed(
        project_id=PROJECT,
        coordinator_member_id=by.member_id,
        coordinator_workspace_id=by.workspace_id,
        **proposal(roles=roles).model_dump(),
    )


def _ids(invitation_id: str, role_id: str, person: Person) -> dict:
    return {
        "project_id": PROJECT,
        "invitation_id": invitation_id,
        "role_id": role_id,
        "member_id": person.member_id,
        "member_workspace_id": person.workspace_id,
    }


def invited(
    invitation_id: str, role_id: str, person: Person, expires_at: datetime = EXPIRES
) -> PartnerInvited:
    return PartnerInvited(**_ids(invitation_id, role_id, person), expires_at=expires_at)


def accepted(invitation_id: str, role_id: str, person: Person) -> InvitationAccepted:
    return InvitationAccepted(**_ids(invitation_id, role_id, person))


def declined(invitation_id: str, role_id: str, person: Person, reason: str = ""):
    return InvitationDeclined(**_ids(invitation_id, role_id, person), reason=reason)


def expired(invitation_id: str, role_id: str, person: Person) -> InvitationExpired:
    return InvitationExpired(**_ids(invitation_id, role_id, person))


def withdrawn(role_id: str, person: Person, reason: str = "") -> PartnerWithdrawn:
    return PartnerWithdrawn(
        project_id=PROJECT,
        role_id=role_id,
        member_id=person.member_id,
        member_workspace_id=person.workspace_id,
        reason=reason,
    )


def seat(role_id: str, person: Person) -> Seat:
    return Seat(role_id=role_id, member_id=person.member_id, workspace_id=person.workspace_id)


def staffed(*seats: Seat) -> ProjectStaffed:
    return ProjectStaffed(project_id=PROJECT, team=seats)


def joined(invitation_id: str, role_id: str, person: Person) -> list[Event]:
    """Invited and accepted: the person holds a seat."""
    return [invited(invitation_id, role_id, person), accepted(invitation_id, role_id, person)]


TEAM = (seat("frame", BEA), seat("bags", CAL), seat("bags", DAN))


def staffed_history() -> list[Event]:
    """BEA welds the frame, CAL and DAN sew the bags."""
    return [
        proposed(),
        *joined("i-frame", "frame", BEA),
        *joined("i-bags-1", "bags", CAL),
        *joined("i-bags-2", "bags", DAN),
        staffed(*TEAM),
    ]


def history(status: str) -> list[Event]:
    """Events that bring the project to `status`."""
    return {
        "new": lambda: [],
        "proposed": lambda: [proposed()],
        "staffed": staffed_history,
        "producing": lambda: [*staffed_history(), ProductionStarted(project_id=PROJECT)],
        "delivered": lambda: [
            *staffed_history(),
            ProductionStarted(project_id=PROJECT),
            ProjectDelivered(project_id=PROJECT),
        ],
        "cancelled": lambda: [proposed(), ProjectCancelled(project_id=PROJECT, reason="no funds")],
    }[status]()


def project(*events: Event) -> Project:
    return fold_project(list(events), Project(project_id=PROJECT))
