"""The rules of workspaces, members and joint projects: given events, when a command,
then events — or a named error whose message tells the user what went wrong."""

from __future__ import annotations

import ast
import inspect
from datetime import timedelta
from typing import get_args

import pytest

from contracts import commands as requests
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
from contracts.values import CapabilityLevel, Measure
from contracts.workspaces import (
    MemberCapabilitiesDeclared,
    MemberCapacityChanged,
    MemberJoined,
    WorkspaceRegistered,
)
from services.projects import domain
from services.projects.domain import (
    ALLOWED_IN,
    STATUS_AFTER,
    SYSTEM,
    Accept,
    Actor,
    AlreadyExistsError,
    AlreadyInvitedError,
    Cancel,
    ChangeCapacity,
    DeclareCapabilities,
    Decline,
    Deliver,
    DomainError,
    Expire,
    IllegalTransitionError,
    InvalidCommandError,
    Invitation,
    InvitationExpiredError,
    InvitationNotPendingError,
    Invite,
    JoinWorkspace,
    Member,
    NotAllowedError,
    NotAPartnerError,
    NotFoundError,
    Project,
    Propose,
    RecordProgress,
    RegisterWorkspace,
    RoleFullError,
    StartProduction,
    Status,
    Withdraw,
    Workspace,
    decide_member,
    decide_project,
    decide_workspace,
    evolve_member,
    evolve_workspace,
)
from tests.unit.domain_builders import (
    ADA,
    ARI,
    BEA,
    CAL,
    COORDINATOR,
    DAN,
    DUE,
    EVE,
    EXPIRES,
    NOW,
    OPS,
    PROJECT,
    ROLES,
    TEAM,
    Person,
    accepted,
    declined,
    expired,
    history,
    invited,
    join_details,
    joined,
    member_joined,
    project,
    proposal,
    proposed,
    role,
    seat,
    staffed,
    staffed_history,
    withdrawn,
    workspace,
    workspace_details,
    workspace_registered,
)

STATUSES: tuple[Status, ...] = get_args(Status)


def when(given: list, command, actor: Actor, now=NOW) -> list:
    return decide_project(project(*given), command, actor, now)


def refused(given: list, command, actor: Actor, error: type[DomainError], *words, now=NOW):
    """The command is refused with `error`, and the message carries every one of `words`."""
    with pytest.raises(error) as raised:
        when(given, command, actor, now)
    assert type(raised.value) is error
    for word in words:
        assert word in str(raised.value), f"{word!r} not in {str(raised.value)!r}"
    return str(raised.value)


def invite(invitation_id: str, role_id: str, person: Person, expires_at=EXPIRES) -> Invite:
    return Invite(invitation_id, role_id, person.member, expires_at)


def half_staffed() -> list:
    """BEA holds the frame, CAL one of the two bags seats."""
    return [proposed(), *joined("i-frame", "frame", BEA), *joined("i-bags-1", "bags", CAL)]


# -- workspaces ------------------------------------------------------------------------------


def test_ops_registers_a_workspace_with_all_its_details():
    events = decide_workspace(Workspace("mage"), RegisterWorkspace(workspace_details()), OPS)
    assert events == [workspace_registered()]
    state = evolve_workspace(Workspace("mage"), events[0])
    assert state == Workspace("mage", registered=True, name="MAGE")


@pytest.mark.parametrize(
    "actor", [COORDINATOR, ADA.as_member, SYSTEM], ids=["coordinator", "member", "system"]
)
def test_only_ops_registers_a_workspace(actor):
    with pytest.raises(NotAllowedError, match="only ops"):
        decide_workspace(Workspace("mage"), RegisterWorkspace(workspace_details()), actor)


def test_a_workspace_registers_only_once():
    state = evolve_workspace(Workspace("mage"), workspace_registered())
    with pytest.raises(AlreadyExistsError, match="mage is already registered"):
        decide_workspace(state, RegisterWorkspace(workspace_details()), OPS)


def test_other_events_leave_a_workspace_as_it_is():
    state = workspace()
    assert evolve_workspace(state, member_joined(BEA)) is state


# -- members ---------------------------------------------------------------------------------


def join(person: Person, at: Workspace | None = None, member_id: str | None = None):
    details = join_details(member_id=member_id)
    return JoinWorkspace(person.member_id, at or workspace(person.workspace_id), details)


