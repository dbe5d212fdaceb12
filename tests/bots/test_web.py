"""The web app under real uvicorn on loopback: probes, metrics, the tick loop, shutdown."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from approval_engine.errors import TemporaryBackendError
from approval_engine.prs.base import PRBackend
from bots.app import Runtime, build_runtime
from bots.config import load_config
from bots.serve import make_server
from bots.settings import PROJECT_ROOT, RuntimeSettings
from bots.types import ChatEvent, Reply
from bots.web import create_app, metrics, register_adapter

TICK = 0.05


def demo_runtime(data_dir: Path) -> Runtime:
    """As bots.testing.FakeChat builds it, without a notifier."""
    settings = RuntimeSettings(data_dir=data_dir, config_dir=PROJECT_ROOT / "config")
    config = load_config(settings.config_dir, repo_root=PROJECT_ROOT)
    return build_runtime(settings, config, notifier=None, demo=True)


@dataclass
class Served:
    runtime: Runtime
    app: FastAPI
    server: uvicorn.Server
    client: httpx.Client


@contextmanager
def serving(runtime: Runtime, **options: Any) -> Iterator[Served]:
    """The app under uvicorn in a thread on a free loopback port; stopped as SIGTERM would."""
    app = create_app(runtime, **options)
    server = make_server(app, host="127.0.0.1", port=0, graceful_timeout=5)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    wait_for(lambda: server.started or not thread.is_alive(), what="uvicorn to start")
    assert server.started, "uvicorn did not start; its log says why"
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            yield Served(runtime=runtime, app=app, server=server, client=client)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        assert not thread.is_alive(), "uvicorn did not stop"


def wait_for(condition: Callable[[], bool], *, what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def wait_until_ready(base_url: str, *, timeout: float = 30.0) -> None:
    """Poll a starting `opsgate serve` until /readyz answers 200."""

    def ready() -> bool:
        try:
            return httpx.get(f"{base_url}/readyz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    wait_for(ready, what="opsgate serve to be ready", timeout=timeout)


def say(runtime: Runtime, text: str, *, as_: str) -> Reply:
    """Straight into the gateway: no HTTP request, and no tick after the reply."""
    principal = f"console:{as_}"
    return runtime.gateway.handle(
        ChatEvent(platform="console", principal=principal, channel=principal, text=text)
    )


def opened_id(reply: Reply) -> str:
    found = re.search(r"Opened (\S+):", reply.text)
    assert found is not None, reply.text
    return found.group(1)


def scrape(client: httpx.Client) -> dict[str, list[tuple[dict[str, str], float]]]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        family.name: [(sample.labels, sample.value) for sample in family.samples]
        for family in text_string_to_metric_families(response.text)
    }


def value(
    families: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str
) -> float:
    return sum(
        v for got, v in families[name.removesuffix("_total")] if labels.items() <= got.items()
    )


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serving(demo_runtime(tmp_path_factory.mktemp("web") / "data"), tick_every=TICK) as served:
        yield served


# --- probes ---------------------------------------------------------------------------------


def test_healthz_answers_while_the_process_serves(web: Served) -> None:
    response = web.client.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


def test_readyz_is_ready_when_the_store_answers(web: Served) -> None:
    response = web.client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": {"store": "ok"}}


def test_readyz_waits_for_every_registered_adapter(web: Served) -> None:
    started = threading.Event()
    register_adapter(web.app, "slack", started.is_set)
    try:
        waiting = web.client.get("/readyz")
        assert waiting.status_code == 503
        assert waiting.json() == {
            "status": "not ready",
            "checks": {"store": "ok", "slack": "not started"},
        }
        started.set()
        assert web.client.get("/readyz").status_code == 200
    finally:
        started.set()
    with pytest.raises(ValueError, match="already registered"):
        register_adapter(web.app, "slack", started.is_set)


def test_readyz_names_the_store_when_its_database_is_unreachable(tmp_path: Path) -> None:
    runtime = demo_runtime(tmp_path / "data")
    with serving(runtime, tick_every=60) as served:
        assert served.client.get("/readyz").status_code == 200
        database = tmp_path / "data" / "opsgate.db"
        # Under the gateway's lock no tick holds a connection while the file goes away.
        with runtime.services.lock:
            runtime.store.engine.dispose()
            database.rename(tmp_path / "moved.db")
            database.mkdir()  # SQLite cannot open a directory: the database is unreachable

        response = served.client.get("/readyz")

        assert response.status_code == 503
        body = response.json()
        assert body["status"] == "not ready"
        assert body["checks"]["store"].startswith("error: OperationalError: ")
        assert "unable to open database file" in body["checks"]["store"]
        # Metrics still answer, without the numbers that come from the store.
        families = scrape(served.client)
        assert "opsgate_build_info" in families
        assert "opsgate_proposals_active" not in families


# --- metrics --------------------------------------------------------------------------------


def test_metrics_has_every_family_in_the_text_format(web: Served) -> None:
    web.client.get("/healthz")
    web.client.get("/no/such/page")
    metrics(web.app).commands.labels(command="scale", outcome="ok").inc()
    web.runtime.agents.run("CostWatcher", mode="analyze", trigger="test")

    families = scrape(web.client)

    for name in (
        "opsgate_http_requests",
        "opsgate_http_request_duration_seconds",
        "opsgate_chat_commands",
        "opsgate_agent_runs",
        "opsgate_proposals_active",
        "opsgate_build_info",
        "process_cpu_seconds",
    ):
        assert name in families, sorted(families)
    assert value(families, "opsgate_http_requests_total", route="/healthz", status="200") >= 1
    assert value(families, "opsgate_http_requests_total", route="<unmatched>", status="404") == 1
    assert not any(
        "/no/such" in labels.get("route", "") for labels, _ in families["opsgate_http_requests"]
    )
    assert value(families, "opsgate_chat_commands_total", command="scale", outcome="ok") == 1
    assert value(families, "opsgate_agent_runs_total", agent="CostWatcher") == 1
    ((build, _),) = families["opsgate_build_info"]
    assert build["version"] and build["python"]


def test_open_proposals_gauge_counts_a_new_proposal(web: Served) -> None:
    before = value(scrape(web.client), "opsgate_proposals_active", state="open")

    reply = say(web.runtime, "/scale cart 3", as_="alice")
    opened_id(reply)

    after = value(scrape(web.client), "opsgate_proposals_active", state="open")
    assert after == before + 1


# --- the tick loop and shutdown -------------------------------------------------------------


class GitHostDown:
    """The PR backend while the git host is unreachable: merges fail for now, then work."""

    def __init__(self, inner: PRBackend) -> None:
        self.inner = inner
        self.down = True
        self.tries = 0

    def merge(self, *, proposal_id: str, branch: str, head_sha: str, title: str) -> str:
        self.tries += 1
        if self.down:
            raise TemporaryBackendError("git host is down", retry_after=1)
        return self.inner.merge(
            proposal_id=proposal_id, branch=branch, head_sha=head_sha, title=title
        )

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_the_tick_loop_applies_an_approved_proposal_without_any_request(
    web: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = web.runtime.engine
    host = GitHostDown(engine.backend)
    monkeypatch.setattr(engine, "backend", host)
    with web.runtime.services.lock:  # no tick between the approval and the first look
        proposal = opened_id(say(web.runtime, "/scale checkout 4", as_="alice"))
        approved = say(web.runtime, f"/approve {proposal}", as_="bob")
        assert "Approved" in approved.text, approved.text
        assert engine.get(proposal).state.value == "approved"
    wait_for(lambda: host.tries >= 3, what="ticks to retry the merge")
    assert engine.get(proposal).state.value == "approved"

    host.down = False

    wait_for(lambda: engine.get(proposal).state.value == "applied", what="the tick to apply it")
    assert web.runtime.cluster.spec("checkout", "staging").min_replicas == 4  # type: ignore[union-attr]


def test_shutdown_stops_the_tick_loop_and_closes_the_runtime(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = demo_runtime(tmp_path / "data")
    events: list[str] = []
    real_tick, real_close = runtime.gateway.tick, runtime.close

    def tick() -> None:
        events.append("tick")
        real_tick()

    def close() -> None:
        events.append("close")
        real_close()

    monkeypatch.setattr(runtime.gateway, "tick", tick)
    monkeypatch.setattr(runtime, "close", close)

    with serving(runtime, tick_every=TICK, start_scheduler=True) as served:
        assert served.client.get("/healthz").status_code == 200
        assert runtime.scheduler is not None
        wait_for(lambda: events.count("tick") >= 2, what="the tick loop")
        assert "close" not in events

    assert events[-1] == "close" and events.count("close") == 1
    time.sleep(3 * TICK)
    assert events[-1] == "close", "the tick loop went on after the runtime closed"


def test_opsgate_serve_answers_and_shuts_down_cleanly_on_sigterm(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys

    from tests.prometheus_server import free_port

    port = free_port()
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "opsgate"),
            "serve",
            "--port",
            str(port),
            "--data-dir",
            str(tmp_path / "data"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "OPSGATE_SCHEDULER": "false"},
    )
    try:
        wait_until_ready(f"http://127.0.0.1:{port}")
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").json() == {"status": "ok"}
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    assert process.returncode in (0, -signal.SIGTERM, 128 + signal.SIGTERM), output
    assert "runtime closed" in output
    assert "Traceback" not in output
