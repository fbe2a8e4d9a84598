"""The body encoder is pydantic's JSON; it must stay the document json.dumps would write."""

from __future__ import annotations

import json

import pytest

from contracts.wire import decode_body, encode_body
from tests.factories import note, pending, project_proposed, workspace_registered


@pytest.mark.parametrize(
    "event",
    [
        project_proposed("p1", title='Lämpöpumppu «Cargo» \u2028 "quoted" \\ tab\t end'),
        note("p1", "line\nbreak, control \x01 and emoji \U0001f6b2"),
        workspace_registered("mage"),
    ],
)
def test_the_body_is_the_json_of_envelope_and_data(event):
    item = pending(event, getattr(event, "project_id", None) or "mage")
    body = encode_body(item)
    expected = {**item.envelope.model_dump(mode="json"), "data": item.event.data()}
    assert json.loads(body) == expected
    assert body == json.dumps(expected, separators=(",", ":"), ensure_ascii=False).encode()
    assert decode_body(body) == (item.envelope, item.event)
