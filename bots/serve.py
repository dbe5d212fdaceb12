"""Runs the web app under uvicorn in this process, shutting down gracefully on SIGTERM/SIGINT."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import uvicorn
from fastapi import APIRouter, FastAPI

from bots.app import Runtime
from bots.web import create_app, register_adapter

__all__ = ["make_server", "serve"]


def make_server(
    app: FastAPI, *, host: str, port: int, graceful_timeout: int = 30
) -> uvicorn.Server:
    """uvicorn as opsgate runs it; `port=0` picks a free one (tests read `server.servers`)."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        lifespan="on",  # a failing start-up (scheduler, store) stops the process
        log_config=None,  # records go to the handlers the entry point configured
        log_level="info",
        access_log=True,
        server_header=False,
        timeout_graceful_shutdown=graceful_timeout,
    )
    return uvicorn.Server(config)


def serve(
    runtime: Runtime,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    start_scheduler: bool = False,
    tick_every: float = 5.0,
    graceful_timeout: int = 30,
    routers: Sequence[APIRouter] = (),
    adapters: Sequence[tuple[str, Callable[[], bool]]] = (),
) -> None:
    """Serve until SIGTERM or SIGINT; the app's shutdown closes the runtime.

    On a signal uvicorn stops accepting, waits up to `graceful_timeout` seconds for requests
    in flight, runs the app's shutdown, then re-raises the signal: SIGTERM ends the process
    with the usual status, and SIGINT's KeyboardInterrupt is taken here as a normal stop.
    """
    app = create_app(
        runtime, tick_every=tick_every, start_scheduler=start_scheduler, routers=routers
    )
    for name, started in adapters:
        register_adapter(app, name, started)
    server = make_server(app, host=host, port=port, graceful_timeout=graceful_timeout)
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
