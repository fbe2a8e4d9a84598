"""The live hub: one read of the projects a signal names, handed to the streams they concern."""

from __future__ import annotations

import asyncio
import json

from infra.postgres import create_pool
from services.projects.live import LiveHub
from services.projects.views import NETWORK
from tests.e2e.seed import project_body, seed_network


async def signal(infrastructure, key: str, projects: list[str] | None) -> None:
    body = {"changed": True} if projects is None else {"changed": True, "projects": projects}
    await infrastructure.nats.publish(infrastructure.scheme.live(key), json.dumps(body).encode())


async def test_a_signal_naming_projects_hands_their_documents_to_their_workspace(
    api_as, projects_service, infrastructure
):
    await seed_network(api_as)
    ada = api_as("mage", "coordinator", "ada")
    created = await ada.post("/projects", project_body(open_call=False))
    project_id = created.json()["id"]
    for _ in range(100):  # until the view holds it
        if (await ada.get(f"/projects/{project_id}")).status_code == 200:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)  # the projection's own signals have passed: only ours follow
    pool = await create_pool(infrastructure.database_url, projects_service.view_schema)
    hub = LiveHub(infrastructure.nats, infrastructure.scheme, pool, coalesce_seconds=0.01)
    try:
        async with hub.stream("mage") as mage, hub.stream("bloqs") as bloqs:
            await signal(infrastructure, "mage", [project_id])

            change = await mage.next(timeout=5)
            assert not change.whole_view
            assert change.projects[project_id]["title"] == project_body()["title"]
            assert change.projects[project_id]["version"] == created.json()["version"]
            assert await bloqs.next(timeout=0.2) is None, "not bloqs' project"

            await signal(infrastructure, NETWORK, [project_id])
            assert project_id in (await bloqs.next(timeout=5)).projects, "open calls: everyone's"

            await signal(infrastructure, "bloqs", None)
            assert (await bloqs.next(timeout=5)).whole_view, "a signal naming nothing: re-read"
    finally:
        await hub.close()
        await pool.close()
