"""`mf status`: checkpoints, lag in events and seconds, last errors, parked counts; a
consumer that does not progress while events wait is stuck, and the command exits non-zero."""

from __future__ import annotations

import asyncio
import json

from infra.postgres import create_pool
from infra.projections import ProjectionRunner
from services.ops.status import render, sample, status
from tests.factories import pending, project_proposed
from tests.integration.ledger_projection import LedgerProjection
from tests.integration.ops_cli import run_cli
from tests.waiting import eventually


async def propose(store, count: int, start: int = 0) -> None:
    for index in range(start, start + count):
        project_id = f"p{index}"
        await store.append(
            "project", project_id, [pending(project_proposed(project_id), project_id)], 0
        )


def by_name(states, name):
    return next(state for state in states if state.name == name)


async def test_a_projection_that_does_not_run_while_events_arrive_is_stuck(infrastructure):
    store = infrastructure.store
    prefix = infrastructure.settings.schema_prefix
    schema = infrastructure.schema("ledger")
    admin = await create_pool(infrastructure.database_url, "public", max_size=3)
    try:
        await propose(store, 3)
        runner = ProjectionRunner(LedgerProjection(), store, admin, schema)
        await runner.catch_up()
        caught_up = await status(store, admin, schema_prefix=prefix, interval=0.05)
        state = by_name(caught_up.states, "ledger")
        assert (state.position, state.lag_events, state.lag_seconds) == (3, 0, 0.0)
        assert caught_up.healthy

        await propose(store, 4, start=3)  # the runner is not running
        report = await status(store, admin, schema_prefix=prefix, interval=0.2)
        state = by_name(report.states, "ledger")
        assert state.lag_events == 4 and state.lag_seconds > 0
        assert [s.name for s in report.stuck] == ["ledger"]
        assert "STUCK (lag and no progress)" in render(report)[-1]

        cli = await run_cli(infrastructure, "status", "--interval", "0.2", "--json")
        assert cli.exit_code == 1, cli.stderr
        document = json.loads(cli.stdout)
        ledger = next(c for c in document["consumers"] if c["name"] == "ledger")
        assert ledger["stuck"] and ledger["lag_events"] == 4 and not document["healthy"]

        following = asyncio.create_task(runner.run())
        try:
            await eventually(runner.position, until=lambda position: position == 7)
            report = await status(store, admin, schema_prefix=prefix, interval=0.05)
            assert report.healthy and by_name(report.states, "ledger").lag_events == 0
            cli = await run_cli(infrastructure, "status", "--interval", "0.1")
            assert cli.exit_code == 0, cli.stdout + cli.stderr
            assert "all consumers are making progress or caught up" in cli.stdout
        finally:
            following.cancel()
            await asyncio.gather(following, return_exceptions=True)
    finally:
        await admin.close()


async def test_lag_counts_only_the_subjects_a_projection_reads(infrastructure):
    store = infrastructure.store
    schema = infrastructure.schema("ledger")
    admin = await create_pool(infrastructure.database_url, "public", max_size=3)
    try:
        projection = LedgerProjection()
        projection.subject_filter = store.scheme.events_of_type("project.progress_noted")
        await ProjectionRunner(projection, store, admin, schema).catch_up()
        await propose(store, 5)  # none of them is for this projection
        states = await sample(store, admin, schema_prefix=infrastructure.settings.schema_prefix)
        assert by_name(states, "ledger").lag_events == 0
    finally:
        await admin.close()


async def test_status_shows_last_errors_parked_events_and_durable_consumers(
    infrastructure, nats_client
):
    store = infrastructure.store
    schema = infrastructure.schema("ledger")
    admin = await create_pool(infrastructure.database_url, "public", max_size=3)
    try:
        await propose(store, 2)
        poisoned = LedgerProjection(refuse_note=None)
        runner = ProjectionRunner(poisoned, store, admin, schema)
        await runner.prepare()
        await runner._record_error("ConnectionRefusedError('database down')")
        consumer = {
            "stream_name": store.stream,
            "config": {
                "durable_name": "mailer",
                "ack_policy": "explicit",
                "filter_subject": store.scheme.events_of_type("project.proposed"),
            },
        }
        reply = await nats_client.request(
            f"$JS.API.CONSUMER.CREATE.{store.stream}.mailer", json.dumps(consumer).encode()
        )
        assert "error" not in json.loads(reply.data)
        report = await status(
            store, admin, schema_prefix=infrastructure.settings.schema_prefix, interval=0.05
        )
        ledger = by_name(report.states, "ledger")
        assert ledger.last_error == "ConnectionRefusedError('database down')"
        assert ledger.parked == 0 and ledger.lag_events == 2
        mailer = by_name(report.states, "mailer")
        assert mailer.kind == "consumer" and mailer.lag_events == 2 and mailer.position == 0
        assert {s.name for s in report.stuck} == {"ledger", "mailer"}
        assert any("last error" in line and "database down" in line for line in render(report))
    finally:
        await admin.close()
