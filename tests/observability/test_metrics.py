"""Every metric the rules and dashboards read is a known one: a signal of config/targets.yaml,
listed in observability/metrics.yaml, recorded by a rule, or exported by opsgate itself."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tests.observability._support import (
    DASHBOARDS,
    METRICS_DOC,
    REPO_ROOT,
    RULE_FILES,
    dashboard_queries,
    load_json,
    load_yaml,
    metric_names,
    rules,
    substitute,
)

# The suffixes Prometheus adds to a family's samples, by the family type they imply.
_SAMPLE_SUFFIXES = {"_total": "counter", "_bucket": "histogram", "_count": "histogram"}


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        (
            'sum by (service, env) (rate(http_requests_total{code=~"5.."}[5m]))',
            {"http_requests_total"},
        ),
        (
            "1000 * histogram_quantile(0.95, sum(rate(x_bucket[$__range] offset 1w)) by (le))",
            {"x_bucket"},
        ),
        ("a:b:c > 14.4 * 1e-3 and on (service) b or on() vector(0)", {"a:b:c", "b"}),
        ('label_replace(up{job="a(b)"} == 0, "service", "$1", "x", "(.*)")', {"up"}),
        ("max_over_time(ALERTS[5m:1m]) > bool 0 unless absent(y)", {"ALERTS", "y"}),
    ],
)
def test_metric_names_finds_what_an_expression_selects(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def _used() -> Iterator[tuple[str, str]]:
    """(where, metric name) for every metric the rules and dashboards select."""
    for path in RULE_FILES:
        for rule in rules(path):
            name = rule.get("record") or rule.get("alert")
            for metric in metric_names(rule["expr"]):
                yield f"{path.name}: {name}", metric
    for path in DASHBOARDS:
        for where, expr in dashboard_queries(load_json(path)):
            for metric in metric_names(substitute(expr)):
                yield f"{path.name}: {where}", metric


def _signals() -> set[str]:
    signals = load_yaml(REPO_ROOT / "config" / "targets.yaml")["signals"]
    return {name for expr in signals.values() for name in metric_names(substitute(expr))}


def _documented() -> set[str]:
    return set(load_yaml(METRICS_DOC)["metrics"])


def _recorded() -> set[str]:
    return {rule["record"] for path in RULE_FILES for rule in rules(path) if "record" in rule}


def test_every_metric_is_known() -> None:
    signals = _signals()
    assert "http_requests_total" in signals, "config/targets.yaml signals were not read"
    known = signals | _documented() | _recorded()
    unknown = sorted({f"{metric} ({where})" for where, metric in _used() if metric not in known})
    assert not unknown, (
        "metrics neither in config/targets.yaml signals nor in observability/metrics.yaml "
        f"nor recorded by a rule: {unknown}"
    )


def test_every_documented_metric_is_used() -> None:
    used = {metric for _, metric in _used()}
    stale = sorted(_documented() - used)
    assert not stale, f"observability/metrics.yaml lists metrics nothing reads: {stale}"


def test_recorded_series_are_used() -> None:
    used = {metric for _, metric in _used()}
    unused = sorted(_recorded() - used)
    assert not unused, f"recording rules nothing reads: {unused}"


def _opsgate_families(tmp_path: Path) -> dict[str, str]:
    """Family name -> type, as opsgate's web app exposes them on /metrics, with the
    Alertmanager webhook wired as `opsgate serve` wires it (its metrics register at start-up)."""
    from bots.alerts_setup import connect_alerts
    from bots.app import build_runtime
    from bots.config import load_config
    from bots.settings import PROJECT_ROOT, RuntimeSettings
    from bots.web import create_app, metrics

    settings = RuntimeSettings(data_dir=tmp_path, config_dir=PROJECT_ROOT / "config")
    config = load_config(settings.config_dir, repo_root=PROJECT_ROOT)
    runtime = build_runtime(settings, config, notifier=None, demo=True)
    app = create_app(
        runtime, routers=connect_alerts(settings, config, runtime, surfaces={}).routers
    )

    async def scrape() -> str:
        async with app.router.lifespan_context(app):  # what uvicorn runs; it closes the runtime
            return generate_latest(metrics(app).registry).decode()

    text = asyncio.run(scrape())
    return {family.name: family.type for family in text_string_to_metric_families(text)}


def test_opsgate_metrics_are_what_the_web_app_exports(tmp_path: Path) -> None:
    """Counters are stored with `_total` (also a CounterMetricFamily's), histograms as
    `_bucket`/`_count`: the names the rules use must be those of a real scrape."""
    families = _opsgate_families(tmp_path)
    for name in sorted(n for n in _documented() if n.startswith("opsgate_")):
        family, kind = name, "gauge"
        for suffix, implied in _SAMPLE_SUFFIXES.items():
            if name.endswith(suffix):
                family, kind = name.removesuffix(suffix), implied
        assert family in families, f"{name}: opsgate exports no family {family}"
        assert families[family] == kind, f"{name}: {family} is a {families[family]}, not a {kind}"
