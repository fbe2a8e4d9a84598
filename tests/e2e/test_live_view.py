"""The live view moves by itself: over Server-Sent Events, and on the page in a real browser."""

from __future__ import annotations

import asyncio
import json
import shutil

import httpx
import pytest

from tests.e2e.seed import project_body, seed_network

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


async def sse_events(response: httpx.Response):
    event, data = None, ""
    async for line in response.aiter_lines():
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            data += line[6:]
        elif line == "" and event:
            yield event, json.loads(data)
            event, data = None, ""


def shown_projects(kind: str, data: dict) -> list[dict]:
    """The workspace's own projects pushed by a `view` event, or by a `project` event."""
    if kind == "view":
        return data["projects"]
    if kind == "project" and "projects" in data["sections"]:
        return [data["project"]]
    return []


async def test_the_live_stream_pushes_each_change(api_as, projects_service):
    await seed_network(api_as)
    ada = api_as("mage", "coordinator", "ada")
    headers = {"Authorization": f"Bearer {ada.token}"}
    async with (
        httpx.AsyncClient(base_url=projects_service.url, timeout=20) as client,
        client.stream("GET", "/workspaces/mage/live", headers=headers) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse_events(response)
        kind, first = await anext(events)
        assert kind == "view" and first["projects"] == []

        created = await ada.post("/projects", project_body(title="Solar kiosk"))
        project_id = created.json()["id"]

        async def until_shown(version: int) -> dict:
            async for kind, data in events:
                for project in shown_projects(kind, data):
                    if project["project_id"] == project_id and project["version"] >= version:
                        return project
            raise AssertionError("the stream ended")

        project = await asyncio.wait_for(until_shown(1), 10)
        assert project["title"] == "Solar kiosk" and project["relation"] == "coordinator"
        assert [r["open"] for r in project["roles"]] == [1, 2]

        invited = await ada.post(
            f"/projects/{project_id}/invitations", {"role_id": "bags", "member_id": "lena"}
        )
        project = await asyncio.wait_for(until_shown(invited.json()["version"]), 10)
        assert [r["invited"] for r in project["roles"]] == [0, 1]
        assert project["timeline"][-1]["type"] == "project.partner_invited"


async def test_another_workspace_cannot_open_my_live_stream(api_as, projects_service):
    await seed_network(api_as)
    tom = api_as("bloqs", "coordinator", "tom")
    response = await tom.get("/workspaces/mage/live")
    assert response.status_code == 403


@pytest.mark.browser
@pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)"
)
async def test_the_page_shows_a_change_made_by_another_client_without_reload(
    api_as, projects_service
):
    from playwright.async_api import async_playwright

    await seed_network(api_as)
    ada = api_as("mage", "coordinator", "ada")
    lena = api_as("freiland", "member", "lena")

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        try:
            page = await browser.new_page()
            await page.goto(f"{projects_service.url}/")
            await page.fill("#token", ada.token)
            await page.click("button[type=submit]")
            await page.wait_for_selector("#status.live", timeout=10_000)
            assert "No joint projects yet" in await page.inner_text("#projects")
            navigations = []
            page.on("framenavigated", lambda frame: navigations.append(frame.url))

            created = await ada.post("/projects", project_body(title="Leather bike bags"))
            project_id = created.json()["id"]
            card = page.locator(f'[data-project="{project_id}"]').first
            await card.wait_for(timeout=10_000)
            assert "Leather bike bags" in await card.inner_text()
            assert await card.get_attribute("data-status") == "proposed"

            await ada.post(
                f"/projects/{project_id}/invitations", {"role_id": "bags", "member_id": "lena"}
            )
            await page.wait_for_function(
                "() => document.querySelector('#projects').innerText.includes('Lena Vogt')",
                timeout=10_000,
            )
            history = (await ada.get(f"/projects/{project_id}/history")).json()
            invitation_id = history["events"][-1]["data"]["invitation_id"]
            await lena.post(f"/projects/{project_id}/invitations/{invitation_id}/acceptance")
            await page.wait_for_function(
                "() => document.querySelector('#projects').innerText.includes('1/2 filled')",
                timeout=10_000,
            )
            assert navigations == [], "the page must update without reloading"
        finally:
            await browser.close()
