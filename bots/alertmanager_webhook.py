"""`POST /alertmanager`: Alertmanager's webhook, checked, validated and stored before the 200.

Alertmanager sends its `http_config` credentials: `authorization` (Bearer <token>) or
`basic_auth`. A request without them gets 401; a body that is not a version 4 payload gets
400 with the reason (Alertmanager logs it and does not retry a 4xx); a store that fails gets
503, which Alertmanager retries. Routing and sending happen afterwards, from the store.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import hmac
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime

import anyio.to_thread
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import SecretStr, ValidationError

from bots.alert_delivery import AlertDelivery
from bots.alert_metrics import AlertMetrics
from bots.alert_payload import WebhookPayload, describe_errors
from bots.alert_store import AlertStore
from bots.web import metrics as web_metrics

__all__ = ["MAX_BODY_BYTES", "AlertmanagerReceiver", "WebhookAuth"]

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024 * 1024  # a group of tens of thousands of alerts, never truncated


@dataclass(frozen=True)
class WebhookAuth:
    """The credentials Alertmanager is configured with; with none, every request is refused."""

    token: SecretStr | None = None
    username: str = "alertmanager"
    password: SecretStr | None = None

    @property
    def configured(self) -> bool:
        return self.token is not None or self.password is not None

    def allows(self, authorization: str | None) -> bool:
        scheme, _, credentials = (authorization or "").strip().partition(" ")
        credentials = credentials.strip()
        if scheme.lower() == "bearer" and self.token is not None:
            return _same(credentials, self.token.get_secret_value())
        if scheme.lower() == "basic" and self.password is not None:
            try:
                decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                return False
            expected = f"{self.username}:{self.password.get_secret_value()}"
            return _same(decoded, expected)
        return False

    def challenge(self) -> str:
        return "Bearer" if self.token is not None or self.password is None else "Basic"


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


class AlertmanagerReceiver:
    """The route, and a lifespan that runs the delivery threads while the web app serves."""

    def __init__(
        self,
        *,
        store: AlertStore,
        delivery: AlertDelivery,
        auth: WebhookAuth,
        metrics: AlertMetrics,
        clock: Callable[[], datetime],
    ) -> None:
        self.store, self.delivery, self.auth = store, delivery, auth
        self.metrics, self.clock = metrics, clock

    def router(self) -> APIRouter:
        @contextlib.asynccontextmanager
        async def lifespan(app: FastAPI) -> AsyncIterator[None]:
            web_metrics(app).registry.register(self.metrics.collector)
            if not self.auth.configured:
                log.warning(
                    "neither OPSGATE_ALERTMANAGER_TOKEN nor OPSGATE_ALERTMANAGER_PASSWORD is "
                    "set: /alertmanager refuses every request"
                )
            self.delivery.start()
            try:
                yield
            finally:
                await anyio.to_thread.run_sync(self.delivery.stop)

        router = APIRouter(lifespan=lifespan)

        @router.post("/alertmanager")
        async def alertmanager(request: Request) -> JSONResponse:
            return await self.receive(request)

        return router

    async def receive(self, request: Request) -> JSONResponse:
        if not self.auth.allows(request.headers.get("authorization")):
            self.metrics.webhooks.labels(outcome="unauthorized").inc()
            log.warning("alertmanager: refused a request without valid credentials")
            return JSONResponse(
                {"error": "missing or wrong credentials"},
                status_code=401,
                headers={"WWW-Authenticate": self.auth.challenge()},
            )
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            return self._invalid(f"the body is {len(body)} bytes; at most {MAX_BODY_BYTES}", 413)
        try:
            data = json.loads(body)
        except ValueError as e:
            return self._invalid(f"the body is not JSON: {e}")
        try:
            payload = WebhookPayload.model_validate(data)
        except ValidationError as e:
            return self._invalid(
                f"not an Alertmanager webhook payload (version 4): {describe_errors(e)}"
            )
        try:
            stored = await anyio.to_thread.run_sync(
                functools.partial(self.store.ingest, payload, at=self.clock())
            )
        except Exception:
            self.metrics.webhooks.labels(outcome="error").inc()
            log.exception("alertmanager: storing group %r failed; it will retry", payload.group_key)
            return JSONResponse({"error": "the store did not answer; retry"}, status_code=503)
        self.metrics.webhooks.labels(outcome="accepted").inc()
        for alert in payload.alerts:
            self.metrics.received.labels(status=alert.status).inc()
        for status, count in stored.repeated.items():
            self.metrics.repeated.labels(status=status).inc(count)
        if payload.truncated_alerts:
            log.warning(
                "alertmanager: group %s arrived with %d alerts truncated (set max_alerts: 0)",
                stored.group_id,
                payload.truncated_alerts,
            )
        if stored.new:
            self.delivery.wake()
        return JSONResponse(
            {
                "status": "stored",
                "group": stored.group_id,
                "new": stored.new,
                "repeated": sum(stored.repeated.values()),
            }
        )

    def _invalid(self, reason: str, status: int = 400) -> JSONResponse:
        self.metrics.webhooks.labels(outcome="invalid").inc()
        log.warning("alertmanager: refused a payload: %s", reason)
        return JSONResponse({"error": reason}, status_code=status)
