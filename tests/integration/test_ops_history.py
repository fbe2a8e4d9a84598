"""Time travel: a project or workspace as of a sequence or a time is the fold of its events
up to that point, with the timeline of who did what; over the CLI and the ops API."""

from __future__ import annotations

import json

import httpx
import pytest
from fastapi import FastAPI

from infra.auth import mint_token
from infra.postgres import create_pool
from services.ops.api import ops_router
from services.ops.history import project_history, workspace_history
from services.projects import domain
from tests.integration.ops_cli import run_cli
from tests.integration.ops_network import seed_network


async def test_a_project_as_of_every_sequence_is_the_fold_of_its_events_up_to_it(
    infrastructure,
):
    store = infrastructure.store
    network = await seed_network(store, projects=4)
    delivered = network.projects[3]
    events = (await store.load("project", delivered)).events
    for cut in range(events[0].sequence - 1, events[-1].sequence + 1):
        found = await project_history(store, delivered, at_seq=cut)
        upto = [r.event for r in events if r.sequence <= cut]
        assert found.state == domain.fold_project(upto)
        assert found.version == max([r.sequence for r in events if r.sequence <= cut] or [0])
        assert [entry.sequence for entry in found.timeline] == [
            r.sequence for r in events if r.sequence <= cut
        ]
    final = await project_history(store, delivered)
    assert final.state.status == "delivered"
    assert [(e.type, e.actor) for e in final.timeline] == [
        ("project.proposed", "member:ada"),
        ("project.partner_invited", "member:ada"),
        ("project.partner_invited", "member:ada"),
        ("project.invitation_accepted", "member:tom"),
        ("project.invitation_accepted", "member:lena"),
        ("project.staffed", "member:lena"),
        ("project.production_started", "member:ada"),
        ("project.progress_noted", "member:tom"),
        ("project.delivered", "member:ada"),
    ]
    assert final.timeline[3].summary == "tom (bloqs) accepted the frame seat"


async def test_as_of_a_time_cuts_at_the_last_event_the_log_had_recorded(infrastructure):
    store = infrastructure.store
    network = await seed_network(store, projects=4)
    staffed = network.projects[0]
    events = (await store.load("project", staffed)).events
    accepted = events[3]  # tom accepts; lena's acceptance and `staffed` come after
    found = await project_history(store, staffed, as_of=accepted.recorded_at)
    assert found.version == accepted.sequence
    assert found.state.status == "proposed"
    assert [i.status for i in found.state.invitations] == ["accepted", "pending"]
    later = await project_history(store, staffed, as_of=events[-1].recorded_at)
    assert later.state.status == "staffed"
    before = await project_history(store, staffed, as_of=events[0].recorded_at.replace(year=2020))
    assert before.state.status == "new" and before.timeline == [] and before.version == 0


async def test_a_workspace_as_it_was_with_its_members_projects_and_timeline(infrastructure):
    store = infrastructure.store
    network = await seed_network(store, projects=4)
    first_project = (await store.load("project", network.projects[0])).events
    cut = first_project[2].sequence  # lena (freiland) has just been invited to project 0
    found = await workspace_history(store, "freiland", at_seq=cut)
    assert found.workspace.registered and found.workspace.name == "FreiLand Potsdam"
    assert list(found.members) == ["lena"]
    assert list(found.projects) == [network.projects[0]]
    assert found.projects[network.projects[0]].invitations[-1].member_id == "lena"
    assert [(e.type, e.actor) for e in found.timeline] == [
        ("workspace.registered", "ops:ops"),
        ("member.joined", "ops:ops"),
        ("project.partner_invited", "member:ada"),
    ]
    now = await workspace_history(store, "freiland")
    assert set(now.projects) == set(network.projects)
    statuses = sorted(project.status for project in now.projects.values())
    assert statuses == ["cancelled", "delivered", "proposed", "staffed"]


async def test_history_from_the_cli(infrastructure):
    network = await seed_network(infrastructure.store, projects=4)
    project_id = network.projects[3]
    events = (await infrastructure.store.load("project", project_id)).events
    cli = await run_cli(
        infrastructure,
        "history",
        "project",
        project_id,
        "--at-seq",
        str(events[5].sequence),
        "--json",
    )
    assert cli.exit_code == 0, cli.stderr
    document = json.loads(cli.stdout)
    assert document["state"]["status"] == "staffed"
    assert [item["actor"] for item in document["timeline"]][-2:] == ["member:lena", "member:lena"]
    cli = await run_cli(
        infrastructure,
        "history",
        "workspace",
        "bloqs",
        "--as-of",
        events[3].recorded_at.isoformat(),
    )
    assert cli.exit_code == 0, cli.stderr
    assert "workspace bloqs (Building BloQs)" in cli.stdout
    assert "tom (bloqs) accepted the frame seat" in cli.stdout
    both = await run_cli(
        infrastructure,
        "history",
        "project",
        project_id,
        "--at-seq",
        "3",
        "--as-of",
        "2026-01-01T00:00:00",
    )
    assert both.exit_code != 0 and "not both" in both.stderr


def token(secret: str, role: str) -> str:
    return mint_token(secret, "mage", role)


@pytest.fixture
async def ops_api(infrastructure):
    pool = await create_pool(infrastructure.database_url, "public", max_size=2)
    app = FastAPI()
    app.include_router(
        ops_router(
            store=infrastructure.store,
            pool=pool,
            token_secret=infrastructure.token_secret,
            schema_prefix=infrastructure.settings.schema_prefix,
        )
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://ops") as client:
        yield client
    await pool.close()


async def test_the_ops_api_answers_ops_tokens_only(infrastructure, ops_api):
    network = await seed_network(infrastructure.store, projects=2)
    project_id = network.projects[0]
    secret = infrastructure.token_secret
    as_ops = {"Authorization": f"Bearer {token(secret, 'ops')}"}
    as_coordinator = {"Authorization": f"Bearer {token(secret, 'coordinator')}"}
    path = f"/ops/history/projects/{project_id}"
    assert (await ops_api.get(path)).status_code == 401
    assert (await ops_api.get(path, headers=as_coordinator)).status_code == 403
    answer = await ops_api.get(path, params={"at_seq": 8}, headers=as_ops)
    assert answer.status_code == 200
    assert answer.json()["at_sequence"] == 8 and answer.json()["state"]["status"] == "proposed"
    workspace = await ops_api.get("/ops/history/workspaces/mage", headers=as_ops)
    assert workspace.status_code == 200 and len(workspace.json()["projects"]) == 2
    assert (await ops_api.get("/ops/history/projects/nope", headers=as_ops)).status_code == 404
    status = await ops_api.get("/ops/status", headers=as_ops)
    assert status.status_code == 200 and status.json()["head"] > 0
    parked = await ops_api.get("/ops/parked", headers=as_ops)
    assert parked.status_code == 200 and parked.json() == {"parked": []}
