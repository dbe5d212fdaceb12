"""A fake ArgoCD API server on loopback that answers the ArgoCD client like argocd-server does.

    with FakeArgoCD() as argocd:
        argocd.add_app("checkout-prod")
        argocd.push("checkout-prod", MERGE)          # the merge reached the tracked branch
        client = ArgoCDClient(base_url=argocd.url, token=SecretStr(argocd.token))
        client.sync("checkout-prod", revision=MERGE)
        assert argocd.syncs("checkout-prod")[-1]["revision"] == MERGE

It answers as argocd-server's gRPC gateway does (server/application, util/argo): JSON bodies,
errors as `{"error": msg, "code": grpc_code, "message": msg}` with the gateway's HTTP status:

- no or a bad `Authorization: Bearer` token: 401, code 16 (`no session information`,
  `invalid session: token signature is invalid`); `GET /api/version` needs no token and then
  answers only `Version`.
- an application that does not exist: 403 `permission denied` (code 7) unless the request names
  a project (`?project=` / `?projects=` / `"project"` in the sync body), then 404 (code 5)
  `applications.argoproj.io "x" not found`; ArgoCD hides existence from a caller that does not
  say where to look. A token without the right for an action: 403 `permission denied: ...`.
- a sync while an operation is set: 400 (FailedPrecondition, code 9) `another operation is
  already in progress`; a sync to a revision other than `targetRevision` of an app with automated
  sync: 400, code 9, `Cannot sync to <rev>: auto-sync currently set to <branch>`; a revision git
  does not hold (see `push`): 400, code 9, `unable to resolve '<rev>' to a commit SHA`.

The application controller is scripted. A sync sets `operation`; each later `GET` of that app is
one step of its lifecycle (`Lifecycle`): the operation `Running` for `running` reads, then
`Succeeded` with health `Progressing` for `progressing` reads, then `Healthy` (or `Degraded` with
a message); or the operation ends `Failed` / `Error` with a message. `hold=True` freezes it until
the test calls `advance()`. `?refresh=normal|hard` re-reads git: `status.sync.revision` becomes the
branch head, and an app with automated sync starts syncing to it, as ArgoCD does.

State is in plain attributes (`apps`, `calls`) guarded by one lock; `fail_next()` makes the next
calls answer 5xx.
"""

from __future__ import annotations

import itertools
import json
import threading
import zlib
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast
from urllib.parse import parse_qs, unquote, urlsplit

from tests.fakes._loopback import Loopback

__all__ = [
    "DEGRADED",
    "ERROR",
    "FAILED",
    "HEALTHY",
    "INITIAL_REVISION",
    "PROGRESSING",
    "App",
    "Call",
    "FakeArgoCD",
    "Lifecycle",
]

JSON = dict[str, Any]

HEALTHY = "Healthy"
PROGRESSING = "Progressing"
DEGRADED = "Degraded"
FAILED = "Failed"  # operation phases that end a sync badly
ERROR = "Error"
INITIAL_REVISION = "0" * 39 + "1"
VERSION = "v2.13.3+a25c8a0"
RUNNING_MESSAGE = "one or more tasks are running"
SUCCEEDED_MESSAGE = "successfully synced (all tasks run)"
ROLLOUT_MESSAGE = "Waiting for rollout to finish: 1 old replicas are pending termination..."
# grpc codes, and the HTTP status grpc-gateway gives each
_UNAUTHENTICATED, _PERMISSION_DENIED, _NOT_FOUND, _FAILED_PRECONDITION = 16, 7, 5, 9
_HTTP_OF = {16: 401, 7: 403, 5: 404, 9: 400, 3: 400, 13: 500, 14: 503}


@dataclass(frozen=True)
class Lifecycle:
    """What the controller does with the next sync of an app, one step per `GET` of the app."""

    running: int = 1  # reads that see the operation Running
    progressing: int = 1  # reads after it succeeded that see health Progressing
    outcome: str = HEALTHY  # Healthy | Degraded, or the operation ends Failed | Error
    message: str = ""  # the health message (Degraded) or the operation's (Failed, Error)
    hold: bool = False  # reads do not move it; only advance() does


