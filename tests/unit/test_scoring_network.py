"""The directory folded from events, and the proposals it makes: triggers, hard filters on
the project's own state, broader terms, load, reliability, rotation and determinism."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest

from contracts.envelope import PendingEvent
from contracts.matching import CandidatesProposed
from contracts.registry import decode_event
from contracts.wire import decode_body, encode_body
from infra.eventstore import StoredMessage
from services.matching.directory import proposal_pending_event
from services.matching.network import Network, Trigger
from services.matching.replay import ReplayCheck
from services.matching.taxonomy import Taxonomy, TaxonomyError, load_taxonomy
from services.matching.weights import active_weights
from tests.matching_world import World, role

TAXONOMY = load_taxonomy()
WEIGHTS = active_weights()


class Matcher:
    """A world and a network folded from it; proposals go back into the log, as live."""

    def __init__(self) -> None:
        self.world = World()
        self.network = Network(TAXONOMY, WEIGHTS)
        self.proposals: list[CandidatesProposed] = []

    def __getattr__(self, name):
        method = getattr(self.world, name)

        def record_and_fold(*args, **kwargs):
            recorded = method(*args, **kwargs)
            trigger = self.network.apply(recorded)
            if trigger is not None:
                proposal = self.network.propose(trigger)
                if proposal is not None:
                    self.proposals.append(proposal)
                    self.network.apply(self.world.proposal(proposal))
            return recorded

        return record_and_fold

    @property
    def last(self) -> CandidatesProposed:
        return self.proposals[-1]


def names(proposal: CandidatesProposed, role_id: str) -> list[str]:
    found = next(p for p in proposal.proposals if p.role_id == role_id)
    return [c.member_id for c in found.candidates]


@pytest.fixture
def matcher() -> Matcher:
    m = Matcher()
    m.workspace("mage", languages=("it", "en"))
    m.workspace("r84", languages=("it",))
    m.workspace("freiland", languages=("de", "en"))
    m.workspace("bloqs", languages=("en",))
    m.member("coord", "mage", {"industrial-design": 5})
    return m


# -- triggers ---------------------------------------------------------------------------------


def test_a_proposed_project_gets_a_proposal_for_every_role(matcher):
    matcher.member("lena", "freiland", {"leather-sewing": 5})
    matcher.member("tom", "bloqs", {"frame-welding": 4})
    trigger = matcher.project(
        "p1", (role("bags", "leather-sewing"), role("frame", "frame-welding"))
    )
    proposal = matcher.last
    assert proposal.trigger_event_id == trigger.event_id
    assert proposal.trigger_sequence == trigger.sequence
    assert proposal.trigger_type == "project.proposed"
    assert proposal.weights_version == WEIGHTS.version
    assert proposal.taxonomy_version == TAXONOMY.version
    assert names(proposal, "bags") == ["lena"] and names(proposal, "frame") == ["tom"]
    assert [p.open_seats for p in proposal.proposals] == [1, 1]


def test_a_decline_proposes_again_for_the_open_roles_only(matcher):
    for name in ("ann", "bob", "cat"):
        matcher.member(name, "r84", {"leather-sewing": 4})
    matcher.member("tom", "bloqs", {"frame-welding": 4})
    matcher.project("p1", (role("bags", "leather-sewing"), role("frame", "frame-welding")))
    matcher.invite("p1", "i1", "bags", "ann", "r84")
    matcher.invite("p1", "i2", "frame", "tom", "bloqs")
    assert len(matcher.proposals) == 1  # an invitation is no trigger
    decline = matcher.decline("p1", "i1", "bags", "ann", "r84")
    again = matcher.last
    assert len(matcher.proposals) == 2
    assert again.trigger_event_id == decline.event_id
    assert again.trigger_type == "project.invitation_declined"
    assert [p.role_id for p in again.proposals] == ["bags"]  # frame has its invitation
    assert names(again, "bags") == ["bob", "cat"]  # ann declined: not proposed again


def test_an_expired_invitation_proposes_again_and_the_member_may_be_proposed_again(matcher):
    matcher.member("ann", "r84", {"leather-sewing": 4})
    matcher.project("p1", (role("bags", "leather-sewing"),))
    matcher.invite("p1", "i1", "bags", "ann", "r84")
    expired = matcher.expire("p1", "i1", "bags", "ann", "r84")
    assert matcher.last.trigger_event_id == expired.event_id
    assert names(matcher.last, "bags") == ["ann"]


def test_a_withdrawal_reopens_the_seat_and_costs_reliability(matcher):
    matcher.member("ann", "r84", {"leather-sewing": 4})
    matcher.member("bob", "r84", {"leather-sewing": 4})
    matcher.project("p1", (role("bags", "leather-sewing"),))
    matcher.invite("p1", "i1", "bags", "ann", "r84")
    matcher.accept("p1", "i1", "bags", "ann", "r84")
    assert matcher.network.projects["p1"].open_seats(role("bags", "leather-sewing")) == 0
    withdrawal = matcher.withdraw("p1", "bags", "ann", "r84")
    assert matcher.last.trigger_event_id == withdrawal.event_id
    assert names(matcher.last, "bags") == ["bob"]  # ann withdrew from this project
    assert matcher.network.members["ann"].withdrawn == 1


def test_staffed_cancelled_and_unknown_projects_get_no_proposal(matcher):
    matcher.member("ann", "r84", {"leather-sewing": 4})
    matcher.project("p1", (role("bags", "leather-sewing"),))
    matcher.cancel("p1")
    assert "p1" not in matcher.network.projects
    count = len(matcher.proposals)
    matcher.decline("p1", "i9", "bags", "ann", "r84")  # a broken log: ignored, no crash
    matcher.decline("nope", "i9", "bags", "ann", "r84")
    assert len(matcher.proposals) == count


def test_delivery_counts_for_reliability_and_frees_capacity(matcher):
    matcher.member("ann", "r84", {"leather-sewing": 4}, weekly_hours=10)
    matcher.project("p1", (role("bags", "leather-sewing", 60),), due_in_days=42)
    matcher.invite("p1", "i1", "bags", "ann", "r84")
    matcher.accept("p1", "i1", "bags", "ann", "r84")
    # ann's 60 accepted hours leave her nothing for another 60 h before the same due
    matcher.project("p2", (role("more", "leather-sewing", 60),), due_in_days=42)
    assert names(matcher.last, "more") == []
    assert "does not have 60 h free" in matcher.last.proposals[0].no_candidates_reason
    matcher.deliver("p1")
    assert matcher.network.members["ann"].delivered == 1
    matcher.project("p3", (role("again", "leather-sewing", 60),), due_in_days=42)
    (candidate,) = matcher.last.proposals[0].candidates
    reliability = next(f for f in candidate.factors if f.factor == "reliability")
    assert reliability.value == pytest.approx(2 / 3)


# -- who is proposed --------------------------------------------------------------------------


def test_a_broader_request_is_served_by_narrower_capabilities_at_a_lower_score(matcher):
    matcher.member("cutter", "r84", {"laser-cutting": 5})
    matcher.member("fabber", "r84", {"fabrication": 5})
    matcher.member("printer", "r84", {"3d-printing": 3})
    matcher.member("sewer", "r84", {"leather-sewing": 5})
    matcher.project("p1", (role("fab", "fabrication"),))
    (proposal,) = matcher.last.proposals
    by_id = {c.member_id: c for c in proposal.candidates}
    assert [c.member_id for c in proposal.candidates] == ["fabber", "cutter", "printer"]
    assert by_id["cutter"].matched_capability == "laser-cutting"
    assert by_id["cutter"].factors[0].value == pytest.approx(0.49)  # level 5, two steps
    assert by_id["fabber"].factors[0].value == 1.0
    matcher.project("p2", (role("cut", "laser-cutting"),))
    assert names(matcher.last, "cut") == ["cutter"]  # a generalist does not serve a narrow ask


def test_the_coordinator_and_members_already_invited_are_not_proposed(matcher):
    matcher.member("ann", "mage", {"leather-sewing": 4})
    matcher.member("bob", "r84", {"leather-sewing": 4})
    matcher.capabilities("coord", "mage", {"leather-sewing": 5, "industrial-design": 5})
    matcher.project("p1", (role("bags", "leather-sewing", seats=2), role("x", "fabrication")))
    assert sorted(names(matcher.last, "bags")) == ["ann", "bob"]  # not the coordinator
    matcher.invite("p1", "i1", "bags", "bob", "r84")
    matcher.decline("p1", "i0", "bags", "nobody", "r84")  # an unknown invitation: re-propose
    assert names(matcher.last, "bags") == ["ann"]


def test_bob_from_a_new_space_outranks_an_equal_member_of_the_coordinators_space(matcher):
    matcher.member("ann", "mage", {"leather-sewing": 4}, languages=("it", "en"))
    matcher.member("bob", "mage", {"leather-sewing": 4}, languages=("it", "en"))
    matcher.workspace("mage2", place=(45.534, 9.238), languages=("it", "en"))
    matcher.member("zed", "mage2", {"leather-sewing": 4}, languages=("it", "en"))
    matcher.project("p1", (role("bags", "leather-sewing"),))
    assert names(matcher.last, "bags") == ["zed", "ann", "bob"]
    spread = {c.member_id: c.factors[-1].value for c in matcher.last.proposals[0].candidates}
    assert spread == {"zed": 1.0, "ann": 0.0, "bob": 0.0}


def test_distance_and_language_limits_are_hard(matcher):
    matcher.member("near", "r84", {"cnc-milling": 3}, languages=("it",))
    matcher.member("far", "bloqs", {"cnc-milling": 5}, languages=("en",))
    matcher.project("p1", (role("mill", "cnc-milling", max_distance_km=300),))
    assert names(matcher.last, "mill") == ["near"]
    matcher.project("p2", (role("mill", "cnc-milling", required_language="en"),))
    assert names(matcher.last, "mill") == ["far"]
    matcher.project(
        "p3", (role("mill", "cnc-milling", max_distance_km=300, required_language="en"),)
    )
    assert matcher.last.proposals[0].no_candidates_reason == (
        "1 member with cnc-milling in range, but none speaks en"
    )


def test_a_capability_nobody_has_gets_an_explicit_empty_proposal(matcher):
    matcher.project("p1", (role("film", "filmmaking"),))
    (proposal,) = matcher.last.proposals
    assert proposal.candidates == ()
    assert proposal.no_candidates_reason == (
        "nobody in the network has filmmaking or a narrower capability"
    )
    assert matcher.last.team.members == () and not matcher.last.team.complete


def test_profile_changes_reindex_the_member(matcher):
    matcher.member("ann", "r84", {"leather-sewing": 4}, weekly_hours=2)
    matcher.project("p1", (role("bags", "leather-sewing", 40),), due_in_days=28)
    assert names(matcher.last, "bags") == []
    matcher.capacity("ann", "r84", 20)
    matcher.project("p2", (role("bags", "leather-sewing", 40),), due_in_days=28)
    assert names(matcher.last, "bags") == ["ann"]
    matcher.capabilities("ann", "r84", {"dressmaking": 5})
    matcher.project("p3", (role("bags", "leather-sewing", 40),), due_in_days=28)
    assert names(matcher.last, "bags") == []
    matcher.project("p4", (role("dress", "sewing", 40),), due_in_days=28)
    assert names(matcher.last, "dress") == ["ann"]


# -- fairness and rotation --------------------------------------------------------------------


def equal_members(matcher: Matcher, count: int) -> list[str]:
    ids = [f"m{index:02d}" for index in range(count)]
    for member_id in ids:
        matcher.member(member_id, "r84", {"leather-sewing": 4}, weekly_hours=40)
    return ids


def test_equally_qualified_members_are_proposed_in_turn_across_20_projects(matcher):
    ids = equal_members(matcher, 9)
    for index in range(20):
        matcher.project(f"p{index}", (role("bags", "leather-sewing", 8),))
    firsts = Counter(names(p, "bags")[0] for p in matcher.proposals)
    top_threes = {tuple(names(p, "bags")[:3]) for p in matcher.proposals}
    suggested = Counter(p.team.members[0].member_id for p in matcher.proposals)
    assert set(firsts) == set(ids)  # everyone led a list
    assert max(firsts.values()) <= 3  # nobody more than ceil(20 / 9)
    assert len(top_threes) >= 9  # not the same three every time
    assert suggested == firsts  # the suggested team rotates with the ranking


def test_rotation_holds_when_coordinators_invite_the_top_candidate(matcher):
    ids = equal_members(matcher, 6)
    for index in range(20):
        matcher.project(f"p{index}", (role("bags", "leather-sewing", 8),))
        top = names(matcher.last, "bags")[0]
        matcher.invite(f"p{index}", f"i{index}", "bags", top, "r84")
        matcher.accept(f"p{index}", f"i{index}", "bags", top, "r84")
    invited = Counter(names(p, "bags")[0] for p in matcher.proposals)
    assert set(invited) == set(ids)
    assert max(invited.values()) - min(invited.values()) <= 1


def test_winners_rank_down_and_the_passed_over_rank_up(matcher):
    equal_members(matcher, 3)
    matcher.project("p0", (role("bags", "leather-sewing", 8),))
    assert names(matcher.last, "bags") == ["m00", "m01", "m02"]  # equal: by member id
    matcher.project("p1", (role("bags", "leather-sewing", 8),))
    fairness = {
        c.member_id: next(f.value for f in c.factors if f.factor == "fairness")
        for c in matcher.last.proposals[0].candidates
    }
    assert fairness["m00"] < 0.5 < fairness["m01"] == fairness["m02"]
    assert names(matcher.last, "bags") == ["m01", "m02", "m00"]


def test_fairness_forgets_what_is_older_than_its_window(matcher):
    equal_members(matcher, 2)
    matcher.project("p0", (role("bags", "leather-sewing", 8),))
    assert matcher.network.members["m00"].chosen == 1
    matcher.world.now += timedelta(days=WEIGHTS.fairness_window_days + 1)
    matcher.project("p1", (role("bags", "leather-sewing", 8),))
    # p0's history expired when the log clock moved on: m00 leads again
    assert names(matcher.last, "bags") == ["m00", "m01"]


# -- determinism ------------------------------------------------------------------------------


def test_the_same_log_gives_the_same_proposals_and_a_replay_reproduces_them(matcher):
    equal_members(matcher, 5)
    matcher.member("lena", "freiland", {"leather-sewing": 5}, languages=("de", "en"))
    for index in range(6):
        matcher.project(f"p{index}", (role("bags", "leather-sewing", 8, seats=2),))
        matcher.invite(f"p{index}", f"i{index}", "bags", names(matcher.last, "bags")[1], "r84")
        matcher.decline(f"p{index}", f"i{index}", "bags", names(matcher.last, "bags")[1], "r84")
    check = ReplayCheck(TAXONOMY, WEIGHTS)
    check.feed(
        StoredMessage(r.sequence, r.subject, r.recorded_at, encode_body(PendingEvent(*pair)))
        for r in matcher.world.recorded
        for pair in [(r.envelope, r.event)]
    )
    report = check.report()
    assert report.ok and report.reproduced == len(matcher.proposals) == 12


def test_a_replay_notices_a_proposal_it_would_not_make(matcher):
    matcher.member("ann", "r84", {"leather-sewing": 4})
    matcher.project("p1", (role("bags", "leather-sewing"),))
    check = ReplayCheck(TAXONOMY, WEIGHTS)
    messages = [
        StoredMessage(r.sequence, r.subject, r.recorded_at, encode_body(PendingEvent(*pair)))
        for r in matcher.world.recorded
        for pair in [(r.envelope, r.event)]
        if r.type != "member.joined" or r.event.member_id != "ann"  # ann never joined
    ]
    check.feed(messages)
    report = check.report()
    assert not report.ok
    ((project_id, difference),) = report.differing.values()
    assert project_id == "p1" and difference == "role bags: logged ['ann'], replay []"


def test_a_proposal_event_is_derived_from_its_trigger(matcher):
    matcher.member("ann", "r84", {"leather-sewing": 4})
    trigger_event = matcher.project("p1", (role("bags", "leather-sewing"),))
    trigger = Trigger(
        "p1",
        trigger_event.event_id,
        trigger_event.sequence,
        trigger_event.type,
        trigger_event.envelope,
    )
    first = proposal_pending_event(trigger, matcher.last)
    second = proposal_pending_event(trigger, matcher.last)
    assert first.envelope == second.envelope  # same trigger, same event id and envelope
    assert first.envelope.causation_id == trigger_event.event_id
    assert first.envelope.correlation_id == trigger_event.envelope.correlation_id
    assert first.envelope.occurred_at == trigger_event.envelope.occurred_at
    envelope, event = decode_body(encode_body(first))
    assert event == matcher.last and envelope == first.envelope


def test_events_written_before_the_optional_fields_still_decode():
    data = {
        "project_id": "p1",
        "proposals": [{"role_id": "r", "capability": "laser-cutting", "candidates": []}],
        "weights_version": "w",
        "algorithm_version": "1",
        "trigger_event_id": "t",
        "trigger_sequence": 3,
    }
    event = decode_event("matching.candidates_proposed", 1, data)
    assert event.trigger_type is None and event.proposals[0].open_seats is None


# -- taxonomy ---------------------------------------------------------------------------------


def test_the_taxonomy_knows_the_issue_capabilities_and_their_broader_terms():
    for capability in (
        "laser-cutting",
        "cnc-milling",
        "3d-printing",
        "leather-sewing",
        "dressmaking",
        "frame-welding",
        "jewellery",
        "industrial-design",
        "architecture",
        "photography",
        "filmmaking",
    ):
        assert capability in TAXONOMY.broader
    assert TAXONOMY.steps("laser-cutting", "fabrication") == 2
    assert TAXONOMY.steps("leather-sewing", "crafts") == 2  # through leatherwork
    assert TAXONOMY.steps("fabrication", "laser-cutting") is None
    assert TAXONOMY.steps("basket-weaving", "basket-weaving") == 0  # unknown: only itself


def test_an_inconsistent_taxonomy_is_refused():
    with pytest.raises(TaxonomyError, match="not a concept"):
        Taxonomy.from_data({"version": "x", "concepts": {"a": {"broader": ["b"]}}})
    with pytest.raises(TaxonomyError, match="cycle"):
        Taxonomy.from_data(
            {"version": "x", "concepts": {"a": {"broader": ["b"]}, "b": {"broader": ["a"]}}}
        )
