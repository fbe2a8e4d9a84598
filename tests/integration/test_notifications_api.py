"""The notifications HTTP API and CLI: who may do what, bad input, the delivery log."""

from __future__ import annotations

import asyncio
import re
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
from typer.testing import CliRunner

from infra.auth import mint_token
from infra.embedded import free_port
from services.notifications.app import running
from services.notifications.commands import app as webhooks_cli
from services.notifications.receiver import ReferenceReceiver
from tests.factories import note
from tests.integration.test_notifications_delivery import (
    FAST,
    Log,
    fail_first,
    private_project,
    receiving,
    settled,
)
from tests.waiting import eventually

LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")


@dataclass(frozen=True)
class Output:
    exit_code: int
    output: str


def bearer(infrastructure, workspace_id: str, role: str = "coordinator") -> dict[str, str]:
    member_id = None if role == "ops" else f"{workspace_id}-member"
    token = mint_token(infrastructure.token_secret, workspace_id, role, member_id)
    return {"Authorization": f"Bearer {token}"}


async def test_a_workspace_manages_only_its_own_endpoints(infrastructure):
    async with (
        running(infrastructure, policy=FAST) as service,
        httpx.AsyncClient(base_url=service.url) as api,
    ):
        mage, freiland = bearer(infrastructure, "mage"), bearer(infrastructure, "freiland")
        created = await api.post(
            "/webhooks/endpoints",
            json={"url": "https://erp.mage.example/hooks", "event_types": ["project.*"]},
            headers=mage,
        )
        assert created.status_code == 201, created.text
        endpoint = created.json()
        assert endpoint["workspace_id"] == "mage" and endpoint["secret"].startswith("whsec_")
        path = f"/webhooks/endpoints/{endpoint['endpoint_id']}"

        listed = (await api.get("/webhooks/endpoints", headers=mage)).json()
        assert [e["endpoint_id"] for e in listed] == [endpoint["endpoint_id"]]
        assert "secret" not in listed[0]
        assert (await api.get("/webhooks/endpoints", headers=freiland)).json() == []
        assert (await api.get(path, headers=freiland)).status_code == 404
        assert (await api.delete(path, headers=freiland)).status_code == 404
        forbidden = await api.get("/webhooks/endpoints?workspace_id=mage", headers=freiland)
        assert forbidden.status_code == 403
        member = await api.post(
            "/webhooks/endpoints",
            json={"url": "https://x.example/h"},
            headers=bearer(infrastructure, "mage", "member"),
        )
        assert member.status_code == 403
        assert (await api.get("/webhooks/endpoints")).status_code == 401

        ops = bearer(infrastructure, "network", "ops")
        assert len((await api.get("/webhooks/endpoints", headers=ops)).json()) == 1
        paused = await api.patch(path, json={"paused": True}, headers=mage)
        assert paused.json()["paused"] is True
        assert (await api.delete(path, headers=mage)).status_code == 204
        assert (await api.get(path, headers=mage)).status_code == 404


async def test_bad_input_is_refused_naming_the_field_and_the_reason(infrastructure):
    async with (
        running(infrastructure, policy=FAST) as service,
        httpx.AsyncClient(base_url=service.url) as api,
    ):
        mage = bearer(infrastructure, "mage")

        async def refusal(body: dict) -> tuple[list, str]:
            response = await api.post("/webhooks/endpoints", json=body, headers=mage)
            assert response.status_code == 422, response.text
            problem = response.json()["detail"][0]
            return problem["loc"], problem["msg"]

        loc, msg = await refusal({"url": "ftp://files.example/x"})
        assert loc == ["body", "url"] and "scheme" in msg
        loc, msg = await refusal({"url": "https://x.example/h", "event_types": ["project.staffd"]})
        assert loc == ["body", "event_types"] and "unknown event type 'project.staffd'" in msg
        loc, msg = await refusal({"url": "https://x.example/h", "secret": "short"})
        assert loc == ["body", "secret"] and "at least 24" in msg
        loc, _ = await refusal({"url": "https://x.example/h", "colour": "red"})
        assert loc == ["body", "colour"]
        wrong_status = await api.get("/webhooks/deliveries?status=lost", headers=mage)
        assert wrong_status.status_code == 422
        assert wrong_status.json()["detail"][0]["loc"] == ["query", "status"]


