"""POST /github/webhook: GitHub says a proposal's pull request changed; opsgate looks and follows.

The payload only names the branch: what happened is read back from GitHub itself
(Engine.follow), so a forged or replayed delivery can at most make opsgate look again, and
a missed one changes nothing, since the tick's poll finds the same. Every request must carry
`X-Hub-Signature-256: sha256=<HMAC-SHA256 of the body with the webhook secret>`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from approval_engine.errors import BackendError
from bots.app import Runtime
from bots.config import ConfigBundle
from bots.errors import StartupError
from bots.settings import RuntimeSettings

__all__ = ["connect_github", "github_router", "signature"]

log = logging.getLogger(__name__)

# What GitHub sends when a pull request was merged, closed, reopened or got new commits.
_FOLLOWED = frozenset({"closed", "reopened", "synchronize", "edited"})


def signature(secret: bytes, body: bytes) -> str:
    """The X-Hub-Signature-256 value GitHub sends for `body`."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def connect_github(settings: RuntimeSettings, config: ConfigBundle, runtime: Runtime) -> APIRouter:
    """The webhook router for `opsgate serve` with gitops.backend github."""
    secret = settings.github_webhook_secret
    if secret is None or not secret.get_secret_value():
        raise StartupError(
            "gitops.backend is github in settings.yaml but OPSGATE_GITHUB_WEBHOOK_SECRET is not "
            "set (the secret of the repository's webhook to /github/webhook)"
        )
    repo = config.general.gitops.github.repo
    assert repo is not None  # GitOpsSettings requires it for backend github
    return github_router(runtime, secret=secret.get_secret_value().encode(), repo=repo)


def github_router(runtime: Runtime, *, secret: bytes, repo: str) -> APIRouter:
    router = APIRouter()

    @router.post("/github/webhook")
    async def webhook(request: Request) -> JSONResponse:
        body = await request.body()
        given = request.headers.get("X-Hub-Signature-256", "")
        if not hmac.compare_digest(given.encode(), signature(secret, body).encode()):
            log.warning("GitHub webhook refused: bad or missing X-Hub-Signature-256")
            return JSONResponse({"error": "bad signature"}, status_code=401)
        event = request.headers.get("X-GitHub-Event", "")
        if event == "ping":
            return JSONResponse({"ok": "pong"})
        try:
            payload = json.loads(body)
        except ValueError:
            return JSONResponse({"error": "the body is not JSON"}, status_code=400)
        branch = _followed_branch(event, payload, repo=repo)
        if branch is None:
            return JSONResponse({"ignored": event}, status_code=202)
        state = await anyio.to_thread.run_sync(_follow, runtime, branch)
        return JSONResponse({"branch": branch, **state})

    return router


def _followed_branch(event: str, payload: Any, *, repo: str) -> str | None:
    """The pull request's head branch, for the events of our repository that matter."""
    if event != "pull_request" or not isinstance(payload, dict):
        return None
    if payload.get("action") not in _FOLLOWED:
        return None
    if str((payload.get("repository") or {}).get("full_name", "")).lower() != repo.lower():
        return None
    head = (payload.get("pull_request") or {}).get("head") or {}
    ref = head.get("ref")
    return ref if isinstance(ref, str) and ref else None


def _follow(runtime: Runtime, branch: str) -> dict[str, str]:
    """Under the engine lock, as a chat command: follow the branch, then announce."""
    with runtime.services.lock:
        try:
            proposal = runtime.engine.follow(branch)
        except BackendError as e:
            log.warning("following %s after a webhook failed; the poll retries: %s", branch, e)
            return {"error": "GitHub could not be read; opsgate's poll will catch up"}
        runtime.gateway.tick()
    if proposal is None:
        return {"proposal": "none"}
    return {"proposal": proposal.id, "state": proposal.state.value}
