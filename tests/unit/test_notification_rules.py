"""Who hears about what: the notification rules, case by case and as properties."""

from __future__ import annotations

from datetime import timedelta
from functools import reduce

from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.base import Event
from contracts.matching import Candidate, CandidatesProposed, RoleProposal
from contracts.projects import (
    InvitationAccepted,
    InvitationDeclined,
    InvitationExpired,
    PartnerInvited,
    PartnerWithdrawn,
    ProductionStarted,
    ProjectCancelled,
    ProjectDelivered,
    ProjectStaffed,
    Seat,
)
from contracts.values import CapabilityLevel, Measure
from contracts.workspaces import MemberCapabilitiesDeclared, MemberJoined
from services.notifications.rules import (
    Facts,
    ProjectFacts,
    Recipient,
    audience,
    declared_capabilities,
    evolve_project,
    needed_capabilities,
    ordering_key,
)
from tests.factories import T0, note, pending, project_proposed, workspace_registered

P = "p1"
HOLDERS = {
    "frame-welding": frozenset({"freiland", "r84"}),
    "leather-sewing": frozenset({"bloqs"}),
    "3d-printing": frozenset({"elsewhere"}),
}


def proposed(open_call: bool = False):
    return project_proposed(P).model_copy(update={"open_call": open_call})


def invited(member: str, workspace: str, role: str = "frame", invitation: str | None = None):
    return PartnerInvited(
        project_id=P,
        invitation_id=invitation or f"inv-{member}-{role}",
        role_id=role,
        member_id=member,
        member_workspace_id=workspace,
        expires_at=T0 + timedelta(days=7),
    )


def _answer(cls, member: str, workspace: str, role: str = "frame"):
    return cls(
        project_id=P,
        invitation_id=f"inv-{member}-{role}",
        role_id=role,
        member_id=member,
        member_workspace_id=workspace,
    )


def accepted(member, workspace, role="frame"):
    return _answer(InvitationAccepted, member, workspace, role)


def declined(member, workspace, role="frame"):
    return _answer(InvitationDeclined, member, workspace, role)


def expired(member, workspace, role="frame"):
    return _answer(InvitationExpired, member, workspace, role)


def withdrawn(member, workspace, role="frame"):
    return PartnerWithdrawn(
        project_id=P, role_id=role, member_id=member, member_workspace_id=workspace
    )


def judge(history: list[Event], event: Event, holders=HOLDERS) -> dict[str, Recipient]:
    """The recipients of `event` after `history`, keyed by workspace."""
    project = reduce(evolve_project, history, None)
    envelope = pending(event, P if event.aggregate() == "project" else "x").envelope
    found = audience(Facts(project, holders), event, envelope)
    return {recipient.workspace_id: recipient for recipient in found}


def test_private_proposal_reaches_only_the_coordinator_even_capability_holders():
    found = judge([], proposed(open_call=False))
    assert set(found) == {"mage"}
    assert found["mage"].members == ("member-ada",)
    assert found["mage"].concerns == ("coordinator",)


def test_open_call_reaches_the_workspaces_holding_a_needed_capability():
    found = judge([], proposed(open_call=True))
    assert set(found) == {"mage", "freiland", "r84", "bloqs"}
    assert found["bloqs"].concerns == ("open_call",)
    assert found["bloqs"].members == ()
    assert "elsewhere" not in found  # holds 3d-printing, which no role needs


def test_open_call_is_only_the_proposal_later_events_stay_with_the_involved():
    history = [proposed(open_call=True)]
    assert set(judge(history, note(P, "frame design ready"))) == {"mage"}


def test_invitation_reaches_the_invited_member_and_their_workspace():
    found = judge([proposed()], invited("m-fl", "freiland"))
    assert set(found) == {"mage", "freiland"}
    assert found["freiland"].members == ("m-fl",)
    assert found["freiland"].concerns == ("invitee",)
    assert found["mage"].members == ("member-ada",)


def test_every_invited_or_accepted_workspace_hears_of_project_events():
    history = [
        proposed(),
        invited("m-fl", "freiland"),
        accepted("m-fl", "freiland"),
        invited("m-bq", "bloqs", role="bags"),
    ]
    found = judge(history, note(P, "first frame welded"))
    assert set(found) == {"mage", "freiland", "bloqs"}
    assert found["freiland"].concerns == ("participant",)
    assert found["bloqs"].members == ("m-bq",)


