"""Properties of the project lifecycle: whatever commands are thrown at a project — by the
right people or the wrong ones, at any time — the accepted ones fold to a valid state, and
replaying their events rebuilds exactly that state."""

from __future__ import annotations

from datetime import timedelta
from functools import reduce
from typing import get_args

import pytest
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from contracts import commands as requests
from contracts.base import Event
from contracts.projects import InvitationAccepted, ProjectStaffed
from contracts.values import CapabilityLevel, Measure
from services.projects.domain import (
    SYSTEM,
    Accept,
    Actor,
    AlreadyExistsError,
    Cancel,
    ChangeCapacity,
    DeclareCapabilities,
    Decline,
    Deliver,
    DomainError,
    Expire,
    Invite,
    JoinWorkspace,
    Member,
    NotAllowedError,
    Project,
    Propose,
    RecordProgress,
    RegisterWorkspace,
    StartProduction,
    Status,
    Withdraw,
    Workspace,
    decide_member,
    decide_project,
    decide_workspace,
    evolve_member,
    evolve_project,
    fold_project,
)
from tests.unit.domain_builders import (
    ADA,
    ARI,
    BEA,
    CAL,
    DAN,
    EVE,
    NOW,
    OPS,
    PROJECT,
    join_details,
    member_joined,
    proposal,
    role,
    workspace,
    workspace_details,
)

STATUSES = set(get_args(Status))
PEOPLE = (ADA, ARI, BEA, CAL, DAN, EVE)
MEMBERS = tuple(person.member for person in PEOPLE)
STRANGER = Member("member-zed", "r84")  # never joined
ACTORS = (
    *(person.as_member for person in PEOPLE),
    ADA.as_coordinator,
    ARI.as_coordinator,
    BEA.as_coordinator,
    Actor("mage", "coordinator"),  # a coordinator token without a member
    OPS,
    SYSTEM,
)
ROLE_IDS = ("frame", "bags", "paint")
# The lifecycle diagram of services/projects/domain.py as (before, after) pairs.
EDGES = {
    ("new", "proposed"),
    ("proposed", "staffed"),
    ("staffed", "proposed"),
    ("staffed", "producing"),
    ("producing", "delivered"),
    ("proposed", "cancelled"),
    ("staffed", "cancelled"),
    ("producing", "cancelled"),
}

