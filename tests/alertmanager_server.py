"""A real Alertmanager for tests (Debian's prometheus-alertmanager), on loopback, no cluster.

    with running_alertmanager(tmp_path, config=text) as alertmanager:
        alertmanager.post([{"labels": {"alertname": "TrafficBurst", "service": "cart"}}])
        alertmanager.get("/api/v2/alerts")

`opsgate_config` derives a test's config from observability/alertmanager/alertmanager.yml:
the same routes, grouping and receivers, with the webhook pointed at a test's opsgate, the
token file written beside it, waits shortened, and the PagerDuty fallback left without an
integration (nothing leaves loopback).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.prometheus_server import free_port

__all__ = [
    "SHIPPED_CONFIG",
    "AlertmanagerServer",
    "binary",
    "opsgate_config",
    "running_alertmanager",
]

SHIPPED_CONFIG = (
    Path(__file__).resolve().parent.parent / "observability/alertmanager/alertmanager.yml"
)
_READY_TIMEOUT = 30.0


def binary() -> str:
    """The path of Alertmanager; skips the calling test when it is missing."""
    found = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if found is None:
        pytest.skip(
            "prometheus-alertmanager is not on PATH "
            "(Debian: apt-get install prometheus-alertmanager)"
        )
    return found


def opsgate_config(
    directory: Path, *, webhook_url: str, token: str, wait: str = "1s", interval: str = "1s"
) -> str:
    """The shipped alertmanager.yml, aimed at `webhook_url` with `token`, and quick."""
    config: dict[str, Any] = yaml.safe_load(SHIPPED_CONFIG.read_text(encoding="utf-8"))
    directory.mkdir(parents=True, exist_ok=True)
    token_file = directory / "opsgate-token"
    token_file.write_text(token, encoding="utf-8")

    def quicken(route: dict[str, Any]) -> None:
        for key in ("group_wait", "group_interval"):
            route[key] = wait if key == "group_wait" else interval
        for child in route.get("routes", []):
            quicken(child)

    quicken(config["route"])
    for receiver in config["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            hook["url"] = webhook_url
            hook["http_config"]["authorization"]["credentials_file"] = str(token_file)
        receiver.pop("pagerduty_configs", None)
    return yaml.safe_dump(config, sort_keys=False)


@dataclass(frozen=True)
class AlertmanagerServer:
    url: str
    directory: Path
    process: subprocess.Popen[bytes]

    def post(self, alerts: Sequence[dict[str, Any]]) -> None:
        """POST /api/v2/alerts, as Prometheus does; Alertmanager holds them when it answers."""
        request = urllib.request.Request(
            f"{self.url}/api/v2/alerts",
            data=json.dumps(list(alerts)).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        urllib.request.urlopen(request, timeout=10).close()

    def get(self, path: str) -> Any:
        """GET a path of the API (`/api/v2/alerts`, `/api/v2/silences`) as JSON."""
        with urllib.request.urlopen(f"{self.url}{path}", timeout=10) as answer:
            return json.loads(answer.read())

    def reload(self) -> None:
        """Re-read the config file (POST /-/reload); raises if Alertmanager refuses it."""
        request = urllib.request.Request(f"{self.url}/-/reload", method="POST")
        urllib.request.urlopen(request, timeout=10).close()

    def log(self) -> str:
        return (self.directory / "alertmanager.log").read_text(encoding="utf-8", errors="replace")


@contextmanager
def running_alertmanager(directory: Path, *, config: str) -> Iterator[AlertmanagerServer]:
    """Alertmanager with `config` on a free loopback port, clustering off; stopped on exit."""
    program = binary()
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "alertmanager.yml").write_text(config, encoding="utf-8")
    log = directory / "alertmanager.log"
    port = free_port()
    command = [
        program,
        f"--config.file={directory / 'alertmanager.yml'}",
        f"--storage.path={directory / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",  # no gossip port on every interface
        "--log.level=debug",
    ]
    with log.open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    server = AlertmanagerServer(f"http://127.0.0.1:{port}", directory, process)
    try:
        if not _ready(server):
            raise RuntimeError(f"Alertmanager did not become ready:\n{log.read_text()[-2000:]}")
        yield server
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _ready(server: AlertmanagerServer) -> bool:
    deadline = time.monotonic() + _READY_TIMEOUT
    while time.monotonic() < deadline and server.process.poll() is None:
        try:
            with urllib.request.urlopen(f"{server.url}/-/ready", timeout=1) as answer:
                if answer.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.05)
    return False
