"""Events of the matching service: ranked, explained partner proposals."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from contracts.base import Contract, Event, Identifier
from contracts.values import CapabilityId


class FactorScore(Contract):
    """One factor's part in a candidate's score: value in 0..1 times its weight."""

    factor: str
    value: float = Field(ge=0, le=1)
    weight: float = Field(ge=0)
    contribution: float


class Candidate(Contract):
    rank: int = Field(ge=1)
    member_id: Identifier
    workspace_id: Identifier
    score: float
    factors: tuple[FactorScore, ...]
    matched_capability: CapabilityId
    distance_km: float | None = None
    # Optional since the first matcher release (older events lack them):
    level: int | None = Field(default=None, ge=1, le=5)  # the member's level in matched_capability
    free_hours: float | None = None  # hours the member has free until `due`, before this role


class RoleProposal(Contract):
    role_id: Identifier
    capability: CapabilityId
    candidates: tuple[Candidate, ...] = ()
    # Set when nobody qualifies: says which filter left nobody, never silence.
    no_candidates_reason: str | None = None
    open_seats: int | None = Field(default=None, ge=0)  # seats still to fill when proposed


class TeamMember(Contract):
    role_id: Identifier
    member_id: Identifier
    workspace_id: Identifier
    score: float


class TeamSuggestion(Contract):
    members: tuple[TeamMember, ...]
    total_score: float
    complete: bool
    workspaces: int = Field(ge=0)


class CandidatesProposed(Event):
    """Aggregate `matching`, id = the project id: the matcher's stream for that project."""

    type: Literal["matching.candidates_proposed"] = "matching.candidates_proposed"
    project_id: Identifier
    proposals: tuple[RoleProposal, ...]
    team: TeamSuggestion | None = None
    weights_version: str
    algorithm_version: str
    # The event that triggered this proposal (ProjectProposed, a decline, a withdrawal ...).
    trigger_event_id: str
    trigger_sequence: int = Field(ge=0)
    # Optional: the trigger's type (project.proposed, project.invitation_declined ...) and the
    # capability taxonomy version the matcher used.
    trigger_type: str | None = None
    taxonomy_version: str | None = None
