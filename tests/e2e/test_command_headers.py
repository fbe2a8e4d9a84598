"""Commands read their token, If-Match and Idempotency-Key in one step; every refusal stays."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from infra.auth import TokenClaims, issue_token
from tests.e2e.seed import project_body, seed_network


async def test_a_command_without_a_valid_token_is_refused_before_its_body_is_read(
    projects_service, infrastructure
):
    expired = issue_token(
        infrastructure.token_secret,
        TokenClaims(
            workspace_id="mage",
            role="coordinator",
            member_id="ada",
            token_id="t-expired",
            issued_at=datetime.now(UTC) - timedelta(days=2),
            expires_at=datetime.now(UTC) - timedelta(days=1),
        ),
    )
    async with httpx.AsyncClient(base_url=projects_service.url) as client:
        for headers in (
            {},
            {"Authorization": "Basic YWRhOnNlY3JldA=="},
            {"Authorization": "Bearer mf1.eyJ3b3JrIjoiMSJ9.bad"},
            {"Authorization": f"Bearer {expired}"},
        ):
            refused = await client.post("/projects", json={"title": 1}, headers=headers)
            assert refused.status_code == 401, headers
            assert refused.headers["www-authenticate"] == "Bearer"
            assert refused.json()["detail"]


async def test_bad_command_headers_are_named(api_as):
    await seed_network(api_as)
    ada = api_as("mage", "coordinator", "ada")
    project_id = (await ada.post("/projects", project_body())).json()["id"]

    long_key = await ada.post("/projects", project_body(), **{"Idempotency-Key": "k" * 201})
    assert long_key.status_code == 422
    assert long_key.json()["problems"][0]["field"] == "header.idempotency-key"

    not_a_version = await ada.post(
        f"/projects/{project_id}/invitations",
        {"role_id": "bags", "member_id": "lena"},
        **{"If-Match": "yesterday"},
    )
    assert not_a_version.status_code == 400

    stale = await ada.post(
        f"/projects/{project_id}/invitations",
        {"role_id": "bags", "member_id": "lena"},
        **{"If-Match": '"0"'},
    )
    assert stale.status_code == 409 and stale.json()["error"] == "version_conflict"


def test_the_openapi_document_still_describes_the_command_headers():
    from services.projects.api import openapi_document

    operation = openapi_document()["paths"]["/projects/{project_id}/progress"]["post"]

    assert operation["security"] == [{"HTTPBearer": []}]
    assert {p["name"] for p in operation["parameters"]} == {
        "project_id",
        "if-match",
        "idempotency-key",
    }
    assert operation["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ProgressNote"
    }