@pytest.mark.parametrize(
    "actor",
    [Actor("mage", "coordinator", "member-ada"), Actor("mage", "coordinator"), OPS],
    ids=["coordinator", "coordinator-without-member-id", "ops"],
)
def test_a_coordinator_of_the_workspace_or_ops_adds_a_member(actor):
    events = decide_member(Member("member-ari"), join(ARI), actor)
    assert events == [member_joined(ARI)]
    assert isinstance(events[0], MemberJoined)


def test_the_member_id_comes_from_the_command_not_the_request_body():
    events = decide_member(Member("member-ari"), join(ARI, member_id="spoofed"), COORDINATOR)
    assert events[0].member_id == "member-ari"
    assert events[0].workspace_id == "mage"


@pytest.mark.parametrize(
    "actor",
    [BEA.as_coordinator, ARI.as_member, SYSTEM],
    ids=["coordinator-of-another-workspace", "member-of-the-workspace", "system"],
)
def test_only_coordinators_of_that_workspace_add_members(actor):
    with pytest.raises(NotAllowedError, match="only coordinators of mage"):
        decide_member(Member("member-ari"), join(ARI), actor)


def test_a_member_joins_only_a_registered_workspace():
    with pytest.raises(NotFoundError, match="workspace atlantis is not registered"):
        decide_member(Member("member-ari"), join(ARI, at=Workspace("atlantis")), OPS)


def test_a_member_joins_only_once():
    state = evolve_member(Member("member-ari"), member_joined(ARI))
    with pytest.raises(AlreadyExistsError, match="member-ari already exists"):
        decide_member(state, join(ARI), COORDINATOR)


def test_joining_builds_the_member_profile():
    state = evolve_member(Member("member-bea"), member_joined(BEA))
    assert state.joined and state.workspace_id == "freiland"
    assert state.capabilities == (CapabilityLevel(capability="leather-sewing", level=4),)
    assert state.weekly_capacity == Measure(hasNumericalValue=20)


NEW_CAPABILITIES = requests.DeclareCapabilities(
    capabilities=(CapabilityLevel(capability="cnc-milling", level=3),), equipment=("CNC",)
)
MORE_HOURS = requests.ChangeCapacity(weekly_capacity=Measure(hasNumericalValue=32))


@pytest.mark.parametrize(
    "actor",
    [BEA.as_member, BEA.as_coordinator, Actor("freiland", "coordinator", "member-zoe")],
    ids=["self", "self-as-coordinator", "own-coordinator"],
)
def test_a_member_or_its_coordinators_declare_capabilities(actor):
    state = evolve_member(Member("member-bea"), member_joined(BEA))
    events = decide_member(state, DeclareCapabilities(NEW_CAPABILITIES), actor)
    assert events == [
        MemberCapabilitiesDeclared(
            member_id="member-bea",
            workspace_id="freiland",
            capabilities=NEW_CAPABILITIES.capabilities,
            equipment=("CNC",),
        )
    ]
    changed = evolve_member(state, events[0])
    assert changed.capabilities == NEW_CAPABILITIES.capabilities  # replaces, not appends


def test_a_member_changes_its_weekly_capacity():
    state = evolve_member(Member("member-bea"), member_joined(BEA))
    events = decide_member(state, ChangeCapacity(MORE_HOURS), BEA.as_member)
    assert events == [
        MemberCapacityChanged(
            member_id="member-bea",
            workspace_id="freiland",
            weekly_capacity=MORE_HOURS.weekly_capacity,
        )
    ]
    assert evolve_member(state, events[0]).weekly_capacity.hasNumericalValue == 32


OTHERS = [CAL.as_member, COORDINATOR, OPS, SYSTEM, Actor("freiland", "member", "member-zoe")]
OTHER_IDS = ["another-member", "coordinator-elsewhere", "ops", "system", "workspace-mate"]


@pytest.mark.parametrize(
    "command", [DeclareCapabilities(NEW_CAPABILITIES), ChangeCapacity(MORE_HOURS)]
)
@pytest.mark.parametrize("actor", OTHERS, ids=OTHER_IDS)
def test_nobody_else_changes_a_member_profile(command, actor):
    state = evolve_member(Member("member-bea"), member_joined(BEA))
    with pytest.raises(NotAllowedError, match="only their own profile"):
        decide_member(state, command, actor)


