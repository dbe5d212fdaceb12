"""A real Prometheus for tests: OpenMetrics backfilled with promtool, served on loopback.

    history = {("checkout", "prod"): timedelta(weeks=3)}
    with simulated_prometheus(tmp_path, cluster, end=END, history=history) as prometheus:
        source = PrometheusSource(url=prometheus.url, signals=targets.signals)

`cluster_openmetrics` renders the raw series config/targets.yaml's signal templates read
(request counters, a latency histogram, container CPU, kube-state-metrics gauges, Postgres
backends) as scraped from a SimulatedCluster every minute. The counters are exact at each
scrape, so at a scrape instant a [5m] rate is the mean of the simulation over the 5 minutes
before it. `running_prometheus` serves any OpenMetrics text, with any config and rule files.

Prometheus reads a gauge as missing once its last sample is older than --query.lookback-delta
(5m by default), and a [5m] rate needs two samples in its window: scrape at least every 2m30s.
"""

from __future__ import annotations

import math
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from agents.sim.cluster import SimulatedCluster
from agents.sim.profiles import default_spec

__all__ = [
    "LATENCY_BUCKETS",
    "MINIMAL_CONFIG",
    "Gap",
    "PrometheusServer",
    "SimulatedPrometheus",
    "backfill",
    "binaries",
    "cluster_openmetrics",
    "free_port",
    "running_prometheus",
    "simulated_prometheus",
]

LATENCY_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
MINIMAL_CONFIG = "global:\n  scrape_interval: 1m\n  evaluation_interval: 1m\n"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MINUTE = timedelta(minutes=1)
# promtool cuts blocks at multiples of a range and reads its whole input once per block; this
# (a hidden flag in 2.42) picks its 4374h range, so weeks of data take one or two passes.
_BLOCK_RANGE = "8760h"
_READY_TIMEOUT = 30.0
_SUFFIXES = {
    "_total": "counter",
    "_bucket": "histogram",
    "_count": "histogram",
    "_sum": "histogram",
}
_SIMULATED = ("requests", "error_ratio", "latency_p95", "cpu", "replicas", "desired_replicas")

_Series = tuple[str, dict[str, str], NDArray[np.float64]]  # name, labels, value per scrape


