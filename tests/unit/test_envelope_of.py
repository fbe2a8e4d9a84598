"""`Envelope.of` (the writers' cheaper construction) builds and refuses exactly what the
constructor does."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from contracts.envelope import Envelope

VALUES = {
    "event_id": "01a2157bab897001aa3ed4551850e60a",
    "type": "project.progress_noted",
    "schema_version": 1,
    "aggregate": "project",
    "aggregate_id": "p1",
    "occurred_at": datetime(2026, 11, 25, 12, 0, tzinfo=UTC),
    "actor": "member:ada",
    "workspace_scope": ("freiland", "mage"),
    "correlation_id": "c1",
    "causation_id": None,
    "traceparent": None,
}


def test_of_builds_the_same_envelope_as_the_constructor():
    built = Envelope.of(VALUES)
    assert built == Envelope(**VALUES)
    assert built.model_dump_json() == Envelope(**VALUES).model_dump_json()


@pytest.mark.parametrize(
    "change",
    [
        {"aggregate_id": "p1.>"},  # not a subject token
        {"correlation_id": ""},
        {"correlation_id": "c" * 65},
        {"actor": "a" * 129},
        {"schema_version": 0},
        {"unknown": "field"},
    ],
)
def test_of_refuses_what_the_constructor_refuses(change):
    with pytest.raises(ValidationError):
        Envelope(**{**VALUES, **change})
    with pytest.raises(ValidationError):
        Envelope.of({**VALUES, **change})