@pytest.mark.parametrize(
    "command", [DeclareCapabilities(NEW_CAPABILITIES), ChangeCapacity(MORE_HOURS)]
)
def test_an_unknown_member_cannot_change(command):
    with pytest.raises(NotFoundError, match="member-zed does not exist"):
        decide_member(Member("member-zed"), command, Actor("x", "member", "member-zed"))


# -- propose ---------------------------------------------------------------------------------


def test_a_coordinator_proposes_and_the_events_name_them():
    events = when([], Propose(PROJECT, proposal()), ARI.as_coordinator)
    assert events == [proposed(by=ARI)]
    state = project(*events)
    assert state.status == "proposed"
    assert (state.coordinator_member_id, state.coordinator_workspace_id) == ("member-ari", "mage")
    assert state.roles == ROLES and state.due == DUE and state.open_call


@pytest.mark.parametrize(
    "actor",
    [Actor("mage", "coordinator"), ADA.as_member, OPS, SYSTEM],
    ids=["coordinator-without-member-id", "member", "ops", "system"],
)
def test_only_a_coordinator_acting_as_a_member_proposes(actor):
    refused([], Propose(PROJECT, proposal()), actor, NotAllowedError, "only a coordinator")


@pytest.mark.parametrize("due", [NOW, NOW - timedelta(days=1)], ids=["now", "past"])
def test_due_must_be_in_the_future(due):
    refused(
        [], Propose(PROJECT, proposal(due=due)), COORDINATOR, InvalidCommandError, "due", "future"
    )


def test_due_a_second_from_now_is_fine():
    events = when([], Propose(PROJECT, proposal(due=NOW + timedelta(seconds=1))), COORDINATOR)
    assert isinstance(events[0], ProjectProposed)


def test_a_project_is_proposed_only_once():
    refused(
        [proposed()],
        Propose(PROJECT, proposal()),
        COORDINATOR,
        IllegalTransitionError,
        "cannot propose",
        "proposed",
    )


LATER_COMMANDS = [
    invite("i1", "frame", BEA),
    Accept("i1"),
    Decline("i1"),
    Expire("i1"),
    Withdraw("frame"),
    StartProduction(),
    RecordProgress("welding"),
    Deliver(),
    Cancel("no funds"),
]


@pytest.mark.parametrize("command", LATER_COMMANDS, ids=lambda c: type(c).__name__)
def test_nothing_happens_to_a_project_that_was_never_proposed(command):
    refused([], command, COORDINATOR, NotFoundError, "p1 does not exist")


# -- invite ----------------------------------------------------------------------------------


def test_the_coordinator_invites_a_member_to_a_role():
    command = Invite("i1", "frame", BEA.member, EXPIRES, "We need your welding!")
    events = when([proposed()], command, COORDINATOR)
    assert events == [
        PartnerInvited(
            project_id=PROJECT,
            invitation_id="i1",
            role_id="frame",
            member_id="member-bea",
            member_workspace_id="freiland",
            expires_at=EXPIRES,
            message="We need your welding!",
        )
    ]
    state = project(proposed(), *events)
    assert state.invitations == (Invitation("i1", "frame", "member-bea", "freiland", EXPIRES),)
    assert state.status == "proposed"


def test_any_coordinator_of_the_project_workspace_invites():
    events = when([proposed()], invite("i1", "frame", BEA), Actor("mage", "coordinator"))
    assert [type(e) for e in events] == [PartnerInvited]


@pytest.mark.parametrize(
    "actor",
    [BEA.as_coordinator, ADA.as_member, OPS, SYSTEM],
    ids=["coordinator-elsewhere", "coordinator-as-member", "ops", "system"],
)
def test_only_coordinators_of_the_project_workspace_invite(actor):
    refused(
        [proposed()], invite("i1", "frame", BEA), actor, NotAllowedError, "coordinators of mage"
    )


def test_an_unknown_role_is_named_with_the_known_roles():
    message = refused(
        [proposed()], invite("i1", "paint", BEA), COORDINATOR, InvalidCommandError, "'paint'"
    )
    assert "frame, bags" in message


def test_the_invitee_must_be_a_member():
    command = Invite("i1", "frame", Member("member-ghost"), EXPIRES)
    refused([proposed()], command, COORDINATOR, NotFoundError, "member-ghost does not exist")


