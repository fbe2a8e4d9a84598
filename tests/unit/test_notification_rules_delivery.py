"""Delivery rules outside the audience: retry delays, endpoint filters, feed messages."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts.feeds import decode_feed_message, feed_headers
from contracts.registry import EventDecodeError
from contracts.wire import HEADER_MSG_ID, encode_body, encode_headers
from services.notifications.repository import check_event_types
from services.notifications.webhooks import DeliveryPolicy, retry_delay
from tests.factories import pending, project_proposed

POLICY = DeliveryPolicy(base_delay=1.0, max_delay=60.0, jitter=0.5, timeout=5, lease_seconds=20)


def test_delays_double_after_each_failure_up_to_the_maximum():
    no_jitter = [retry_delay(POLICY, failures, draw=0.0) for failures in range(1, 9)]
    assert no_jitter == [1, 2, 4, 8, 16, 32, 60, 60]


def test_jitter_takes_at_most_its_fraction_off():
    assert retry_delay(POLICY, 3, draw=0.999) == pytest.approx(4 * 0.5, rel=1e-2)


@given(failures=st.integers(1, 10_000), draw=st.floats(0, 1, exclude_max=True))
def test_delays_stay_within_bounds(failures, draw):
    delay = retry_delay(POLICY, failures, draw)
    assert POLICY.base_delay * (1 - POLICY.jitter) <= delay <= POLICY.max_delay


@pytest.mark.parametrize(
    "changes",
    [
        {"max_attempts": 0},
        {"jitter": 1.5},
        {"base_delay": 10, "max_delay": 1},
        {"timeout": 30, "lease_seconds": 30},
    ],
)
def test_impossible_policies_are_refused(changes):
    with pytest.raises(ValueError):
        DeliveryPolicy(**changes)


def test_endpoint_filters_take_known_types_and_aggregate_wildcards():
    assert check_event_types(["project.staffed", "member.*", "project.staffed"]) == (
        "member.*",
        "project.staffed",
    )
    assert check_event_types([]) == ()


@pytest.mark.parametrize("wrong", ["project.staffd", "*", "invoice.*", "project", ""])
def test_unknown_event_types_are_refused_naming_the_value(wrong):
    with pytest.raises(ValueError, match="unknown event type"):
        check_event_types([wrong])


def test_a_feed_message_is_the_log_body_with_feed_headers():
    event = pending(project_proposed("p1"), "p1", scope=("mage",))
    headers = feed_headers(
        encode_headers(event.envelope),
        event_id=event.envelope.event_id,
        sequence=42,
        workspace_id="mage",
        members=["member-ada"],
        concerns=["coordinator"],
    )
    assert headers[HEADER_MSG_ID] == f"mage:{event.envelope.event_id}"
    message = decode_feed_message(encode_body(event), headers)
    assert (message.workspace_id, message.sequence, message.event_id) == (
        "mage",
        42,
        event.envelope.event_id,
    )
    assert message.members == ("member-ada",) and message.concerns == ("coordinator",)
    assert message.event == event.event


def test_a_feed_message_without_its_sequence_is_refused():
    event = pending(project_proposed("p1"), "p1")
    with pytest.raises(EventDecodeError, match="Mf-Sequence"):
        decode_feed_message(encode_body(event), encode_headers(event.envelope))
