"""The capability index: who could serve a requested capability, found without scoring
everyone.

For every taxonomy concept (broader terms included), per space, the members who serve it,
sorted by the part of their score that does not depend on the project: capability level
fit, reliability, fairness. A search opens spaces in order of the project part of their
bound and walks their members best-bound-first; it stops as soon as no unseen member can
beat the last listed one, so its cost grows with the candidates near the top, not with the
number of members. `search_exhaustive` scores everyone: the reference it is tested against.
Pure: no I/O.
"""

from __future__ import annotations

import heapq
import math
from bisect import bisect_left, insort
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from services.matching.scoring import (
    Commitment,
    FilterCounts,
    Fit,
    RoleRequest,
    Scored,
    WeightsLike,
    candidates_limit,
    capability_level_value,
    evaluate,
    fairness_value,
    great_circle_km,
    great_circle_km_radians,
    radians_of,
    ranking_key,
    reliability_value,
)
from services.matching.taxonomy import Taxonomy

# Scores are rounded to 6 decimals; the index's bounds are not: keep a margin.
_BOUND_MARGIN = 1e-5
# Recompute a concept's best static part after this many removals of a bucket head.
_BEST_KEY_DRIFT = 200


@dataclass(slots=True)
class Workspace:
    workspace_id: str
    name: str
    city: str
    country: str
    location: tuple[float, float]
    languages: frozenset[str]
    radians: tuple[float, float, float] = (0.0, 0.0, 1.0)

    def __post_init__(self) -> None:
        self.radians = radians_of(self.location)


@dataclass(slots=True, eq=False)
class Member:
    member_id: str
    workspace_id: str
    name: str
    capabilities: dict[str, int]
    equipment: tuple[str, ...]
    weekly_hours: float
    languages: frozenset[str]
    delivered: int = 0
    withdrawn: int = 0
    passed_over: int = 0
    chosen: int = 0
    commitments: dict[tuple[str, str], Commitment] = field(default_factory=dict)
    fits: dict[str, Fit] = field(default_factory=dict)  # concept -> how the member serves it
    keys: dict[str, float] = field(default_factory=dict)  # concept -> sort key in its bucket

    def commitment_list(self) -> Iterable[Commitment]:
        return self.commitments.values()


