"""Scoring candidates for a role: hard filters, seven explained factors, ranking, team.

Pure: standard library and contracts only. No clock (times come from the triggering
event), no randomness, no I/O. Every factor is a value in 0..1; a candidate's score is the
sum of value x weight (weights come from versioned configuration, see weights.py), rounded
to 6 decimals so that equal inputs give equal scores and ties are broken by member id.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

from contracts.matching import Candidate, RoleProposal, TeamMember, TeamSuggestion

ALGORITHM_VERSION = "1"

EARTH_RADIUS_KM = 6371.0088
SECONDS_PER_WEEK = 7 * 24 * 3600

# Hard filters, in the order they are applied (the capability filter is the index itself).
Stage = Literal["capability", "distance", "language", "project", "capacity"]
STAGES: tuple[Stage, ...] = ("capability", "distance", "language", "project", "capacity")


class WeightsLike(Protocol):
    max_candidates: int
    broader_term_factor: float
    proximity_half_km: float

    def weight(self, factor: str) -> float: ...


# -- the facts scoring needs ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Commitment:
    """An accepted seat on an active project: its hours, spread evenly until its due."""

    hours: float
    due: datetime


@dataclass(frozen=True, slots=True)
class Fit:
    """How a member serves a requested capability: through `matched_capability`, at
    `level`, `steps` up the taxonomy (0: the very capability requested)."""

    matched_capability: str
    level: int
    steps: int


class MemberLike(Protocol):
    member_id: str
    workspace_id: str
    weekly_hours: float
    languages: frozenset[str]
    delivered: int
    withdrawn: int
    passed_over: int
    chosen: int

    def commitment_list(self) -> Iterable[Commitment]: ...


@dataclass(frozen=True, slots=True)
class RoleRequest:
    """One open role of a project, as the trigger sees it."""

    project_id: str
    role_id: str
    capability: str
    effort_hours: float
    open_seats: int
    now: datetime  # the trigger's occurred_at
    due: datetime
    delivery: tuple[float, float]  # lat, long
    max_distance_km: float | None = None
    required_language: str | None = None
    # the coordinator's workspace languages (and the required one): language overlap
    wanted_languages: frozenset[str] = frozenset()
    # workspaces already on the project (coordinator's, invited, accepted): team spread
    represented: frozenset[str] = frozenset()
    # members who may not be proposed: coordinator, invited, holding a seat, declined, withdrew
    excluded: frozenset[str] = frozenset()

    @property
    def weeks(self) -> float:
        return max(0.0, (self.due - self.now).total_seconds() / SECONDS_PER_WEEK)


@dataclass(frozen=True, slots=True)
class Scored:
    member_id: str
    workspace_id: str
    score: float
    values: tuple[float, ...]  # one per factor, in FACTORS order
    fit: Fit
    distance_km: float | None
    free_hours: float

    @property
    def spread(self) -> float:
        return self.values[-1]


# Order of the factors in Scored.values and in explanations.
FACTORS: tuple[str, ...] = (
    "capability_level",
    "free_capacity",
    "proximity",
    "language",
    "reliability",
    "fairness",
    "team_spread",
)


# -- the factors, one by one ----------------------------------------------------------------


def great_circle_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Haversine distance between two (lat, long) points in km."""
    return great_circle_km_radians(radians_of(a), radians_of(b))


def radians_of(point: tuple[float, float]) -> tuple[float, float, float]:
    """(lat, long) in degrees -> (lat, long, cos lat) in radians, for great_circle_km_radians."""
    lat, long = math.radians(point[0]), math.radians(point[1])
    return lat, long, math.cos(lat)