@dataclass
class _Operation:
    revision: str
    prune: bool
    dry_run: bool
    initiated_by: JSON
    lifecycle: Lifecycle
    frames: deque[str]

    def to_json(self) -> JSON:
        sync: JSON = {"revision": self.revision, "syncStrategy": {"hook": {}}}
        if self.prune:
            sync["prune"] = True
        if self.dry_run:
            sync["dryRun"] = True
        return {"sync": sync, "initiatedBy": self.initiated_by, "retry": {}}


@dataclass
class App:
    """One Application as the fake holds it; a test may read and change any field."""

    name: str
    project: str = "default"
    repo_url: str = "https://github.com/acme/gitops.git"
    path: str = "helm-charts/checkout"
    target_revision: str = "main"
    dest_namespace: str = "default"
    auto_sync: bool = False
    commits: list[str] = field(
        default_factory=lambda: [INITIAL_REVISION]
    )  # the branch, oldest first
    compared: str = INITIAL_REVISION  # status.sync.revision: the head git had at the last refresh
    deployed: str | None = INITIAL_REVISION  # the last revision a sync applied
    sync_status: str = "Synced"
    health: str = HEALTHY
    health_message: str = ""
    conditions: list[JSON] = field(default_factory=list)
    history: list[JSON] = field(default_factory=list)
    op: _Operation | None = None  # the latest operation; its steps may outlast it (rollout)
    operating: bool = False  # `operation` is set: from a sync until its operation ends
    operation_state: JSON | None = None
    lifecycle: Lifecycle = field(default_factory=Lifecycle)
    refreshes: list[str] = field(default_factory=list)
    resource_version: int = 1

    @property
    def head(self) -> str:
        return self.commits[-1]

    def source(self) -> JSON:
        return {"repoURL": self.repo_url, "path": self.path, "targetRevision": self.target_revision}

    def to_json(self) -> JSON:
        destination = {"server": "https://kubernetes.default.svc", "namespace": self.dest_namespace}
        spec: JSON = {"project": self.project, "source": self.source(), "destination": destination}
        if self.auto_sync:
            spec["syncPolicy"] = {"automated": {"prune": False, "selfHeal": False}}
        health: JSON = {"status": self.health}
        if self.health_message:
            health["message"] = self.health_message
        status: JSON = {
            "sync": {
                "status": self.sync_status,
                "comparedTo": {"source": self.source(), "destination": destination},
                "revision": self.compared,
            },
            "health": health,
            "history": list(self.history),
            "reconciledAt": _now(),
            "sourceType": "Helm",
            "summary": {},
            "resources": [],
        }
        if self.operation_state is not None:
            status["operationState"] = self.operation_state
        if self.conditions:
            status["conditions"] = list(self.conditions)
        out: JSON = {
            "metadata": {
                "name": self.name,
                "namespace": "argocd",
                "uid": f"00000000-0000-4000-8000-{zlib.crc32(self.name.encode()):012d}",
                "resourceVersion": str(self.resource_version),
                "generation": self.resource_version,
                "creationTimestamp": "2025-01-06T12:00:00Z",
            },
            "spec": spec,
            "status": status,
        }
        if self.operating and self.op is not None:
            out["operation"] = self.op.to_json()
        return out


@dataclass
class Call:
    """One request as the fake received it; `query` values are lists, as in a query string."""

    verb: str
    path: str
    query: dict[str, list[str]]
    body: JSON | None
    headers: dict[str, str]
    status: int = 200
    response: JSON = field(default_factory=dict)


