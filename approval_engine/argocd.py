"""ArgoCD's REST API as a Deployer: sync a merge, read sync and health, wait for the outcome.

    client = ArgoCDClient(base_url="https://argocd.example.com", token=SecretStr(...))
    client.sync("checkout-prod", revision=merge_sha)
    status = client.wait("checkout-prod", revision=merge_sha, timeout=600, poll_every=10)

Errors (all BackendError, from approval_engine.errors):

BackendError            401 (the token is refused), 403, 404 (no such application), any other
                        refusal; the text names the app and carries ArgoCD's message
├── TemporaryBackendError  5xx, 429 or no connection, still so after `retries` retries
└── SyncTimeoutError       `wait` ran out of time; `last` is the last status it read

The token is sent per request by an httpx.Auth and never appears in a log line, a repr or an
error's text.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Generator, Iterable
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import SecretStr

from approval_engine.deploy import DEGRADED, HEALTHY, MISSING, PROGRESSING, AppStatus
from approval_engine.errors import BackendError, TemporaryBackendError

__all__ = ["ArgoCDClient", "SyncTimeoutError", "app_status"]

log = logging.getLogger(__name__)

JSON = dict[str, Any]

# ArgoCD answers a sync it will not start with FailedPrecondition (HTTP 400) and these texts.
_BUSY = "another operation is already in progress"
_AUTO_SYNC = "auto-sync currently set to"
_SETTLED = (HEALTHY, DEGRADED, MISSING)
_MAX_BACKOFF = 30.0
_MIN_SCRUB = 8


class SyncTimeoutError(BackendError):
    """`wait` gave up: the app did not reach the revision and a settled health in time."""

    def __init__(self, message: str, *, last: AppStatus | None) -> None:
        super().__init__(message)
        self.last = last


class _Bearer(httpx.Auth):
    def __init__(self, token: SecretStr) -> None:
        self._token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._token.get_secret_value()}"
        yield request


class ArgoCDClient:
    """A Deployer backed by argocd-server (httpx, synchronous).

    `project` makes ArgoCD tell "no such app" (404) apart from "not allowed" (403): without it,
    ArgoCD answers `permission denied` for both so that names cannot be probed. `prune` is
    passed on every sync. 5xx answers and connection errors are retried `retries` times with
    exponential backoff from `backoff` seconds (a `Retry-After` header wins); `sleep` and
    `clock` (seconds, monotonic) are injectable so tests do not wait.
    """

    label = "ArgoCD"

    def __init__(
        self,
        *,
        base_url: str,
        token: SecretStr,
        project: str | None = None,
        prune: bool = False,
        verify_tls: bool = True,
        timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 0.5,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.project = project
        self.prune = prune
        self.retries = retries
        self.backoff = backoff
        self._token = token
        self._sleep = sleep
        self._clock = clock
        self._http = httpx.Client(
            base_url=self.base_url,
            auth=_Bearer(token),
            verify=verify_tls,
            timeout=timeout,
            transport=transport,
            headers={"Accept": "application/json"},
        )

    def __repr__(self) -> str:
        return f"ArgoCDClient(base_url={self.base_url!r}, project={self.project!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ArgoCDClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the Deployer protocol ---------------------------------------------------------------

    def sync(self, app: str, *, revision: str) -> None:
        """Start a sync of `app` to `revision`; returns once ArgoCD has accepted it.

        When ArgoCD already runs an operation on the app, or the app syncs itself (automated
        sync refuses a pinned revision), a refresh is asked for instead and that is no error:
        the running operation is most often ArgoCD's own sync of this very merge (its git
        webhook beat us) or our own earlier call (a restart re-sends it), and an automated app
        deploys the branch head, which holds the merge, as soon as the refresh shows it. It is
        not a temporary error to retry either: the running operation may carry a newer merge,
        and syncing to this revision after it would roll that one back. If what runs does not
        bring this revision, `wait` (or the engine's sync timeout) says so.
        """
        body: JSON = {"revision": revision, "prune": self.prune, "dryRun": False}
        if self.project:
            body["project"] = self.project
        response = self._send("POST", f"{_path(app)}/sync", json=body)
        if response.status_code in (400, 409):
            message = _message(response)
            if _BUSY in message or _AUTO_SYNC in message:
                log.info(
                    "ArgoCD will not start a sync of %s (%s); refreshing it instead", app, message
                )
                self.refresh(app)
                return
        self._check(response, app=app, action="sync")

    def status(self, app: str) -> AppStatus:
        return app_status(self._get_app(app))

    # -- more of the API ---------------------------------------------------------------------

    def refresh(self, app: str, *, hard: bool = False) -> AppStatus:
        """Make ArgoCD compare the app with git now (`hard` also drops its manifest cache)."""
        return app_status(self._get_app(app, refresh="hard" if hard else "normal"))

    def apps(self) -> list[str]:
        """The names of the applications the token may read (in `project`, when set)."""
        params = {"project": self.project} if self.project else None
        response = self._send("GET", "/api/v1/applications", params=params)
        items = self._check(response, app=None, action="list applications").get("items") or []
        return sorted(str(item.get("metadata", {}).get("name", "")) for item in items)

    def statuses(self, apps: Iterable[str]) -> dict[str, AppStatus]:
        """The status of each of `apps` the token may read, in one request (for /status)."""
        wanted = set(apps)
        params = {"project": self.project} if self.project else None
        response = self._send("GET", "/api/v1/applications", params=params)
        items = self._check(response, app=None, action="list applications").get("items") or []
        found = (app_status(item) for item in items if isinstance(item, dict))
        return {status.app: status for status in found if status.app in wanted}

    def version(self) -> str:
        """argocd-server's version. ArgoCD answers this without a session: it proves no token."""
        response = self._send("GET", "/api/version")
        return str(self._check(response, app=None, action="read the version").get("Version", ""))

    def wait(
        self, app: str, *, revision: str, timeout: float, poll_every: float = 5.0
    ) -> AppStatus:
        """Poll until `app` runs `revision` and its health has settled, and return that status.

        Settled is Healthy, or Degraded / Missing (which includes a failed sync operation, see
        `app_status`): the caller decides what a bad outcome means. A temporary failure while
        polling is retried until the deadline. Raises SyncTimeoutError after `timeout` seconds.
        """
        deadline = self._clock() + timeout
        last: AppStatus | None = None
        trouble = ""
        while True:
            try:
                last = self.status(app)
                trouble = ""
                if last.revision == revision and last.health in _SETTLED:
                    return last
            except TemporaryBackendError as e:
                trouble = f"; last error: {e}"
            left = deadline - self._clock()
            if left <= 0:
                seen = f"sync {last.sync}, health {last.health}" if last else "no status read"
                at = (last.revision or "-")[:7] if last else "-"
                raise SyncTimeoutError(
                    f"{app} did not reach {revision[:7]} with a settled health within "
                    f"{timeout:g} s ({seen}, at {at}){trouble}",
                    last=last,
                )
            self._sleep(min(poll_every, left))

    # -- HTTP --------------------------------------------------------------------------------

    def _get_app(self, app: str, *, refresh: str | None = None) -> JSON:
        params: dict[str, str] = {}
        if refresh:
            params["refresh"] = refresh
        if self.project:
            params["project"] = self.project
        response = self._send("GET", _path(app), params=params or None)
        return self._check(response, app=app, action="refresh" if refresh else "read")

    def _send(
        self,
        method: str,
        url: str,
        *,
        params: dict[str, str] | None = None,
        json: JSON | None = None,
    ) -> httpx.Response:
        """One request, retried while ArgoCD (or what stands before it) is unavailable."""
        what = f"{method} {url}"
        for attempt in range(self.retries + 1):
            try:
                response = self._http.request(method, url, params=params, json=json)
            except httpx.TransportError as e:
                problem, delay = f"cannot reach ArgoCD at {self.base_url}: {e}", None
            else:
                if response.status_code < 500 and response.status_code != 429:
                    return response
                problem = f"ArgoCD answered {what} with {response.status_code}: "
                problem += _message(response)
                delay = _retry_after(response)
            problem = self._scrub(problem)
            wait = delay if delay is not None else min(self.backoff * 2**attempt, _MAX_BACKOFF)
            if attempt == self.retries:
                raise TemporaryBackendError(problem, retry_after=max(wait, 1.0))
            log.warning(
                "%s; retrying in %.1f s (%d of %d)", problem, wait, attempt + 1, self.retries
            )
            self._sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def _check(self, response: httpx.Response, *, app: str | None, action: str) -> JSON:
        """The JSON of a 2xx answer; any other answer becomes the BackendError that explains it."""
        status = response.status_code
        if status < 300:
            try:
                payload = response.json()
            except ValueError as e:
                raise BackendError(f"ArgoCD answered {action} with something not JSON") from e
            if not isinstance(payload, dict):
                raise BackendError(f"ArgoCD answered {action} with JSON that is not an object")
            return payload
        message = self._scrub(_message(response))
        target = f" {app}" if app else ""
        if status == 401:
            text = (
                f"ArgoCD at {self.base_url} refused the token ({message}): "
                "check that it is a valid, unexpired ArgoCD API token"
            )
        elif status == 404 and app:
            where = f" in project {self.project}" if self.project else ""
            text = f"ArgoCD has no application named {app}{where}"
        elif status == 403 and app and message == "permission denied":
            text = (
                f"ArgoCD refused the token to {action}{target} (permission denied): either "
                f"there is no application named {app} or the token's role may not {action} it; "
                "set the ArgoCD project to tell the two apart"
            )
        elif status == 403:
            text = f"ArgoCD refused the token to {action}{target} ({message})"
        else:
            text = f"ArgoCD refused to {action}{target} ({status}: {message})"
        raise BackendError(self._scrub(text))

    def _scrub(self, text: str) -> str:
        """Belt and braces: no text this module builds may carry the token, whatever it echoes.

        A token too short to be an ArgoCD token (a JWT) is left alone rather than mangle text.
        """
        secret = self._token.get_secret_value()
        return text.replace(secret, "***") if len(secret) >= _MIN_SCRUB else text


def app_status(payload: JSON) -> AppStatus:
    """Read an ArgoCD Application into an AppStatus.

    - `revision` is what runs: `status.sync.revision` when Synced; otherwise the revision of
      the last successful sync (the operation's, or the history's). Out of sync does not mean
      not deployed: after a later merge the app compares against a newer head while still
      running the earlier revision.
    - While an operation is set or running, health is Progressing whatever ArgoCD says, since
      its health still describes the pods from before the sync.
    - A sync operation that ended Failed or Error reports health Degraded, at the revision it
      tried, with ArgoCD's message: the change did not apply, and Degraded is what makes a
      waiting caller (and the engine) stop and say why, instead of timing out.
    - Conditions of an error type (ComparisonError, SyncError, ...) are added to the message.
    """
    metadata, status = payload.get("metadata") or {}, payload.get("status") or {}
    sync = status.get("sync") or {}
    health = status.get("health") or {}
    op = status.get("operationState") or {}
    phase = op.get("phase")
    result_revision = (op.get("syncResult") or {}).get("revision")
    history = status.get("history") or []
    if sync.get("status") == "Synced" and sync.get("revision"):
        running = sync.get("revision")
    elif phase == "Succeeded" and result_revision:
        running = result_revision
    else:
        running = history[-1].get("revision") if history else None
    notes: list[str] = []
    if payload.get("operation") is not None or phase in ("Running", "Terminating"):
        state = PROGRESSING
        notes.append(f"sync operation {str(phase or 'pending').lower()}: {op.get('message', '')}")
    elif phase in ("Failed", "Error"):
        state = DEGRADED
        tried = (op.get("operation") or {}).get("sync", {}).get("revision")
        running = result_revision or tried or running
        notes.append(f"sync {phase.lower()}: {op.get('message') or 'no message'}")
    else:
        state = str(health.get("status") or "Unknown")
        if health.get("message"):
            notes.append(str(health["message"]))
    for condition in status.get("conditions") or []:
        if str(condition.get("type", "")).endswith("Error"):
            notes.append(f"{condition['type']}: {condition.get('message', '')}")
    return AppStatus(
        app=str(metadata.get("name", "")),
        sync=str(sync.get("status") or "Unknown"),
        revision=str(running) if running else None,
        health=state,
        message="; ".join(note.rstrip(": ") for note in notes),
    )


def _path(app: str) -> str:
    return f"/api/v1/applications/{quote(app, safe='')}"


def _message(response: httpx.Response) -> str:
    """grpc-gateway's `message` (or `error`), else the start of whatever body came back."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:200] or response.reason_phrase
    if isinstance(body, dict):
        return str(body.get("message") or body.get("error") or response.reason_phrase)
    return response.reason_phrase


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return max(float(response.headers.get("Retry-After", "")), 0.0)
    except ValueError:
        return None