@pytest.mark.parametrize("expires_at", [NOW, NOW - timedelta(hours=1)], ids=["now", "past"])
def test_an_invitation_must_expire_after_now(expires_at):
    command = invite("i1", "frame", BEA, expires_at=expires_at)
    refused([proposed()], command, COORDINATOR, InvalidCommandError, "expire")


def test_a_pending_invitee_is_not_invited_again_to_the_same_role():
    given = [proposed(), invited("i1", "bags", CAL)]
    refused(
        given, invite("i2", "bags", CAL), COORDINATOR, AlreadyInvitedError, "member-cal", "bags"
    )


def test_a_seat_holder_is_not_invited_again_to_the_same_role():
    given = [proposed(), *joined("i1", "bags", CAL)]
    refused(
        given, invite("i2", "bags", CAL), COORDINATOR, AlreadyInvitedError, "member-cal", "bags"
    )


@pytest.mark.parametrize(
    "closed", [declined("i1", "bags", CAL), expired("i1", "bags", CAL)], ids=["declined", "expired"]
)
def test_after_a_decline_or_an_expiry_the_member_may_be_invited_again(closed):
    events = when(
        [proposed(), invited("i1", "bags", CAL), closed], invite("i2", "bags", CAL), COORDINATOR
    )
    assert events[0].invitation_id == "i2"


def test_one_member_may_be_invited_to_two_roles():
    given = [proposed(), *joined("i1", "bags", CAL)]
    events = when(given, invite("i2", "frame", CAL), COORDINATOR)
    assert events[0].role_id == "frame"


def test_a_full_role_takes_no_more_invitations():
    given = [proposed(), *joined("i1", "frame", BEA)]
    refused(given, invite("i2", "frame", CAL), COORDINATOR, RoleFullError, "frame")


def test_more_members_than_seats_may_be_invited_while_a_seat_is_open():
    given = [proposed(), invited("i1", "frame", BEA)]
    events = when(given, invite("i2", "frame", CAL), COORDINATOR)
    assert events[0].member_id == "member-cal"


def test_an_invitation_id_is_never_reused():
    given = [proposed(), invited("i1", "frame", BEA)]
    refused(given, invite("i1", "bags", CAL), COORDINATOR, AlreadyExistsError, "i1")


# -- accept ----------------------------------------------------------------------------------


def test_the_invitee_accepts_and_takes_the_seat():
    events = when([proposed(), invited("i1", "bags", CAL)], Accept("i1"), CAL.as_member)
    assert events == [accepted("i1", "bags", CAL)]
    state = project(proposed(), invited("i1", "bags", CAL), *events)
    assert state.team == (seat("bags", CAL),)
    assert state.open_seats("bags") == 1 and state.status == "proposed"


@pytest.mark.parametrize(
    "actor",
    [BEA.as_member, COORDINATOR, OPS, SYSTEM, Actor("bloqs", "member")],
    ids=["another-member", "coordinator", "ops", "system", "same-workspace-no-member-id"],
)
def test_only_the_invited_member_accepts(actor):
    given = [proposed(), invited("i1", "bags", CAL)]
    refused(given, Accept("i1"), actor, NotAllowedError, "only the invited member")


def test_an_unknown_invitation_is_named():
    refused([proposed()], Accept("i9"), CAL.as_member, NotFoundError, "no invitation i9")


@pytest.mark.parametrize("late", [timedelta(0), timedelta(days=3)], ids=["at-expiry", "after"])
def test_an_expired_invitation_cannot_be_accepted(late):
    given = [proposed(), invited("i1", "bags", CAL)]
    refused(
        given,
        Accept("i1"),
        CAL.as_member,
        InvitationExpiredError,
        "i1",
        "expired",
        now=EXPIRES + late,
    )


def test_an_invitation_is_accepted_up_to_its_last_second():
    given = [proposed(), invited("i1", "bags", CAL)]
    events = when(given, Accept("i1"), CAL.as_member, now=EXPIRES - timedelta(seconds=1))
    assert events == [accepted("i1", "bags", CAL)]


@pytest.mark.parametrize(
    ("closing", "word"),
    [
        (accepted("i1", "bags", CAL), "accepted"),
        (declined("i1", "bags", CAL), "declined"),
        (expired("i1", "bags", CAL), "expired"),
    ],
)
def test_only_a_pending_invitation_is_accepted(closing, word):
    given = [proposed(), invited("i1", "bags", CAL), closing]
    refused(given, Accept("i1"), CAL.as_member, InvitationNotPendingError, "i1", word)


