"""Decoding refuses what it cannot trust, and says exactly why."""

from __future__ import annotations

import json

import pytest

from contracts.registry import EventDecodeError, decode_event
from contracts.upcasters import UPCASTERS
from contracts.wire import decode_body, encode_body
from tests.factories import pending, project_proposed

VALID = project_proposed("p1").data()


def test_unknown_type_is_named():
    with pytest.raises(EventDecodeError, match="unknown event type 'project.teleported'"):
        decode_event("project.teleported", 1, VALID)


def test_a_version_newer_than_the_code_is_refused():
    with pytest.raises(EventDecodeError, match="schema_version 7 is newer"):
        decode_event("project.proposed", 7, VALID)


def test_an_old_version_without_upcaster_is_refused(monkeypatch):
    monkeypatch.delitem(UPCASTERS, ("member.joined", 1))
    with pytest.raises(EventDecodeError, match="member.joined schema_version 1 .* no upcaster"):
        decode_event("member.joined", 1, {"member_id": "m"})


def test_missing_field_is_named():
    data = dict(VALID)
    del data["title"]
    with pytest.raises(EventDecodeError, match=r"title: Field required"):
        decode_event("project.proposed", 1, data)


def test_extra_field_is_named():
    with pytest.raises(EventDecodeError, match=r"budget: Extra inputs are not permitted"):
        decode_event("project.proposed", 1, {**VALID, "budget": 12000})


def test_nested_invalid_value_is_named_with_its_path():
    data = json.loads(json.dumps(VALID))
    data["roles"][1]["effortQuantity"]["hasNumericalValue"] = -4
    with pytest.raises(EventDecodeError, match=r"roles\.1\.effortQuantity\.hasNumericalValue"):
        decode_event("project.proposed", 1, data)


def test_naive_datetimes_are_refused():
    with pytest.raises(EventDecodeError, match="due: Value error, must include a timezone"):
        decode_event("project.proposed", 1, {**VALID, "due": "2027-01-01T10:00:00"})


def test_body_round_trip_keeps_envelope_and_event():
    event = pending(project_proposed("p1"), "p1")
    envelope, decoded = decode_body(encode_body(event))
    assert envelope == event.envelope and decoded == event.event


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"\xff\xfe not json", "not JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"type": "project.proposed"}', "no 'data'"),
        (b'{"type": "project.proposed", "data": {}}', "envelope: event_id: Field required"),
    ],
)
def test_malformed_bodies_are_explained(body, reason):
    with pytest.raises(EventDecodeError, match=reason):
        decode_body(body)
