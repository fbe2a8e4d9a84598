"""The Prometheus endpoint of a service: `GET /metrics` in text exposition format 0.0.4.

Instruments live in `infra/metrics.py` (appends, conflicts, projection batches, webhook
outcomes), recorded where things happen. Consumer lag is measured at scrape time, the way
`mf status` measures it, so it is right even when a consumer is stuck and records nothing.

    metrics_route(api, store=infra.store, pool=pool, schema_prefix=infra.settings.schema_prefix)

or, for a process without an HTTP API, `serve_http(metrics_app(...), host, port)`.
"""

from __future__ import annotations

import asyncpg
import structlog
from fastapi import FastAPI, Response

from infra import metrics
from infra.eventstore import EventStore
from services.ops.status import sample

log = structlog.get_logger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

SCRAPE_ERRORS = metrics.REGISTRY.counter(
    "mf_metrics_lag_errors_total", "Scrapes whose lag measurement failed.", ("reason",)
)


async def refresh_lag(store: EventStore, pool: asyncpg.Pool, schema_prefix: str = "") -> None:
    """Set the lag and parked gauges of every projection and durable consumer."""
    try:
        states = await sample(store, pool, schema_prefix=schema_prefix)
    except Exception as error:  # the database or NATS is down: report what we have
        log.warning("metrics.lag_unavailable", error=repr(error))
        SCRAPE_ERRORS.inc(reason=type(error).__name__)
        return
    for gauge in (
        metrics.CONSUMER_LAG_EVENTS,
        metrics.CONSUMER_LAG_SECONDS,
        metrics.CONSUMER_PARKED,
    ):
        gauge.clear()
    for state in states:
        metrics.CONSUMER_LAG_EVENTS.set(state.lag_events, consumer=state.label)
        metrics.CONSUMER_LAG_SECONDS.set(round(state.lag_seconds, 3), consumer=state.label)
        if state.parked is not None:
            metrics.CONSUMER_PARKED.set(state.parked, consumer=state.label)


async def exposition(
    store: EventStore | None = None, pool: asyncpg.Pool | None = None, schema_prefix: str = ""
) -> str:
    await metrics.REGISTRY.collect()
    if store is not None and pool is not None:
        await refresh_lag(store, pool, schema_prefix)
    return metrics.REGISTRY.render()


def metrics_route(
    app: FastAPI,
    *,
    store: EventStore | None = None,
    pool: asyncpg.Pool | None = None,
    schema_prefix: str = "",
    path: str = "/metrics",
) -> None:
    """Add `GET /metrics` to a service's API (no token: bind it to a private interface or
    keep it behind the scraper's network policy). With a store and a pool, consumer lag is
    measured on each scrape."""

    @app.get(path, include_in_schema=False)
    async def prometheus_metrics() -> Response:
        return Response(await exposition(store, pool, schema_prefix), media_type=CONTENT_TYPE)


def metrics_app(
    store: EventStore | None = None, pool: asyncpg.Pool | None = None, schema_prefix: str = ""
) -> FastAPI:
    """An app serving only /metrics, for processes without an API of their own."""
    app = FastAPI(title="Multifactory Backbone — metrics", docs_url=None, redoc_url=None)
    metrics_route(app, store=store, pool=pool, schema_prefix=schema_prefix)
    return app
