"""The commands the benchmarks send: a small network, staffed projects, progress notes.

All of it goes through `ProjectsHandlers`, the code the HTTP API runs: load (cached), decide,
append with the expected version.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from contracts import commands as requests
from infra.ids import new_id
from services.projects import domain
from services.projects.handlers import CommandMetadata, ProjectsHandlers

OPS = domain.Actor("ops", "ops")
COORDINATOR = domain.Actor("mage", "coordinator", "ada")
PARTNER = domain.Actor("freiland", "member", "lena")
WORKSPACES = (("mage", "Sesto San Giovanni", "IT"), ("freiland", "Potsdam", "DE"))
MEMBERS = (("ada", "mage", "frame-welding"), ("lena", "freiland", "leather-sewing"))


def meta(actor: domain.Actor) -> CommandMetadata:
    return CommandMetadata(actor=actor, correlation_id=new_id())


def proposal(title: str = "Cargo bike frame") -> requests.ProposeProject:
    return requests.ProposeProject(
        title=title,
        description="A steel cargo-bike frame with leather panniers, made across two spaces.",
        deliverable="3 cargo bikes",
        delivery_location={"lat": 45.46, "long": 9.19, "mappableAddress": "Milano"},
        due=datetime.now(UTC) + timedelta(days=90),
        roles=(
            {
                "role_id": "bags",
                "capability": "leather-sewing",
                "effortQuantity": {"hasNumericalValue": 24, "hasUnit": "hour"},
            },
        ),
    )


def progress(text: str = "frames cut and welded, bags being stitched") -> requests.ProgressNote:
    return requests.ProgressNote(note=text)


async def network(handlers: ProjectsHandlers) -> None:
    for workspace_id, city, country in WORKSPACES:
        await handlers.register_workspace(
            requests.RegisterWorkspace(
                workspace_id=workspace_id,
                name=workspace_id.title(),
                city=city,
                country=country,
                location={"lat": 45.0, "long": 9.0},
                languages=["en"],
                timezone="Europe/Rome",
            ),
            meta(OPS),
        )
    for member_id, workspace_id, capability in MEMBERS:
        await handlers.join_workspace(
            workspace_id,
            requests.JoinWorkspace(
                member_id=member_id,
                name=member_id.title(),
                kind="artisan",
                capabilities=[{"capability": capability, "level": 4}],
                weekly_capacity={"hasNumericalValue": 20},
                languages=["en"],
            ),
            meta(domain.Actor(workspace_id, "coordinator")),
        )


async def staffed_project(handlers: ProjectsHandlers) -> str:
    """Propose, invite, accept: a staffed project that takes progress notes (3 commands)."""
    created = await handlers.propose(proposal(), meta(COORDINATOR))
    project_id = created.aggregate_id
    invited = await handlers.invite(
        project_id, requests.InvitePartner(role_id="bags", member_id="lena"), meta(COORDINATOR)
    )
    invitation_id = invited.events[0].invitation_id
    await handlers.accept(project_id, invitation_id, meta(PARTNER))
    return project_id


async def staffed_projects(handlers: ProjectsHandlers, count: int, concurrency: int = 64) -> list:
    """`count` staffed projects, created `concurrency` at a time."""
    projects: list[str] = []
    semaphore = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with semaphore:
            projects.append(await staffed_project(handlers))

    await asyncio.gather(*(one() for _ in range(count)))
    return projects


def project_story(
    project_id: str,
    now: datetime,
    notes: int = 0,
    coordinator: tuple[str, str] = ("ada", "mage"),
    partner: tuple[str, str] = ("lena", "freiland"),
) -> list:
    """The events of one project's life, as the handlers would decide them: proposed,
    invited, accepted, staffed, production started, then `notes` progress notes."""
    from contracts.projects import (
        InvitationAccepted,
        PartnerInvited,
        ProductionStarted,
        ProgressNoted,
        ProjectProposed,
        ProjectStaffed,
        Seat,
    )

    request = proposal()
    invitation_id = new_id()
    partner_member, partner_workspace = partner
    seat = dict(
        project_id=project_id,
        invitation_id=invitation_id,
        role_id="bags",
        member_id=partner_member,
        member_workspace_id=partner_workspace,
    )
    return [
        ProjectProposed(
            project_id=project_id,
            coordinator_member_id=coordinator[0],
            coordinator_workspace_id=coordinator[1],
            **request.model_dump(),
        ),
        PartnerInvited(**seat, expires_at=now + timedelta(days=7)),
        InvitationAccepted(**seat),
        ProjectStaffed(
            project_id=project_id,
            team=(Seat(role_id="bags", member_id=partner_member, workspace_id=partner_workspace),),
        ),
        ProductionStarted(project_id=project_id, note="cutting starts monday"),
        *(ProgressNoted(project_id=project_id, note=f"step {i} done") for i in range(notes)),
    ]


def pending_events(events: list, aggregate_id: str, scope: tuple[str, ...], now: datetime):
    """Envelopes for events of one aggregate, as the handlers write them."""
    from contracts.envelope import Envelope, PendingEvent

    correlation_id = new_id()
    return [
        PendingEvent(
            Envelope(
                event_id=new_id(),
                type=event.type,
                schema_version=type(event).schema_version,
                aggregate=event.aggregate(),
                aggregate_id=aggregate_id,
                occurred_at=now,
                actor="member:ada",
                workspace_scope=scope,
                correlation_id=correlation_id,
            ),
            event,
        )
        for event in events
    ]
