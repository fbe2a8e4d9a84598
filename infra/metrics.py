"""Prometheus metrics: a small process-wide registry and the instruments every module uses.

Hand-written text exposition (format 0.0.4), no dependency: counters, gauges and histograms
with labels. Modules record through the instruments below (or the `record_*` helpers);
`services/ops/metrics.py` serves `REGISTRY.render()` on `/metrics`. Recording is a dict
update on the event loop, cheap enough for every append and every projection batch.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from contracts.envelope import PendingEvent
from infra.eventstore import AppendResult, ConcurrencyError

LabelValues = tuple[str, ...]
Collector = Callable[[], Awaitable[None]]

DEFAULT_SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_SIZE_BUCKETS = (1, 2, 5, 10, 50, 100, 500, 1000, 5000, 10000)


class Metric:
    kind = "untyped"

    def __init__(self, name: str, help_text: str, labels: Sequence[str] = ()) -> None:
        self.name = name
        self.help = help_text
        self.labels = tuple(labels)
        self._values: dict[LabelValues, Any] = {}

    def _key(self, labels: dict[str, object]) -> LabelValues:
        if set(labels) != set(self.labels):
            raise ValueError(f"{self.name} takes labels {self.labels}, got {tuple(labels)}")
        return tuple(str(labels[name]) for name in self.labels)

    def value(self, **labels: object) -> Any:
        """The current value for these labels (tests and status read it)."""
        return self._values.get(self._key(labels))

    def clear(self) -> None:
        self._values.clear()

    def samples(self) -> Iterable[tuple[str, LabelValues, tuple[str, ...], float]]:
        for key, value in sorted(self._values.items()):
            yield self.name, key, (), value

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {_escape_help(self.help)}", f"# TYPE {self.name} {self.kind}"]
        for name, key, extra, value in self.samples():
            names = (*self.labels, *(pair.split("=", 1)[0] for pair in extra))
            values = (*key, *(pair.split("=", 1)[1] for pair in extra))
            pairs = zip(names, values, strict=True)
            labels = ",".join(f'{n}="{_escape_label(v)}"' for n, v in pairs)
            selector = f"{name}{{{labels}}}" if labels else name
            lines.append(f"{selector} {_number(value)}")
        return lines


class Counter(Metric):
    kind = "counter"

    def inc(self, amount: float = 1.0, **labels: object) -> None:
        if amount < 0:
            raise ValueError("a counter only goes up")
        key = self._key(labels)
        self._values[key] = self._values.get(key, 0.0) + amount


class Gauge(Metric):
    kind = "gauge"

    def set(self, value: float, **labels: object) -> None:
        self._values[self._key(labels)] = float(value)

    def inc(self, amount: float = 1.0, **labels: object) -> None:
        key = self._key(labels)
        self._values[key] = self._values.get(key, 0.0) + amount

    def remove(self, **labels: object) -> None:
        self._values.pop(self._key(labels), None)


class Histogram(Metric):
    kind = "histogram"

    def __init__(
        self,
        name: str,
        help_text: str,
        labels: Sequence[str] = (),
        buckets: Sequence[float] = DEFAULT_SECONDS_BUCKETS,
    ) -> None:
        super().__init__(name, help_text, labels)
        self.buckets = tuple(sorted(buckets))

    def observe(self, value: float, **labels: object) -> None:
        key = self._key(labels)
        state = self._values.get(key)
        if state is None:
            state = self._values[key] = {"counts": [0] * len(self.buckets), "sum": 0.0, "n": 0}
        for index, bound in enumerate(self.buckets):
            if value <= bound:
                state["counts"][index] += 1
        state["sum"] += value
        state["n"] += 1

    def samples(self) -> Iterable[tuple[str, LabelValues, tuple[str, ...], float]]:
        for key, state in sorted(self._values.items()):
            for bound, count in zip(self.buckets, state["counts"], strict=True):
                yield f"{self.name}_bucket", key, (f"le={_number(bound)}",), count
            yield f"{self.name}_bucket", key, ("le=+Inf",), state["n"]
            yield f"{self.name}_sum", key, (), state["sum"]
            yield f"{self.name}_count", key, (), state["n"]

    def count(self, **labels: object) -> int:
        state = self._values.get(self._key(labels))
        return state["n"] if state else 0


class Registry:
    def __init__(self) -> None:
        self._metrics: dict[str, Metric] = {}
        self._collectors: list[Collector] = []

    def _add(self, metric: Metric) -> Any:
        existing = self._metrics.get(metric.name)
        if existing is not None:
            if type(existing) is not type(metric) or existing.labels != metric.labels:
                raise ValueError(f"metric {metric.name} is already registered differently")
            return existing
        self._metrics[metric.name] = metric
        return metric

    def counter(self, name: str, help_text: str, labels: Sequence[str] = ()) -> Counter:
        return self._add(Counter(name, help_text, labels))

    def gauge(self, name: str, help_text: str, labels: Sequence[str] = ()) -> Gauge:
        return self._add(Gauge(name, help_text, labels))

    def histogram(
        self,
        name: str,
        help_text: str,
        labels: Sequence[str] = (),
        buckets: Sequence[float] = DEFAULT_SECONDS_BUCKETS,
    ) -> Histogram:
        return self._add(Histogram(name, help_text, labels, buckets))

    def add_collector(self, collector: Collector) -> Callable[[], None]:
        """Run `collector` before each scrape (to refresh gauges); returns a remover."""
        self._collectors.append(collector)
        return lambda: self._collectors.remove(collector) if collector in self._collectors else None

    async def collect(self) -> None:
        for collector in list(self._collectors):
            await collector()

    def render(self) -> str:
        lines: list[str] = []
        for name in sorted(self._metrics):
            lines.extend(self._metrics[name].render())
        return "\n".join(lines) + "\n"


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float) -> str:
    if isinstance(value, float):
        if math.isinf(value):
            return "+Inf" if value > 0 else "-Inf"
        if math.isnan(value):
            return "NaN"
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
    return str(value)


REGISTRY = Registry()

# -- the event log ---------------------------------------------------------------------------
APPENDS = REGISTRY.counter(
    "mf_event_appends_total",
    "Append calls to the event log, by aggregate and outcome (stored, duplicate, conflict, error).",
    ("aggregate", "outcome"),
)
EVENTS_APPENDED = REGISTRY.counter(
    "mf_events_appended_total", "Events stored in the log by this process.", ("aggregate",)
)
APPEND_CONFLICTS = REGISTRY.counter(
    "mf_append_conflicts_total",
    "Appends refused by the optimistic concurrency check.",
    ("aggregate",),
)
APPEND_SECONDS = REGISTRY.histogram(
    "mf_append_duration_seconds", "Time to append (until the log acknowledged).", ("aggregate",)
)
APPEND_BATCH_EVENTS = REGISTRY.histogram(
    "mf_append_batch_events",
    "Events per append (atomic batch size).",
    ("aggregate",),
    BATCH_SIZE_BUCKETS,
)

# -- projections and consumers ---------------------------------------------------------------
PROJECTION_EVENTS = REGISTRY.counter(
    "mf_projection_events_total",
    "Events applied by a projection (mode: live or rebuild).",
    ("projection", "mode"),
)
PROJECTION_BATCH_EVENTS = REGISTRY.histogram(
    "mf_projection_batch_events",
    "Events per committed projection batch.",
    ("projection", "mode"),
    BATCH_SIZE_BUCKETS,
)
PROJECTION_BATCH_SECONDS = REGISTRY.histogram(
    "mf_projection_batch_duration_seconds",
    "Time to apply and commit one projection batch.",
    ("projection", "mode"),
)
PROJECTION_PARKED = REGISTRY.counter(
    "mf_projection_parked_total", "Events parked by a projection.", ("projection",)
)
PROJECTION_RETRIES = REGISTRY.counter(
    "mf_projection_retries_total",
    "Batches retried after a transient database error.",
    ("projection",),
)
PROJECTION_CHECKPOINT = REGISTRY.gauge(
    "mf_projection_checkpoint",
    "Last log sequence a projection committed.",
    ("projection", "schema"),
)
CONSUMER_LAG_EVENTS = REGISTRY.gauge(
    "mf_consumer_lag_events",
    "Events in the log a projection or consumer has not processed yet.",
    ("consumer",),
)
CONSUMER_LAG_SECONDS = REGISTRY.gauge(
    "mf_consumer_lag_seconds",
    "Age of the oldest event a projection or consumer has not processed yet.",
    ("consumer",),
)
CONSUMER_PARKED = REGISTRY.gauge(
    "mf_consumer_parked", "Messages parked (dead-lettered) per consumer.", ("consumer",)
)

# -- webhooks --------------------------------------------------------------------------------
WEBHOOK_DELIVERIES = REGISTRY.counter(
    "mf_webhook_deliveries_total",
    "Webhook delivery attempts by outcome (delivered, retried, dead_lettered, ...).",
    ("outcome",),
)
WEBHOOK_SECONDS = REGISTRY.histogram(
    "mf_webhook_duration_seconds", "Time of one webhook delivery attempt.", ("outcome",)
)


# -- matching --------------------------------------------------------------------------------
MATCHING_PROPOSALS = REGISTRY.counter(
    "mf_matching_proposals_total",
    "Proposals computed by the matcher, by trigger type and whether some role had nobody.",
    ("trigger", "outcome"),
)
MATCHING_PROPOSE_SECONDS = REGISTRY.histogram(
    "mf_matching_propose_duration_seconds", "Time to compute one proposal (all roles, team)."
)
MATCHING_PUBLISHED = REGISTRY.counter(
    "mf_matching_published_total",
    "Outbox rows handled by the publisher, by outcome (appended, duplicate, skipped, failed).",
    ("outcome",),
)


def record_webhook(outcome: str, seconds: float | None = None) -> None:
    """Hook for the notifications service: one webhook attempt and how it ended."""
    WEBHOOK_DELIVERIES.inc(outcome=outcome)
    if seconds is not None:
        WEBHOOK_SECONDS.observe(seconds, outcome=outcome)


def record_append(
    aggregate: str, outcome: str, events: int = 0, seconds: float | None = None
) -> None:
    """Hook for event store adapters: one append call and how it ended."""
    APPENDS.inc(aggregate=aggregate, outcome=outcome)
    if outcome == "conflict":
        APPEND_CONFLICTS.inc(aggregate=aggregate)
    if outcome == "stored" and events:
        EVENTS_APPENDED.inc(events, aggregate=aggregate)
        APPEND_BATCH_EVENTS.observe(events, aggregate=aggregate)
    if seconds is not None:
        APPEND_SECONDS.observe(seconds, aggregate=aggregate)


class MeteredEventStore:
    """Wraps any EventStore and records every append; everything else is passed through."""

    def __init__(self, store: Any) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def append(
        self,
        aggregate: str,
        aggregate_id: str,
        events: Sequence[PendingEvent],
        expected_version: int | None,
    ) -> AppendResult:
        started = time.perf_counter()
        try:
            result = await self._store.append(aggregate, aggregate_id, events, expected_version)
        except ConcurrencyError:
            record_append(aggregate, "conflict", seconds=time.perf_counter() - started)
            raise
        except Exception:
            record_append(aggregate, "error", seconds=time.perf_counter() - started)
            raise
        outcome = "duplicate" if result.duplicate else "stored"
        record_append(aggregate, outcome, len(events), time.perf_counter() - started)
        return result
