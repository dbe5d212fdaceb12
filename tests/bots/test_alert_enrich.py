"""The alert enricher: a graph from the real Prometheus, the runbook, recent changes."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

import pytest

from agents.sim.cluster import SimulatedCluster
from agents.sources.prometheus import PrometheusSource
from bots.alert_enrich import AlertEnricher, alert_expression, split_threshold
from bots.testing import FakeChat
from tests.prometheus_server import SimulatedPrometheus, free_port, simulated_prometheus

END = datetime(2025, 3, 5, 12, tzinfo=UTC)
PNG = b"\x89PNG\r\n\x1a\n"
RUNBOOK = "https://github.com/opsgate/opsgate/blob/main/observability/runbooks/traffic-burst.md"
LABELS = {"alertname": "HighTraffic", "service": "checkout", "env": "prod", "severity": "info"}
PER_SERVICE = "sum by (service, env) (rate(http_requests_total[5m]))"


def generator_url(expr: str) -> str:
    return "http://prometheus:9090/graph?" + urlencode({"g0.expr": expr, "g0.tab": "1"})


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatedPrometheus]:
    cluster = SimulatedCluster(services=["checkout", "cart"], environments=["staging", "prod"])
    span = timedelta(hours=3)
    with simulated_prometheus(
        tmp_path_factory.mktemp("prometheus"),
        cluster,
        end=END,
        history={("checkout", "prod"): span, ("cart", "prod"): span, ("checkout", "staging"): span},
    ) as running:
        yield running


def enricher(url: str) -> AlertEnricher:
    source = PrometheusSource(url=url, signals={}, timeout=5)
    return AlertEnricher(prometheus=source, engine=None, clock=lambda: END)


def test_graph_of_the_alert_expression_with_its_threshold(prometheus: SimulatedPrometheus) -> None:
    alert = enricher(prometheus.url)
    url = generator_url(f"{PER_SERVICE} > 1")
    started = END - timedelta(minutes=20)
    graph = alert.graph(LABELS, url, started)
    assert graph is not None
    assert graph.title == "HighTraffic: checkout/prod, last 1h"
    # Only the alert's own series (checkout/prod of three), then the threshold.
    assert [line.label for line in graph.lines] == [
        "{env=prod, service=checkout}",
        "threshold 1",
    ]
    values = [v for v in graph.lines[0].values if math.isfinite(v)]
    assert len(values) >= 55
    assert min(values) > 1  # the left side, not only where the comparison held
    assert graph.spans[0].start == started
    assert graph.spans[0].label == "firing since 11:40 UTC"

    enriched = alert.enrich(
        labels=LABELS,
        annotations={"runbook_url": RUNBOOK, "summary": "busy"},
        generator_url=url,
        starts_at=started,
    )
    assert enriched.graph_png is not None and enriched.graph_png.startswith(PNG)
    assert enriched.lines == (f"Runbook: {RUNBOOK}",)


def test_an_expression_that_is_not_a_threshold_is_drawn_as_it_is(
    prometheus: SimulatedPrometheus,
) -> None:
    graph = enricher(prometheus.url).graph(
        {**LABELS, "env": "staging"}, generator_url(PER_SERVICE), END - timedelta(hours=2)
    )
    assert graph is not None
    assert [line.label for line in graph.lines] == ["{env=staging, service=checkout}"]
    assert graph.spans[0].start == END - timedelta(hours=1)  # firing the whole window


def test_nothing_to_draw_means_no_graph_and_no_error(prometheus: SimulatedPrometheus) -> None:
    alert = enricher(prometheus.url)
    for url in (
        "",
        "http://prometheus:9090/graph",
        generator_url("sum(rate(no_such_metric[5m])) > 1"),
        generator_url("sum(rate(http_requests_total[5m]) >"),  # Prometheus rejects it
    ):
        enriched = alert.enrich(labels=LABELS, annotations={}, generator_url=url, starts_at=END)
        assert enriched.graph_png is None, url
        assert enriched.lines == ()


def test_prometheus_down_leaves_the_graph_out_and_keeps_the_rest() -> None:
    alert = enricher(f"http://127.0.0.1:{free_port()}")
    enriched = alert.enrich(
        labels=LABELS,
        annotations={"runbook_url": RUNBOOK},
        generator_url=generator_url(f"{PER_SERVICE} > 1"),
        starts_at=END,
    )
    assert enriched.graph_png is None
    assert enriched.lines == (f"Runbook: {RUNBOOK}",)


def test_recent_proposals_and_applies_on_the_same_service(tmp_path: Path) -> None:
    chat = FakeChat(tmp_path / "data")
    try:
        assert isinstance(chat.runtime.services.enricher, AlertEnricher)
        chat.say("/scale checkout 4", as_="alice")
        chat.say("/approve scale-1", as_="bob")
        chat.say("/scale checkout 6 prod", as_="alice")
        alert = AlertEnricher(prometheus=None, engine=chat.runtime.engine)
        applied, opened = (chat.runtime.engine.get(f"scale-{n}") for n in (1, 2))

        lines = alert.enrich(
            labels={"alertname": "X", "service": "checkout"},
            annotations={},
            generator_url=generator_url("up"),
            starts_at=END,
        ).lines
        assert lines == (
            f"checkout/prod: min_replicas 3 → 6 proposed at {opened.state_since:%H:%M} UTC "
            "(scale-2)",
            f"checkout/staging: min_replicas 2 → 4 applied at {applied.state_since:%H:%M} UTC "
            "(scale-1)",
        )
        in_staging = alert.enrich(
            labels={"alertname": "X", "service": "checkout", "env": "staging"},
            annotations={},
            generator_url="",
            starts_at=END,
        )
        assert len(in_staging.lines) == 1
        assert "applied" in in_staging.lines[0]
        other = alert.enrich(
            labels={"alertname": "X", "service": "cart"},
            annotations={},
            generator_url="",
            starts_at=END,
        )
        assert other.lines == ()
    finally:
        chat.close()


@pytest.mark.parametrize(
    ("expr", "split"),
    [
        (
            "service_env:http_requests:rate5m / service_env:http_requests:rate5m_offset1w > 2\n"
            "and service_env:http_requests:rate5m > 1",
            ("service_env:http_requests:rate5m / service_env:http_requests:rate5m_offset1w", 2.0),
        ),
        ('sum(rate(x{code=~">5"}[5m])) >= 0.5', ('sum(rate(x{code=~">5"}[5m]))', 0.5)),
        ("x < 1e-3", ("x", 0.001)),
        ("x > bool 1", ("x > bool 1", None)),
        ("a > 1 or b > 2", ("a > 1 or b > 2", None)),
        ("(a > 1)", ("(a > 1)", None)),
        ("a > b", ("a > b", None)),
        ("up == 0", ("up", 0.0)),
    ],
)
def test_split_threshold(expr: str, split: tuple[str, float | None]) -> None:
    assert split_threshold(expr) == split


def test_alert_expression_from_a_generator_url() -> None:
    assert alert_expression(generator_url("up > 1")) == "up > 1"
    assert alert_expression("http://p:9090/graph?g0.tab=1") is None
    assert alert_expression("not a url") is None