class _ApiError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class FakeArgoCD(Loopback):
    """argocd-server's REST API for a handful of apps, served on 127.0.0.1 until `stop()`."""

    def __init__(self, *, token: str = "argocd-fake-token-0123456789abcdef") -> None:
        self.token = token
        self.version = VERSION
        self.apps: dict[str, App] = {}
        self.calls: list[Call] = []
        # token -> the actions it may do on applications, and the subject ArgoCD names it by
        self.tokens: dict[str, tuple[str, set[str]]] = {token: ("opsgate", {"get", "sync"})}
        self._faults: deque[tuple[int, str | None]] = deque()
        self._lock = threading.RLock()
        self._history_ids = itertools.count(1)
        self._serve(_Server(self))

    # -- lifecycle ---------------------------------------------------------------------------

    # -- seeding and test controls -----------------------------------------------------------

    def add_app(self, name: str, **fields: Any) -> App:
        """An app synced and healthy at INITIAL_REVISION unless `fields` say otherwise."""
        with self._lock:
            app = App(name, **fields)
            self.apps[name] = app
            return app

    def add_token(self, token: str, *, actions: Iterable[str] = ("get",), sub: str = "ci") -> None:
        with self._lock:
            self.tokens[token] = (sub, set(actions))

    def push(self, name: str, revision: str) -> None:
        """A commit lands on the app's tracked branch; ArgoCD sees it at the next refresh."""
        with self._lock:
            self.apps[name].commits.append(revision)

    def lifecycle(self, name: str, **script: Any) -> Lifecycle:
        """Script what the next syncs of `name` do (see `Lifecycle`)."""
        with self._lock:
            self.apps[name].lifecycle = Lifecycle(**script)
            return self.apps[name].lifecycle

    def begin_sync(self, name: str, revision: str | None = None) -> None:
        """ArgoCD's automated sync starts an operation of its own (to the head by default)."""
        with self._lock:
            app = self.apps[name]
            self._start(
                app, revision or app.head, prune=False, dry_run=False, by={"automated": True}
            )

    def advance(self, name: str, steps: int = 1) -> None:
        """Move the app's running operation `steps` reads on, even when it is held."""
        with self._lock:
            app = self.apps[name]
            for _ in range(steps):
                self._step(app)

    def settle(self, name: str) -> None:
        """Run the app's operation to its end."""
        with self._lock:
            app = self.apps[name]
            while app.op is not None and app.op.frames:
                self._step(app)

    def set_health(self, name: str, status: str, message: str = "") -> None:
        with self._lock:
            app = self.apps[name]
            app.health, app.health_message = status, message
            app.resource_version += 1

    def fail_next(self, times: int = 1, *, status: int = 503, path: str | None = None) -> None:
        """Answer the next `times` API calls (those whose path contains `path`) with `status`."""
        with self._lock:
            self._faults.extend([(status, path)] * times)

    def calls_to(self, verb: str, path: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.verb == verb and c.path == path]

    def syncs(self, name: str) -> list[JSON]:
        """The bodies of the sync requests for `name` that ArgoCD accepted."""
        path = f"/api/v1/applications/{name}/sync"
        return [c.body or {} for c in self.calls_to("POST", path) if c.status == 200]

    # -- the application controller ----------------------------------------------------------

    def _start(self, app: App, revision: str, *, prune: bool, dry_run: bool, by: JSON) -> None:
        lc = app.lifecycle
        frames = deque(["running"] * lc.running)
        if lc.outcome in (FAILED, ERROR):
            frames.append("failed")
        else:
            frames.append("succeeded")
            frames.extend(["progressing"] * max(lc.progressing - 1, 0))
            if lc.progressing > 0:
                frames.append("final")
        app.op, app.operating = _Operation(revision, prune, dry_run, by, lc, frames), True
        app.operation_state = None  # as util/argo SetAppOperation leaves it for the controller
        app.resource_version += 1

    def _step(self, app: App) -> None:
        op = app.op
        if op is None or not op.frames:
            return
        frame = op.frames.popleft()
        lc = op.lifecycle
        state: JSON = {
            "operation": op.to_json(),
            "phase": "Running",
            "message": RUNNING_MESSAGE,
            "startedAt": (app.operation_state or {}).get("startedAt", _now()),
        }
        if frame == "failed":
            default = "one or more objects failed to apply"
            state |= {"phase": lc.outcome, "message": lc.message or default, "finishedAt": _now()}
            state["syncResult"] = {"resources": [], "revision": op.revision, "source": app.source()}
            app.operating = False
            app.sync_status = "OutOfSync"
        elif frame == "succeeded":
            state |= {"phase": "Succeeded", "message": SUCCEEDED_MESSAGE, "finishedAt": _now()}
            state["syncResult"] = {"resources": [], "revision": op.revision, "source": app.source()}
            app.operating = False
            if not op.dry_run:
                self._deployed(app, op)
                app.health, app.health_message = PROGRESSING, ROLLOUT_MESSAGE
                if not op.frames:
                    self._final(app, lc)
        elif frame == "final":
            self._final(app, lc)
            return
        elif frame == "progressing":
            return
        app.operation_state = state
        app.resource_version += 1

    def _deployed(self, app: App, op: _Operation) -> None:
        app.deployed = op.revision
        app.compared = app.head
        app.sync_status = "Synced" if op.revision == app.head else "OutOfSync"
        stamp = _now()
        app.history.append(
            {
                "id": next(self._history_ids),
                "revision": op.revision,
                "deployedAt": stamp,
                "deployStartedAt": stamp,
                "source": app.source(),
                "initiatedBy": op.initiated_by,
            }
        )

    @staticmethod
    def _final(app: App, lc: Lifecycle) -> None:
        app.health = DEGRADED if lc.outcome == DEGRADED else HEALTHY
        app.health_message = lc.message if lc.outcome == DEGRADED else ""
        app.resource_version += 1

    def _refresh(self, app: App, kind: str) -> None:
        app.refreshes.append(kind)
        app.compared = app.head
        if not app.operating:
            app.sync_status = "Synced" if app.deployed == app.head else "OutOfSync"
            if app.auto_sync and app.sync_status == "OutOfSync":
                self._start(app, app.head, prune=False, dry_run=False, by={"automated": True})
        app.resource_version += 1

    # -- HTTP routing ------------------------------------------------------------------------

    def _dispatch(
        self, verb: str, target: str, headers: dict[str, str], raw: bytes
    ) -> tuple[int, bytes]:
        parts = urlsplit(target)
        path, query = parts.path, parse_qs(parts.query, keep_blank_values=True)
        body: JSON | None = None
        with self._lock:
            call = Call(verb, path, query, None, headers)
            self.calls.append(call)
            try:
                if raw:
                    parsed = json.loads(raw)
                    if not isinstance(parsed, dict):
                        raise _ApiError(3, "unexpected JSON body: not an object")
                    body = call.body = parsed
                status, reply = 200, self._answer(verb, path, query, headers, body)
            except _ApiError as e:
                status = _HTTP_OF.get(e.code, 500)
                reply = {"error": e.message, "code": e.code, "message": e.message}
            except _Fault as f:
                status, reply = f.status, f.body
            except ValueError:
                status, reply = 400, {"error": "invalid JSON", "code": 3, "message": "invalid JSON"}
            call.status, call.response = status, reply
        return status, json.dumps(reply).encode()

    def _answer(
        self,
        verb: str,
        path: str,
        query: dict[str, list[str]],
        headers: dict[str, str],
        body: JSON | None,
    ) -> JSON:
        for i, (status, where) in enumerate(self._faults):
            if where is None or where in path:
                del self._faults[i]
                raise _Fault(status)
        who = self._who(headers)
        if verb == "GET" and path == "/api/version":
            return self._version(full=isinstance(who, tuple))
        if isinstance(who, str):
            raise _ApiError(_UNAUTHENTICATED, who)
        sub, actions = who
        if verb == "GET" and path == "/api/v1/applications":
            return self._list(query, actions)
        prefix = "/api/v1/applications/"
        if path.startswith(prefix):
            name, _, sub_path = unquote(path.removeprefix(prefix)).partition("/")
            if verb == "GET" and not sub_path:
                app = self._app(name, "get", _project(query), sub, actions)
                if query.get("refresh"):
                    self._refresh(app, "hard" if query["refresh"][0] == "hard" else "normal")
                if app.op is not None and not app.op.lifecycle.hold:
                    self._step(app)
                return app.to_json()
            if verb == "POST" and sub_path == "sync":
                return self._sync(name, body or {}, sub, actions)
        raise _ApiError(_NOT_FOUND, "Not Found")

    def _who(self, headers: dict[str, str]) -> tuple[str, set[str]] | str:
        """The caller's (subject, actions), or why the session is refused."""
        scheme, _, token = headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            cookies = dict(
                c.strip().partition("=")[::2] for c in headers.get("Cookie", "").split(";")
            )
            token = cookies.get("argocd.token", "")
        if not token.strip():
            return "no session information"
        if token.strip() not in self.tokens:
            return "invalid session: token signature is invalid"
        return self.tokens[token.strip()]

    def _app(self, name: str, action: str, project: str | None, sub: str, actions: set[str]) -> App:
        """server/application getAppEnforceRBAC: only who names a project learns what exists."""
        app = self.apps.get(name)
        if app is None or (project is not None and app.project != project):
            if project is None:
                raise _ApiError(_PERMISSION_DENIED, "permission denied")
            raise _ApiError(_NOT_FOUND, f'applications.argoproj.io "{name}" not found')
        if action not in actions:
            raise _ApiError(
                _PERMISSION_DENIED,
                f"permission denied: applications, {action}, {app.project}/{name}, "
                f"sub: {sub}, iat: 2025-01-06T12:00:00Z",
            )
        return app

    def _sync(self, name: str, body: JSON, sub: str, actions: set[str]) -> JSON:
        project = body.get("project") or None
        app = self._app(name, "sync", str(project) if project else None, sub, actions)
        revision = str(body.get("revision") or "")
        if app.auto_sync and revision and revision != (app.target_revision or "HEAD"):
            raise _ApiError(
                _FAILED_PRECONDITION,
                f"Cannot sync to {revision}: auto-sync currently set to {app.target_revision}",
            )
        resolved = app.head if revision in ("", app.target_revision, "HEAD") else revision
        if resolved not in app.commits:
            raise _ApiError(_FAILED_PRECONDITION, f"unable to resolve '{revision}' to a commit SHA")
        if app.operating:
            raise _ApiError(_FAILED_PRECONDITION, "another operation is already in progress")
        by = {"username": sub}
        prune, dry_run = body.get("prune") is True, body.get("dryRun") is True
        self._start(app, resolved, prune=prune, dry_run=dry_run, by=by)
        return app.to_json()

    def _list(self, query: dict[str, list[str]], actions: set[str]) -> JSON:
        projects = set(query.get("projects") or query.get("project") or [])
        names = set(query.get("name") or [])
        items = [
            app.to_json()
            for app in sorted(self.apps.values(), key=lambda a: a.name)
            if "get" in actions
            and (not projects or app.project in projects)
            and (not names or app.name in names)
        ]
        version = max((a.resource_version for a in self.apps.values()), default=1)
        return {"metadata": {"resourceVersion": str(version)}, "items": items}

    def _version(self, *, full: bool) -> JSON:
        if not full:  # server/version: the version alone for a caller without a session
            return {"Version": self.version}
        return {
            "Version": self.version,
            "BuildDate": "2024-12-10T18:05:27Z",
            "GitCommit": "a25c8a0eef7830be0c2c9074c92dbea8ff23a962",
            "GitTreeState": "clean",
            "GoVersion": "go1.22.9",
            "Compiler": "gc",
            "Platform": "linux/amd64",
            "KustomizeVersion": "v5.4.3 2024-07-19T16:40:33Z",
            "HelmVersion": "v3.15.4+gfa9efb0",
            "KubectlVersion": "v0.31.0",
            "JsonnetVersion": "v0.20.0",
        }