def great_circle_km_radians(a: tuple[float, float, float], b: tuple[float, float, float]) -> float:
    """Haversine distance of two points given by `radians_of` (computed once per place)."""
    h = math.sin((b[0] - a[0]) / 2) ** 2 + a[2] * b[2] * math.sin((b[1] - a[1]) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def capability_level_value(level: int, steps: int, broader_term_factor: float) -> float:
    """Level 5 in the capability asked for is 1; each step to a narrower one costs a factor."""
    return (level / 5) * broader_term_factor**steps


def committed_hours(commitments: Iterable[Commitment], now: datetime, due: datetime) -> float:
    """Hours of accepted seats that fall before `due`, each seat's work spread evenly from
    `now` to its own due (a seat already overdue counts whole)."""
    total = 0.0
    for commitment in commitments:
        if commitment.due <= now or commitment.due <= due:
            total += commitment.hours
        else:
            total += commitment.hours * (due - now) / (commitment.due - now)
    return total


def hours_until(weekly_hours: float, now: datetime, due: datetime) -> float:
    return weekly_hours * max(0.0, (due - now).total_seconds() / SECONDS_PER_WEEK)


def free_capacity_value(available: float, free: float, effort: float) -> float:
    """Share of the member's time until due still free after taking the role."""
    if available <= 0:
        return 0.0
    return min(1.0, max(0.0, (free - effort) / available))


def proximity_value(distance_km: float | None, half_km: float) -> float:
    """1 on site, 0.5 at `half_km`, towards 0 far away; 0 when the place is unknown."""
    if distance_km is None:
        return 0.0
    return half_km / (half_km + distance_km)


def language_value(languages: frozenset[str], wanted: frozenset[str]) -> float:
    """Share of the project's languages the member speaks (1 when none is asked for)."""
    if not wanted:
        return 1.0
    return len(languages & wanted) / len(wanted)


def reliability_value(delivered: int, withdrawn: int) -> float:
    """Delivered vs withdrawn history, smoothed: a newcomer is 0.5."""
    return (delivered + 1) / (delivered + withdrawn + 2)


def fairness_value(passed_over: int, chosen: int) -> float:
    """Rotation. Lately proposed but not chosen -> towards 1; chosen every time -> towards
    0; no history -> 0.5. "Chosen" = invited, or picked for a suggested team."""
    return (passed_over + 1) / (passed_over + chosen + 2)


def team_spread_value(workspace_id: str, represented: frozenset[str]) -> float:
    """1 when the member brings a space the project does not have yet."""
    return 0.0 if workspace_id in represented else 1.0


# -- one candidate --------------------------------------------------------------------------


def evaluate(
    member: MemberLike,
    fit: Fit,
    distance_km: float | None,
    request: RoleRequest,
    weights: WeightsLike,
) -> Scored | Stage:
    """Score a member who has the capability (or a narrower one), or name the hard filter
    that rules them out."""
    if request.max_distance_km is not None and (
        distance_km is None or distance_km > request.max_distance_km
    ):
        return "distance"
    if request.required_language and request.required_language not in member.languages:
        return "language"
    if member.member_id in request.excluded:
        return "project"
    available = hours_until(member.weekly_hours, request.now, request.due)
    free = available - committed_hours(member.commitment_list(), request.now, request.due)
    if available <= 0 or free < request.effort_hours:
        return "capacity"
    values = (
        capability_level_value(fit.level, fit.steps, weights.broader_term_factor),
        free_capacity_value(available, free, request.effort_hours),
        proximity_value(distance_km, weights.proximity_half_km),
        language_value(member.languages, request.wanted_languages),
        reliability_value(member.delivered, member.withdrawn),
        fairness_value(member.passed_over, member.chosen),
        team_spread_value(member.workspace_id, request.represented),
    )
    values = tuple(round(value, 6) for value in values)
    score = total(values, weights)
    return Scored(member.member_id, member.workspace_id, score, values, fit, distance_km, free)


def total(values: Sequence[float], weights: WeightsLike) -> float:
    pairs = zip(FACTORS, values, strict=True)
    return round(sum(round(value * weights.weight(name), 6) for name, value in pairs), 6)


def ranking_key(scored: Scored) -> tuple[float, str]:
    """The total order: best score first, then the member id (stable, never random)."""
    return (-scored.score, scored.member_id)


def rank(scored: Iterable[Scored], limit: int) -> list[Scored]:
    return sorted(scored, key=ranking_key)[:limit]


def candidates_limit(open_seats: int, weights: WeightsLike) -> int:
    """How many candidates a role lists: max_candidates, plus one per extra seat, at most
    twice max_candidates (the event must stay well under the NATS message size)."""
    return min(weights.max_candidates + max(0, open_seats - 1), 2 * weights.max_candidates)


def candidate_data(scored: Scored, position: int, weights: WeightsLike) -> dict:
    """A `Candidate` as data (validated once, with the whole event)."""
    return {
        "rank": position,
        "member_id": scored.member_id,
        "workspace_id": scored.workspace_id,
        "score": scored.score,
        "factors": [
            {
                "factor": name,
                "value": value,
                "weight": weights.weight(name),
                "contribution": round(value * weights.weight(name), 6),
            }
            for name, value in zip(FACTORS, scored.values, strict=True)
        ],
        "matched_capability": scored.fit.matched_capability,
        "distance_km": None if scored.distance_km is None else round(scored.distance_km, 1),
        "level": scored.fit.level,
        "free_hours": round(scored.free_hours, 1),
    }


def to_candidate(scored: Scored, position: int, weights: WeightsLike) -> Candidate:
    return Candidate.model_validate(candidate_data(scored, position, weights))


def role_proposal_data(
    request: RoleRequest, ranked: Sequence[Scored], weights: WeightsLike, reason: str | None
) -> dict:
    """A `RoleProposal` as data: the ranked candidates, or why there are none."""
    return {
        "role_id": request.role_id,
        "capability": request.capability,
        "candidates": [candidate_data(s, i, weights) for i, s in enumerate(ranked, start=1)],
        "no_candidates_reason": None if ranked else reason,
        "open_seats": request.open_seats,
    }


def role_proposal(
    request: RoleRequest, ranked: Sequence[Scored], weights: WeightsLike, reason: str | None
) -> RoleProposal:
    return RoleProposal.model_validate(role_proposal_data(request, ranked, weights, reason))


# -- "no candidates", explained -------------------------------------------------------------


@dataclass
class FilterCounts:
    """How many members are left after each hard filter (capability first)."""

    left: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STAGES, 0))

    def record(self, outcome: Scored | Stage) -> None:
        """Count a member who has the capability and stopped at `outcome` (or passed)."""
        stopped = STAGES.index(outcome) if isinstance(outcome, str) else len(STAGES)
        for stage in STAGES[:stopped]:
            self.left[stage] += 1