FAST = settings(
    max_examples=200,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

hours = st.integers
ticks = hours(0, 6).map(lambda h: timedelta(hours=h))  # the clock moves on between commands
ahead = hours(-6, 7 * 24).map(lambda h: timedelta(hours=h))  # a due date or an expiry
a_week_or_two = hours(24, 14 * 24).map(lambda h: timedelta(hours=h))
role_specs = st.lists(st.sampled_from(ROLE_IDS), min_size=1, max_size=2, unique=True).flatmap(
    lambda ids: st.tuples(*(hours(1, 2).map(lambda n, i=i: role(i, seats=n)) for i in ids))
)
mostly_right = st.sampled_from((True, True, False))
anyone = st.sampled_from(ACTORS)
notes = st.sampled_from(["Frame welded", "Bags cut", "Ready for paint"])


def actor_of(member_id: str, workspace_id: str) -> Actor:
    return Actor(workspace_id=workspace_id, role="member", member_id=member_id)


class ProjectLifecycle(RuleBasedStateMachine):
    """Drives one project with random commands, keeping what `decide` accepted."""

    fresh_invitation_ids = True  # the handler mints a new id for every invitation

    def __init__(self) -> None:
        super().__init__()
        self.project = Project(project_id=PROJECT)
        self.log: list[Event] = []
        self.now = NOW
        self.invitations_sent = 0
        self.reached: set[str] = set()

    def teardown(self) -> None:
        # Coverage of the lifecycle, shown by `pytest --hypothesis-show-statistics`.
        furthest = [s for s in ("delivered", "producing", "staffed") if s in self.reached]
        event(f"reached {furthest[0] if furthest else 'at most proposed'}")
        if sum(isinstance(e, ProjectStaffed) for e in self.log) > 1:
            event("restaffed after a withdrawal")

    # -- the one way a command is applied ---------------------------------------------------

    def tick(self, data):
        self.now += data.draw(ticks, label="time passes")
        return self.now

    def apply(self, data, command, actor: Actor) -> None:
        now, before = self.now, self.project
        try:
            events = decide_project(before, command, actor, now)
        except DomainError as refusal:
            # (3) a refused command emits nothing and is refused again, the same way.
            with pytest.raises(DomainError) as again:
                decide_project(before, command, actor, now)
            assert (type(again.value), str(again.value)) == (type(refusal), str(refusal))
            assert self.project is before
            return
        assert events, f"{type(command).__name__} was accepted but emitted nothing"
        # (4) decide is deterministic, and time only gates: it never leaks into the events.
        assert decide_project(before, command, actor, now) == events
        for other_now in (
            NOW - timedelta(days=365),
            now + timedelta(hours=1),
            NOW + timedelta(days=3650),
        ):
            try:
                assert decide_project(before, command, actor, other_now) == events
            except DomainError:
                pass  # refused at that time: time may gate a command, never shape its events
        after = reduce(evolve_project, events, before)
        assert (before.status, after.status) in EDGES | {(s, s) for s in STATUSES}
        self.check_staffing(before, events, after)
        self.project = after
        self.log.extend(events)
        self.reached.add(after.status)

    @staticmethod
    def check_staffing(before: Project, events: list[Event], after: Project) -> None:
        kinds = [type(fact) for fact in events]
        if ProjectStaffed in kinds:
            assert kinds == [InvitationAccepted, ProjectStaffed]
            assert before.status == "proposed" and not before.fully_staffed
            assert after.fully_staffed and events[1].team == after.team
        if InvitationAccepted in kinds and after.fully_staffed:
            assert ProjectStaffed in kinds, "the completing acceptance must staff atomically"

    # -- what clients do: at random, or the next sensible step (by the right person or not) --

    def either(self, data, right: Actor) -> Actor:
        """The right actor two times in three, else anyone at all."""
        return right if data.draw(mostly_right, label="right actor?") else data.draw(anyone)

    def role_id(self, data) -> str:
        known = [r.role_id for r in self.project.roles]
        return data.draw(st.sampled_from((*known, *ROLE_IDS, "ghost")), label="role")

    @initialize(data=st.data(), roles=role_specs, due_in=a_week_or_two)
    def first_proposal(self, data, roles, due_in):
        command = Propose(PROJECT, proposal(due=self.tick(data) + due_in, roles=roles))
        self.apply(data, command, self.either(data, ADA.as_coordinator))

    @rule(data=st.data(), roles=role_specs, due_in=ahead)
    def propose_at_random(self, data, roles, due_in):
        command = Propose(PROJECT, proposal(due=self.tick(data) + due_in, roles=roles))
        self.apply(data, command, self.either(data, ADA.as_coordinator))

    @rule(data=st.data(), expires_in=ahead)
    def invite_at_random(self, data, expires_in):
        now = self.tick(data)
        if self.fresh_invitation_ids:
            invitation_id = f"inv{self.invitations_sent}"
        else:
            invitation_id = data.draw(st.sampled_from(["inv0", "inv1"]), label="id")
        self.invitations_sent += 1
        invitee = data.draw(st.sampled_from((*MEMBERS, STRANGER)), label="invitee")
        command = Invite(invitation_id, self.role_id(data), invitee, now + expires_in)
        self.apply(data, command, self.either(data, ADA.as_coordinator))

    @rule(data=st.data(), kind=st.sampled_from([Accept, Decline, Expire]))
    def answer_at_random(self, data, kind):
        self.tick(data)
        pool = [(i.invitation_id, i.member_id, i.workspace_id) for i in self.project.invitations]
        invitation_id, member_id, workspace_id = data.draw(
            st.sampled_from((*pool, ("i-unknown", "member-zed", "r84"))), label="invitation"
        )
        right = SYSTEM if kind is Expire else actor_of(member_id, workspace_id)
        command = Decline(invitation_id, "Booked") if kind is Decline else kind(invitation_id)
        self.apply(data, command, self.either(data, right))

    @rule(data=st.data(), note=notes)
    def act_at_random(self, data, note):
        self.tick(data)
        command = data.draw(
            st.sampled_from(
                [
                    Withdraw(self.role_id(data), "Workshop flooded"),
                    StartProduction(note),
                    RecordProgress(note),
                    Deliver(note),
                    Cancel("Client withdrew"),
                ]
            ),
            label="command",
        )
        partners = [actor_of(s.member_id, s.workspace_id) for s in self.project.team]
        self.apply(data, command, data.draw(st.sampled_from((*partners, *ACTORS)), label="actor"))

    @precondition(lambda self: self.project.status == "proposed")
    @rule(data=st.data(), expires_in=a_week_or_two)
    def invite_to_an_open_seat(self, data, expires_in):
        now = self.tick(data)
        open_roles = [r.role_id for r in self.project.roles if self.project.open_seats(r.role_id)]
        role_id = data.draw(st.sampled_from(tuple(open_roles)), label="open role")
        invitee = data.draw(st.sampled_from(MEMBERS), label="invitee")
        command = Invite(f"inv{self.invitations_sent}", role_id, invitee, now + expires_in)
        self.invitations_sent += 1
        self.apply(data, command, self.either(data, ADA.as_coordinator))

    @precondition(lambda self: any(i.status == "pending" for i in self.project.invitations))
    @rule(data=st.data())
    def accept_a_pending_invitation(self, data):
        self.tick(data)
        pending = [i for i in self.project.invitations if i.status == "pending"]
        invitation = data.draw(st.sampled_from(tuple(pending)), label="pending invitation")
        actor = self.either(data, actor_of(invitation.member_id, invitation.workspace_id))
        self.apply(data, Accept(invitation.invitation_id), actor)

    @precondition(lambda self: self.project.status == "staffed")
    @rule(data=st.data())
    def withdraw_a_partner(self, data):
        self.tick(data)
        partner = data.draw(st.sampled_from(self.project.team), label="partner")
        actor = self.either(data, actor_of(partner.member_id, partner.workspace_id))
        self.apply(data, Withdraw(partner.role_id, "Workshop flooded"), actor)

    @precondition(lambda self: self.project.status in ("staffed", "producing"))
    @rule(data=st.data(), note=notes)
    def move_production_on(self, data, note):
        self.tick(data)
        status = self.project.status
        command = StartProduction(note) if status == "staffed" else Deliver(note)
        command = data.draw(st.sampled_from([command, RecordProgress(note)]), label="command")
        self.apply(data, command, self.either(data, ADA.as_coordinator))

    # -- (1) always a valid state, (2) replay gives the same state ---------------------------

    @invariant()
    def the_state_is_valid(self):
        project = self.project
        assert project.status in STATUSES
        assert (project.status == "new") == (not self.log)
        for spec in project.roles:
            holders = [i.member_id for i in project.holding(spec.role_id, "accepted")]
            assert len(holders) <= spec.seats, f"{spec.role_id} is over-staffed: {holders}"
            assert len(holders) == len(set(holders)), f"two {spec.role_id} seats: {holders}"
        if project.status == "staffed":
            assert project.fully_staffed
        if project.status == "proposed":
            assert not project.fully_staffed, "a complete team must have staffed the project"
        ids = [i.invitation_id for i in project.invitations]
        assert len(ids) == len(set(ids)), f"invitation ids reused: {ids}"
        scope = project.workspace_scope
        assert list(scope) == sorted(set(scope))
        if project.status != "new":
            assert project.coordinator_workspace_id in scope

    @invariant()
    def replaying_the_events_gives_the_same_state(self):
        assert fold_project(self.log, Project(project_id=PROJECT)) == self.project
        if self.log:
            assert fold_project(self.log) == self.project

    @invariant()
    def staffing_always_comes_with_the_acceptance_that_completed_the_team(self):
        for index, fact in enumerate(self.log):
            if isinstance(fact, ProjectStaffed):
                assert index > 0 and isinstance(self.log[index - 1], InvitationAccepted)


TestAnyCommandSequence = ProjectLifecycle.TestCase  # (1)-(4) over random command sequences
TestAnyCommandSequence.settings = FAST


class ReusedInvitationIds(ProjectLifecycle):
    """The same, but invitation ids collide (a client-chosen or badly derived id)."""

    fresh_invitation_ids = False


def test_reused_invitation_ids_are_refused_so_the_state_stays_valid():
    run_state_machine_as_test(
        ReusedInvitationIds, settings=settings(FAST, derandomize=True, phases=[Phase.generate])
    )


# -- workspaces and members: who may do what -------------------------------------------------

WORKSPACE_IDS = ("mage", "freiland", "r84")
any_actor = st.builds(
    Actor,
    workspace_id=st.sampled_from(WORKSPACE_IDS),
    role=st.sampled_from(["coordinator", "member", "ops", "system"]),
    member_id=st.sampled_from([None, "member-bea", "member-dan", "member-zoe"]),
)


@given(actor=any_actor, registered=st.booleans())
def test_only_ops_registers_and_only_once(actor, registered):
    state = Workspace("mage", registered=registered)
    command = RegisterWorkspace(workspace_details())
    if actor.role == "ops" and not registered:
        assert decide_workspace(state, command, actor)[0].workspace_id == "mage"
    else:
        with pytest.raises(NotAllowedError if actor.role != "ops" else AlreadyExistsError):
            decide_workspace(state, command, actor)


@given(actor=any_actor, at=st.sampled_from(WORKSPACE_IDS))
def test_members_are_added_by_ops_or_coordinators_of_their_workspace(actor, at):
    command = JoinWorkspace("member-new", workspace(at), join_details())
    allowed = actor.role == "ops" or (actor.role == "coordinator" and actor.workspace_id == at)
    try:
        events = decide_member(Member("member-new"), command, actor)
    except NotAllowedError:
        assert not allowed
    else:
        assert allowed and events[0].workspace_id == at


CHANGES = st.sampled_from(
    [
        DeclareCapabilities(
            requests.DeclareCapabilities(capabilities=(CapabilityLevel(capability="cnc", level=2),))
        ),
        ChangeCapacity(requests.ChangeCapacity(weekly_capacity=Measure(hasNumericalValue=8))),
    ]
)


@given(actor=any_actor, command=CHANGES)
def test_a_profile_is_changed_only_by_the_member_or_its_own_coordinators(actor, command):
    state = evolve_member(Member("member-dan"), member_joined(DAN))  # DAN works at r84
    own_coordinator = actor.role == "coordinator" and actor.workspace_id == "r84"
    allowed = actor.member_id == "member-dan" or own_coordinator
    try:
        events = decide_member(state, command, actor)
    except NotAllowedError:
        assert not allowed
    else:
        assert allowed
        assert (events[0].member_id, events[0].workspace_id) == ("member-dan", "r84")
