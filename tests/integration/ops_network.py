"""A small network written through the projects handlers, for the ops tests: three spaces,
three members, and projects in every state (staffed, producing, delivered, declined,
cancelled), with real envelopes (actors, scopes, correlation ids)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from contracts import commands as requests
from contracts.projects import RoleSpec
from contracts.values import CapabilityLevel, Measure, SpatialThing
from infra.clock import SystemClock
from infra.ids import new_id
from services.projects.domain import Actor
from services.projects.handlers import CommandMetadata, ProjectsHandlers

OPS = Actor(workspace_id="ops", role="ops")
ADA = Actor(workspace_id="mage", role="coordinator", member_id="ada")
LENA = Actor(workspace_id="freiland", role="member", member_id="lena")
TOM = Actor(workspace_id="bloqs", role="member", member_id="tom")

SPACES = {
    "mage": ("MAGE", "Sesto San Giovanni", "IT", 45.534, 9.238),
    "freiland": ("FreiLand Potsdam", "Potsdam", "DE", 52.39, 13.064),
    "bloqs": ("Building BloQs", "London", "GB", 51.6, -0.05),
}
PEOPLE = {
    "ada": ("mage", "Ada Bikes", "frame-welding"),
    "lena": ("freiland", "Lena Vogt Lederwerk", "leather-sewing"),
    "tom": ("bloqs", "Tom's Frames", "frame-welding"),
}


def meta(actor: Actor) -> CommandMetadata:
    return CommandMetadata(actor=actor, correlation_id=new_id())


@dataclass
class Network:
    handlers: ProjectsHandlers
    projects: list[str] = field(default_factory=list)


async def seed_spaces(handlers: ProjectsHandlers) -> None:
    for workspace_id, (name, city, country, lat, long) in SPACES.items():
        request = requests.RegisterWorkspace(
            workspace_id=workspace_id,
            name=name,
            city=city,
            country=country,
            location=SpatialThing(lat=lat, long=long),
            languages=("en",),
            timezone="Europe/Rome",
        )
        await handlers.register_workspace(request, meta(OPS))
    for member_id, (workspace_id, name, capability) in PEOPLE.items():
        request = requests.JoinWorkspace(
            member_id=member_id,
            name=name,
            kind="artisan",
            capabilities=(CapabilityLevel(capability=capability, level=4),),
            weekly_capacity=Measure(hasNumericalValue=30),
            languages=("en",),
        )
        await handlers.join_workspace(workspace_id, request, meta(OPS))


async def propose(handlers: ProjectsHandlers, title: str) -> str:
    request = requests.ProposeProject(
        title=title,
        deliverable="3 cargo bikes",
        delivery_location=SpatialThing(lat=45.54, long=9.24, mappableAddress="Sesto"),
        due=datetime.now(UTC) + timedelta(days=60),
        roles=(
            RoleSpec(
                role_id="frame",
                capability="frame-welding",
                effortQuantity=Measure(hasNumericalValue=40),
            ),
            RoleSpec(
                role_id="bags",
                capability="leather-sewing",
                effortQuantity=Measure(hasNumericalValue=24),
            ),
        ),
    )
    return (await handlers.propose(request, meta(ADA))).aggregate_id


async def invite(handlers: ProjectsHandlers, project_id: str, role_id: str, member_id: str) -> str:
    outcome = await handlers.invite(
        project_id, requests.InvitePartner(role_id=role_id, member_id=member_id), meta(ADA)
    )
    return outcome.events[0].invitation_id


async def run_project(handlers: ProjectsHandlers, index: int) -> str:
    """One project, taken to a state that depends on `index`."""
    project_id = await propose(handlers, f"Cargo bike #{index}")
    frame = await invite(handlers, project_id, "frame", "tom")
    bags = await invite(handlers, project_id, "bags", "lena")
    await handlers.accept(project_id, frame, meta(TOM))
    ending = index % 4
    if ending == 1:
        await handlers.decline(
            project_id, bags, requests.DeclineInvitation(reason="busy"), meta(LENA)
        )
        return project_id
    if ending == 2:
        await handlers.cancel(project_id, requests.CancelProject(reason="no budget"), meta(ADA))
        return project_id
    await handlers.accept(project_id, bags, meta(LENA))
    if ending == 3:
        await handlers.start_production(project_id, requests.Note(note="go"), meta(ADA))
        await handlers.record_progress(
            project_id, requests.ProgressNote(note="frames welded"), meta(TOM)
        )
        await handlers.deliver(project_id, requests.Note(note="shipped"), meta(ADA))
    return project_id


async def seed_network(store, projects: int = 4) -> Network:
    handlers = ProjectsHandlers(store, SystemClock(), new_id)
    network = Network(handlers)
    await seed_spaces(handlers)
    for index in range(projects):
        network.projects.append(await run_project(handlers, index))
    return network
