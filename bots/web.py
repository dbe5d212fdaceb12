"""The web app of `opsgate serve`: health, readiness, metrics, and the loop that moves proposals.

Later parts mount their webhooks (`/slack/events`, `/telegram/webhook`, `/alertmanager`,
`/github/webhook`) as routers passed to `create_app(..., routers=[...])`, and register their
adapters with `register_adapter` so that /readyz waits until they have started.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import platform
import time
from collections import Counter as Tally
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version

import anyio.to_thread
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agents.store import RunRow
from approval_engine.model import ACTIVE_STATES
from bots.app import Runtime

__all__ = ["WebMetrics", "create_app", "metrics", "register_adapter"]

log = logging.getLogger(__name__)

UNMATCHED = "<unmatched>"  # one label for every path no route knows, so scanners add no series


@dataclass(frozen=True)
class WebMetrics:
    """The app's own registry and the metrics other parts update.

    `commands` is for the gateway: `.labels(command="approve", outcome="ok").inc()`, with
    outcome one of ok, refused (a CommandError or a denial) or error (an apology);
    `command_duration` times them. create_app installs `observe_command` on the gateway.
    """

    registry: CollectorRegistry
    http_requests: Counter
    http_duration: Histogram
    commands: Counter
    command_duration: Histogram

    def observe_command(self, command: str, outcome: str, seconds: float) -> None:
        self.commands.labels(command=command, outcome=outcome).inc()
        self.command_duration.labels(command=command).observe(seconds)


@dataclass
class _WebState:
    runtime: Runtime
    metrics: WebMetrics
    adapters: dict[str, Callable[[], bool]] = field(default_factory=dict)


def create_app(
    runtime: Runtime,
    *,
    tick_every: float = 5.0,
    start_scheduler: bool = False,
    routers: Sequence[APIRouter] = (),
) -> FastAPI:
    """One app per runtime; it closes the runtime when it shuts down."""
    if tick_every <= 0:
        raise ValueError(f"tick_every must be positive seconds, not {tick_every}")
    app = FastAPI(
        title="opsgate",
        lifespan=_lifespan(runtime, tick_every=tick_every, start_scheduler=start_scheduler),
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    web_metrics = _new_metrics(runtime)
    app.state.opsgate = _WebState(runtime=runtime, metrics=web_metrics)
    runtime.gateway.observe = web_metrics.observe_command
    app.add_middleware(
        _HttpMetrics, requests=web_metrics.http_requests, duration=web_metrics.http_duration
    )
    app.include_router(_probes())
    for router in routers:
        app.include_router(router)
    return app


def register_adapter(app: FastAPI, name: str, started: Callable[[], bool]) -> None:
    """Readiness waits until `started()` is true; it is called on every /readyz."""
    state = _state(app)
    if name == "store" or name in state.adapters:
        raise ValueError(f"a readiness check named {name!r} is already registered")
    state.adapters[name] = started


def metrics(app: FastAPI) -> WebMetrics:
    return _state(app).metrics


def _state(app: FastAPI) -> _WebState:
    state = getattr(app.state, "opsgate", None)
    if not isinstance(state, _WebState):
        raise TypeError("this app was not built by bots.web.create_app")
    return state


# --- endpoints ------------------------------------------------------------------------------


def _probes() -> APIRouter:
    router = APIRouter()

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    # Plain `def`: the store and the collectors block, so FastAPI runs these in its threadpool.
    @router.get("/readyz")
    def readyz(request: Request) -> JSONResponse:
        checks = _readiness(_state(request.app))
        ready = all(result == "ok" for result in checks.values())
        return JSONResponse(
            {"status": "ready" if ready else "not ready", "checks": checks},
            status_code=200 if ready else 503,
        )

    @router.get("/metrics")
    def scrape(request: Request) -> Response:
        registry = _state(request.app).metrics.registry
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return router


def _readiness(state: _WebState) -> dict[str, str]:
    checks = {"store": _check("store", state.runtime.store.ping)}
    for name, started in state.adapters.items():
        checks[name] = _check(name, started, false="not started")
    return checks


def _check(name: str, probe: Callable[[], bool], *, false: str = "failed") -> str:
    try:
        return "ok" if probe() else false
    except Exception as e:
        log.warning("readiness check %s failed", name, exc_info=True)
        first_line = (str(e).strip().splitlines() or [""])[0][:200]
        return f"error: {type(e).__name__}: {first_line}".rstrip(": ")


# --- lifespan -------------------------------------------------------------------------------


def _lifespan(
    runtime: Runtime, *, tick_every: float, start_scheduler: bool
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        ticking: asyncio.Task[None] | None = None
        try:
            if start_scheduler:
                await anyio.to_thread.run_sync(runtime.start_scheduler)
            ticking = asyncio.create_task(_tick_forever(runtime, every=tick_every))
            log.info("serving; proposals move every %gs", tick_every)
            yield
        finally:
            # uvicorn has stopped accepting and let in-flight requests finish by now.
            if ticking is not None:
                ticking.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await ticking
            await anyio.to_thread.run_sync(runtime.close)
            log.info("runtime closed")

    return lifespan


async def _tick_forever(runtime: Runtime, *, every: float) -> None:
    """In-flight proposals move even when nobody types; the first tick resumes a previous run.

    A cancel that arrives during a tick waits for it: the thread cannot be interrupted, and
    the runtime must not close under it.
    """
    while True:
        await anyio.to_thread.run_sync(runtime.gateway.tick)
        await asyncio.sleep(every)


# --- metrics --------------------------------------------------------------------------------


def _new_metrics(runtime: Runtime) -> WebMetrics:
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    Info("opsgate_build", "the running opsgate", registry=registry).info(
        {"version": _version(), "python": platform.python_version()}
    )
    registry.register(_RuntimeCollector(runtime))
    return WebMetrics(
        registry=registry,
        http_requests=Counter(
            "opsgate_http_requests",
            "HTTP requests answered, by route template and status",
            ["method", "route", "status"],
            registry=registry,
        ),
        http_duration=Histogram(
            "opsgate_http_request_duration_seconds",
            "time to answer an HTTP request, by route template",
            ["method", "route"],
            registry=registry,
        ),
        commands=Counter(
            "opsgate_chat_commands",
            "chat commands handled, by command and outcome (ok, refused, error)",
            ["command", "outcome"],
            registry=registry,
        ),
        command_duration=Histogram(
            "opsgate_chat_command_duration_seconds",
            "time from a chat command's arrival to its reply, by command",
            ["command"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
            registry=registry,
        ),
    )


def _version() -> str:
    try:
        return version("opsgate")
    except PackageNotFoundError:
        return "unknown"


class _RuntimeCollector(Collector):
    """Read at scrape time from the store, so every replica reports the same shared numbers."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    def describe(self) -> Iterable[Metric]:
        return []  # nothing at registration: the store is only read when scraped

    def collect(self) -> Iterable[Metric]:
        try:
            yield self._proposals()
            yield self._agent_runs()
        except SQLAlchemyError:
            log.warning("the store did not answer; /metrics leaves out its numbers", exc_info=True)

    def _proposals(self) -> Metric:
        family = GaugeMetricFamily(
            "opsgate_proposals_active",
            "proposals not finished yet (open, approved, merged, syncing), by state",
            labels=["state"],
        )
        by_state = Tally(p.state.value for p in self._runtime.engine.proposals(active_only=True))
        for state in sorted(s.value for s in ACTIVE_STATES):
            family.add_metric([state], by_state[state])
        return family

    def _agent_runs(self) -> Metric:
        family = CounterMetricFamily(
            "opsgate_agent_runs",
            "finished agent runs recorded in the store (any trigger), by agent and outcome",
            labels=["agent", "outcome"],
        )
        query = (
            select(RunRow.agent, RunRow.outcome, func.count())
            .where(RunRow.outcome != "running")
            .group_by(RunRow.agent, RunRow.outcome)
            .order_by(RunRow.agent, RunRow.outcome)
        )
        with self._runtime.agents.db.transaction() as session:
            for agent, outcome, count in session.execute(query):
                family.add_metric([agent, outcome], count)
        return family


class _HttpMetrics:
    """Counts and times every HTTP request by its route template, not its raw path."""

    def __init__(self, app: ASGIApp, *, requests: Counter, duration: Histogram) -> None:
        self.app = app
        self.requests = requests
        self.duration = duration

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # what the client gets when the app raises before answering
        started = time.perf_counter()

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            # The router writes the matched route into this same scope.
            route = getattr(scope.get("route"), "path", UNMATCHED)
            method = scope["method"]
            self.requests.labels(method=method, route=route, status=str(status)).inc()
            self.duration.labels(method=method, route=route).observe(time.perf_counter() - started)