class CapabilityIndex:
    def __init__(
        self,
        taxonomy: Taxonomy,
        weights: WeightsLike,
        members: dict[str, Member],
        workspaces: dict[str, Workspace],
    ) -> None:
        self.taxonomy = taxonomy
        self.weights = weights
        self.members = members  # shared with the Network that owns them
        self.workspaces = workspaces
        # concept -> workspace -> [(-static score, member_id)] ascending
        self._buckets: dict[str, dict[str, list[tuple[float, str]]]] = {}
        # concept -> a key <= every key in its buckets (the best static part, or better),
        # and how often a bucket head was removed since it was last computed exactly
        self._best_key: dict[str, float] = {}
        self._best_key_drift: dict[str, int] = {}
        self._ws_members: dict[str, set[str]] = {}
        self._ws_weekly: dict[str, float] = {}
        self._ws_spoken: dict[str, Counter[str]] = {}  # languages spoken by a space's members
        self._ancestors: dict[str, dict[str, int]] = {}
        w = weights.weight
        self._w_level, self._w_reliability, self._w_fairness = (
            w("capability_level"),
            w("reliability"),
            w("fairness"),
        )
        self._w_capacity, self._w_proximity, self._w_language, self._w_spread = (
            w("free_capacity"),
            w("proximity"),
            w("language"),
            w("team_spread"),
        )

    def places(self, delivery: tuple[float, float], represented: frozenset[str]) -> Places:
        return Places(self, delivery, represented)

    def entries(self) -> int:
        return sum(len(bucket) for spaces in self._buckets.values() for bucket in spaces.values())

    def _static_score(self, member: Member, fit: Fit) -> float:
        return (
            self._w_level
            * capability_level_value(fit.level, fit.steps, self.weights.broader_term_factor)
            + self._w_reliability * reliability_value(member.delivered, member.withdrawn)
            + self._w_fairness * fairness_value(member.passed_over, member.chosen)
        )

    def add(self, member: Member) -> None:
        """Index a member (whose fairness tally is set) under every concept they serve."""
        member.fits = self._fits(member.capabilities)
        member.keys = {}
        for concept, fit in member.fits.items():
            key = -self._static_score(member, fit)
            member.keys[concept] = key
            bucket = self._buckets.setdefault(concept, {}).setdefault(member.workspace_id, [])
            self._insert(concept, bucket, key, member.member_id)
        ws = member.workspace_id
        self._ws_members.setdefault(ws, set()).add(member.member_id)
        self._ws_weekly[ws] = max(self._ws_weekly.get(ws, 0.0), member.weekly_hours)
        self._ws_spoken.setdefault(ws, Counter()).update(member.languages)

    def remove(self, member: Member) -> None:
        for concept, key in member.keys.items():
            bucket = self._buckets[concept][member.workspace_id]
            self._remove(concept, bucket, key, member.member_id)
            if not bucket:
                del self._buckets[concept][member.workspace_id]
        member.keys = {}
        ws = member.workspace_id
        self._ws_members[ws].discard(member.member_id)
        spoken = self._ws_spoken[ws]
        spoken.subtract(member.languages)
        for language in member.languages:
            if spoken[language] <= 0:
                del spoken[language]
        self.refresh_hours(ws)

    def rekey(self, member: Member) -> None:
        """Re-sort a member whose reliability or fairness changed."""
        for concept, fit in member.fits.items():
            old = member.keys[concept]
            new = -self._static_score(member, fit)
            if new == old:
                continue
            bucket = self._buckets[concept][member.workspace_id]
            self._remove(concept, bucket, old, member.member_id)
            self._insert(concept, bucket, new, member.member_id)
            member.keys[concept] = new

    def _insert(self, concept: str, bucket: list, key: float, member_id: str) -> None:
        insort(bucket, (key, member_id))
        if key < self._best_key.get(concept, math.inf):
            self._best_key[concept] = key

    def _remove(self, concept: str, bucket: list, key: float, member_id: str) -> None:
        index = bisect_left(bucket, (key, member_id))
        del bucket[index]
        if index == 0:  # the bound may now be loose (never wrong): recompute it now and then
            self._best_key_drift[concept] = self._best_key_drift.get(concept, 0) + 1

    def best_key(self, concept: str) -> float:
        """A lower bound of every sort key of the concept (an upper bound of static parts)."""
        if self._best_key_drift.get(concept, 0) > _BEST_KEY_DRIFT:
            self._best_key[concept] = min(
                (bucket[0][0] for bucket in self._buckets.get(concept, {}).values()),
                default=math.inf,
            )
            self._best_key_drift[concept] = 0
        return self._best_key.get(concept, math.inf)

    def refresh_hours(self, ws: str) -> None:
        hours = [self.members[m].weekly_hours for m in self._ws_members.get(ws, ())]
        self._ws_weekly[ws] = max(hours, default=0.0)

    def _fits(self, capabilities: dict[str, int]) -> dict[str, Fit]:
        """Every concept the member serves, through their best-fitting capability."""
        best: dict[str, tuple[float, int, str, Fit]] = {}
        factor = self.weights.broader_term_factor
        for capability, level in capabilities.items():
            for concept, steps in self._ancestors_of(capability).items():
                value = capability_level_value(level, steps, factor)
                candidate = (-value, steps, capability, Fit(capability, level, steps))
                if concept not in best or candidate[:3] < best[concept][:3]:
                    best[concept] = candidate
        return {concept: entry[3] for concept, entry in best.items()}

    def _ancestors_of(self, capability: str) -> dict[str, int]:
        found = self._ancestors.get(capability)
        if found is None:
            found = self._ancestors[capability] = self.taxonomy.ancestors(capability)
        return found

    def search(self, request: RoleRequest, places: Places | None = None) -> list[Scored]:
        """The ranked candidates of one role, best first, scoring only members near the top.

        Bound of a member = the project part of their space's bound (proximity, team spread,
        the best language overlap among the space's members) + free capacity as if they had
        the space's largest weekly hours and no load + their own static part (level,
        reliability, fairness), by which each space's bucket is sorted. Spaces are opened
        in order of their project part (with the best static part of any member as the
        optimistic rest), their members walked best-bound-first, and the walk stops when no
        bound reaches the last listed score. The result equals `search_exhaustive`."""
        by_space = self._buckets.get(request.capability)
        weeks = request.weeks
        if not by_space or weeks <= 0:
            return []
        if places is None:
            places = Places(self, request.delivery, request.represented)
        effort = request.effort_hours
        if places.most_weekly_hours * weeks < effort:
            return []
        limit = candidates_limit(request.open_seats, self.weights)
        max_distance, required = request.max_distance_km, request.required_language
        order = places.order(request.wanted_languages)
        distances = places.distance
        weekly, spoken, w_capacity = self._ws_weekly, self._ws_spoken, self._w_capacity
        best_key = self.best_key(capability := request.capability)
        # what any member of a space not opened yet could add to its project part, at most
        rest = w_capacity * (1.0 - effort / (places.most_weekly_hours * weeks)) - best_key
        members, weights = self.members, self.weights
        heads: list[tuple[float, str, int, float]] = []
        top: list[tuple[float, str, Scored]] = []
        opened, count = 0, len(order)
        while True:
            unopened = -order[opened][0] + rest if opened < count else -math.inf
            walked = -heads[0][0] if heads else -math.inf
            if len(top) >= limit and max(unopened, walked) + _BOUND_MARGIN < -top[-1][0]:
                break
            if unopened >= walked:
                if opened >= count:
                    break
                negative_static, ws = order[opened]
                opened += 1
                bucket = by_space.get(ws)
                if bucket is None:
                    continue
                if max_distance is not None:
                    distance = distances[ws]
                    if distance is None or distance > max_distance:
                        continue
                if required is not None and required not in spoken[ws]:
                    continue
                most_hours = weekly[ws] * weeks
                if most_hours < effort:
                    continue
                base = w_capacity * (1.0 - effort / most_hours) - negative_static
                heapq.heappush(heads, (bucket[0][0] - base, ws, 0, base))
                continue
            _, ws, position, base = heads[0]
            bucket = by_space[ws]
            if position + 1 < len(bucket):
                heapq.heapreplace(heads, (bucket[position + 1][0] - base, ws, position + 1, base))
            else:
                heapq.heappop(heads)
            member = members[bucket[position][1]]
            outcome = evaluate(member, member.fits[capability], distances[ws], request, weights)
            if isinstance(outcome, Scored):
                insort(top, (-outcome.score, outcome.member_id, outcome))
                if len(top) > limit:
                    top.pop()
        return [entry[2] for entry in top]

    def search_exhaustive(self, request: RoleRequest) -> list[Scored]:
        """Reference implementation: score every member who serves the capability."""
        scored = [outcome for outcome in self._outcomes(request) if isinstance(outcome, Scored)]
        return sorted(scored, key=ranking_key)[: candidates_limit(request.open_seats, self.weights)]

    def filter_counts(self, request: RoleRequest) -> FilterCounts:
        counts = FilterCounts()
        for outcome in self._outcomes(request):
            counts.record(outcome)
        return counts

    def _outcomes(self, request: RoleRequest) -> Iterator[Scored | str]:
        for ws, bucket in sorted(self._buckets.get(request.capability, {}).items()):
            space = self.workspaces.get(ws)
            distance = None if space is None else great_circle_km(space.location, request.delivery)
            for _, member_id in bucket:
                member = self.members[member_id]
                yield evaluate(
                    member, member.fits[request.capability], distance, request, self.weights
                )


