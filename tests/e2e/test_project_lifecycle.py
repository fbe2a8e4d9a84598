"""A joint project's whole life over HTTP, the way coordinators and members use it."""

from __future__ import annotations

import pytest

from tests.e2e.seed import project_body, seed_network
from tests.waiting import eventually


async def view_of(api, workspace_id):
    response = await api.get(f"/workspaces/{workspace_id}/view")
    assert response.status_code == 200, response.text
    return response.json()


async def test_a_project_goes_from_proposed_to_delivered(api_as):
    await seed_network(api_as)
    ada = api_as("mage", "coordinator", "ada")
    lena = api_as("freiland", "member", "lena")
    jonas = api_as("freiland", "member", "jonas")
    tom = api_as("bloqs", "member", "tom")

    proposed = await ada.post("/projects", project_body())
    assert proposed.status_code == 201, proposed.text
    project_id = proposed.json()["id"]

    invitations = {}
    for member, role in (("tom", "frame"), ("lena", "bags"), ("jonas", "bags")):
        response = await ada.post(
            f"/projects/{project_id}/invitations", {"role_id": role, "member_id": member}
        )
        assert response.status_code == 201, response.text
        invitations[member] = response.json()

    history = (await ada.get(f"/projects/{project_id}/history")).json()
    invitation_ids = {
        e["data"]["member_id"]: e["data"]["invitation_id"]
        for e in history["events"]
        if e["type"] == "project.partner_invited"
    }
    for member_api, member in ((tom, "tom"), (lena, "lena")):
        response = await member_api.post(
            f"/projects/{project_id}/invitations/{invitation_ids[member]}/acceptance"
        )
        assert response.status_code == 200, response.text
        assert [e["type"] for e in response.json()["events"]] == ["project.invitation_accepted"]
    last = await jonas.post(
        f"/projects/{project_id}/invitations/{invitation_ids['jonas']}/acceptance"
    )
    assert [e["type"] for e in last.json()["events"]] == [
        "project.invitation_accepted",
        "project.staffed",
    ]

    assert (await ada.post(f"/projects/{project_id}/production", {"note": "go"})).status_code == 200
    assert (
        await tom.post(f"/projects/{project_id}/progress", {"note": "frames welded"})
    ).status_code == 200
    delivered = await ada.post(f"/projects/{project_id}/delivery", {"note": "handed over"})
    assert delivered.status_code == 200, delivered.text

    project = await eventually(
        lambda: ada.get(f"/projects/{project_id}"),
        until=lambda r: r.status_code == 200 and r.json()["status"] == "delivered",
    )
    body = project.json()
    assert project.headers["etag"] == f'"{delivered.json()["version"]}"'
    assert {(p["member_id"], p["workspace_name"], p["city"]) for p in body["partners"]} == {
        ("tom", "Building BloQs", "London"),
        ("lena", "FreiLand Potsdam", "Potsdam"),
        ("jonas", "FreiLand Potsdam", "Potsdam"),
    }
    assert [t["type"] for t in body["timeline"]][-3:] == [
        "project.production_started",
        "project.progress_noted",
        "project.delivered",
    ]

    freiland_view = await view_of(lena, "freiland")
    assert [(p["project_id"], p["relation"]) for p in freiland_view["projects"]] == [
        (project_id, "partner")
    ]
    history = (await lena.get(f"/projects/{project_id}/history")).json()
    assert [e["actor"] for e in history["events"]][:2] == ["member:ada", "member:ada"]
    assert history["status"] == "delivered"


async def test_illegal_moves_are_refused_with_the_rule_named(api_as):
    await seed_network(api_as)
    ada = api_as("mage", "coordinator", "ada")
    project_id = (await ada.post("/projects", project_body())).json()["id"]

    early = await ada.post(f"/projects/{project_id}/production", {})
    assert early.status_code == 409
    assert early.json()["error"] == "illegal_transition"
    assert "project is proposed" in early.json()["detail"]

    unknown_role = await ada.post(
        f"/projects/{project_id}/invitations", {"role_id": "paint", "member_id": "lena"}
    )
    assert unknown_role.status_code == 422 and "frame, bags" in unknown_role.json()["detail"]

    stranger = api_as("bloqs", "coordinator", "tom")
    refused = await stranger.post(
        f"/projects/{project_id}/invitations", {"role_id": "bags", "member_id": "lena"}
    )
    assert refused.status_code == 403 and refused.json()["error"] == "not_allowed"

    missing = await ada.post("/projects/nope/cancellation", {"reason": "x"})
    assert missing.status_code == 404