def binaries() -> tuple[str, str]:
    """The paths of `prometheus` and `promtool`; skips the calling test when one is missing."""
    found = shutil.which("prometheus"), shutil.which("promtool")
    if found[0] is None or found[1] is None:
        pytest.skip("prometheus and promtool are not on PATH (Debian: apt-get install prometheus)")
    return found[0], found[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class Gap:
    """Scrapes of one workload that failed: no sample of any of its series in [start, end)."""

    service: str
    env: str
    start: datetime
    end: datetime


def cluster_openmetrics(
    cluster: SimulatedCluster,
    *,
    end: datetime,
    history: Mapping[tuple[str, str], timedelta],
    databases: Mapping[str, Mapping[str, float]] | None = None,
    interval: timedelta = _MINUTE,
    gaps: Iterable[Gap] = (),
) -> str:
    """OpenMetrics text of what Prometheus would have scraped from `cluster`.

    Each (service, env) of `history` is scraped at every multiple of `interval` (whole minutes)
    in [end - its history, end). A service named in `databases` (shaped like SimulatedMetrics'
    `databases`) is a Postgres with that many backends in each env, not a cluster workload.

    Per workload: http_requests_total{service,env,code="200"|"500"},
    http_request_duration_seconds_{bucket,count,sum}{service,env},
    container_cpu_usage_seconds_total and kube_pod_container_resource_requests{namespace=env,
    container=service}, kube_deployment_status_replicas_ready{namespace,deployment} and
    kube_horizontalpodautoscaler_status_desired_replicas{namespace,horizontalpodautoscaler};
    one series stands for the sum over the pods, whose CPU request is the workload's current
    spec. Values have 6 decimals.
    """
    databases, gaps = databases or {}, tuple(gaps)
    families: dict[tuple[str, str], list[str]] = {}
    for (service, env), span in history.items():
        times = _scrape_times(end, span, interval)
        keep = np.ones(len(times), dtype=np.bool_)
        for gap in gaps:
            if (gap.service, gap.env) == (service, env):
                keep &= (times < _seconds(gap.start)) | (times >= _seconds(gap.end))
        if service in databases:
            backends = np.full(len(times), float(databases[service][env]))
            found = [("pg_stat_database_numbackends", {"service": service, "env": env}, backends)]
        else:
            found = _workload(cluster, service, env, times, interval)
        stamps = [f" {t}" for t in times[keep].tolist()]
        for name, labels, values in found:
            prefix = f"{name}{_labels(labels)} "
            texts = map(prefix.__add__, map("%.6f".__mod__, values[keep].tolist()))
            families.setdefault(_family(name), []).extend(map(str.__add__, texts, stamps))
    lines = []
    for (family, kind), samples in families.items():
        lines.append(f"# TYPE {family} {kind}")
        lines.extend(samples)
    lines.append("# EOF\n")
    return "\n".join(lines)


def _family(name: str) -> tuple[str, str]:
    """The metric family of a sample name and its type, by the OpenMetrics suffixes."""
    for suffix, kind in _SUFFIXES.items():
        if name.endswith(suffix):
            return name.removesuffix(suffix), kind
    return name, "gauge"


def _workload(
    cluster: SimulatedCluster, service: str, env: str, times: NDArray[np.int64], interval: timedelta
) -> list[_Series]:
    every = interval // _MINUTE
    start = _EPOCH + timedelta(seconds=int(times[0]))
    end = start + interval * len(times)
    sim = {
        signal: np.array(
            [v for _, v in cluster.series(signal, service, env, start=start, end=end, step=_MINUTE)]
        )
        for signal in _SIMULATED
    }

    def counter(per_minute: NDArray[np.float64]) -> NDArray[np.float64]:
        # A scrape at the start of a minute counts everything before that minute.
        return np.concatenate([[0.0], np.cumsum(per_minute)[:-1]])[::every]

    def gauge(per_minute: NDArray[np.float64]) -> NDArray[np.float64]:
        return per_minute[::every]

    served = sim["requests"] * 60.0
    failed = served * sim["error_ratio"]
    cores = (cluster.spec(service, env) or default_spec(service, env)).cpu_request_millicores / 1000
    shares = _latency_shares(sim["latency_p95"] / 1000)
    http = {"service": service, "env": env}
    pods = {"namespace": env, "container": service}
    latency = "http_request_duration_seconds"
    bounds = [*map(repr, LATENCY_BUCKETS), "+Inf"]
    return [
        ("http_requests_total", {**http, "code": "200"}, counter(served - failed)),
        ("http_requests_total", {**http, "code": "500"}, counter(failed)),
        *[
            (f"{latency}_bucket", {**http, "le": le}, counter(served * share))
            for le, share in zip(bounds, [*shares.T, np.ones(len(served))], strict=True)
        ],
        (f"{latency}_count", http, counter(served)),
        (f"{latency}_sum", http, counter(served * _mean(shares))),
        (
            "container_cpu_usage_seconds_total",
            pods,
            counter(sim["cpu"] / 100 * sim["replicas"] * cores * 60),
        ),
        (
            "kube_pod_container_resource_requests",
            {**pods, "resource": "cpu", "unit": "core"},
            gauge(sim["replicas"] * cores),
        ),
        (
            "kube_deployment_status_replicas_ready",
            {"namespace": env, "deployment": service},
            gauge(sim["replicas"]),
        ),
        (
            "kube_horizontalpodautoscaler_status_desired_replicas",
            {"namespace": env, "horizontalpodautoscaler": service},
            gauge(sim["desired_replicas"]),
        ),
    ]


def _latency_shares(p95: NDArray[np.float64]) -> NDArray[np.float64]:
    """Share of each minute's requests at or below each bucket bound, given its p95 in seconds.

    Latencies are spread evenly inside buckets, so Prometheus's linear interpolation is exact.
    In the bucket (a, b] holding the p95 the shares are 0.95 - 0.05u at a and 1 - 0.05u at b,
    u = (p95 - a) / (b - a): interpolation crosses 0.95 exactly at the p95. Below a, requests
    are spread evenly from 0; the last 0.05u sit in the next bucket up. A histogram_quantile
    over several minutes therefore lies between their p95s. A p95 outside the bounds is taken
    as the nearest bound.
    """
    bounds = np.array(LATENCY_BUCKETS)
    p95 = np.clip(p95, bounds[0], bounds[-1])
    upper = np.clip(np.searchsorted(bounds, p95, side="left"), 1, len(bounds) - 1)
    lower = bounds[upper - 1]
    u = (p95 - lower) / (bounds[upper] - lower)
    below = np.arange(len(bounds))[None, :] < upper[:, None]
    shares = np.where(below, (0.95 - 0.05 * u)[:, None] * bounds[None, :] / lower[:, None], 1.0)
    shares[np.arange(len(p95)), upper] = 1 - 0.05 * u
    return shares


def _mean(shares: NDArray[np.float64]) -> NDArray[np.float64]:
    """Mean latency of each minute: each bucket's share at its middle, +Inf's at the top bound."""
    bounds = np.array(LATENCY_BUCKETS)
    middles = np.concatenate([[bounds[0] / 2], (bounds[:-1] + bounds[1:]) / 2, [bounds[-1]]])
    edges = np.hstack([np.zeros((len(shares), 1)), shares, np.ones((len(shares), 1))])
    return np.asarray(np.diff(edges, axis=1) @ middles, dtype=np.float64)


def _scrape_times(end: datetime, span: timedelta, interval: timedelta) -> NDArray[np.int64]:
    if interval < _MINUTE or interval % _MINUTE:
        raise ValueError(f"interval must be whole minutes, got {interval}")
    every = int(interval.total_seconds())
    stop = _seconds(end)
    first = math.ceil((stop - span.total_seconds()) / every) * every
    return np.arange(first, math.ceil(stop / every) * every, every, dtype=np.int64)


def _seconds(at: datetime) -> float:
    return (at - _EPOCH).total_seconds()


def _labels(labels: Mapping[str, str]) -> str:
    def escaped(value: str) -> str:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    return "{" + ",".join(f'{k}="{escaped(v)}"' for k, v in labels.items()) + "}"


def backfill(openmetrics: str | Iterable[str], directory: Path) -> Path:
    """Turn OpenMetrics text into TSDB blocks in `directory`/data; returns that directory.

    Each text must end with `# EOF`, and each series' samples must be in time order. Given
    several texts (a generator, say), each gets its own promtool as soon as it is produced, so
    the next one is rendered while the last is written; blocks that overlap in time are fine,
    Prometheus merges them.
    """
    _, promtool = binaries()
    data = directory / "data"
    data.mkdir(parents=True, exist_ok=True)
    texts = [openmetrics] if isinstance(openmetrics, str) else openmetrics
    running: list[tuple[Path, subprocess.Popen[bytes]]] = []
    try:
        for index, text in enumerate(texts):
            if not text.rstrip().endswith("# EOF"):
                raise ValueError(f"OpenMetrics text {index} does not end with a '# EOF' line")
            source = directory / f"backfill-{index}.om"
            source.write_text(text, encoding="utf-8")
            command = [promtool, "tsdb", "create-blocks-from", "openmetrics", "--quiet"]
            command += [f"--max-block-duration={_BLOCK_RANGE}", str(source), str(data)]
            running.append((source, subprocess.Popen(command, stderr=subprocess.PIPE)))
    finally:
        problems = [problem for problem in map(_finish, running) if problem]
    if problems:
        raise RuntimeError("promtool could not backfill: " + "; ".join(problems))
    return data


def _finish(job: tuple[Path, subprocess.Popen[bytes]]) -> str:
    source, process = job
    _, errors = process.communicate()
    source.unlink(missing_ok=True)
    return f"{source.name}: {errors.decode(errors='replace').strip()}" if process.returncode else ""


@dataclass(frozen=True)
class PrometheusServer:
    """A running Prometheus at `url` (http://127.0.0.1:<port>); its files are in `directory`.

    `backfill_seconds` covers promtool, and rendering too when the text came from a generator;
    `start_seconds` is from the start of the process to /-/ready answering 200.
    """

    url: str
    directory: Path
    process: subprocess.Popen[bytes]
    backfill_seconds: float
    start_seconds: float

    def reload(self) -> None:
        """Re-read the config and rule files (POST /-/reload; the lifecycle API is on)."""
        request = urllib.request.Request(f"{self.url}/-/reload", method="POST")
        urllib.request.urlopen(request, timeout=10).close()

    def log(self) -> str:
        return (self.directory / "prometheus.log").read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        _stop(self.process)


@contextmanager
def running_prometheus(
    directory: Path,
    *,
    openmetrics: str | Iterable[str] = (),
    config: str = MINIMAL_CONFIG,
    files: Mapping[str, str] | None = None,
    args: Sequence[str] = (),
) -> Iterator[PrometheusServer]:
    """Backfill `openmetrics`, start Prometheus on a free loopback port, stop it on exit.

    `config` is prometheus.yml; `files` (name → text, e.g. the rule files the config names)
    are written beside it. `args` are extra flags, e.g. "--query.lookback-delta=10m".
    """
    program, _ = binaries()
    directory.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    data = backfill(openmetrics, directory)
    backfilled = time.perf_counter()
    (directory / "prometheus.yml").write_text(config, encoding="utf-8")
    for name, text in (files or {}).items():
        (directory / name).write_text(text, encoding="utf-8")
    log = directory / "prometheus.log"
    process: subprocess.Popen[bytes] | None = None
    for _attempt in range(3):  # another process may take the free port before Prometheus does
        port = free_port()
        command = [
            program,
            f"--config.file={directory / 'prometheus.yml'}",
            f"--storage.tsdb.path={data}",
            "--storage.tsdb.retention.time=3650d",  # else blocks older than 15d go at start
            f"--web.listen-address=127.0.0.1:{port}",
            "--web.enable-lifecycle",
            "--log.level=warn",
            *args,
        ]
        with log.open("wb") as output:
            candidate = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
        if _ready(f"http://127.0.0.1:{port}", candidate):
            process = candidate
            break
        _stop(candidate)
        if "address already in use" not in log.read_text(errors="replace"):
            break
    if process is None:
        raise RuntimeError(f"Prometheus did not become ready:\n{log.read_text()[-2000:]}")
    server = PrometheusServer(
        url=f"http://127.0.0.1:{port}",
        directory=directory,
        process=process,
        backfill_seconds=backfilled - began,
        start_seconds=time.perf_counter() - backfilled,
    )
    try:
        yield server
    finally:
        server.stop()


def _ready(url: str, process: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + _READY_TIMEOUT
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as answer:
                if answer.status == 200:
                    return True
        except OSError:  # refused while starting, or 503 until the TSDB is open
            pass
        time.sleep(0.02)
    return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass(frozen=True)
class SimulatedPrometheus:
    """A running Prometheus holding what it would have scraped from `cluster` until `end`."""

    server: PrometheusServer
    cluster: SimulatedCluster
    end: datetime
    history: Mapping[tuple[str, str], timedelta]
    databases: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    gaps: tuple[Gap, ...] = ()

    @property
    def url(self) -> str:
        return self.server.url


@contextmanager
def simulated_prometheus(
    directory: Path,
    cluster: SimulatedCluster,
    *,
    end: datetime,
    history: Mapping[tuple[str, str], timedelta],
    databases: Mapping[str, Mapping[str, float]] | None = None,
    gaps: Iterable[Gap] = (),
) -> Iterator[SimulatedPrometheus]:
    """`cluster_openmetrics` served by `running_prometheus`, one promtool per workload."""
    databases, gaps = databases or {}, tuple(gaps)
    # Longest first: the short ones are rendered while promtool writes the long ones.
    longest_first = sorted(history.items(), key=lambda item: item[1], reverse=True)
    texts = (
        cluster_openmetrics(cluster, end=end, history={key: span}, databases=databases, gaps=gaps)
        for key, span in longest_first
    )
    with running_prometheus(directory, openmetrics=texts) as server:
        yield SimulatedPrometheus(server, cluster, end, history, databases, gaps)
