"""Builders of realistic test data: events with envelopes, as services would write them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from contracts.base import Event
from contracts.envelope import Envelope, PendingEvent
from contracts.projects import ProgressNoted, ProjectProposed, RoleSpec
from contracts.values import Measure, SpatialThing
from contracts.workspaces import WorkspaceRegistered
from infra.ids import new_id

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


def pending(
    event: Event,
    aggregate_id: str,
    *,
    actor: str = "member-ada",
    scope: tuple[str, ...] = ("mage",),
    event_id: str | None = None,
    correlation_id: str | None = None,
) -> PendingEvent:
    envelope = Envelope(
        event_id=event_id or new_id(),
        type=event.type,
        schema_version=type(event).schema_version,
        aggregate=event.aggregate(),
        aggregate_id=aggregate_id,
        occurred_at=T0,
        actor=actor,
        workspace_scope=scope,
        correlation_id=correlation_id or new_id(),
    )
    return PendingEvent(envelope, event)


def project_proposed(project_id: str, title: str = "Cargo bike with leather panniers"):
    return ProjectProposed(
        project_id=project_id,
        coordinator_member_id="member-ada",
        coordinator_workspace_id="mage",
        title=title,
        deliverable="3 cargo bikes",
        delivery_location=SpatialThing(lat=45.54, long=9.24, mappableAddress="Sesto San Giovanni"),
        due=T0 + timedelta(days=60),
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
                seats=2,
            ),
        ),
    )


def note(project_id: str, text: str) -> ProgressNoted:
    return ProgressNoted(project_id=project_id, note=text)


def workspace_registered(workspace_id: str = "mage") -> WorkspaceRegistered:
    return WorkspaceRegistered(
        workspace_id=workspace_id,
        name="MAGE",
        city="Sesto San Giovanni",
        country="IT",
        location=SpatialThing(lat=45.534, long=9.238),
        languages=("it", "en"),
        timezone="Europe/Rome",
    )