async def test_bad_input_names_the_field_and_the_reason(api_as):
    await seed_network(api_as)
    ada = api_as("mage", "coordinator", "ada")
    body = project_body()
    body["roles"][0]["effortQuantity"]["hasNumericalValue"] = -3
    body["due"] = "next tuesday"
    response = await ada.post("/projects", body)
    assert response.status_code == 422
    fields = {p["field"] for p in response.json()["problems"]}
    assert "roles.0.effortQuantity.hasNumericalValue" in fields and "due" in fields

    assert (await ada.client.post("/projects", content=b"{not json")).status_code == 422
    past = project_body()
    past["due"] = "2020-01-01T00:00:00Z"
    response = await ada.post("/projects", past)
    assert response.status_code == 422 and "not in the future" in response.json()["detail"]


async def test_stale_if_match_gets_409_with_the_current_version(api_as):
    await seed_network(api_as)
    ada = api_as("mage", "coordinator", "ada")
    created = (await ada.post("/projects", project_body())).json()
    project_id, version = created["id"], created["version"]
    first = await ada.post(
        f"/projects/{project_id}/invitations",
        {"role_id": "frame", "member_id": "tom"},
        **{"If-Match": f'"{version}"'},
    )
    assert first.status_code == 201
    second = await ada.post(
        f"/projects/{project_id}/invitations",
        {"role_id": "bags", "member_id": "lena"},
        **{"If-Match": f'"{version}"'},
    )
    assert second.status_code == 409
    assert second.json()["current_version"] == first.json()["version"]
    assert second.headers["etag"] == f'"{first.json()["version"]}"'


async def test_an_idempotency_key_makes_a_retried_post_act_once(api_as):
    await seed_network(api_as)
    ada = api_as("mage", "coordinator", "ada")
    first = await ada.post("/projects", project_body(), **{"Idempotency-Key": "k-1"})
    again = await ada.post("/projects", project_body(title="Other"), **{"Idempotency-Key": "k-1"})
    assert again.status_code == 409 and again.json()["error"] == "idempotency_key_conflict"
    body = project_body()
    retry_1 = await ada.post("/projects", body, **{"Idempotency-Key": "k-2"})
    retry_2 = await ada.post("/projects", body, **{"Idempotency-Key": "k-2"})
    assert retry_1.json() == retry_2.json()
    assert retry_2.headers.get("idempotent-replay") == "true"
    assert first.status_code == retry_1.status_code == 201
    view = await eventually(
        lambda: ada.get("/workspaces/mage/view"),
        until=lambda r: len(r.json()["projects"]) >= 2,
    )
    assert len(view.json()["projects"]) == 2


@pytest.mark.parametrize(
    ("token_workspace", "role", "expected"),
    [("freiland", "coordinator", 404), ("mage", "member", 200), ("ops", "ops", 200)],
)
async def test_a_private_project_is_visible_only_in_its_scope(
    api_as, token_workspace, role, expected
):
    await seed_network(api_as)
    ada = api_as("mage", "coordinator", "ada")
    project_id = (await ada.post("/projects", project_body(open_call=False))).json()["id"]
    await eventually(
        lambda: ada.get(f"/projects/{project_id}"), until=lambda r: r.status_code == 200
    )
    reader = api_as(token_workspace, role)
    assert (await reader.get(f"/projects/{project_id}")).status_code == expected
    assert (await reader.get(f"/projects/{project_id}/history")).status_code == expected


async def test_without_a_valid_token_nothing_is_served(projects_service, api_as):
    import httpx

    async with httpx.AsyncClient(base_url=projects_service.url) as anonymous:
        assert (await anonymous.get("/open-calls")).status_code == 401
        forged = {"Authorization": "Bearer mf1.eyJ3b3JrIjoiMSJ9.bad"}
        assert (await anonymous.get("/open-calls", headers=forged)).status_code == 401
    lena = api_as("freiland", "member", "lena")
    assert (await lena.get("/workspaces/mage/view")).status_code == 403
