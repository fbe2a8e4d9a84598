"""What a live stream sends after a burst of changes: the newest state of every project, once."""

from __future__ import annotations

import json

from services.projects.live import HeldProjects, LiveStream


def document(project_id: str, version: int, **changes) -> dict:
    return {
        "project_id": project_id,
        "version": version,
        "title": f"Project {project_id}",
        "scope": ["mage"],
        "open_call": False,
        "status": "staffed",
        "coordinator": {"workspace_id": "mage"},
        "invitations": [],
        "timeline": [{"sequence": version, "summary": f"change {version}"}],
    } | changes


async def test_a_burst_of_changes_ends_in_the_newest_document_of_each_project():
    stream = LiveStream("mage")
    for version in range(1, 50):
        stream.offer(projects={"p1": document("p1", version)})
    stream.offer(projects={"p2": document("p2", 7)})
    stream.notify(b'{"type": "project.staffed"}')

    change = await stream.next(timeout=1)

    assert {pid: doc["version"] for pid, doc in change.projects.items()} == {"p1": 49, "p2": 7}
    assert change.notifications == [b'{"type": "project.staffed"}']
    assert not change.whole_view
    assert await stream.next(timeout=0.01) is None, "a change is handed over once"


async def test_a_request_for_the_whole_view_survives_later_project_changes():
    stream = LiveStream("mage")
    stream.offer(whole_view=True, projects={})
    stream.offer(projects={"p1": document("p1", 2)})

    change = await stream.next(timeout=1)

    assert change.whole_view and "p1" in change.projects


def test_a_changed_project_is_sent_with_its_relation_and_sections():
    held = HeldProjects("mage", {"projects": [], "open_calls": []})

    data = json.loads(held.event_for(document("p1", 1)))

    assert data["sections"] == ["projects"]
    assert data["project"]["relation"] == "coordinator"
    assert data["project"]["version"] == 1


def test_nothing_is_sent_for_an_unchanged_or_older_document():
    held = HeldProjects("mage", {"projects": [document("p1", 3) | {"relation": "coordinator"}]})

    assert held.event_for(document("p1", 3)) is None, "the client holds this one"
    assert held.event_for(document("p1", 2)) is None, "never an older version"
    assert held.event_for(document("p1", 3, proposals={"roles": []})) is not None
    assert held.event_for(document("p1", 4)) is not None


def test_a_project_leaving_the_view_is_sent_once_with_no_sections():
    held = HeldProjects("mage", {"projects": [document("p1", 3) | {"relation": "coordinator"}]})

    left = held.event_for(document("p1", 4, scope=["bloqs"]))

    assert json.loads(left)["sections"] == []
    assert held.event_for(document("p1", 4, scope=["bloqs"])) is None


def test_an_open_call_shows_in_every_workspace_until_it_closes():
    held = HeldProjects("freiland", {"projects": [], "open_calls": []})

    opened = json.loads(held.event_for(document("p1", 1, open_call=True, status="proposed")))
    closed = json.loads(held.event_for(document("p1", 2, open_call=True, status="staffed")))

    assert opened["sections"] == ["open_calls"] and "relation" not in opened["project"]
    assert closed["sections"] == []
    assert held.event_for(document("p2", 1)) is None, "never shown, not concerned"
