"""/graph: dashboard panels drawn from the real Prometheus, and from the demo's simulation."""

from __future__ import annotations

import math
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agents.sim.cluster import SimulatedCluster
from bots.dashboards import load_panels
from bots.settings import PROJECT_ROOT
from bots.testing import FakeChat, Said
from tests.prometheus_server import SimulatedPrometheus, free_port, simulated_prometheus

END = datetime(2025, 3, 5, 12, tzinfo=UTC)  # a Wednesday noon
PNG = b"\x89PNG\r\n\x1a\n"


def config_with_prometheus(directory: Path, url: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "config"
    shutil.copytree(PROJECT_ROOT / "config", config)
    settings = config / "settings.yaml"
    settings.write_text(
        settings.read_text(encoding="utf-8")
        + f"\nsources:\n  metrics: prometheus\n  prometheus:\n    url: {url}\n    timeout: 5\n",
        encoding="utf-8",
    )
    return config


@pytest.fixture(scope="module")
def cluster() -> SimulatedCluster:
    return SimulatedCluster(
        services=["checkout", "cart", "search"], environments=["staging", "prod"]
    )


@pytest.fixture(scope="module")
def prometheus(
    tmp_path_factory: pytest.TempPathFactory, cluster: SimulatedCluster
) -> Iterator[SimulatedPrometheus]:
    """Eight days of checkout in prod (so last week's lines have data), a day of orders-db."""
    with simulated_prometheus(
        tmp_path_factory.mktemp("prometheus"),
        cluster,
        end=END,
        history={
            ("checkout", "prod"): timedelta(days=8, hours=1),
            ("orders-db", "prod"): timedelta(days=1),
        },
        databases={"orders-db": {"staging": 0.0, "prod": 42.0}},
    ) as running:
        yield running


@pytest.fixture(scope="module")
def chat(
    tmp_path_factory: pytest.TempPathFactory, prometheus: SimulatedPrometheus
) -> Iterator[FakeChat]:
    directory = tmp_path_factory.mktemp("opsgate")
    fake = FakeChat(
        directory / "data",
        config_dir=config_with_prometheus(directory, prometheus.url),
        clock=lambda: END,
    )
    yield fake
    fake.close()


def last_value(said: Said, series: str) -> float:
    row = next(r for r in said.reply.tables[0].rows if r[0] == series)
    return float(row[1])


def simulated(cluster: SimulatedCluster, signal: str, at: datetime) -> float:
    ((_, value),) = cluster.series(
        signal,
        "checkout",
        "prod",
        start=at,
        end=at + timedelta(minutes=1),
        step=timedelta(minutes=1),
    )
    return float(value)


def test_request_rate_from_prometheus_now_and_last_week(
    chat: FakeChat, cluster: SimulatedCluster
) -> None:
    said = chat.say("/graph request-rate checkout prod", as_="carol")
    assert not said.error, said.text
    assert said.reply.image_png is not None and said.reply.image_png.startswith(PNG)
    assert "Request rate: now vs last week: checkout/prod, last 1h (Prometheus)." in said.text
    assert said.reply.tables[0].columns == ("series", "last (req/s)", "min", "max")
    rows = {row[0] for row in said.reply.tables[0].rows}
    assert rows == {"now", "same time last week", "last week, 1h ahead (forecast)"}
    # The last sample is a [4m] rate ($__rate_interval at a 1m step) ending at the last scrape.
    minutes = [simulated(cluster, "requests", END - timedelta(minutes=m)) for m in range(2, 6)]
    assert last_value(said, "now") == pytest.approx(sum(minutes) / 4, rel=0.02)
    assert said.reply.footer[0].startswith("Requests per second now")


def test_replicas_over_six_hours(chat: FakeChat, cluster: SimulatedCluster) -> None:
    said = chat.say("/graph replicas checkout prod 6h", as_="carol")
    assert not said.error, said.text
    assert "last 6h" in said.text
    assert said.reply.image_png is not None
    ready = simulated(cluster, "replicas", END - timedelta(minutes=1))
    assert last_value(said, "ready") == ready


def test_a_panel_without_a_service_and_a_legend_per_label(chat: FakeChat) -> None:
    said = chat.say("/graph db-connections prod", as_="carol")
    assert not said.error, said.text
    assert said.reply.tables[0].rows == (("orders-db", "42", "42", "42"),)


def test_every_panel_queries_prometheus_without_an_error(chat: FakeChat) -> None:
    """Each panel's PromQL, once filled, is accepted; panels over metrics the test data lacks
    (pods, alerts, opsgate's own) say there is no data."""
    for slug in load_panels():
        said = chat.say(f"/graph {slug} checkout prod 30m", as_="carol")
        assert not said.error, f"{slug}: {said.text}"
        assert said.reply.image_png is not None or "No data for" in said.text, slug
    nothing = chat.say("/graph alerts-firing", as_="carol")
    assert nothing.text == "No data for Alerts firing (staging) in the last 1h from Prometheus." + (
        "\nAlerts firing now by name and severity, for the selected services and environments."
    )


@pytest.mark.parametrize(
    ("typed", "words"),
    [
        (
            "/graph requests-rate checkout",
            "There is no panel 'requests-rate'. Did you mean "
            "request-rate? Panels: request-rate, burst-ratio, burst-windows, cpu-per-pod",
        ),
        ("/graph", "Usage: /graph <panel> [service] [env] [range]"),
        ("/graph replicas checkout 8d", "The range must be between 5m and 7d, not 8d."),
        ("/graph replicas checkout 1w", "'1w' is not a duration like 30s, 15m, 24h or 7d"),
        ("/graph replicas", "/graph replicas needs a service"),
        ("/graph replicas chekout", "unknown service 'chekout'"),
        ("/graph replicas checkout prod 1h extra", "Too many words"),
    ],
)
def test_mistakes(chat: FakeChat, typed: str, words: str) -> None:
    said = chat.say(typed, as_="carol")
    assert said.error
    assert words in said.text


def test_prometheus_down_is_said_plainly(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    chat = FakeChat(tmp_path / "data", config_dir=config_with_prometheus(tmp_path, url))
    try:
        said = chat.say("/graph replicas checkout prod", as_="carol")
        assert said.error
        assert f"Prometheus is unavailable: cannot connect to {url}" in said.text
        assert "reference" not in said.text
    finally:
        chat.close()


def test_the_simulation_draws_the_panels_it_can(tmp_path: Path) -> None:
    chat = FakeChat(tmp_path / "data", clock=lambda: END)
    try:
        said = chat.say("/graph replicas checkout prod 1d", as_="carol")
        assert not said.error, said.text
        assert "(simulated cluster)" in said.text
        assert said.reply.image_png is not None
        rows = {row[0]: row for row in said.reply.tables[0].rows}
        assert set(rows) == {"ready", "desired", "min", "max"}
        values = chat.runtime.engine.current_values("checkout", "prod")
        assert float(rows["min"][1]) == values["min_replicas"]
        assert float(rows["max"][1]) == values["max_replicas"]
        ratio = chat.say("/graph burst-ratio checkout prod", as_="carol")
        assert math.isfinite(float(ratio.reply.tables[0].rows[0][1]))
        error = chat.say("/graph error-ratio checkout prod", as_="carol")
        assert error.reply.tables[0].columns[1] == "last (%)"

        refused = chat.say("/graph cpu-per-pod checkout", as_="carol")
        assert refused.error
        assert refused.text.startswith(
            "cpu-per-pod needs Prometheus (sources.metrics: prometheus in settings.yaml); "
            "from the simulated cluster /graph draws request-rate, burst-ratio"
        )
    finally:
        chat.close()
