"""The three services together, as `mf up` runs them, driven only through their HTTP APIs:
a coordinator proposes, matching proposes partners, the coordinator invites from the
proposal, the invited space hears it by signed webhook and on its live stream, the project
goes to delivery, and a replay of every view finds nothing lost or applied twice."""

from __future__ import annotations

import asyncio
import contextlib
import json

import httpx

from infra.http_server import serve_http
from services.matching.app import running as matching_running
from services.notifications.app import running as notifications_running
from services.notifications.receiver import ReferenceReceiver
from services.notifications.webhooks import DeliveryPolicy
from services.projects.app import running as projects_running
from tests.e2e.conftest import Api
from tests.e2e.seed import project_body, seed_network
from tests.e2e.test_live_view import sse_events
from tests.integration.ops_cli import run_cli
from tests.waiting import eventually

FAST = DeliveryPolicy(
    max_attempts=5, base_delay=0.05, max_delay=0.2, timeout=2.0, poll_interval=0.1
)


@contextlib.asynccontextmanager
async def the_system(infrastructure):
    async with (
        projects_running(infrastructure, sweep_every=0.5) as projects,
        matching_running(infrastructure, poll_interval=0.2, http_port=0) as matching,
        notifications_running(infrastructure, policy=FAST, feed_poll_interval=0.1) as notes,
    ):
        yield projects, matching, notes


async def proposal_of(api: Api, project_id: str) -> dict | None:
    response = await api.get(f"/projects/{project_id}")
    return response.json().get("proposals") if response.status_code == 200 else None


async def test_propose_match_invite_notify_deliver_and_replay(infrastructure):
    secret = infrastructure.token_secret
    receiver = ReferenceReceiver()
    async with (
        the_system(infrastructure) as (projects, _matching, notifications),
        serve_http(receiver.app()) as hooks,
    ):
        apis: list[Api] = []

        def api_as(workspace_id: str, role: str, member_id: str | None = None) -> Api:
            apis.append(Api(projects.url, secret, workspace_id, role, member_id))
            return apis[-1]

        await seed_network(api_as)
        ada = api_as("mage", "coordinator", "ada")
        freiland_coordinator = api_as("freiland", "coordinator", "lena")

        # FreiLand's own software registers a webhook with the notifications service.
        async with httpx.AsyncClient(base_url=notifications.url, timeout=10) as webhooks:
            auth = {"Authorization": f"Bearer {freiland_coordinator.token}"}
            created = await webhooks.post(
                "/webhooks/endpoints",
                json={"url": f"{hooks.url}/freiland", "event_types": ["project.*"]},
                headers=auth,
            )
            assert created.status_code == 201, created.text
            receiver.secrets["/freiland"] = created.json()["secret"]

            # FreiLand watches its live stream while the coordinator at MAGE works.
            async with (
                httpx.AsyncClient(base_url=projects.url, timeout=30) as client,
                client.stream("GET", "/workspaces/freiland/live", headers=auth) as live,
            ):
                assert live.status_code == 200
                stream = sse_events(live)
                kind, _ = await anext(stream)
                assert kind == "view"

                proposed = await ada.post("/projects", project_body(open_call=False))
                assert proposed.status_code == 201, proposed.text
                project_id = proposed.json()["id"]

                # Matching proposes, without anyone asking, and the projects API shows it.
                proposal = await eventually(lambda: proposal_of(ada, project_id), timeout=20)
                by_role = {p["role_id"]: p for p in proposal["proposals"]}
                bags = [c["member_id"] for c in by_role["bags"]["candidates"]]
                assert sorted(bags) == ["jonas", "lena"]
                assert by_role["bags"]["candidates"][0]["factors"]  # explained
                assert "tom" in [c["member_id"] for c in by_role["frame"]["candidates"]]

                # The coordinator invites from the proposal: the best for each bags seat.
                for rank in (1, 2):
                    invited = await ada.post(
                        f"/projects/{project_id}/invitations/from-proposal",
                        {"role_id": "bags", "rank": rank},
                    )
                    assert invited.status_code == 201, invited.text
                await ada.post(
                    f"/projects/{project_id}/invitations", {"role_id": "frame", "member_id": "tom"}
                )

                # FreiLand hears of its invitations on its live stream ...
                async def first_notification():
                    async for kind, data in stream:
                        if kind == "notification" and data["data"].get("project_id") == project_id:
                            return data
                    return None

                heard = await asyncio.wait_for(first_notification(), 20)
                assert heard["type"] in ("project.partner_invited", "project.proposed")

        # ... and by signed webhook, signed with its secret, each event once.
        async def freiland_hooks() -> list[dict]:
            return [json.loads(r.body)["event"] for r in receiver.accepted("/freiland")]

        def invitations(events: list[dict]) -> list[dict]:
            return [e for e in events if e["type"] == "project.partner_invited"]

        def invited_members(events: list[dict]) -> list[str]:
            return sorted(e["data"]["member_id"] for e in invitations(events))

        # FreiLand's members' invitations, and Tom's too: FreiLand takes part in the project.
        hooks_seen = await eventually(
            freiland_hooks, until=lambda e: invited_members(e) == ["jonas", "lena", "tom"]
        )
        assert len(hooks_seen) == 3
        assert all(r.signature_error is None for r in receiver.at("/freiland"))

        history = (await ada.get(f"/projects/{project_id}/history")).json()
        invitation_ids = {
            e["data"]["member_id"]: e["data"]["invitation_id"]
            for e in history["events"]
            if e["type"] == "project.partner_invited"
        }
        for member, workspace in (("tom", "bloqs"), ("lena", "freiland"), ("jonas", "freiland")):
            accepted = await api_as(workspace, "member", member).post(
                f"/projects/{project_id}/invitations/{invitation_ids[member]}/acceptance"
            )
            assert accepted.status_code == 200, accepted.text
        assert (await ada.post(f"/projects/{project_id}/production", {"note": "go"})).is_success
        assert (await ada.post(f"/projects/{project_id}/delivery", {"note": "done"})).is_success

        delivered = await eventually(
            lambda: ada.get(f"/projects/{project_id}"),
            until=lambda r: r.json()["status"] == "delivered",
        )
        assert {p["member_id"] for p in delivered.json()["partners"]} == {"tom", "lena", "jonas"}
        types = [
            e["type"]
            for e in await eventually(
                freiland_hooks, until=lambda e: e[-1:] and e[-1]["type"] == "project.delivered"
            )
        ]
        assert types.count("project.staffed") == 1 and types.count("project.delivered") == 1

        # Ops, while everything runs: each view rebuilt from the log equals the live one
        # (nothing lost, nothing applied twice), and rebuilding re-fires no webhook and
        # re-proposes nothing.
        proposals = len((await infrastructure.store.load("matching", project_id)).events)
        hooks = len(receiver.received)
        for projection in ("workspace_view", "matching_directory", "notifications_audience"):
            replay = await run_cli(infrastructure, "replay", projection, "--diff", real_mf=True)
            assert replay.exit_code == 0, replay.stdout + replay.stderr
            assert "0 differences" in replay.stdout
        await asyncio.sleep(1.0)  # time for a wrongly re-fired side effect to show
        assert len((await infrastructure.store.load("matching", project_id)).events) == proposals
        assert len(receiver.received) == hooks
        for api in apis:
            await api.close()