def _members(count: int) -> str:
    return "1 member" if count == 1 else f"{count} members"


def no_candidates_reason(request: RoleRequest, counts: FilterCounts) -> str:
    """Name the hard filter that left nobody, with how many members it ruled out."""
    left = counts.left
    cap = request.capability
    if left["capability"] == 0:
        return f"nobody in the network has {cap} or a narrower capability"
    if left["distance"] == 0:
        return (
            f"{_members(left['capability'])} with {cap}, but none within "
            f"{request.max_distance_km:g} km of the delivery location"
        )
    if left["language"] == 0:
        return (
            f"{_members(left['distance'])} with {cap} in range, but none speaks "
            f"{request.required_language}"
        )
    if left["project"] == 0:
        qualified = left["language"]
        return f"{_members(qualified)} with {cap} " + (
            "qualifies, but is already on the project, or declined or withdrew from it"
            if qualified == 1
            else "qualify, but all are already on the project, or declined or withdrew from it"
        )
    if request.weeks <= 0:
        return f"no time is left: the project was due {request.due:%Y-%m-%d}"
    qualified = left["project"]
    hours = f"{request.effort_hours:g} h free before {request.due:%Y-%m-%d}"
    return f"{_members(qualified)} with {cap} " + (
        f"qualifies, but does not have {hours}"
        if qualified == 1
        else f"qualify, but none has {hours}"
    )


# -- the team -------------------------------------------------------------------------------


def suggest_team(
    roles: Sequence[tuple[RoleRequest, Sequence[Scored]]],
    weights: WeightsLike,
) -> TeamSuggestion:
    """Greedy weighted cover of every open seat: repeatedly take the best (role, candidate)
    pair. A member never holds two seats of one role, takes several roles only with the free
    hours for all of them, and the team-spread bonus counts once per new space."""
    spread_weight = weights.weight("team_spread")
    remaining = {request.role_id: request.open_seats for request, _ in roles}
    efforts = {request.role_id: request.effort_hours for request, _ in roles}
    represented: set[str] = set().union(*(request.represented for request, _ in roles))
    order = {request.role_id: index for index, (request, _) in enumerate(roles)}
    held: dict[str, set[str]] = {}
    used_hours: dict[str, float] = {}
    picks: list[tuple[str, Scored, float]] = []
    while True:
        best: tuple[tuple[float, str, str], str, Scored, float] | None = None
        for request, ranked in roles:
            role_id = request.role_id
            if remaining[role_id] == 0:
                continue
            for scored in ranked:
                member = scored.member_id
                if role_id in held.get(member, ()):
                    continue
                if used_hours.get(member, 0.0) + efforts[role_id] > scored.free_hours + 1e-9:
                    continue
                adjusted = scored.score
                if scored.spread > 0 and scored.workspace_id in represented:
                    adjusted = round(scored.score - scored.spread * spread_weight, 6)
                key = (-adjusted, role_id, member)
                if best is None or key < best[0]:
                    best = (key, role_id, scored, adjusted)
        if best is None:
            break
        _, role_id, scored, adjusted = best
        remaining[role_id] -= 1
        held.setdefault(scored.member_id, set()).add(role_id)
        used_hours[scored.member_id] = used_hours.get(scored.member_id, 0.0) + efforts[role_id]
        represented.add(scored.workspace_id)
        picks.append((role_id, scored, adjusted))
    picks.sort(key=lambda pick: (order[pick[0]], -pick[2], pick[1].member_id))
    members = tuple(
        TeamMember(
            role_id=role_id,
            member_id=scored.member_id,
            workspace_id=scored.workspace_id,
            score=adjusted,
        )
        for role_id, scored, adjusted in picks
    )
    return TeamSuggestion(
        members=members,
        total_score=round(sum(adjusted for _, _, adjusted in picks), 6),
        complete=all(count == 0 for count in remaining.values()),
        workspaces=len({member.workspace_id for member in members}),
    )
