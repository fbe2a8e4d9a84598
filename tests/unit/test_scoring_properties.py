"""Properties of proposals over random networks: no candidate ever breaks a hard filter,
ranking is a total order, the index finds exactly what scoring everyone would, the team
respects seats and hours, and the same log always gives the same proposals."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from unittest.mock import patch

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.envelope import RecordedEvent
from contracts.matching import CandidatesProposed
from services.matching.network import Network
from services.matching.scoring import committed_hours, great_circle_km, hours_until
from services.matching.taxonomy import load_taxonomy
from services.matching.weights import active_weights
from tests.matching_world import World, role

TAXONOMY = load_taxonomy()
WEIGHTS = active_weights()
CAPABILITIES = [
    "laser-cutting",
    "cnc-milling",
    "3d-printing",
    "digital-fabrication",
    "fabrication",
    "leather-sewing",
    "sewing",
    "frame-welding",
    "metalwork",
    "jewellery",
    "photography",
]
# Roles ask mostly for what members have, or for a broader term of it.
ASKED = [
    "laser-cutting",
    "fabrication",
    "leather-sewing",
    "sewing",
    "digital-fabrication",
    "jewellery",
]
PLACES = [(45.53, 9.24), (45.16, 10.79), (52.39, 13.07), (51.54, -0.06), (48.85, 2.35)]
LANGUAGES = ["it", "en", "de", "fr"]

languages = st.lists(st.sampled_from(LANGUAGES), min_size=1, max_size=2, unique=True)


@st.composite
def worlds(draw) -> World:
    world = World()
    spaces = draw(st.integers(1, 4))
    for index in range(spaces):
        world.workspace(f"w{index}", place=draw(st.sampled_from(PLACES)), languages=draw(languages))
    members = [f"m{index}" for index in range(draw(st.integers(0, 20)))]
    home = {}
    for member_id in members:
        home[member_id] = f"w{draw(st.integers(0, spaces))}"  # w{spaces}: never registered
        world.member(
            member_id,
            home[member_id],
            draw(
                st.dictionaries(
                    st.sampled_from(CAPABILITIES), st.integers(1, 5), min_size=1, max_size=3
                )
            ),
            weekly_hours=draw(st.sampled_from([1, 10, 20, 40])),
            languages=draw(languages),
        )
    for index in range(draw(st.integers(0, 3))):  # other projects give members load
        busy = f"busy{index}"
        hours = draw(st.sampled_from([10, 40, 120]))
        world.project(
            busy,
            (role("r", draw(st.sampled_from(CAPABILITIES)), hours, seats=3),),
            due_in_days=draw(st.sampled_from([7, 30, 90])),
        )
        for n, member_id in enumerate(
            draw(st.lists(st.sampled_from(members or ["x"]), max_size=3, unique=True))
        ):
            world.invite(busy, f"{busy}-{n}", "r", member_id, home.get(member_id, "w0"))
            world.accept(busy, f"{busy}-{n}", "r", member_id, home.get(member_id, "w0"))
    roles = []
    for index in range(draw(st.integers(1, 3))):
        roles.append(
            role(
                f"r{index}",
                draw(st.sampled_from(ASKED)),
                draw(st.sampled_from([4, 20, 60, 200])),
                seats=draw(st.integers(1, 3)),
                max_distance_km=draw(st.sampled_from([None, None, 100, 800])),
                required_language=draw(st.sampled_from([None, None, "en", "it"])),
            )
        )
    coordinator = draw(st.sampled_from([*members, "coord"]))
    world.project(
        "target",
        tuple(roles),
        coordinator=(coordinator, home.get(coordinator, "w0")),
        place=draw(st.sampled_from(PLACES)),
        due_in_days=draw(st.sampled_from([3, 14, 60])),
    )
    for n in range(draw(st.integers(0, 4))):  # invitations, answered or not
        if not members:
            break
        member_id = draw(st.sampled_from(members))
        role_id = draw(st.sampled_from([r.role_id for r in roles]))
        args = ("target", f"t{n}", role_id, member_id, home[member_id])
        world.invite(*args)
        answer = draw(st.sampled_from(["decline", "expire", "accept", None]))
        if answer:
            getattr(world, answer)(*args)
    return world


def fold(world: World, check=None) -> tuple[list[CandidatesProposed], list[RecordedEvent]]:
    """Fold the world's events in order; each proposal goes into the log right after its
    trigger, as the live service appends it. Returns the proposals and the whole log."""
    network = Network(TAXONOMY, WEIGHTS)
    proposals, log = [], []
    for recorded in world.recorded:
        recorded = replace(recorded, sequence=len(log) + 1)
        log.append(recorded)
        trigger = network.apply(recorded)
        proposal = network.propose(trigger) if trigger else None
        if proposal is None:
            continue
        if check is not None:
            check(network, trigger, proposal)
        proposals.append(proposal)
        envelope = recorded.envelope.model_copy(
            update={"event_id": f"x{len(log)}", "type": proposal.type, "aggregate": "matching"}
        )
        log.append(replace(recorded, sequence=len(log) + 1, envelope=envelope, event=proposal))
        network.apply(log[-1])
    return proposals, log


SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(worlds())
def test_no_candidate_lacks_the_capability_or_breaks_a_hard_filter(world):
    def check(network, trigger, proposal):
        project = network.projects[proposal.project_id]
        requests = {r.role_id: r for r in network.role_requests(project, trigger.occurred_at)}
        for role_proposal in proposal.proposals:
            request = requests[role_proposal.role_id]
            for candidate in role_proposal.candidates:
                member = network.members[candidate.member_id]
                # capability, or a narrower one, at the level the member declared
                assert TAXONOMY.steps(candidate.matched_capability, request.capability) is not None
                assert member.capabilities[candidate.matched_capability] == candidate.level
                if request.max_distance_km is not None:
                    space = network.workspaces[member.workspace_id]
                    distance = great_circle_km(space.location, request.delivery)
                    assert distance <= request.max_distance_km
                if request.required_language:
                    assert request.required_language in member.languages
                assert member.member_id not in project.excluded()
                free = hours_until(member.weekly_hours, request.now, request.due) - committed_hours(
                    member.commitment_list(), request.now, request.due
                )
                assert free >= request.effort_hours
                assert candidate.workspace_id == member.workspace_id

    fold(world, check)


@SETTINGS
@given(worlds())
def test_ranking_is_a_total_order_and_scores_are_explained(world):
    def check(network, trigger, proposal):
        for role_proposal in proposal.proposals:
            candidates = role_proposal.candidates
            assert [c.rank for c in candidates] == list(range(1, len(candidates) + 1))
            keys = [(-c.score, c.member_id) for c in candidates]
            assert keys == sorted(keys) and len(set(keys)) == len(keys)
            for candidate in candidates:
                assert all(0 <= f.value <= 1 for f in candidate.factors)
                assert [f.factor for f in candidate.factors] == list(WEIGHTS.factors)
                assert candidate.score == round(sum(f.contribution for f in candidate.factors), 6)
            assert (role_proposal.no_candidates_reason is None) == bool(candidates)

    fold(world, check)


@SETTINGS
@given(worlds())
def test_the_index_finds_exactly_what_scoring_everyone_finds(world):
    def check(network, trigger, proposal):
        project = network.projects[proposal.project_id]
        for request in network.role_requests(project, trigger.occurred_at):
            fast = [(s.member_id, s.score) for s in network.index.search(request)]
            slow = [(s.member_id, s.score) for s in network.index.search_exhaustive(request)]
            assert fast == slow
            with patch("services.matching.index._BEST_KEY_DRIFT", -1):  # exact bound too
                assert [(s.member_id, s.score) for s in network.index.search(request)] == slow

    fold(world, check)


@SETTINGS
@given(worlds())
def test_the_team_fills_seats_from_the_candidates_within_their_hours(world):
    def check(network, trigger, proposal):
        project = network.projects[proposal.project_id]
        requests = {r.role_id: r for r in network.role_requests(project, trigger.occurred_at)}
        by_role = {p.role_id: {c.member_id: c for c in p.candidates} for p in proposal.proposals}
        seats = defaultdict(int)
        hours = defaultdict(float)
        held = set()
        for member in proposal.team.members:
            candidate = by_role[member.role_id][member.member_id]  # a listed candidate
            assert (member.role_id, member.member_id) not in held  # one seat per role each
            held.add((member.role_id, member.member_id))
            seats[member.role_id] += 1
            hours[member.member_id] += requests[member.role_id].effort_hours
            assert hours[member.member_id] <= candidate.free_hours + 0.1  # free_hours is rounded
        for role_id, count in seats.items():
            assert count <= requests[role_id].open_seats
        full = all(seats[r] == requests[r].open_seats for r in requests)
        assert proposal.team.complete == full
        assert proposal.team.total_score == round(sum(m.score for m in proposal.team.members), 6)

    fold(world, check)


@SETTINGS
@given(worlds())
def test_the_same_log_always_gives_the_same_proposals(world):
    proposals, log = fold(world)
    network = Network(TAXONOMY, WEIGHTS)
    again = []
    for recorded in log:  # a replay: the logged proposals are read, not appended
        trigger = network.apply(recorded)
        if trigger is not None and (proposal := network.propose(trigger)) is not None:
            again.append(proposal)
    assert again == proposals