def test_a_declining_workspace_hears_of_its_decline_but_not_afterwards():
    history = [proposed(), invited("m-fl", "freiland")]
    assert set(judge(history, declined("m-fl", "freiland"))) == {"mage", "freiland"}
    history.append(declined("m-fl", "freiland"))
    assert set(judge(history, note(P, "looking for someone else"))) == {"mage"}


def test_expired_and_withdrawn_members_leave_the_audience():
    history = [proposed(), invited("m-fl", "freiland"), expired("m-fl", "freiland")]
    assert set(judge(history, note(P, "n"))) == {"mage"}
    history = [
        proposed(),
        invited("m-fl", "freiland"),
        accepted("m-fl", "freiland"),
        withdrawn("m-fl", "freiland"),
    ]
    assert set(judge(history, note(P, "n"))) == {"mage"}


def test_withdrawal_from_a_staffed_project_makes_it_proposed_again():
    staffed = ProjectStaffed(
        project_id=P, team=(Seat(role_id="frame", member_id="m-fl", workspace_id="freiland"),)
    )
    history = [proposed(), invited("m-fl", "freiland"), accepted("m-fl", "freiland"), staffed]
    assert reduce(evolve_project, history, None).status == "staffed"
    found = judge(history, withdrawn("m-fl", "freiland"))
    assert set(found) == {"mage", "freiland"}
    after = reduce(evolve_project, [*history, withdrawn("m-fl", "freiland")], None)
    assert after.status == "proposed" and after.participants == ()


def test_staffed_delivered_and_cancelled_reach_the_whole_team():
    history = [
        proposed(),
        invited("m-fl", "freiland"),
        accepted("m-fl", "freiland"),
        invited("m-bq", "bloqs", role="bags"),
    ]
    staffed = ProjectStaffed(
        project_id=P,
        team=(
            Seat(role_id="frame", member_id="m-fl", workspace_id="freiland"),
            Seat(role_id="bags", member_id="m-bq", workspace_id="bloqs"),
        ),
    )
    assert set(judge(history, staffed)) == {"mage", "freiland", "bloqs"}
    history.append(staffed)
    for event in (
        ProductionStarted(project_id=P),
        ProjectDelivered(project_id=P),
        ProjectCancelled(project_id=P, reason="client withdrew"),
    ):
        assert set(judge(history, event)) == {"mage", "freiland", "bloqs"}


def test_candidate_proposals_reach_the_coordinator_not_the_candidates():
    proposal = CandidatesProposed(
        project_id=P,
        proposals=(
            RoleProposal(
                role_id="frame",
                capability="frame-welding",
                candidates=(
                    Candidate(
                        rank=1,
                        member_id="m-r84",
                        workspace_id="r84",
                        score=0.9,
                        factors=(),
                        matched_capability="frame-welding",
                    ),
                ),
            ),
        ),
        weights_version="w1",
        algorithm_version="a1",
        trigger_event_id="e1",
        trigger_sequence=1,
    )
    found = judge([proposed(open_call=True)], proposal)
    assert set(found) == {"mage"}
    assert judge([], proposal) == {}  # unknown project: nobody, whatever the scope says
    assert ordering_key(proposal, pending(proposal, P).envelope) == f"project:{P}"


def test_an_unknown_project_falls_back_to_the_scope_its_writer_declared():
    event = note("p-unknown", "hello")
    envelope = pending(event, "p-unknown", scope=("mage", "r84")).envelope
    found = audience(Facts(), event, envelope)
    assert [(r.workspace_id, r.concerns) for r in found] == [
        ("mage", ("scope",)),
        ("r84", ("scope",)),
    ]


def test_member_and_workspace_events_reach_their_own_workspace():
    joined = MemberJoined(
        member_id="m1",
        workspace_id="freiland",
        name="Kim",
        kind="artisan",
        capabilities=(CapabilityLevel(capability="frame-welding", level=4),),
        weekly_capacity=Measure(hasNumericalValue=20),
        languages=("de",),
    )
    found = audience(Facts(), joined, pending(joined, "m1").envelope)
    assert found == (Recipient("freiland", ("m1",), ("workspace",)),)
    registered = workspace_registered("r84")
    found = audience(Facts(), registered, pending(registered, "r84").envelope)
    assert found == (Recipient("r84", (), ("workspace",)),)
    assert ordering_key(joined, pending(joined, "m1").envelope) == "member:m1"