async def test_the_delivery_log_dead_letters_and_redelivery_over_http(infrastructure):
    answers = {"broken": True}

    async def answer(_path, _count, _headers) -> int:
        return 500 if answers["broken"] else 200

    receiver = ReferenceReceiver(answer=answer)
    log = Log(infrastructure.store)
    policy = replace(FAST, max_attempts=2, base_delay=0.02, max_delay=0.05, timeout=2)
    async with (
        receiving(receiver) as served,
        running(infrastructure, policy=policy) as service,
        httpx.AsyncClient(base_url=service.url) as api,
    ):
        mage, freiland = bearer(infrastructure, "mage"), bearer(infrastructure, "freiland")
        created = await api.post(
            "/webhooks/endpoints", json={"url": f"{served.url}/mage"}, headers=mage
        )
        receiver.secrets["/mage"] = created.json()["secret"]
        await log.add(private_project("p1"), "p1")
        await settled(service, "mage", 1)

        dead = (await api.get("/webhooks/dead-letters", headers=mage)).json()
        assert len(dead) == 1 and dead[0]["attempts"] == 2
        assert (await api.get("/webhooks/dead-letters", headers=freiland)).json() == []
        delivery_id = dead[0]["delivery_id"]
        refused = await api.post(f"/webhooks/deliveries/{delivery_id}/redeliver", headers=freiland)
        assert refused.status_code == 404

        answers["broken"] = False
        again = await api.post(f"/webhooks/deliveries/{delivery_id}/redeliver", headers=mage)
        assert again.status_code == 202 and again.json()["status"] == "pending"

        async def detail():
            response = await api.get(f"/webhooks/deliveries/{delivery_id}", headers=mage)
            return response.json()

        delivered = await eventually(detail, until=lambda d: d["status"] == "delivered")
        assert [(a["outcome"], a["status_code"]) for a in delivered["attempt_log"]] == [
            ("failed", 500),
            ("failed", 500),
            ("delivered", 200),
        ]
        conflict = await api.post(f"/webhooks/deliveries/{delivery_id}/redeliver", headers=mage)
        assert conflict.status_code == 409

        listed = (await api.get("/webhooks/deliveries?status=delivered", headers=mage)).json()
        assert [row["delivery_id"] for row in listed] == [delivery_id]
        ops = bearer(infrastructure, "network", "ops")
        assert len((await api.get("/webhooks/deliveries", headers=ops)).json()) == 1
        assert (
            await api.get(f"/webhooks/deliveries/{delivery_id}", headers=freiland)
        ).status_code == 404

        feed = (await api.get("/notifications", headers=mage)).json()
        assert [(n["type"], n["concerns"]) for n in feed] == [("project.proposed", ["coordinator"])]
        assert feed[0]["event"]["data"]["project_id"] == "p1"  # to catch up after being offline
        after = feed[0]["sequence"]
        assert (await api.get(f"/notifications?after_sequence={after}", headers=mage)).json() == []
        assert (await api.get("/notifications", headers=freiland)).json() == []


async def test_the_cli_registers_lists_and_redelivers(infrastructure, monkeypatch):
    monkeypatch.setenv("MF_DATABASE_URL", infrastructure.database_url)
    monkeypatch.setenv("MF_NATS_URL", infrastructure.nats_url)
    monkeypatch.setenv("MF_SCHEMA_PREFIX", infrastructure.settings.schema_prefix)
    runner = CliRunner()

    async def mf(*args: str) -> Output:
        result = await asyncio.to_thread(runner.invoke, webhooks_cli, list(args))
        # the service logs (from this test's event loop) land in the captured output too
        lines = [line for line in result.output.splitlines() if not LOG_LINE.match(line)]
        return Output(result.exit_code, "\n".join(lines))

    receiver = ReferenceReceiver(answer=fail_first(2))
    log = Log(infrastructure.store)
    policy = replace(FAST, max_attempts=2, base_delay=0.02, max_delay=0.05, timeout=2)
    async with receiving(receiver) as served, running(infrastructure, policy=policy) as service:
        added = await mf("add", f"{served.url}/mage", "--workspace", "mage", "-t", "project.*")
        assert added.exit_code == 0, added.output
        endpoint_id = added.output.split()[1]
        receiver.secrets["/mage"] = added.output.split("secret")[1].split()[0]
        bad = await mf("add", f"{served.url}/x", "--workspace", "mage", "-t", "nope")
        assert bad.exit_code == 2 and "unknown event type 'nope'" in bad.output

        listed = await mf("list", "--workspace", "mage")
        assert endpoint_id in listed.output
        await log.add(private_project("p1"), "p1")
        await log.add(note("p1", "hello"), "p1")
        await settled(service, "mage", 2)
        dead = await mf("dead-letters", "--workspace", "mage", "--json")
        assert dead.output.count("delivery_id") == 1
        redelivered = await mf("redeliver", "--endpoint", endpoint_id)
        assert "redelivering 1 dead letter" in redelivered.output
        await eventually(
            lambda: service.repository.list_deliveries(workspace_id="mage", status="delivered"),
            until=lambda rows: len(rows) == 2,
        )
        deliveries = await mf("deliveries", "--workspace", "mage")
        assert deliveries.output.count("delivered") == 2
        removed = await mf("remove", endpoint_id)
        assert removed.exit_code == 0
        assert "(none)" in (await mf("list", "--workspace", "mage")).output
        feed = await mf("notifications", "--workspace", "mage")
        assert "project.proposed" in feed.output and "project.progress_noted" in feed.output


async def test_mf_webhooks_listen_receives_and_verifies_deliveries(infrastructure):
    port = free_port()
    listener = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("mf")),
        *("webhooks", "listen", "--secret", "s3cret-s3cret", "--port", str(port)),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        first = (await asyncio.wait_for(listener.stdout.readline(), 30)).decode()
        assert first.startswith(f"listening on http://127.0.0.1:{port}/hooks")
        log = Log(infrastructure.store)
        async with running(infrastructure, policy=FAST) as service:
            await service.repository.create_endpoint(
                "mage", f"http://127.0.0.1:{port}/hooks", secret="s3cret-s3cret"
            )
            await service.repository.create_endpoint(
                "mage", f"http://127.0.0.1:{port}/hooks", secret="not-the-secret"
            )
            await log.add(private_project("p1"), "p1")
            lines = [
                (await asyncio.wait_for(listener.stdout.readline(), 30)).decode() for _ in range(2)
            ]
    finally:
        listener.terminate()
        await listener.wait()
    event_id = log.event_ids[0]
    assert sorted(line.split()[0] for line in lines) == ["200", "401"]
    verified = next(line for line in lines if line.startswith("200"))
    assert verified.split()[1:3] == ["project.proposed", event_id]
    assert verified.rstrip().endswith("signature: verified")
