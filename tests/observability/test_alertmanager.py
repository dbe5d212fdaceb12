"""The Alertmanager config: amtool accepts it, routes by severity, and inhibits as documented."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.observability._support import (
    ALERTMANAGER_CONFIG,
    alerting_rules,
    binary,
    load_yaml,
    run,
)
from tests.prometheus_server import free_port

WEBHOOK = "http://opsgate:8080/alertmanager"


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    loaded: dict[str, Any] = load_yaml(ALERTMANAGER_CONFIG)
    return loaded


def test_amtool_check_config() -> None:
    result = run([binary("amtool"), "check-config", str(ALERTMANAGER_CONFIG)])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("labels", "receivers"),
    [
        ({"alertname": "ErrorBudgetBurn", "severity": "page", "service": "checkout"}, "opsgate"),
        ({"alertname": "HPAAtMaxReplicas", "severity": "ticket", "service": "cart"}, "opsgate"),
        ({"alertname": "TrafficBurst", "severity": "info", "service": "search"}, "opsgate"),
        ({"alertname": "SomethingElse"}, "opsgate"),
        (
            {"alertname": "OpsgateDown", "severity": "page", "service": "opsgate"},
            "opsgate-fallback,opsgate",
        ),
        ({"alertname": "OpsgateDown", "severity": "ticket", "service": "opsgate"}, "opsgate"),
    ],
)
def test_routes(labels: dict[str, str], receivers: str) -> None:
    argv = [binary("amtool"), "config", "routes", "test", f"--config.file={ALERTMANAGER_CONFIG}"]
    result = run([*argv, *(f"{k}={v}" for k, v in labels.items())])
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == receivers, f"{labels} went to {result.stdout.strip()}"


def test_every_severity_of_the_rules_has_a_route(config: dict[str, Any]) -> None:
    routed = {m for route in config["route"]["routes"] for m in route.get("matchers", [])}
    severities = {rule["labels"]["severity"] for _, rule in alerting_rules()}
    missing = sorted(s for s in severities if f'severity="{s}"' not in routed)
    assert not missing, f"no sub-route for severities {missing}"


def test_grouping_and_timing(config: dict[str, Any]) -> None:
    route = config["route"]
    assert route["receiver"] == "opsgate"
    assert route["group_by"] == ["alertname", "service", "env"]
    for key in ("group_wait", "group_interval", "repeat_interval"):
        assert key in route, f"the root route sets no {key}"


def test_webhook_posts_to_opsgate_with_a_bearer_token_from_a_file(config: dict[str, Any]) -> None:
    (receiver,) = [r for r in config["receivers"] if r["name"] == "opsgate"]
    (webhook,) = receiver["webhook_configs"]
    assert webhook["url"] == WEBHOOK
    assert webhook["send_resolved"] is True
    authorization = webhook["http_config"]["authorization"]
    assert authorization["type"] == "Bearer"
    assert authorization["credentials_file"].startswith("/")
    assert "credentials" not in authorization, "the token belongs in a file, not in the config"


# --- inhibition, by a real Alertmanager -----------------------------------------------------


@pytest.fixture(scope="module")
def alertmanager(config: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Alertmanager with this config on loopback; its receivers point at a closed local port,
    so nothing leaves the machine."""
    program = binary("prometheus-alertmanager")
    directory = tmp_path_factory.mktemp("alertmanager")
    nowhere = f"http://127.0.0.1:{free_port()}/"
    local = {
        **config,
        "receivers": [
            {"name": r["name"], "webhook_configs": [{"url": nowhere}]} for r in config["receivers"]
        ],
    }
    config_file = directory / "alertmanager.yml"
    config_file.write_text(yaml.safe_dump(local), encoding="utf-8")
    url = f"http://127.0.0.1:{free_port()}"
    log = (directory / "log").open("wb")
    process = subprocess.Popen(
        [
            program,
            f"--config.file={config_file}",
            f"--storage.path={directory / 'data'}",
            f"--web.listen-address={url.removeprefix('http://')}",
            "--cluster.listen-address=",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_ready(url, process, directory / "log")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"alertmanager exited:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError):
            pass
        time.sleep(0.05)
    raise AssertionError(f"alertmanager did not become ready:\n{log.read_text()}")


def _post(url: str, alerts: list[dict[str, str]]) -> None:
    body = json.dumps([{"labels": labels} for labels in alerts]).encode()
    request = urllib.request.Request(
        f"{url}/api/v2/alerts", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200


def _inhibited(url: str) -> dict[str, bool]:
    """Whether each alert is inhibited, by "alertname service/env severity"."""
    with urllib.request.urlopen(f"{url}/api/v2/alerts", timeout=5) as response:
        alerts = json.load(response)
    return {
        "{alertname} {service}/{env} {severity}".format_map({"env": "", **a["labels"]}): bool(
            a["status"]["inhibitedBy"]
        )
        for a in alerts
    }


def _alert(key: str) -> dict[str, str]:
    alertname, where, severity = key.split()
    service, env = where.split("/")
    labels = {"alertname": alertname, "service": service, "severity": severity}
    return labels | ({"env": env} if env else {})


def test_inhibit_rules(alertmanager: str) -> None:
    expected = {
        "ErrorBudgetBurn checkout/prod page": False,
        # the page of an alert hides its ticket
        "ErrorBudgetBurn checkout/prod ticket": True,
        # not the ticket of another service, nor of another environment
        "ErrorBudgetBurn cart/prod ticket": False,
        "ErrorBudgetBurn checkout/staging ticket": False,
        # nor another alert of the same service
        "HPAAtMaxReplicas checkout/prod ticket": False,
        # every opsgate replica down hides opsgate's symptoms
        "OpsgateDown opsgate/ page": False,
        "OpsgateHTTPErrors opsgate/ page": True,
        "OpsgateProposalStuckSyncing opsgate/ ticket": True,
        # one replica down hides nothing but its own ticket (same alertname, service, env)
        "OpsgateDown opsgate/ ticket": True,
    }
    _post(alertmanager, [_alert(key) for key in expected])
    assert _inhibited(alertmanager) == expected
