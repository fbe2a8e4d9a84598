"""Current-version bodies decode in one pydantic-core pass; the result, and every refusal,
must be exactly what the general path (JSON, envelope, upcast, validate) gives."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.envelope import Envelope
from contracts.registry import EventDecodeError
from contracts.wire import _decode_any, _decode_current, decode_body

GOLDEN = Path(__file__).parents[1] / "contract" / "golden"
SAMPLES = sorted(GOLDEN.glob("*.json"))

ENVELOPE = {
    "event_id": "01a2156f0d8770228d432f5879af4b59",
    "aggregate_id": "p1",
    "occurred_at": "2026-11-26T01:18:49.222855+01:00",
    "actor": "member:ada",
    "workspace_scope": ["freiland", "mage"],
    "correlation_id": "01a2156f0d87701b941bdf7482a1adc4",
    "causation_id": None,
}


def body_of(path: Path) -> dict:
    sample = json.loads(path.read_text())
    aggregate = sample["type"].split(".", 1)[0]
    return {**ENVELOPE, **sample, "aggregate": aggregate}


def outcome(decode, body: bytes):
    """What a decoder makes of `body`: its result, or the reason it refuses it."""
    try:
        envelope, event = decode(body)
    except EventDecodeError as error:
        return ("refused", error.reason, error.event_type)
    return (
        type(envelope),
        envelope.model_dump(),
        envelope.model_fields_set,
        type(event),
        event.model_dump(),
    )


@pytest.mark.parametrize("path", SAMPLES, ids=lambda path: path.stem)
def test_golden_samples_decode_the_same_on_both_paths(path):
    body = json.dumps(body_of(path)).encode()
    assert outcome(decode_body, body) == outcome(_decode_any, body)


def test_current_versions_take_the_fast_path_and_old_ones_are_upcast():
    current = json.dumps(body_of(GOLDEN / "member.joined.v2.json")).encode()
    old = json.dumps(body_of(GOLDEN / "member.joined.v1.json")).encode()
    assert _decode_current(current) is not None
    assert _decode_current(old) is None
    envelope, event = decode_body(old)
    assert envelope.schema_version == 2 and event.capabilities[0].level == 3


def test_the_envelope_is_a_plain_frozen_envelope():
    body = json.dumps(body_of(GOLDEN / "project.proposed.v1.json")).encode()
    envelope, _ = decode_body(body)
    general, _ = _decode_any(body)
    assert type(envelope) is Envelope
    assert envelope == general and hash(envelope) == hash(general)
    assert envelope.model_dump_json() == general.model_dump_json()
    with pytest.raises(ValueError, match="frozen"):
        envelope.actor = "someone else"


@pytest.mark.parametrize(
    "change",
    [
        {"extra_field": 1},
        {"schema_version": 7},
        {"schema_version": True},
        {"type": "project.teleported"},
        {"aggregate_id": "has.dots"},
        {"occurred_at": "2026-11-26T01:18:49"},
        {"data": None},
        {"data": {}},
    ],
)
def test_refusals_are_explained_the_same_way(change):
    body = json.dumps({**body_of(GOLDEN / "project.proposed.v1.json"), **change}).encode()
    assert outcome(decode_body, body) == outcome(_decode_any, body)


def test_data_carrying_its_own_type_is_refused():
    document = body_of(GOLDEN / "project.progress_noted.v1.json")
    document["data"] = {**document["data"], "type": "project.progress_noted"}
    with pytest.raises(EventDecodeError, match="must not carry its own 'type'"):
        decode_body(json.dumps(document).encode())


@pytest.mark.parametrize(
    "body",
    [
        b"\xff\xfe not json",
        b"[1, 2]",
        b'{"type": "project.proposed"}',
        b'{"type": "x", "data": {"a": "\\ud800"}}',
        json.dumps(body_of(GOLDEN / "project.cancelled.v1.json")).encode("utf-16"),
    ],
)
def test_malformed_bodies_are_explained_the_same_way(body):
    assert outcome(decode_body, body) == outcome(_decode_any, body)


def test_duplicate_keys_keep_the_last_value_on_both_paths():
    document = body_of(GOLDEN / "project.progress_noted.v1.json")
    text = json.dumps(document)
    body = text.replace('"actor": ', '"actor": "first", "actor": ', 1).encode()
    assert outcome(decode_body, body) == outcome(_decode_any, body)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=6,
)


@settings(max_examples=300, deadline=None)
@given(
    path=st.sampled_from(SAMPLES),
    in_data=st.booleans(),
    key=st.text(max_size=12) | st.sampled_from([*ENVELOPE, "type", "title", "roles"]),
    value=_JSON,
)
def test_any_changed_field_gives_the_same_outcome_on_both_paths(path, in_data, key, value):
    document = body_of(path)
    target = document["data"] if in_data else document
    target[key] = value
    body = json.dumps(document).encode()
    assert outcome(decode_body, body) == outcome(_decode_any, body)
