"""Scoring, factor by factor: each value in 0..1, each hard filter named, the team greedy."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from services.matching.scoring import (
    Commitment,
    FilterCounts,
    Fit,
    RoleRequest,
    Scored,
    candidates_limit,
    capability_level_value,
    committed_hours,
    evaluate,
    fairness_value,
    free_capacity_value,
    great_circle_km,
    hours_until,
    language_value,
    no_candidates_reason,
    proximity_value,
    rank,
    reliability_value,
    suggest_team,
    team_spread_value,
    total,
)
from services.matching.weights import Weights, WeightsError, active_weights, load_weights

NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
WEIGHTS = active_weights()
PARIS, LONDON, MILAN = (48.8566, 2.3522), (51.5074, -0.1278), (45.4642, 9.19)


@dataclass
class Someone:
    member_id: str = "m1"
    workspace_id: str = "ws1"
    weekly_hours: float = 20
    languages: frozenset[str] = frozenset({"en"})
    delivered: int = 0
    withdrawn: int = 0
    passed_over: int = 0
    chosen: int = 0
    commitments: list[Commitment] = field(default_factory=list)

    def commitment_list(self):
        return self.commitments


def request(**changes) -> RoleRequest:
    values = {
        "project_id": "p1",
        "role_id": "r1",
        "capability": "laser-cutting",
        "effort_hours": 40,
        "open_seats": 1,
        "now": NOW,
        "due": NOW + timedelta(weeks=4),
        "delivery": MILAN,
        "wanted_languages": frozenset({"en"}),
        "represented": frozenset({"coordinators-space"}),
        "excluded": frozenset({"coordinator"}),
    }
    values.update(changes)
    return RoleRequest(**values)


FIT = Fit("laser-cutting", 4, 0)


# -- the factors ------------------------------------------------------------------------------


def test_great_circle_distance_matches_known_cities():
    assert great_circle_km(PARIS, LONDON) == pytest.approx(343.5, abs=1)
    assert great_circle_km(MILAN, PARIS) == pytest.approx(640, abs=5)
    assert great_circle_km(MILAN, MILAN) == 0
    assert great_circle_km(PARIS, LONDON) == pytest.approx(great_circle_km(LONDON, PARIS))


@pytest.mark.parametrize(
    ("level", "steps", "expected"),
    [(5, 0, 1.0), (3, 0, 0.6), (1, 0, 0.2), (5, 1, 0.7), (5, 2, 0.49), (4, 1, 0.56)],
)
def test_capability_level_fit_rewards_level_and_penalises_each_step_to_a_narrower_one(
    level, steps, expected
):
    assert capability_level_value(level, steps, 0.7) == pytest.approx(expected)


def test_commitments_count_the_hours_that_fall_before_the_due_date():
    due = NOW + timedelta(weeks=4)
    before = Commitment(30, NOW + timedelta(weeks=2))  # all of it before our due
    after = Commitment(80, NOW + timedelta(weeks=8))  # half of its time is before our due
    overdue = Commitment(10, NOW - timedelta(days=1))  # late: counts whole
    assert committed_hours([before], NOW, due) == 30
    assert committed_hours([after], NOW, due) == pytest.approx(40)
    assert committed_hours([overdue, before, after], NOW, due) == pytest.approx(80)
    assert committed_hours([], NOW, due) == 0


def test_hours_until_due_follow_the_weekly_capacity():
    assert hours_until(20, NOW, NOW + timedelta(weeks=3)) == pytest.approx(60)
    assert hours_until(20, NOW, NOW - timedelta(days=1)) == 0


@pytest.mark.parametrize(
    ("available", "free", "effort", "expected"),
    [(100, 100, 0, 1.0), (100, 100, 40, 0.6), (100, 40, 40, 0.0), (0, 0, 10, 0.0)],
)
def test_free_capacity_is_the_share_of_time_left_after_taking_the_role(
    available, free, effort, expected
):
    assert free_capacity_value(available, free, effort) == pytest.approx(expected)


def test_proximity_is_one_on_site_half_at_the_half_distance_and_zero_when_unknown():
    assert proximity_value(0, 300) == 1
    assert proximity_value(300, 300) == 0.5
    assert proximity_value(None, 300) == 0
    assert proximity_value(100, 300) > proximity_value(1000, 300) > 0


def test_language_overlap_is_the_share_of_the_project_languages_spoken():
    assert language_value(frozenset({"it", "en"}), frozenset({"it", "en"})) == 1
    assert language_value(frozenset({"de", "en"}), frozenset({"it", "en"})) == 0.5
    assert language_value(frozenset({"de"}), frozenset({"it"})) == 0
    assert language_value(frozenset({"de"}), frozenset()) == 1


def test_reliability_weighs_delivered_against_withdrawn_and_starts_neutral():
    assert reliability_value(0, 0) == 0.5
    assert reliability_value(3, 0) == 0.8
    assert reliability_value(0, 3) == 0.2
    assert reliability_value(9, 1) > reliability_value(1, 1)


def test_fairness_lifts_the_passed_over_and_lowers_those_who_win_everything():
    assert fairness_value(0, 0) == 0.5
    assert fairness_value(8, 0) == 0.9
    assert fairness_value(0, 8) == 0.1
    assert fairness_value(5, 1) > fairness_value(1, 1) > fairness_value(1, 5)


def test_team_spread_rewards_a_space_the_project_does_not_have_yet():
    assert team_spread_value("new-space", frozenset({"mage"})) == 1
    assert team_spread_value("mage", frozenset({"mage"})) == 0


# -- one candidate ----------------------------------------------------------------------------


def test_a_qualified_member_is_scored_with_every_factor_and_the_weights():
    scored = evaluate(Someone(), FIT, 100.0, request(), WEIGHTS)
    assert isinstance(scored, Scored)
    assert len(scored.values) == 7
    assert all(0 <= value <= 1 for value in scored.values)
    assert scored.score == total(scored.values, WEIGHTS)
    assert scored.free_hours == pytest.approx(20 * 4)
    assert scored.values[0] == pytest.approx(0.8)  # level 4 of 5, exact capability


@pytest.mark.parametrize(
    ("member", "distance", "changes", "stage"),
    [
        (Someone(), 900.0, {"max_distance_km": 500}, "distance"),
        (Someone(), None, {"max_distance_km": 500}, "distance"),
        (Someone(languages=frozenset({"de"})), 10.0, {"required_language": "it"}, "language"),
        (Someone(member_id="coordinator"), 10.0, {}, "project"),
        (Someone(weekly_hours=5), 10.0, {"effort_hours": 40}, "capacity"),
        (Someone(), 10.0, {"due": NOW - timedelta(days=1)}, "capacity"),
        (
            Someone(commitments=[Commitment(60, NOW + timedelta(weeks=3))]),
            10.0,
            {"effort_hours": 40},
            "capacity",
        ),
    ],
)
def test_each_hard_filter_rules_a_member_out_by_name(member, distance, changes, stage):
    assert evaluate(member, FIT, distance, request(**changes), WEIGHTS) == stage


def test_the_first_broken_filter_is_the_one_named():
    member = Someone(languages=frozenset({"de"}), weekly_hours=1)
    changes = {"max_distance_km": 10, "required_language": "it"}
    assert evaluate(member, FIT, 50.0, request(**changes), WEIGHTS) == "distance"


def test_a_member_who_fits_exactly_is_kept_with_no_spare_capacity():
    scored = evaluate(Someone(weekly_hours=10), FIT, 0.0, request(effort_hours=40), WEIGHTS)
    assert isinstance(scored, Scored)
    assert scored.values[1] == 0  # free capacity after the role


def test_ranking_is_by_score_then_member_id():
    a = Scored("b", "ws", 0.5, (), FIT, None, 10)
    b = Scored("a", "ws", 0.5, (), FIT, None, 10)
    c = Scored("c", "ws", 0.9, (), FIT, None, 10)
    assert [s.member_id for s in rank([a, b, c], 10)] == ["c", "a", "b"]
    assert [s.member_id for s in rank([a, b, c], 2)] == ["c", "a"]


def test_more_seats_list_more_candidates_within_a_cap():
    assert candidates_limit(1, WEIGHTS) == WEIGHTS.max_candidates
    assert candidates_limit(3, WEIGHTS) == WEIGHTS.max_candidates + 2
    assert candidates_limit(50, WEIGHTS) == 2 * WEIGHTS.max_candidates


# -- no candidates, explained ------------------------------------------------------------------


def counts(*outcomes) -> FilterCounts:
    found = FilterCounts()
    for outcome in outcomes:
        found.record(outcome)
    return found


@pytest.mark.parametrize(
    ("outcomes", "changes", "expected"),
    [
        ((), {}, "nobody in the network has laser-cutting or a narrower capability"),
        (
            ("distance", "distance"),
            {"max_distance_km": 50},
            "2 members with laser-cutting, but none within 50 km of the delivery location",
        ),
        (
            ("distance", "language"),
            {"max_distance_km": 50, "required_language": "it"},
            "1 member with laser-cutting in range, but none speaks it",
        ),
        (
            ("project", "project", "language"),
            {"required_language": "it"},
            "2 members with laser-cutting qualify, but all are already on the project, "
            "or declined or withdrew from it",
        ),
        (
            ("capacity", "project"),
            {"effort_hours": 40},
            "1 member with laser-cutting qualifies, but does not have 40 h free before 2026-11-30",
        ),
        (
            ("capacity", "capacity", "project"),
            {"effort_hours": 40},
            "2 members with laser-cutting qualify, but none has 40 h free before 2026-11-30",
        ),
        (
            ("project",),
            {},
            "1 member with laser-cutting qualifies, but is already on the project, or declined "
            "or withdrew from it",
        ),
    ],
)
def test_no_candidates_names_the_filter_that_left_nobody(outcomes, changes, expected):
    assert no_candidates_reason(request(**changes), counts(*outcomes)) == expected


def test_no_candidates_when_the_due_date_has_passed_says_so():
    reason = no_candidates_reason(
        request(due=NOW - timedelta(days=2)), counts("capacity", "capacity")
    )
    assert reason == "no time is left: the project was due 2026-10-31"


# -- the team ---------------------------------------------------------------------------------


def scored(member_id, ws, score, free=100.0, spread=1.0) -> Scored:
    return Scored(member_id, ws, score, (1, 1, 1, 1, 1, 1, spread), FIT, 10.0, free)


def test_team_takes_the_best_pairs_and_never_two_seats_of_one_role_for_one_member():
    bags = request(role_id="bags", open_seats=2, effort_hours=10)
    team = suggest_team([(bags, [scored("ann", "ws1", 0.9), scored("bob", "ws2", 0.8)])], WEIGHTS)
    assert [(m.role_id, m.member_id) for m in team.members] == [("bags", "ann"), ("bags", "bob")]
    assert team.complete and team.workspaces == 2
    assert team.total_score == pytest.approx(1.7)


def test_team_is_incomplete_when_a_role_runs_out_of_candidates():
    bags = request(role_id="bags", open_seats=3, effort_hours=10)
    team = suggest_team([(bags, [scored("ann", "ws1", 0.9)])], WEIGHTS)
    assert not team.complete
    assert len(team.members) == 1


def test_one_member_takes_several_roles_only_with_the_hours_for_all_of_them():
    frame = request(role_id="frame", effort_hours=30)
    bags = request(role_id="bags", effort_hours=30)
    ann, ann_again = scored("ann", "ws1", 0.9, free=50), scored("ann", "ws1", 0.9, free=50)
    team = suggest_team([(frame, [ann, scored("bob", "ws2", 0.5)]), (bags, [ann_again])], WEIGHTS)
    # ann has 50 free hours: one 30 h role, not two; bags has no one else
    assert [(m.role_id, m.member_id) for m in team.members] == [("frame", "bob"), ("bags", "ann")]
    enough = scored("ann", "ws1", 0.9, free=60)
    team = suggest_team([(frame, [enough]), (bags, [enough])], WEIGHTS)
    assert [m.member_id for m in team.members] == ["ann", "ann"]


def test_the_spread_bonus_counts_once_per_new_space():
    bags = request(role_id="bags", open_seats=2, effort_hours=10)
    same_space = [scored("ann", "ws1", 0.9), scored("amy", "ws1", 0.86), scored("bob", "ws2", 0.84)]
    team = suggest_team([(bags, same_space)], WEIGHTS)
    # amy's 0.86 includes a spread bonus ws1 no longer earns once ann is in: bob wins
    assert [m.member_id for m in team.members] == ["ann", "bob"]
    assert team.members[1].score == 0.84


def test_team_ties_are_broken_by_role_then_member_id():
    one = request(role_id="a", effort_hours=1)
    two = request(role_id="b", effort_hours=1)
    team = suggest_team(
        [(two, [scored("zed", "ws1", 0.5)]), (one, [scored("amy", "ws2", 0.5)])], WEIGHTS
    )
    assert [(m.role_id, m.member_id) for m in team.members] == [("b", "zed"), ("a", "amy")]
    assert team.total_score == 1.0


# -- weights are data --------------------------------------------------------------------------


def test_the_active_weights_are_versioned_data_covering_every_factor():
    assert WEIGHTS.version == "default-2026-11"
    assert sum(WEIGHTS.factors.values()) == pytest.approx(1.0)
    assert load_weights("default-2026-11") == WEIGHTS


def test_invalid_weights_are_refused_with_the_reason():
    with pytest.raises(WeightsError, match="factors must be exactly"):
        Weights(version="x", factors={"proximity": 1.0})
    factors = dict(WEIGHTS.factors, proximity=-1)
    with pytest.raises(WeightsError, match="proximity must be a number >= 0"):
        Weights(version="x", factors=factors)
    with pytest.raises(WeightsError, match="no weights version 'nope'"):
        load_weights("nope")