class _Fault(Exception):  # noqa: N818 - control flow for an injected failure, not an error
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status
        # An unavailable backend comes back from the gateway as grpc Unavailable; anything in
        # front of it (an ingress) answers with its own body, which the client must cope with.
        text = {500: "internal error", 503: "connection refused"}.get(status, "upstream error")
        code = {500: 13, 503: 14}.get(status, 14)
        self.body: JSON = {"error": text, "code": code, "message": text}


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, fake: FakeArgoCD) -> None:
        super().__init__(("127.0.0.1", 0), _RequestHandler)
        self.fake = fake


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeArgoCD/1.0"
    # Headers and body go out in two writes; without this, Nagle and delayed ACKs add 40 ms.
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def log_message(self, format: str, *args: Any) -> None:
        """Keep pytest output quiet; `FakeArgoCD.calls` is the request log."""

    def _handle(self) -> None:
        fake = cast(_Server, self.server).fake
        headers = {name.title(): value for name, value in self.headers.items()}
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        status, payload = fake._dispatch(self.command, self.path, headers, raw)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def _project(query: dict[str, list[str]]) -> str | None:
    # server/application: the legacy `project` wins over `projects`; Get takes zero or one.
    names = query.get("project") or query.get("projects") or []
    return names[0] if names else None


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
