"""What the engine tests share: a hand-moved clock, a recording notifier, git inspection,
and small PR backends and deployers that die or stall where a test needs them to."""

from __future__ import annotations

import subprocess
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

from agents.sim.argocd import SimulatedArgoCD
from agents.sim.cluster import SimulatedCluster
from approval_engine.config import PolicyConfig, UsersConfig, load_model
from approval_engine.deploy import HEALTHY, PROGRESSING, AppStatus, Deployer
from approval_engine.engine import Engine
from approval_engine.errors import TemporaryBackendError
from approval_engine.model import ChangeRequest, KnobChange, Scalar
from approval_engine.notify import Announcement
from approval_engine.prs.base import PRBackend, PullRequest
from approval_engine.prs.local_git import LocalGitBackend
from approval_engine.rbac import Actor, Directory
from approval_engine.store import Store

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO_ROOT / "config"
START = datetime(2025, 1, 6, 12, 0, tzinfo=UTC)  # a Monday noon; whole seconds on purpose
TRAILER = "Opsgate-Proposal"


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime = START) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


class Crash(Exception):  # noqa: N818 - it is not an error the engine handles, it is a death
    """The process died here: not an ApprovalError, so nothing in the engine catches it."""


def wish(
    service: str,
    env: str,
    *changes: tuple[str, Scalar],
    by: str = "alice",
    kind: str = "scale",
) -> ChangeRequest:
    """A ChangeRequest as /scale or an agent builds it.

    `wish("checkout", "prod", ("min_replicas", 4))`
    """
    return ChangeRequest(
        kind=kind,
        service=service,
        env=env,
        changes=tuple(KnobChange(knob, value) for knob, value in changes),
        rationale=f"{by} wants {', '.join(f'{k}={v}' for k, v in changes)}",
        requested_by=by,
    )


# --- people ------------------------------------------------------------------------------


def person(name: str) -> Actor:
    """Someone from config/users.yaml: alice, bob and dave approve, carol only looks."""
    actor = Directory(load_model(CONFIG_DIR / "users.yaml", UsersConfig)).by_name(name)
    assert actor is not None, f"{name} is not in config/users.yaml"
    return actor


ALICE, BOB, DAVE, CAROL = (person(n) for n in ("alice", "bob", "dave", "carol"))
# Nobody in config/users.yaml is a plain operator: erin proposes and may do nothing more.
ERIN = Actor(name="erin", roles=frozenset({"operator"}))


# --- announcements -----------------------------------------------------------------------


class Recorder:
    """A Notifier that keeps what it was asked to announce."""

    def __init__(self) -> None:
        self.sent: list[Announcement] = []

    def announce(self, announcement: Announcement) -> None:
        self.sent.append(announcement)

    def kinds(self, proposal_id: str | None = None) -> list[str]:
        return [a.kind for a in self.sent if proposal_id is None or a.proposal_id == proposal_id]

    def assert_each_once(self) -> None:
        counts = Counter((a.kind, a.proposal_id) for a in self.sent)
        repeated = {k: n for k, n in counts.items() if n > 1}
        assert not repeated, f"announced more than once: {repeated}; all: {self.kinds()}"


class FlakyNotifier(Recorder):
    """Fails every send while `down`, and the `fail_on`-th send (1-based) once."""

    def __init__(self, *, down: bool = False, fail_on: int | None = None) -> None:
        super().__init__()
        self.down = down
        self.fail_on = fail_on
        self.attempts = 0

    def announce(self, announcement: Announcement) -> None:
        self.attempts += 1
        if self.down or self.attempts == self.fail_on:
            raise ConnectionError("chat is unreachable")
        super().announce(announcement)


# --- git ---------------------------------------------------------------------------------


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "--git-dir", str(repo), *args], capture_output=True, text=True, check=True
    ).stdout


@dataclass(frozen=True)
class Commit:
    sha: str
    parents: tuple[str, ...]
    message: str


def commits_for(repo: Path, proposal_id: str) -> list[Commit]:
    """Every commit reachable from any ref whose message carries `Opsgate-Proposal: <id>`."""
    out = git(
        repo,
        "log",
        "--all",
        "--fixed-strings",
        f"--grep={TRAILER}: {proposal_id}",
        "--format=%H%x1f%P%x1f%B%x1e",
    )
    commits = []
    for record in out.split("\x1e"):
        if not record.strip():
            continue
        sha, parents, message = record.strip("\n").split("\x1f")
        if f"{TRAILER}: {proposal_id}" in message.splitlines():
            commits.append(Commit(sha=sha, parents=tuple(parents.split()), message=message))
    return commits


def branch_commits(repo: Path, proposal_id: str) -> list[Commit]:
    return [c for c in commits_for(repo, proposal_id) if len(c.parents) == 1]


def merge_commits(repo: Path, proposal_id: str) -> list[Commit]:
    return [c for c in commits_for(repo, proposal_id) if len(c.parents) == 2]


# --- one opsgate process -----------------------------------------------------------------


@dataclass
class Node:
    """One opsgate process, wired like bots.app.build_runtime: what a restart rebuilds."""

    engine: Engine
    store: Store
    git: LocalGitBackend  # the real backend, whatever wraps it for the engine
    cluster: SimulatedCluster
    argocd: SimulatedArgoCD

    def close(self) -> None:
        self.store.close()