class Places:
    """Per proposal: each space's distance to the delivery and the part of its members'
    score bound that is the same for every role (proximity, team spread, languages)."""

    def __init__(
        self, index: CapabilityIndex, delivery: tuple[float, float], represented: frozenset[str]
    ) -> None:
        self.index = index
        self.delivery = radians_of(delivery)
        self.represented = represented
        self._distance: dict[str, float | None] | None = None
        self._static: dict[frozenset[str], dict[str, float]] = {}
        self._order: dict[frozenset[str], list[tuple[float, str]]] = {}
        self.most_weekly_hours = max(index._ws_weekly.values(), default=0.0)

    @property
    def distance(self) -> dict[str, float | None]:
        if self._distance is None:
            spaces, delivery = self.index.workspaces, self.delivery
            self._distance = {
                ws: None
                if (space := spaces.get(ws)) is None
                else great_circle_km_radians(space.radians, delivery)
                for ws in self.index._ws_spoken
            }
        return self._distance

    def static(self, wanted: frozenset[str]) -> dict[str, float]:
        found = self._static.get(wanted)
        if found is None:
            index = self.index
            half = index.weights.proximity_half_km
            w_p, w_s, w_l = index._w_proximity, index._w_spread, index._w_language
            represented, spoken = self.represented, index._ws_spoken
            size = len(wanted)
            found = self._static[wanted] = {
                ws: (0.0 if distance is None else w_p * half / (half + distance))
                + (0.0 if ws in represented else w_s)
                + (
                    w_l * sum(1 for language in wanted if language in spoken[ws]) / size
                    if size
                    else w_l
                )
                for ws, distance in self.distance.items()
            }
        return found

    def order(self, wanted: frozenset[str]) -> list[tuple[float, str]]:
        """Spaces by the project part of their bound, best first."""
        found = self._order.get(wanted)
        if found is None:
            found = self._order[wanted] = sorted(
                ((-value, ws) for ws, value in self.static(wanted).items())
            )
        return found