def test_a_withdrawn_partner_cannot_accept_the_old_invitation_again():
    given = [proposed(), *joined("i1", "bags", CAL), withdrawn("bags", CAL)]
    refused(given, Accept("i1"), CAL.as_member, InvitationNotPendingError, "withdrawn")


def test_when_the_seat_was_taken_meanwhile_the_acceptance_is_refused():
    given = [proposed(), invited("i1", "frame", BEA), invited("i2", "frame", CAL)]
    given.append(accepted("i1", "frame", BEA))
    refused(given, Accept("i2"), CAL.as_member, RoleFullError, "frame", "taken")


def test_the_acceptance_that_fills_the_last_seat_staffs_the_project_atomically():
    given = [*half_staffed(), invited("i-bags-2", "bags", DAN)]
    events = when(given, Accept("i-bags-2"), DAN.as_member)
    team = (seat("frame", BEA), seat("bags", CAL), seat("bags", DAN))
    assert events == [accepted("i-bags-2", "bags", DAN), staffed(*team)]
    state = project(*given, *events)
    assert state.status == "staffed" and state.fully_staffed and state.team == team


def test_filling_one_role_completely_does_not_staff_the_project():
    given = [proposed(), *joined("i1", "bags", CAL), invited("i2", "bags", DAN)]
    events = when(given, Accept("i2"), DAN.as_member)
    assert [type(e) for e in events] == [InvitationAccepted]


def test_a_single_seat_project_is_staffed_by_its_first_acceptance():
    given = [proposed(roles=(role("solo"),)), invited("i1", "solo", EVE)]
    events = when(given, Accept("i1"), EVE.as_member)
    assert events == [accepted("i1", "solo", EVE), staffed(seat("solo", EVE))]


def test_a_staffed_project_takes_no_more_acceptances():
    given = [*half_staffed(), invited("i-x", "bags", EVE), *joined("i-bags-2", "bags", DAN)]
    given.append(staffed(*TEAM))
    refused(given, Accept("i-x"), EVE.as_member, IllegalTransitionError, "cannot accept", "staffed")


# -- decline ---------------------------------------------------------------------------------


def test_the_invitee_declines_with_a_reason_and_the_seat_stays_open():
    given = [proposed(), invited("i1", "frame", BEA)]
    events = when(given, Decline("i1", "Booked until March"), BEA.as_member)
    assert events == [declined("i1", "frame", BEA, reason="Booked until March")]
    assert isinstance(events[0], InvitationDeclined)
    state = project(*given, *events)
    assert state.invitation("i1").status == "declined"
    assert state.open_seats("frame") == 1
    assert when([*given, *events], invite("i2", "frame", CAL), COORDINATOR)


def test_only_the_invitee_declines():
    given = [proposed(), invited("i1", "frame", BEA)]
    refused(given, Decline("i1", "no"), COORDINATOR, NotAllowedError, "only the invited member")


def test_a_declined_invitation_cannot_be_declined_again():
    given = [proposed(), invited("i1", "frame", BEA), declined("i1", "frame", BEA)]
    refused(given, Decline("i1"), BEA.as_member, InvitationNotPendingError, "declined")


def test_a_leftover_invitation_may_still_be_declined_once_staffed():
    given = [*half_staffed(), invited("i-x", "bags", EVE), *joined("i-bags-2", "bags", DAN)]
    given.append(staffed(*TEAM))
    events = when(given, Decline("i-x", "too late"), EVE.as_member)
    assert events == [declined("i-x", "bags", EVE, reason="too late")]
    assert project(*given, *events).status == "staffed"


# -- expire ----------------------------------------------------------------------------------


@pytest.mark.parametrize("late", [timedelta(0), timedelta(days=1)], ids=["at-expiry", "after"])
def test_the_system_expires_a_pending_invitation_once_due(late):
    given = [proposed(), invited("i1", "frame", BEA)]
    events = when(given, Expire("i1"), SYSTEM, now=EXPIRES + late)
    assert events == [expired("i1", "frame", BEA)]
    assert isinstance(events[0], InvitationExpired)
    state = project(*given, *events)
    assert state.invitation("i1").status == "expired" and state.open_seats("frame") == 1


