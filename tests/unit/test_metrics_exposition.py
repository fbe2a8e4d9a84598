"""The hand-written Prometheus exposition: what a scraper parses."""

from __future__ import annotations

import pytest

from infra.metrics import Registry


def test_counters_gauges_and_histograms_render_in_text_format():
    registry = Registry()
    appends = registry.counter("mf_appends_total", "Appends.", ("aggregate", "outcome"))
    lag = registry.gauge("mf_lag_events", "Lag.", ("consumer",))
    sizes = registry.histogram("mf_batch_events", "Batch sizes.", ("projection",), (1, 10, 100))
    appends.inc(aggregate="project", outcome="stored")
    appends.inc(2, aggregate="project", outcome="stored")
    lag.set(7, consumer='view "live"\nv1')
    for size in (1, 5, 50, 500):
        sizes.observe(size, projection="view")
    text = registry.render()
    assert text.splitlines() == [
        "# HELP mf_appends_total Appends.",
        "# TYPE mf_appends_total counter",
        'mf_appends_total{aggregate="project",outcome="stored"} 3',
        "# HELP mf_batch_events Batch sizes.",
        "# TYPE mf_batch_events histogram",
        'mf_batch_events_bucket{projection="view",le="1"} 1',
        'mf_batch_events_bucket{projection="view",le="10"} 2',
        'mf_batch_events_bucket{projection="view",le="100"} 3',
        'mf_batch_events_bucket{projection="view",le="+Inf"} 4',
        'mf_batch_events_sum{projection="view"} 556',
        'mf_batch_events_count{projection="view"} 4',
        "# HELP mf_lag_events Lag.",
        "# TYPE mf_lag_events gauge",
        'mf_lag_events{consumer="view \\"live\\"\\nv1"} 7',
    ]


def test_labels_must_match_and_counters_only_go_up():
    registry = Registry()
    counter = registry.counter("c_total", "C.", ("outcome",))
    with pytest.raises(ValueError, match="takes labels"):
        counter.inc(kind="x")
    with pytest.raises(ValueError, match="only goes up"):
        counter.inc(-1, outcome="x")
    assert registry.counter("c_total", "C.", ("outcome",)) is counter
    with pytest.raises(ValueError, match="registered differently"):
        registry.gauge("c_total", "C.", ("outcome",))
