"""PrometheusSource against a real Prometheus backfilled from the simulated cluster.

The backfilled counters are exact at every scrape (tests/prometheus_server.py), so at a
minute-aligned instant t Prometheus's rate(x[5m]) is exactly the mean of the simulation over
the five minutes before t (Prometheus 2.x, whose [5m] includes the sample at t - 5m; 3.x
leaves it out and extrapolates from four minutes). Values are written with 6 decimals: a
counter reading is off by at most 5e-7, a rate over 300 s by at most 3.4e-9 per second.
Hence rtol=1e-6 with atol=1e-8 (the smallest rate compared, cart/staging's 5xx at night, is
about 1e-3 per second).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from agents.errors import AgentConfigError, SourceError, SourceUnavailableError
from agents.sources.prometheus import MAX_POINTS, PrometheusSource
from approval_engine.config import TargetsConfig, load_model
from tests.prometheus_server import SimulatedPrometheus, free_port

SIGNALS = load_model(Path(__file__).parents[3] / "config" / "targets.yaml", TargetsConfig).signals
MINUTE = timedelta(minutes=1)
WINDOW = 5  # minutes in the templates' [5m]
RTOL, ATOL = 1e-6, 1e-8
END = datetime(2025, 3, 3, tzinfo=UTC)  # for the servers that cannot answer, any range will do
START = END - MINUTE

Arrays = dict[str, NDArray[np.float64]]
# Each signal at instant t from the simulation's per-minute values: `before` holds the five
# minutes before t (one row per instant), `at` the minute starting at t.
EXACT: dict[str, Callable[[Arrays, Arrays], NDArray[np.float64]]] = {
    "requests": lambda before, at: before["requests"].mean(axis=1),
    "errors": lambda before, at: (before["requests"] * before["error_ratio"]).mean(axis=1),
    "error_ratio": lambda before, at: (
        (before["requests"] * before["error_ratio"]).sum(axis=1) / before["requests"].sum(axis=1)
    ),
    "cpu": lambda before, at: (before["cpu"] * before["replicas"]).mean(axis=1) / at["replicas"],
    "replicas": lambda before, at: at["replicas"],
    "desired_replicas": lambda before, at: at["desired_replicas"],
}
WORKLOADS = [("checkout", "prod"), ("cart", "staging")]
DATABASES = [("orders-db", "prod"), ("orders-db", "staging")]
CASES = [
    (signal, service, env)
    for signal in SIGNALS
    for service, env in (DATABASES if signal == "db_connections" else WORKLOADS)
]


@pytest.fixture
def source(prometheus: SimulatedPrometheus) -> Iterator[PrometheusSource]:
    connected = PrometheusSource(url=prometheus.url, signals=SIGNALS)
    yield connected
    connected.close()


def simulated(
    prometheus: SimulatedPrometheus,
    service: str,
    env: str,
    *,
    start: datetime,
    end: datetime,
    step: timedelta,
) -> tuple[Arrays, Arrays]:
    """The simulation's minutes before and at each instant start, start + step, … before end."""
    minutes: Arrays = {}
    for signal in ("requests", "error_ratio", "latency_p95", "cpu", "replicas", "desired_replicas"):
        points = prometheus.cluster.series(
            signal, service, env, start=start - WINDOW * MINUTE, end=end, step=MINUTE
        )
        minutes[signal] = np.array([value for _, value in points])
    at = WINDOW + np.arange(-(-(end - start) // step)) * (step // MINUTE)
    before = at[:, None] + np.arange(-WINDOW, 0)[None, :]
    return {k: v[before] for k, v in minutes.items()}, {k: v[at] for k, v in minutes.items()}


@pytest.mark.parametrize(("signal", "service", "env"), CASES)
def test_each_signal_agrees_with_the_simulation(
    source: PrometheusSource, prometheus: SimulatedPrometheus, signal: str, service: str, env: str
) -> None:
    end = prometheus.end
    start, step = end - timedelta(days=1), timedelta(minutes=5)
    series = source.series(signal, service, env, start=start, end=end, step=step)

    assert (series.start, series.step, len(series)) == (start, step, 288)
    assert series.observed() == len(series)
    if signal == "db_connections":
        assert set(series.values) == {prometheus.databases[service][env]}
        return
    before, at = simulated(prometheus, service, env, start=start, end=end, step=step)
    if signal == "latency_p95":
        # A quantile of five minutes' histograms lies between those minutes' own p95s.
        assert np.all(series.values >= before["latency_p95"].min(axis=1) * (1 - RTOL))
        assert np.all(series.values <= before["latency_p95"].max(axis=1) * (1 + RTOL))
        return
    assert signal in EXACT, f"add what {signal!r} should equal to EXACT"
    np.testing.assert_allclose(series.values, EXACT[signal](before, at), rtol=RTOL, atol=ATOL)


def test_the_histogram_gives_back_each_minutes_p95(prometheus: SimulatedPrometheus) -> None:
    one_minute = SIGNALS["latency_p95"].replace("[5m]", "[1m]")
    source = PrometheusSource(url=prometheus.url, signals={"p95_1m": one_minute})
    start, end = prometheus.end - timedelta(hours=6), prometheus.end

    series = source.series("p95_1m", "checkout", "prod", start=start, end=end, step=MINUTE)

    # [1m] holds the scrapes at t - 1m and t: exactly the minute before t.
    before, _ = simulated(prometheus, "checkout", "prod", start=start, end=end, step=MINUTE)
    np.testing.assert_allclose(series.values, before["latency_p95"][:, -1], rtol=RTOL)


def test_a_range_over_the_point_limit_gets_a_coarser_step(
    source: PrometheusSource, prometheus: SimulatedPrometheus
) -> None:
    end = prometheus.end
    start = end - timedelta(weeks=3)  # 30,240 minutes

    series = source.series("requests", "checkout", "prod", start=start, end=end, step=MINUTE)

    assert series.step == 3 * MINUTE
    assert len(series) == 10_080 <= MAX_POINTS
    before, at = simulated(prometheus, "checkout", "prod", start=start, end=end, step=series.step)
    np.testing.assert_allclose(series.values, EXACT["requests"](before, at), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("signal", ["requests", "latency_p95", "cpu", "replicas"])
def test_missed_scrapes_come_back_as_nan(
    source: PrometheusSource, prometheus: SimulatedPrometheus, signal: str
) -> None:
    (gap,) = prometheus.gaps
    start, end = gap.start - timedelta(hours=1), gap.end + timedelta(hours=1)

    series = source.series(signal, gap.service, gap.env, start=start, end=end, step=MINUTE)

    times = np.array(series.times())
    # A gauge lasts --query.lookback-delta (5m) after its last scrape, a [5m] rate as long as
    # two samples stay in its window.
    inside = (times >= gap.start + WINDOW * MINUTE) & (times < gap.end)
    outside = (times < gap.start) | (times >= gap.end + WINDOW * MINUTE)
    assert np.isnan(series.values[inside]).all() and inside.sum() == 55
    assert np.isfinite(series.values[outside]).all()


def test_an_unknown_signal_names_the_known_ones(
    source: PrometheusSource, prometheus: SimulatedPrometheus
) -> None:
    end = prometheus.end
    with pytest.raises(SourceError, match=r"unknown signal 'rps'.*requests, errors"):
        source.series("rps", "checkout", "prod", start=end - MINUTE, end=end, step=MINUTE)


@pytest.mark.parametrize(
    "service", ['x"}) or vector(1) or sum(up{a="', "x\\", 'x\\"}) or vector(1) or sum(up{a="']
)
def test_a_service_name_cannot_inject_promql(prometheus: SimulatedPrometheus, service: str) -> None:
    end = prometheus.end
    template = SIGNALS["replicas"]
    # Pasted in unescaped, the first name turns the query into "… or vector(1) …".
    raw = template.replace("$service", 'x"}) or vector(1) or sum(up{a="').replace("$env", "prod")
    source = PrometheusSource(url=prometheus.url, signals={"replicas": template, "raw": raw})

    injected = source.series("raw", "-", "-", start=end - MINUTE, end=end, step=MINUTE)
    escaped = source.series("replicas", service, "prod", start=end - MINUTE, end=end, step=MINUTE)

    assert list(injected.values) == [1.0]
    assert np.isnan(escaped.values).all()


def test_a_template_returning_several_series_must_aggregate(
    prometheus: SimulatedPrometheus,
) -> None:
    by_code = 'sum by (code) (rate(http_requests_total{service="$service",env="$env"}[5m]))'
    source = PrometheusSource(url=prometheus.url, signals={"by_code": by_code})
    end = prometheus.end

    with pytest.raises(SourceError, match=r"'by_code' returned 2 series.*aggregate"):
        source.series("by_code", "checkout", "prod", start=end - MINUTE, end=end, step=MINUTE)


def test_a_query_prometheus_rejects_carries_its_error(
    prometheus: SimulatedPrometheus,
) -> None:
    broken = 'sum(rate(http_requests_total{service="$service"}[5m])'
    source = PrometheusSource(url=prometheus.url, signals={"broken": broken})
    end = prometheus.end

    with pytest.raises(SourceError, match=r"'broken' \(HTTP 400\): .*parse error") as raised:
        source.series("broken", "checkout", "prod", start=end - MINUTE, end=end, step=MINUTE)
    assert not isinstance(raised.value, SourceUnavailableError)


def test_a_healthy_prometheus_says_so(source: PrometheusSource) -> None:
    assert source.healthy()


def test_prometheus_down_is_unavailable_at_once() -> None:
    source = PrometheusSource(url=f"http://127.0.0.1:{free_port()}", signals=SIGNALS)
    began = time.monotonic()

    with pytest.raises(SourceUnavailableError, match=r"cannot connect to http://127\.0\.0\.1"):
        source.series("requests", "checkout", "prod", start=START, end=END, step=MINUTE)

    assert time.monotonic() - began < 1.0
    assert not source.healthy()


def test_prometheus_that_never_answers_is_unavailable_after_the_timeout() -> None:
    with socket.socket() as silent:  # the kernel completes connections; nobody answers them
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        source = PrometheusSource(url=url, signals=SIGNALS, timeout=0.3)
        began = time.monotonic()

        with pytest.raises(SourceUnavailableError, match=r"no answer .* within 0.3 s"):
            source.series("requests", "checkout", "prod", start=START, end=END, step=MINUTE)

        assert time.monotonic() - began < 2.0


def test_a_5xx_is_unavailable_and_keeps_retry_after() -> None:
    body = {"status": "error", "errorType": "unavailable", "error": "TSDB not ready"}
    with _answering(503, body, headers={"Retry-After": "30"}) as url:
        source = PrometheusSource(url=url, signals=SIGNALS)
        with pytest.raises(SourceUnavailableError, match="HTTP 503: TSDB not ready") as raised:
            source.series("requests", "checkout", "prod", start=START, end=END, step=MINUTE)

    assert raised.value.retry_after == 30.0


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ('up{namespace="$namespace"}', r"signals.bad: unknown placeholder \$namespace"),
        ("up * $ 2", r"signals.bad: a \$ that starts no placeholder"),
    ],
)
def test_a_template_with_other_placeholders_is_a_config_error(template: str, problem: str) -> None:
    with pytest.raises(AgentConfigError, match=problem):
        PrometheusSource(url="http://127.0.0.1:1", signals={"bad": template})


def test_bad_ranges_are_refused_before_any_query() -> None:
    source = PrometheusSource(url=f"http://127.0.0.1:{free_port()}", signals=SIGNALS)

    def ask(start: datetime, end: datetime, step: timedelta = MINUTE) -> int:
        return len(source.series("requests", "checkout", "prod", start=start, end=end, step=step))

    with pytest.raises(SourceError, match="timezone-aware"):
        ask(START.replace(tzinfo=None), END)
    with pytest.raises(SourceError, match="step must be positive"):
        ask(START, END, timedelta(0))
    with pytest.raises(SourceError, match="is before start"):
        ask(END, START)
    assert ask(END, END) == 0


@contextmanager
def _answering(status: int, body: object, *, headers: dict[str, str]) -> Iterator[str]:
    """A loopback HTTP server that answers every request with `status` and JSON `body`."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            payload = json.dumps(body).encode()
            self.send_response(status)
            for name, value in {"Content-Type": "application/json", **headers}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