def test_declared_capabilities_replace_the_member_list():
    declared = MemberCapabilitiesDeclared(
        member_id="m1",
        workspace_id="freiland",
        capabilities=(
            CapabilityLevel(capability="laser-cutting", level=2),
            CapabilityLevel(capability="frame-welding", level=5),
        ),
    )
    assert declared_capabilities(declared) == ("m1", "freiland", ("frame-welding", "laser-cutting"))
    assert declared_capabilities(note(P, "x")) is None


def test_holders_are_needed_only_for_open_calls():
    assert needed_capabilities(proposed(open_call=True)) == ("frame-welding", "leather-sewing")
    assert needed_capabilities(proposed(open_call=False)) == ()
    assert needed_capabilities(invited("m", "w")) == ()


def test_events_before_the_proposal_leave_no_facts():
    assert evolve_project(None, invited("m", "w")) is None


# -- properties over random staffing histories ------------------------------------------

WORKSPACES = ("mage", "freiland", "bloqs", "r84", "cowo")
MEMBERS = tuple((f"m{index}", WORKSPACES[index % 5]) for index in range(8))
ROLES = ("frame", "bags")

action = st.tuples(
    st.sampled_from(
        ["invite", "accept", "decline", "expire", "withdraw", "note", "start", "cancel"]
    ),
    st.integers(0, len(MEMBERS) - 1),
    st.sampled_from(ROLES),
)


def history_from(actions, open_call: bool) -> list[Event]:
    """A plausible project history: answers only to invitations that are open."""
    events: list[Event] = [proposed(open_call)]
    project: ProjectFacts | None = evolve_project(None, events[0])
    for kind, index, role in actions:
        member, workspace = MEMBERS[index]
        seat = {(p.role_id, p.member_id): p.status for p in project.participants}
        status = seat.get((role, member))
        event: Event | None = None
        if kind == "invite" and status is None:
            event = invited(member, workspace, role)
        elif kind in ("accept", "decline", "expire") and status == "invited":
            cls = {"accept": accepted, "decline": declined, "expire": expired}[kind]
            event = cls(member, workspace, role)
        elif kind == "withdraw" and status == "accepted":
            event = withdrawn(member, workspace, role)
        elif kind == "note":
            event = note(P, "progress")
        elif kind == "start":
            event = ProductionStarted(project_id=P)
        elif kind == "cancel":
            event = ProjectCancelled(project_id=P, reason="stopped")
        if event is not None:
            events.append(event)
            project = evolve_project(project, event)
    return events


@settings(max_examples=300, deadline=None)
@given(actions=st.lists(action, max_size=30), open_call=st.booleans())
def test_scope_never_leaks_beyond_coordinator_and_invited_workspaces(actions, open_call):
    events = history_from(actions, open_call)
    ever_invited = {"mage"}
    for position, event in enumerate(events):
        if isinstance(event, PartnerInvited):
            ever_invited.add(event.member_workspace_id)
        found = judge(events[:position], event)
        if open_call and position == 0:
            continue  # the open call itself goes to capability holders, by design
        assert set(found) <= ever_invited, (event.type, set(found) - ever_invited)


@settings(max_examples=300, deadline=None)
@given(actions=st.lists(action, max_size=30), open_call=st.booleans())
def test_coordinator_and_every_invited_or_accepted_workspace_hear_each_event(actions, open_call):
    events = history_from(actions, open_call)
    for position, event in enumerate(events):
        project = reduce(evolve_project, events[:position], None)
        found = judge(events[:position], event)
        assert "mage" in found
        if project is not None:
            for participant in project.participants:
                assert participant.member_id in found[participant.workspace_id].members


@settings(max_examples=100, deadline=None)
@given(actions=st.lists(action, max_size=30))
def test_rules_are_deterministic(actions):
    events = history_from(actions, open_call=True)
    for position, event in enumerate(events):
        assert judge(events[:position], event) == judge(events[:position], event)
