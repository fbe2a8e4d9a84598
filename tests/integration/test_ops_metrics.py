"""GET /metrics: appends and conflicts, projection batch sizes and durations, consumer lag
measured at scrape time, webhook outcomes."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from infra import metrics
from infra.eventstore import ConcurrencyError
from infra.metrics import MeteredEventStore, record_webhook
from infra.postgres import create_pool
from infra.projections import ProjectionRunner
from services.ops.metrics import metrics_route
from tests.factories import pending, project_proposed
from tests.integration.ledger_projection import LedgerProjection


def value(text: str, selector: str) -> float:
    for line in text.splitlines():
        if line.startswith(selector + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{selector} not in the exposition")


async def test_metrics_endpoint_reports_appends_batches_lag_and_webhooks(infrastructure):
    store = infrastructure.store  # the wiring meters every store it hands to services
    assert isinstance(store, MeteredEventStore)
    schema = infrastructure.schema("ledger")
    pool = await create_pool(infrastructure.database_url, "public", max_size=3)
    app = FastAPI()
    metrics_route(app, store=store, pool=pool, schema_prefix=infrastructure.settings.schema_prefix)
    stored = metrics.APPENDS.value(aggregate="project", outcome="stored") or 0
    try:
        for index in range(3):
            await store.append(
                "project", f"p{index}", [pending(project_proposed("x"), f"p{index}")], 0
            )
        with pytest.raises(ConcurrencyError):
            await store.append("project", "p0", [pending(project_proposed("x"), "p0")], 0)
        runner = ProjectionRunner(LedgerProjection(), store, pool, schema, batch_size=2)
        await runner.catch_up()
        await store.append("project", "p9", [pending(project_proposed("x"), "p9")], 0)
        record_webhook("delivered", 0.05)
        record_webhook("dead_lettered")

        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
            answer = await client.get("/metrics")
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
        text = answer.text
        assert (
            value(text, 'mf_event_appends_total{aggregate="project",outcome="stored"}')
            == stored + 4
        )
        assert value(text, 'mf_append_conflicts_total{aggregate="project"}') >= 1
        assert value(text, 'mf_projection_batch_events_count{projection="ledger",mode="live"}') >= 2
        assert (
            'mf_projection_batch_duration_seconds_bucket{projection="ledger",mode="live",le="0.1"}'
            in text
        )
        assert (
            value(text, f'mf_projection_checkpoint{{projection="ledger",schema="{schema}"}}') == 3
        )
        assert value(text, f'mf_consumer_lag_events{{consumer="{schema}/ledger v1"}}') == 1
        assert value(text, f'mf_consumer_lag_seconds{{consumer="{schema}/ledger v1"}}') >= 0
        assert value(text, 'mf_webhook_deliveries_total{outcome="dead_lettered"}') >= 1
        assert "# TYPE mf_webhook_duration_seconds histogram" in text
    finally:
        await pool.close()