def test_an_invitation_does_not_expire_early():
    given = [proposed(), invited("i1", "frame", BEA)]
    now = EXPIRES - timedelta(seconds=1)
    refused(given, Expire("i1"), SYSTEM, InvalidCommandError, "i1", "not expired yet", now=now)


@pytest.mark.parametrize(
    "actor", [COORDINATOR, BEA.as_member, OPS], ids=["coordinator", "invitee", "ops"]
)
def test_only_the_system_expires_invitations(actor):
    given = [proposed(), invited("i1", "frame", BEA)]
    refused(given, Expire("i1"), actor, NotAllowedError, "expire", now=EXPIRES + timedelta(days=1))


def test_an_accepted_invitation_never_expires():
    given = [proposed(), *joined("i1", "bags", CAL)]
    later = EXPIRES + timedelta(days=1)
    refused(given, Expire("i1"), SYSTEM, InvitationNotPendingError, "accepted", now=later)


def leftover_invitation(status: str) -> list:
    """EVE was invited to a bags seat that DAN took first; the project then moved on."""
    given = [*half_staffed(), invited("i-x", "bags", EVE), *joined("i-bags-2", "bags", DAN)]
    given.append(staffed(*TEAM))
    started, ended = ProductionStarted(project_id=PROJECT), ProjectDelivered(project_id=PROJECT)
    return (
        given
        + {
            "producing": [started],
            "delivered": [started, ended],
            "cancelled": [ProjectCancelled(project_id=PROJECT, reason="Client withdrew")],
        }[status]
    )


@pytest.mark.parametrize("status", ["producing", "delivered", "cancelled"])
def test_a_leftover_invitation_still_expires_after_the_staffing_phase(status):
    given = leftover_invitation(status)
    assert project(*given).status == status
    events = when(given, Expire("i-x"), SYSTEM, now=EXPIRES + timedelta(days=1))
    assert events == [expired("i-x", "bags", EVE)]


def test_expiring_an_unknown_invitation_names_it():
    refused([proposed()], Expire("i9"), SYSTEM, NotFoundError, "i9", now=EXPIRES)


# -- withdraw --------------------------------------------------------------------------------


def test_a_partner_withdraws_before_production_and_the_project_reopens():
    events = when(staffed_history(), Withdraw("bags", "Workshop flooded"), CAL.as_member)
    assert events == [withdrawn("bags", CAL, reason="Workshop flooded")]
    assert isinstance(events[0], PartnerWithdrawn)
    state = project(*staffed_history(), *events)
    assert state.status == "proposed"
    assert state.open_seats("bags") == 1 and not state.fully_staffed
    assert state.team == (seat("frame", BEA), seat("bags", DAN))


def test_after_a_withdrawal_a_new_partner_restaffs_the_project():
    given = [*staffed_history(), withdrawn("bags", CAL)]
    given += when(given, invite("i-eve", "bags", EVE), COORDINATOR)
    events = when(given, Accept("i-eve"), EVE.as_member)
    assert events == [
        accepted("i-eve", "bags", EVE),
        staffed(seat("frame", BEA), seat("bags", DAN), seat("bags", EVE)),
    ]
    assert project(*given, *events).status == "staffed"


def test_a_withdrawn_partner_may_be_invited_back():
    given = [*staffed_history(), withdrawn("bags", CAL)]
    events = when(given, invite("i-back", "bags", CAL), COORDINATOR)
    assert events[0].member_id == "member-cal"


def test_a_partner_withdraws_from_a_project_not_yet_staffed():
    events = when(half_staffed(), Withdraw("frame"), BEA.as_member)
    state = project(*half_staffed(), *events)
    assert state.status == "proposed" and state.team == (seat("bags", CAL),)


@pytest.mark.parametrize(
    ("actor", "role_id"),
    [
        (COORDINATOR, "bags"),
        (EVE.as_member, "bags"),
        (BEA.as_member, "bags"),
        (Actor("bloqs", "member"), "bags"),
    ],
    ids=["coordinator", "outsider", "partner-of-another-role", "no-member-id"],
)
def test_only_a_partner_withdraws_from_the_role_they_hold(actor, role_id):
    refused(staffed_history(), Withdraw(role_id), actor, NotAPartnerError, "no bags seat")


def test_a_pending_invitee_has_nothing_to_withdraw():
    given = [proposed(), invited("i1", "frame", BEA)]
    refused(given, Withdraw("frame"), BEA.as_member, NotAPartnerError, "frame")


