"""One readable line per event, for the project timeline (pure)."""

from __future__ import annotations

from contracts.base import Event
from contracts.matching import CandidatesProposed
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
)


def describe(event: Event) -> str:
    match event:
        case ProjectProposed():
            roles = ", ".join(f"{r.seats} x {r.capability}" for r in event.roles)
            return f"Proposed “{event.title}” needing {roles}, due {event.due.date().isoformat()}"
        case PartnerInvited():
            return f"Invited {event.member_id} ({event.member_workspace_id}) for {event.role_id}"
        case InvitationAccepted():
            return (
                f"{event.member_id} ({event.member_workspace_id}) accepted the {event.role_id} seat"
            )
        case InvitationDeclined():
            reason = f": {event.reason}" if event.reason else ""
            return f"{event.member_id} declined the {event.role_id} seat{reason}"
        case InvitationExpired():
            return f"The invitation of {event.member_id} for {event.role_id} expired"
        case PartnerWithdrawn():
            reason = f": {event.reason}" if event.reason else ""
            return f"{event.member_id} withdrew from {event.role_id}{reason}"
        case ProjectStaffed():
            spaces = len({seat.workspace_id for seat in event.team})
            return f"Fully staffed: {len(event.team)} partners from {spaces} spaces"
        case ProductionStarted():
            return "Production started" + (f": {event.note}" if event.note else "")
        case ProgressNoted():
            return f"Progress: {event.note}"
        case ProjectDelivered():
            return "Delivered" + (f": {event.note}" if event.note else "")
        case ProjectCancelled():
            return f"Cancelled: {event.reason}"
        case CandidatesProposed():
            found = sum(len(p.candidates) for p in event.proposals)
            return f"Matching proposed {found} candidates for {len(event.proposals)} roles"
    return event.type
