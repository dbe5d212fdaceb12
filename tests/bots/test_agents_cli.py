"""`opsgate agents …` on real sources: the real Prometheus, backfilled with weeks of history."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agents.sim.cluster import SimulatedCluster
from tests.prometheus_server import SimulatedPrometheus, free_port, simulated_prometheus

OPSGATE = str(Path(sys.executable).parent / "opsgate")
REPO = Path(__file__).resolve().parents[2]
# The CLI reads the wall clock, so the history ends now.
NOW = datetime.now(UTC).replace(second=0, microsecond=0)


def opsgate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [OPSGATE, *args], capture_output=True, text=True, timeout=180, check=False
    )


def config_for(tmp: Path, sources: str) -> Path:
    conf = tmp / "config"
    shutil.copytree(REPO / "config", conf)
    settings = conf / "settings.yaml"
    settings.write_text(settings.read_text() + "\nsources:\n" + sources)
    return conf


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatedPrometheus]:
    """29 days of checkout in prod, 8 days of the orders database (idle in staging)."""
    cluster = SimulatedCluster(
        services=["checkout", "cart", "search"], environments=["staging", "prod"]
    )
    with simulated_prometheus(
        tmp_path_factory.mktemp("prometheus"),
        cluster,
        end=NOW,
        history={
            ("checkout", "prod"): timedelta(days=29),
            ("orders-db", "staging"): timedelta(days=8),
            ("orders-db", "prod"): timedelta(days=8),
        },
        databases={"orders-db": {"staging": 0.0, "prod": 42.0}},
    ) as running:
        yield running


def test_agents_list_shows_every_agent(tmp_path: Path) -> None:
    result = opsgate("agents", "list")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == [
        "AnomalyDetector",
        "BurstPredictor",
        "CostWatcher",
    ]
    burst = lines[1]
    assert "enabled" in burst and "every 15m" in burst and "proposes" in burst


def test_running_an_unknown_agent_names_the_known_ones(tmp_path: Path) -> None:
    result = opsgate("agents", "run", "Nope", "--data-dir", str(tmp_path / "d"))
    assert result.returncode == 2
    assert "no agent named 'Nope'; known agents: AnomalyDetector, BurstPredictor" in result.stderr


def test_burst_predictor_reads_prometheus(prometheus: SimulatedPrometheus, tmp_path: Path) -> None:
    conf = config_for(
        tmp_path, f"  metrics: prometheus\n  cost: none\n  prometheus:\n    url: {prometheus.url}\n"
    )
    result = opsgate(
        "agents", "run", "BurstPredictor", "--config", str(conf), "--data-dir", str(tmp_path / "d")
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "BurstPredictor analyze: ok" in out
    # the other workloads have no history in this Prometheus, and say so
    assert "search/prod: no burst forecast (only 0.0 days of requests history" in out
    if NOW.weekday() == 0 and 8 <= NOW.hour < 12:
        return  # during Monday's burst the window is in progress or too late to review
    assert "checkout/prod: Traffic spike expected Mon 10–11 UTC" in out, out
    assert "(graph: " in out


def test_cost_watcher_proposes_from_prometheus_connections(
    prometheus: SimulatedPrometheus, tmp_path: Path
) -> None:
    conf = config_for(
        tmp_path, f"  metrics: prometheus\n  cost: none\n  prometheus:\n    url: {prometheus.url}\n"
    )
    data = str(tmp_path / "d")
    result = opsgate(
        "agents", "run", "CostWatcher", "--optimize", "--config", str(conf), "--data-dir", data
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "orders-db/staging has been idle for 7 days" in result.stdout
    assert "orders-db/prod" not in result.stdout  # 42 connections is not idle
    assert "opened cost-1" in result.stdout
    assert "no cost source configured" in result.stdout


def test_prometheus_down_is_a_degraded_run_not_a_traceback(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    conf = config_for(tmp_path, f"  metrics: prometheus\n  prometheus:\n    url: {url}\n")
    result = opsgate(
        "agents", "run", "AnomalyDetector", "--config", str(conf), "--data-dir", str(tmp_path / "d")
    )
    assert result.returncode == 1
    assert "AnomalyDetector analyze: degraded. Prometheus is unavailable" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