@pytest.mark.parametrize("status", ["producing", "delivered", "cancelled"])
def test_no_withdrawal_once_production_started_or_the_project_ended(status):
    refused(
        history(status), Withdraw("bags"), CAL.as_member, IllegalTransitionError, "withdraw", status
    )


# -- production, progress, delivery ----------------------------------------------------------


def test_the_coordinator_starts_production_of_a_staffed_project():
    events = when(staffed_history(), StartProduction("Kick-off Monday"), ARI.as_coordinator)
    assert events == [ProductionStarted(project_id=PROJECT, note="Kick-off Monday")]
    assert project(*staffed_history(), *events).status == "producing"


def test_production_starts_only_when_staffed():
    refused(
        half_staffed(),
        StartProduction(),
        COORDINATOR,
        IllegalTransitionError,
        "cannot start production",
        "proposed",
        "allowed when staffed",
    )


@pytest.mark.parametrize(
    "actor", [BEA.as_member, BEA.as_coordinator, OPS], ids=["partner", "partner-coordinator", "ops"]
)
def test_only_the_project_coordinators_start_production(actor):
    refused(staffed_history(), StartProduction(), actor, NotAllowedError, "coordinators of mage")


@pytest.mark.parametrize("status", ["staffed", "producing"])
@pytest.mark.parametrize(
    "actor",
    [COORDINATOR, BEA.as_member, DAN.as_coordinator],
    ids=["coordinator", "partner", "partner-coord"],
)
def test_coordinators_and_partners_record_progress(status, actor):
    events = when(history(status), RecordProgress("Frame welded"), actor)
    assert events == [ProgressNoted(project_id=PROJECT, note="Frame welded")]
    assert project(*history(status), *events).status == status


@pytest.mark.parametrize(
    "actor",
    [EVE.as_member, Actor("freiland", "coordinator"), OPS],
    ids=["outsider", "coordinator-of-a-partner-workspace", "ops"],
)
def test_outsiders_record_no_progress(actor):
    refused(history("producing"), RecordProgress("hi"), actor, NotAllowedError, "progress")


def test_a_withdrawn_partner_records_no_progress():
    given = [*half_staffed(), withdrawn("bags", CAL)]
    given += [*joined("i2", "bags", EVE), *joined("i3", "bags", DAN)]
    given.append(staffed(seat("frame", BEA), seat("bags", EVE), seat("bags", DAN)))
    refused(given, RecordProgress("still here"), CAL.as_member, NotAllowedError, "progress")


@pytest.mark.parametrize("status", ["proposed", "delivered", "cancelled"])
def test_progress_is_recorded_only_while_staffed_or_producing(status):
    refused(history(status), RecordProgress("x"), COORDINATOR, IllegalTransitionError, status)


def test_the_coordinator_marks_delivery_of_a_producing_project():
    events = when(history("producing"), Deliver("Shipped to Sesto"), COORDINATOR)
    assert events == [ProjectDelivered(project_id=PROJECT, note="Shipped to Sesto")]
    assert project(*history("producing"), *events).status == "delivered"


@pytest.mark.parametrize("status", ["proposed", "staffed", "delivered", "cancelled"])
def test_delivery_only_while_producing(status):
    refused(
        history(status),
        Deliver(),
        COORDINATOR,
        IllegalTransitionError,
        "cannot deliver",
        status,
        "allowed when producing",
    )


def test_a_partner_does_not_mark_delivery():
    refused(history("producing"), Deliver(), BEA.as_member, NotAllowedError, "coordinators of mage")


# -- cancel ----------------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["proposed", "staffed", "producing"])
def test_the_coordinator_cancels_before_delivery_with_a_reason(status):
    events = when(history(status), Cancel("Client withdrew"), COORDINATOR)
    assert events == [ProjectCancelled(project_id=PROJECT, reason="Client withdrew")]
    assert project(*history(status), *events).status == "cancelled"


@pytest.mark.parametrize("status", ["delivered", "cancelled"])
def test_nothing_is_cancelled_once_delivered_or_cancelled(status):
    refused(
        history(status), Cancel("too late"), COORDINATOR, IllegalTransitionError, "cancel", status
    )


@pytest.mark.parametrize("actor", [BEA.as_member, OPS, SYSTEM], ids=["partner", "ops", "system"])
def test_only_the_project_coordinators_cancel(actor):
    refused(history("staffed"), Cancel("nope"), actor, NotAllowedError, "coordinators of mage")