class Boot(Protocol):
    """The conftest's `boot` fixture: start (or restart) an opsgate process on the test's files."""

    def __call__(
        self,
        *,
        backend: Callable[[LocalGitBackend], PRBackend] | None = None,
        deployer: Callable[[SimulatedArgoCD], Deployer] | None = None,
        policy: PolicyConfig | None = None,
        engine_cls: type[Engine] = Engine,
    ) -> Node: ...


# --- backends and deployers that misbehave on purpose ------------------------------------


class CrashingBackend:
    """A PR backend whose `call` dies once, on its `nth` use, `before` or `after` doing it."""

    def __init__(self, inner: PRBackend, *, call: str, when: str = "before", nth: int = 1) -> None:
        assert call in ("open", "merge", "close") and when in ("before", "after")
        self.inner = inner
        self.name = inner.name
        self.call = call
        self.when = when
        self.nth = nth
        self.calls: Counter[str] = Counter()

    def _maybe_die(self, call: str, moment: str) -> None:
        if call == self.call and moment == self.when and self.calls[call] == self.nth:
            raise Crash(f"died {moment} {call} #{self.nth}")

    def base_head(self) -> str:
        return self.inner.base_head()

    def read_file(self, path: str, *, ref: str | None = None) -> str:
        return self.inner.read_file(path, ref=ref)

    def contains(self, revision: str, commit: str) -> bool:
        return self.inner.contains(revision, commit)

    def open(
        self,
        *,
        proposal_id: str,
        branch: str,
        base_sha: str,
        files: dict[str, str],
        title: str,
        body: str,
    ) -> PullRequest:
        self.calls["open"] += 1
        self._maybe_die("open", "before")
        pull = self.inner.open(
            proposal_id=proposal_id,
            branch=branch,
            base_sha=base_sha,
            files=files,
            title=title,
            body=body,
        )
        self._maybe_die("open", "after")
        return pull

    def merge(self, *, proposal_id: str, branch: str, head_sha: str, title: str) -> str:
        self.calls["merge"] += 1
        self._maybe_die("merge", "before")
        sha = self.inner.merge(
            proposal_id=proposal_id, branch=branch, head_sha=head_sha, title=title
        )
        self._maybe_die("merge", "after")
        return sha

    def close(self, *, proposal_id: str, branch: str, reason: str) -> None:
        self.calls["close"] += 1
        self._maybe_die("close", "before")
        self.inner.close(proposal_id=proposal_id, branch=branch, reason=reason)
        self._maybe_die("close", "after")


class UnreachableMergeBackend(CrashingBackend):
    """Merging fails for now while `down`: the proposal has to wait in `approved`."""

    def __init__(self, inner: PRBackend) -> None:
        super().__init__(inner, call="merge", nth=0)
        self.down = True

    def merge(self, *, proposal_id: str, branch: str, head_sha: str, title: str) -> str:
        if self.down:
            raise TemporaryBackendError("git host is down", retry_after=30)
        return self.inner.merge(
            proposal_id=proposal_id, branch=branch, head_sha=head_sha, title=title
        )


class FailingCloseBackend(CrashingBackend):
    """Closing a branch fails while `broken` (the host refuses); everything else works."""

    def __init__(self, inner: PRBackend, error: Exception) -> None:
        super().__init__(inner, call="close", nth=0)
        self.error = error
        self.broken = True

    def close(self, *, proposal_id: str, branch: str, reason: str) -> None:
        if self.broken:
            raise self.error
        self.inner.close(proposal_id=proposal_id, branch=branch, reason=reason)


class CrashingDeployer:
    """Dies once inside `sync`, before asking for anything."""

    def __init__(self, inner: Deployer) -> None:
        self.inner = inner
        self.died = False

    def sync(self, app: str, *, revision: str) -> None:
        if not self.died:
            self.died = True
            raise Crash(f"died syncing {app}")
        self.inner.sync(app, revision=revision)

    def status(self, app: str) -> AppStatus:
        return self.inner.status(app)


class StalledDeployer:
    """Syncs for real, but reports the rollout as Progressing until `stalled` is cleared."""

    def __init__(self, inner: Deployer, *, error: Exception | None = None) -> None:
        self.inner = inner
        self.stalled = True
        self.error = error  # raised by sync instead, when given
        self.synced: list[tuple[str, str]] = []

    def sync(self, app: str, *, revision: str) -> None:
        if self.error is not None:
            raise self.error
        self.synced.append((app, revision))
        self.inner.sync(app, revision=revision)

    def status(self, app: str) -> AppStatus:
        status = self.inner.status(app)
        if self.stalled:
            return AppStatus(app=app, sync="Synced", revision=status.revision, health=PROGRESSING)
        return status


class ManualArgoCD:
    """A deployer like the real ArgoCD: one revision per app, healthy when `settle()` says."""

    def __init__(self) -> None:
        self.revision: dict[str, str] = {}
        self.health: dict[str, str] = {}

    def sync(self, app: str, *, revision: str) -> None:
        self.revision[app] = revision
        self.health[app] = PROGRESSING

    def settle(self, app: str) -> None:
        self.health[app] = HEALTHY

    def status(self, app: str) -> AppStatus:
        return AppStatus(
            app=app,
            sync="Synced" if app in self.revision else "OutOfSync",
            revision=self.revision.get(app),
            health=self.health.get(app, "Missing"),
        )
