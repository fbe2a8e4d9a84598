"""Golden samples: every version of every event ever written must still decode."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from contracts.registry import EVENT_CLASSES, EVENTS_BY_TYPE, decode_event
from contracts.workspaces import MemberJoined

GOLDEN = Path(__file__).parent / "golden"
SAMPLES = sorted(GOLDEN.glob("*.json"))


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def test_every_current_event_version_has_a_golden_sample():
    names = {path.name for path in SAMPLES}
    missing = [
        f"{cls.event_type()}.v{cls.schema_version}.json"
        for cls in EVENT_CLASSES
        if f"{cls.event_type()}.v{cls.schema_version}.json" not in names
    ]
    assert not missing, f"add golden samples for {missing}"


@pytest.mark.parametrize("path", SAMPLES, ids=lambda path: path.stem)
def test_golden_sample_decodes_to_the_current_model(path):
    sample = load(path)
    event = decode_event(sample["type"], sample["schema_version"], sample["data"])
    assert isinstance(event, EVENTS_BY_TYPE[sample["type"]])


@pytest.mark.parametrize(
    "path",
    [
        p
        for p in SAMPLES
        if load(p)["schema_version"] == EVENTS_BY_TYPE[load(p)["type"]].schema_version
    ],
    ids=lambda path: path.stem,
)
def test_current_samples_round_trip_unchanged(path):
    sample = load(path)
    event = decode_event(sample["type"], sample["schema_version"], sample["data"])
    assert event.data() == sample["data"]


def test_a_v1_member_reads_as_v2_with_a_default_level():
    sample = load(GOLDEN / "member.joined.v1.json")
    member = decode_event("member.joined", 1, sample["data"])
    assert isinstance(member, MemberJoined)
    assert [(c.capability, c.level) for c in member.capabilities] == [
        ("laser-cutting", 3),
        ("cnc-milling", 3),
    ]
    assert member.equipment == ("Trotec Speedy 400",)