@pytest.mark.parametrize(
    ("command", "status"),
    [(Cancel("   "), "proposed"), (RecordProgress(""), "producing")],
    ids=["cancel-without-reason", "empty-progress-note"],
)
def test_a_blank_reason_or_note_is_a_named_error(command, status):
    refused(history(status), command, COORDINATOR, InvalidCommandError)


# -- the lifecycle table ---------------------------------------------------------------------


def test_the_table_covers_every_project_command_and_only_real_statuses():
    assert set(ALLOWED_IN) == set(get_args(domain.ProjectCommand))
    assert all(statuses <= set(STATUSES) for statuses in ALLOWED_IN.values())
    assert set(STATUS_AFTER.values()) <= set(STATUSES)


def test_the_table_says_what_the_issue_says():
    assert ALLOWED_IN[Propose] == {"new"}
    assert ALLOWED_IN[Invite] == ALLOWED_IN[Accept] == {"proposed"}
    assert ALLOWED_IN[Withdraw] == {"proposed", "staffed"}  # before production
    assert ALLOWED_IN[StartProduction] == {"staffed"}
    assert ALLOWED_IN[Deliver] == {"producing"}
    assert ALLOWED_IN[Cancel] == set(STATUSES) - {"new", "delivered", "cancelled"}
    assert STATUS_AFTER == {
        ProjectProposed: "proposed",
        ProjectStaffed: "staffed",
        PartnerWithdrawn: "proposed",
        ProductionStarted: "producing",
        ProjectDelivered: "delivered",
        ProjectCancelled: "cancelled",
    }


REFUSED_BY_TABLE = [
    (command, status)
    for command in [Propose(PROJECT, proposal()), *LATER_COMMANDS]
    for status in STATUSES
    if status not in ALLOWED_IN[type(command)] and status != "new"
]


@pytest.mark.parametrize(
    ("command", "status"),
    REFUSED_BY_TABLE,
    ids=lambda v: v if isinstance(v, str) else type(v).__name__,
)
def test_every_move_outside_the_table_is_an_illegal_transition(command, status):
    actor = SYSTEM if isinstance(command, Expire) else COORDINATOR
    message = refused(
        history(status), command, actor, IllegalTransitionError, f"project is {status}"
    )
    for allowed in ALLOWED_IN[type(command)]:
        assert allowed in message


def test_the_project_history_builders_reach_every_status():
    assert {status: project(*history(status)).status for status in STATUSES} == {
        s: s for s in STATUSES
    }


# -- workspace scope -------------------------------------------------------------------------


def test_a_new_project_is_in_no_workspace_scope():
    assert Project().workspace_scope == ()


def test_a_proposed_project_is_in_its_coordinator_workspace_scope():
    assert project(proposed()).workspace_scope == ("mage",)


def test_every_invited_workspace_joins_the_scope_sorted_and_once():
    given = [
        proposed(),
        invited("i1", "frame", DAN),
        invited("i2", "bags", BEA),
        invited("i3", "bags", EVE),  # r84 again
        declined("i2", "bags", BEA),  # declining does not leave the scope
        invited("i4", "frame", ARI),  # the coordinator's own workspace
    ]
    assert project(*given).workspace_scope == ("freiland", "mage", "r84")


def test_scope_is_kept_after_a_withdrawal():
    state = project(*staffed_history(), withdrawn("bags", CAL))
    assert state.workspace_scope == ("bloqs", "freiland", "mage", "r84")


# -- purity ----------------------------------------------------------------------------------


def test_the_domain_reads_no_clock_and_makes_no_ids():
    tree = ast.parse(inspect.getsource(domain))
    imported = {
        (node.module or "") if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    outside = {"asyncio", "nats", "asyncpg", "logging", "structlog", "uuid", "random", "time"}
    assert not {name.split(".")[0] for name in imported} & (outside | {"infra", "services", "os"})
    calls = {
        node.func.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
    }
    assert not calls & {"now", "utcnow", "today", "uuid4", "time", "monotonic"}


def test_unknown_events_leave_a_project_as_it_is():
    state = project(proposed())
    assert domain.evolve_project(state, member_joined(BEA)) == state
    assert (
        domain.evolve_project(state, WorkspaceRegistered(**workspace_details().model_dump()))
        == state
    )
