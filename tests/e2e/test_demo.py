"""`mf demo` seeds the network and runs a project to delivery with the team matching proposes."""

from __future__ import annotations

from services.matching.app import running as matching_running
from services.projects.demo import WORKSPACES, run_demo
from tests.waiting import eventually


async def test_the_demo_delivers_a_project_staffed_from_the_matching_proposal(
    infrastructure, projects_service, api_as
):
    said: list[str] = []
    async with matching_running(infrastructure, poll_interval=0.1):
        project_id = await run_demo(
            projects_service.url, infrastructure.token_secret, said.append, pace=0
        )
    assert said[0] == f"Seeded {len(WORKSPACES)} workspaces and {said[0].split()[4]} members."
    ops = api_as("ops", "ops")
    project = await eventually(
        lambda: ops.get(f"/projects/{project_id}"),
        until=lambda r: r.status_code == 200 and r.json()["status"] == "delivered",
    )
    body = project.json()
    team = body["proposals"]["team"]
    assert team["complete"]
    assert {(m["role_id"], m["member_id"]) for m in team["members"]} == {
        (p["role_id"], p["member_id"]) for p in body["partners"]
    }
    assert said[-1].startswith("Delivered.")

    # Seeding again is harmless: what exists is left as it is.
    again = await run_demo(projects_service.url, infrastructure.token_secret, said.append, pace=0)
    assert again != project_id
