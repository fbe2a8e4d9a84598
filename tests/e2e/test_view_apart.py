"""The live-view projection in its own process (`mf serve projects-view`) next to an API that
runs without it: a command over HTTP reaches the view and the live stream all the same."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import httpx

from infra.stack import child_environment
from services.projects.app import running
from tests.e2e.conftest import Api
from tests.e2e.seed import project_body, seed_network
from tests.e2e.test_live_view import sse_events
from tests.waiting import eventually

MF = Path(sys.executable).with_name("mf")


async def test_an_api_without_its_projection_is_served_by_mf_serve_projects_view(infrastructure):
    view = await asyncio.create_subprocess_exec(
        str(MF),
        *("serve", "projects-view"),
        env=child_environment(infrastructure),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    apis: list[Api] = []
    drained = None
    try:
        while not (line := await asyncio.wait_for(view.stdout.readline(), 60)).startswith(
            b"Ready."
        ):
            assert line, "mf serve projects-view exited early"
        drained = asyncio.create_task(view.stdout.read())  # its logs must not fill the pipe
        async with running(infrastructure, view_runner=False) as projects:

            def api_as(workspace_id: str, role: str, member_id: str | None = None) -> Api:
                secret = infrastructure.token_secret
                apis.append(Api(projects.url, secret, workspace_id, role, member_id))
                return apis[-1]

            await seed_network(api_as)
            ada = api_as("mage", "coordinator", "ada")
            await eventually(  # the other process has projected the seeded network
                lambda: ada.get("/workspaces/mage/view"), until=lambda r: r.status_code == 200
            )
            headers = {"Authorization": f"Bearer {ada.token}"}
            async with (
                httpx.AsyncClient(base_url=projects.url, timeout=30) as client,
                client.stream("GET", "/workspaces/mage/live", headers=headers) as live,
            ):
                events = sse_events(live)
                assert (await anext(events))[0] == "view"
                created = await ada.post("/projects", project_body(title="Kiosk"))
                project_id = created.json()["id"]

                async def pushed():
                    async for _kind, data in events:
                        if project_id in str(data):
                            return data
                    return None

                assert await asyncio.wait_for(pushed(), 20)
            project = await eventually(
                lambda: ada.get(f"/projects/{project_id}"), until=lambda r: r.status_code == 200
            )
            assert project.json()["title"] == "Kiosk"
    finally:
        view.terminate()
        assert await asyncio.wait_for(view.wait(), 30) == 0
        if drained is not None:
            await drained
        for api in apis:
            await api.close()
