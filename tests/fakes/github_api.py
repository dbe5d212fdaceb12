"""A fake GitHub REST API on loopback that the real PyGithub client talks to.

    with FakeGitHub() as gh:
        gh.create_repo("acme/gitops", files={"values.yaml": "replicas: 2\\n"})
        client = Github(auth=Auth.Token(gh.token), base_url=gh.api_url)
        text = client.get_repo("acme/gitops").get_contents("values.yaml").decoded_content
        assert text == b"replicas: 2\\n"

It answers as docs.github.com/rest describes, under GitHub Enterprise's `/api/v3` prefix:
repositories, git refs, blobs, trees and commits (the git data API), the contents API, commits
with their combined status and check runs, compare, branches and branch protection, pull
requests (create, list with `head=owner:branch`, update, merge with `sha` and `merge_method`),
reviews, issue comments and labels. Refusals carry `{"message", "documentation_url"}` (422s an
`errors` list) with GitHub's own wording where it is known. Every request needs
`Authorization: token X` or `Bearer X`; an unknown token gets 401 "Bad credentials".

Each repository is a real little object store: blobs (git's blob sha), flat trees and commits
with parents, so merges, ancestry (`compare`) and conflicts behave. Conflicts are found per
file: both sides changing one file differently is a conflict, as a cautious git would say.

State lives in plain attributes a test can read (`repos`, `calls`, a repo's `pulls`); a test
changes the world the way someone else would (`push`, `merge_pull`, `close_pull`, `approve`,
`set_status`, `protect`) and makes the next calls fail (`fail_next`, `rate_limit_next`,
`throttle_next`, `drop_next`). Everything a handler touches is guarded by one lock.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import itertools
import json
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from tests.fakes._loopback import Loopback

__all__ = [
    "BOT_LOGIN",
    "DOCS",
    "TOKEN",
    "Call",
    "CheckRun",
    "Comment",
    "Commit",
    "FakeGitHub",
    "Protection",
    "Pull",
    "Repo",
    "Review",
    "Status",
]

JSON = dict[str, Any]

TOKEN = "ghp_fakeOpsgateBotToken000000000000000"
BOT_LOGIN = "opsgate-bot"
DOCS = "https://docs.github.com/rest"
PREFIX = "/api/v3"
_MODE = "100644"
_PASSING = ("success", "neutral", "skipped")
_NOT_MERGEABLE = "Pull Request is not mergeable"
_HEAD_MODIFIED = "Head branch was modified. Review and try the merge again."
_METHOD_REFUSED = {
    "merge": "Merge commits are not allowed on this repository.",
    "squash": "Squash merges are not allowed on this repository.",
    "rebase": "Rebase merges are not allowed on this repository.",
}
_PRIMARY_LIMIT = (
    "API rate limit exceeded for user ID 1. If you reach out to GitHub Support for help, "
    "please include the request ID."
)
_SECONDARY_LIMIT = (
    "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."
)


class _HttpError(Exception):
    """A refusal: GitHub's status, `message`, and for 422s an `errors` list."""

    def __init__(
        self, status: int, message: str, *, errors: list[Any] | None = None, docs: str = DOCS
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body: JSON = {"message": message, "documentation_url": docs, "status": str(status)}
        if errors is not None:
            self.body["errors"] = errors


def _not_found() -> _HttpError:
    return _HttpError(404, "Not Found")


def _invalid(resource: str, field_name: str, code: str = "invalid") -> _HttpError:
    error = {"resource": resource, "field": field_name, "code": code}
    return _HttpError(422, "Validation Failed", errors=[error])


def _custom(resource: str, message: str) -> _HttpError:
    error = {"resource": resource, "code": "custom", "message": message}
    return _HttpError(422, "Validation Failed", errors=[error])


# -- the object model ------------------------------------------------------------------------


@dataclass
class Commit:
    sha: str
    tree: str
    parents: tuple[str, ...]
    message: str
    author: str
    date: str


@dataclass
class Status:
    id: int
    context: str
    state: str  # error | failure | pending | success
    description: str
    target_url: str | None
    creator: str
    created_at: str


@dataclass
class CheckRun:
    id: int
    name: str
    head_sha: str
    status: str  # queued | in_progress | completed
    conclusion: str | None  # success | failure | neutral | cancelled | skipped | timed_out | ...
    started_at: str


@dataclass
class Review:
    id: int
    user: str
    state: str  # APPROVED | CHANGES_REQUESTED | COMMENTED | PENDING | DISMISSED
    body: str
    commit_id: str
    submitted_at: str


@dataclass
class Comment:
    id: int
    user: str
    body: str
    created_at: str


@dataclass
class Protection:
    """Classic branch protection: what GitHub checks before it lets a pull request merge."""

    required_approvals: int = 0
    contexts: tuple[str, ...] = ()
    strict: bool = False
    dismiss_stale_reviews: bool = False


@dataclass
class Pull:
    number: int
    title: str
    body: str | None
    head: str
    base: str
    user: str
    head_sha: str
    created_at: str
    updated_at: str
    state: str = "open"
    draft: bool = False
    merged: bool = False
    merged_at: str | None = None
    merged_by: str | None = None
    merge_commit_sha: str | None = None
    closed_at: str | None = None
    labels: list[str] = field(default_factory=list)
    reviews: list[Review] = field(default_factory=list)
    comments: list[Comment] = field(default_factory=list)
    # GitHub computes mergeability in the background: this many GETs answer `mergeable: null`.
    mergeable_pending: int = 0


@dataclass
class Repo:
    owner: str
    name: str
    id: int
    default_branch: str = "main"
    private: bool = True
    refs: dict[str, str] = field(default_factory=dict)  # "heads/main" -> commit sha
    commits: dict[str, Commit] = field(default_factory=dict)
    trees: dict[str, dict[str, str]] = field(default_factory=dict)  # tree sha -> path -> blob
    blobs: dict[str, bytes] = field(default_factory=dict)
    pulls: dict[int, Pull] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)  # name -> colour
    statuses: dict[str, list[Status]] = field(default_factory=dict)
    check_runs: dict[str, list[CheckRun]] = field(default_factory=dict)
    protection: dict[str, Protection] = field(default_factory=dict)
    merge_methods: set[str] = field(default_factory=lambda: {"merge", "squash", "rebase"})
    next_number: int = 1

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"

    # -- reading ---------------------------------------------------------------------------

    def branch(self, name: str) -> str | None:
        return self.refs.get(f"heads/{name}")

    def resolve(self, ref: str) -> str | None:
        """A branch, tag, `heads/x`, `refs/heads/x`, a full sha or an unambiguous prefix."""
        name = ref.removeprefix("refs/")
        for key in (name, f"heads/{name}", f"tags/{name}"):
            if key in self.refs:
                return self.refs[key]
        if name in self.commits:
            return name
        if len(name) >= 7 and re.fullmatch(r"[0-9a-f]+", name):
            found = [sha for sha in self.commits if sha.startswith(name)]
            if len(found) == 1:
                return found[0]
        return None

    def tree_at(self, ref: str) -> dict[str, str]:
        sha = self.resolve(ref)
        return dict(self.trees[self.commits[sha].tree]) if sha else {}

    def file(self, path: str, ref: str | None = None) -> str | None:
        """A file's text at `ref` (default: the default branch), None when absent."""
        blob = self.tree_at(ref or self.default_branch).get(path)
        return None if blob is None else self.blobs[blob].decode("utf-8")

    def log(self, ref: str | None = None) -> list[Commit]:
        """First-parent history, newest first."""
        out: list[Commit] = []
        sha = self.resolve(ref or self.default_branch)
        while sha is not None:
            commit = self.commits[sha]
            out.append(commit)
            sha = commit.parents[0] if commit.parents else None
        return out

    def ancestors(self, sha: str) -> list[str]:
        """`sha` and everything before it, nearest first."""
        seen: dict[str, None] = {}
        queue = [sha]
        while queue:
            current = queue.pop(0)
            if current in seen or current not in self.commits:
                continue
            seen[current] = None
            queue.extend(self.commits[current].parents)
        return list(seen)

    def is_ancestor(self, older: str, newer: str) -> bool:
        return older in self.ancestors(newer)

    def merge_base(self, a: str, b: str) -> str | None:
        mine = set(self.ancestors(a))
        return next((sha for sha in self.ancestors(b) if sha in mine), None)

    # -- writing ---------------------------------------------------------------------------

    def store_blob(self, data: bytes) -> str:
        sha = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        self.blobs[sha] = data
        return sha

    def store_tree(self, entries: Mapping[str, str]) -> str:
        lines = "".join(f"{_MODE} {path}\0{blob}\n" for path, blob in sorted(entries.items()))
        sha = hashlib.sha1(b"tree " + lines.encode()).hexdigest()
        self.trees[sha] = dict(entries)
        return sha

    def store_commit(
        self, tree: str, parents: Iterable[str], message: str, *, author: str, date: str, seq: int
    ) -> str:
        parents = tuple(parents)
        text = f"tree {tree}\nparents {' '.join(parents)}\nauthor {author} {date} {seq}\n\n"
        sha = hashlib.sha1((text + message).encode()).hexdigest()
        self.commits[sha] = Commit(sha, tree, parents, message, author, date)
        return sha

    def tree_with(self, base: Mapping[str, str], files: Mapping[str, str | None]) -> str:
        entries = dict(base)
        for path, text in files.items():
            if text is None:
                entries.pop(path, None)
            else:
                entries[path] = self.store_blob(text.encode("utf-8"))
        return self.store_tree(entries)


def merge_trees(
    base: Mapping[str, str], ours: Mapping[str, str], theirs: Mapping[str, str]
) -> tuple[dict[str, str], list[str]]:
    """A three-way merge of flat trees: the result and the paths both sides changed apart."""
    result = dict(ours)
    conflicts: list[str] = []
    for path in sorted(set(base) | set(ours) | set(theirs)):
        old, mine, other = base.get(path), ours.get(path), theirs.get(path)
        if other in (mine, old):
            continue
        if mine == old:
            if other is None:
                result.pop(path, None)
            else:
                result[path] = other
        else:
            conflicts.append(path)
    return result, conflicts


# -- test-side records ---------------------------------------------------------------------


@dataclass
class Call:
    """One request as the fake received it; `path` is without the `/api/v3` prefix."""

    method: str
    path: str
    query: dict[str, str]
    body: Any
    login: str | None
    status: int = 0


@dataclass
class _Token:
    login: str
    write: bool


@dataclass
class _Fault:
    status: int  # 0: drop the connection without answering
    body: JSON
    headers: dict[str, str]
    times: int
    method: str | None
    path: re.Pattern[str] | None
    after: bool  # handle the request first: the change happens, the answer is lost


@dataclass
class _Req:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    login: str
    write: bool
    params: dict[str, str]
    out_headers: dict[str, str] = field(default_factory=dict)


_Handler = Callable[[_Req, Repo], tuple[int, Any]]
_R = r"/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)"


class FakeGitHub(Loopback):
    """GitHub's REST API for a few repositories, served on 127.0.0.1 until `stop()`."""

    def __init__(
        self,
        *,
        token: str = TOKEN,
        login: str = BOT_LOGIN,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        self.token = token
        self.login = login
        self.repos: dict[str, Repo] = {}
        self.calls: list[Call] = []
        self.tokens: dict[str, _Token] = {token: _Token(login, write=True)}
        self.faults: list[_Fault] = []
        self.lock = threading.RLock()
        self._now = now or (lambda: datetime.now(UTC))
        self._ids = itertools.count(1000)
        self._seq = itertools.count(1)
        self._user_ids: dict[str, int] = {}
        self._routes: list[tuple[str, re.Pattern[str], _Handler]] = [
            (m, re.compile(f"{_R}{p}$"), h)
            for m, p, h in [
                ("GET", "", self._get_repo),
                ("GET", "/git/ref/(?P<ref>.+)", self._get_ref),
                ("GET", "/git/refs/(?P<ref>.+)", self._get_ref),
                ("POST", "/git/refs", self._create_ref),
                ("PATCH", "/git/refs/(?P<ref>.+)", self._update_ref),
                ("DELETE", "/git/refs/(?P<ref>.+)", self._delete_ref),
                ("POST", "/git/blobs", self._create_blob),
                ("GET", "/git/blobs/(?P<sha>[0-9a-f]+)", self._get_blob),
                ("POST", "/git/trees", self._create_tree),
                ("GET", "/git/trees/(?P<sha>[0-9a-f]+)", self._get_tree),
                ("POST", "/git/commits", self._create_git_commit),
                ("GET", "/git/commits/(?P<sha>[0-9a-f]+)", self._get_git_commit),
                ("GET", "/contents/(?P<path>.+)", self._get_contents),
                ("PUT", "/contents/(?P<path>.+)", self._put_contents),
                ("GET", "/commits/(?P<ref>.+)/status", self._combined_status),
                ("GET", "/commits/(?P<ref>.+)/check-runs", self._list_check_runs),
                ("GET", "/commits/(?P<ref>.+)", self._get_commit),
                ("POST", "/statuses/(?P<sha>[0-9a-f]+)", self._create_status),
                ("GET", "/statuses/(?P<sha>[0-9a-f]+)", self._list_statuses),
                ("POST", "/check-runs", self._create_check_run),
                ("GET", r"/compare/(?P<base>.+?)\.\.\.(?P<head>.+)", self._compare),
                ("GET", "/branches/(?P<branch>.+)/protection", self._get_protection),
                ("GET", "/branches/(?P<branch>.+)", self._get_branch),
                ("GET", "/pulls", self._list_pulls),
                ("POST", "/pulls", self._create_pull),
                ("GET", r"/pulls/(?P<number>\d+)", self._get_pull),
                ("PATCH", r"/pulls/(?P<number>\d+)", self._update_pull),
                ("GET", r"/pulls/(?P<number>\d+)/merge", self._is_merged),
                ("PUT", r"/pulls/(?P<number>\d+)/merge", self._merge_pull),
                ("GET", r"/pulls/(?P<number>\d+)/reviews", self._list_reviews),
                ("POST", r"/pulls/(?P<number>\d+)/reviews", self._create_review),
                ("GET", r"/issues/(?P<number>\d+)/comments", self._list_comments),
                ("POST", r"/issues/(?P<number>\d+)/comments", self._create_comment),
                ("GET", r"/issues/(?P<number>\d+)/labels", self._list_labels),
                ("POST", r"/issues/(?P<number>\d+)/labels", self._add_labels),
                ("DELETE", r"/issues/(?P<number>\d+)/labels/(?P<name>.+)", self._remove_label),
            ]
        ]
        self._serve(_Server(self))

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def api_url(self) -> str:
        """The REST API root to give PyGithub as `base_url`, GitHub Enterprise style."""
        return f"{self.url}{PREFIX}"

    # -- seeding and outside changes ---------------------------------------------------------

    def create_repo(
        self,
        full_name: str,
        *,
        files: Mapping[str, str] | None = None,
        default_branch: str = "main",
        private: bool = True,
    ) -> Repo:
        """A repository whose default branch holds one commit with `files`."""
        owner, name = full_name.split("/")
        with self.lock:
            repo = Repo(owner, name, next(self._ids), default_branch, private)
            self.repos[full_name] = repo
            tree = repo.tree_with({}, dict(files or {}))
            sha = self._store_commit(repo, tree, (), "Initial commit", author=owner)
            repo.refs[f"heads/{default_branch}"] = sha
            return repo

    def add_token(self, token: str, login: str, *, write: bool = True) -> None:
        """Let `token` act as `login`; without `write`, every write answers 403."""
        with self.lock:
            self.tokens[token] = _Token(login, write)

    def push(
        self,
        repo: str,
        branch: str,
        files: Mapping[str, str | None],
        *,
        message: str = "Change made outside opsgate",
        author: str = "mallory",
        start_from: str | None = None,
    ) -> str:
        """Commit `files` (None deletes) on `branch`, as a person pushing; returns the commit.

        A missing branch is created from `start_from` (default: the default branch)."""
        with self.lock:
            target = self.repos[repo]
            parent = target.branch(branch) or target.resolve(start_from or target.default_branch)
            assert parent is not None, f"nothing to start {branch} from"
            tree = target.tree_with(target.tree_at(parent), files)
            sha = self._store_commit(target, tree, (parent,), message, author=author)
            self._set_ref(target, f"heads/{branch}", sha)
            return sha

    def merge_pull(
        self, repo: str, number: int, *, by: str = "carol", method: str = "merge"
    ) -> str:
        """Merge a pull request as an admin would in the web UI: protection is bypassed."""
        with self.lock:
            target = self.repos[repo]
            pull = target.pulls[number]
            assert pull.state == "open", f"#{number} is {pull.state}"
            return self._do_merge(target, pull, method=method, by=by, title=None, message=None)

    def close_pull(self, repo: str, number: int, *, by: str = "carol") -> None:
        """Close a pull request without merging, as a person in the web UI."""
        with self.lock:
            pull = self.repos[repo].pulls[number]
            pull.state, pull.closed_at = "closed", self._stamp()
            pull.comments.append(Comment(next(self._ids), by, "Closed by hand", pull.closed_at))

    def approve(
        self, repo: str, number: int, *, by: str = "alice", body: str = "", state: str = "APPROVED"
    ) -> Review:
        """A review by a person with write access, on the pull request's current head."""
        with self.lock:
            pull = self.repos[repo].pulls[number]
            review = Review(next(self._ids), by, state, body, pull.head_sha, self._stamp())
            pull.reviews.append(review)
            return review

    def set_status(
        self, repo: str, ref: str, context: str, state: str, *, description: str = ""
    ) -> Status:
        """A commit status, as CI reports it (`success`, `failure`, `error`, `pending`)."""
        with self.lock:
            target = self.repos[repo]
            sha = target.resolve(ref)
            assert sha is not None, f"unknown ref {ref}"
            status = Status(
                next(self._ids), context, state, description, None, "ci-bot", self._stamp()
            )
            target.statuses.setdefault(sha, []).append(status)
            return status

    def add_check_run(
        self,
        repo: str,
        ref: str,
        name: str,
        *,
        status: str = "completed",
        conclusion: str | None = "success",
    ) -> CheckRun:
        with self.lock:
            target = self.repos[repo]
            sha = target.resolve(ref)
            assert sha is not None, f"unknown ref {ref}"
            run = CheckRun(next(self._ids), name, sha, status, conclusion, self._stamp())
            target.check_runs.setdefault(sha, []).append(run)
            return run

    def protect(
        self,
        repo: str,
        branch: str,
        *,
        required_approvals: int = 0,
        contexts: Iterable[str] = (),
        strict: bool = False,
        dismiss_stale_reviews: bool = False,
    ) -> None:
        with self.lock:
            self.repos[repo].protection[branch] = Protection(
                required_approvals, tuple(contexts), strict, dismiss_stale_reviews
            )

    # -- faults ------------------------------------------------------------------------------

    def fail_next(
        self,
        status: int = 502,
        *,
        times: int = 1,
        method: str | None = None,
        path: str | None = None,
        message: str = "Server Error",
        headers: Mapping[str, str] | None = None,
        after_handling: bool = False,
    ) -> None:
        """The next `times` matching calls answer `status` (`path`: a regex searched in it).

        With `after_handling` the fake does what was asked first, as when GitHub made the
        change but the answer was lost on the way back."""
        body = {"message": message, "documentation_url": DOCS}
        self._add_fault(status, body, dict(headers or {}), times, method, path, after_handling)

    def rate_limit_next(
        self,
        *,
        reset_at: int,
        times: int = 1,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        """The primary rate limit: 403, `X-RateLimit-Remaining: 0`, reset at epoch `reset_at`."""
        headers = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset_at)}
        body = {"message": _PRIMARY_LIMIT, "documentation_url": f"{DOCS}/rate-limit"}
        self._add_fault(403, body, headers, times, method, path)

    def throttle_next(
        self,
        *,
        retry_after: int,
        status: int = 429,
        times: int = 1,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        """A secondary rate limit: 429 (or 403) with `Retry-After` in seconds."""
        body = {"message": _SECONDARY_LIMIT, "documentation_url": f"{DOCS}/rate-limit"}
        self._add_fault(status, body, {"Retry-After": str(retry_after)}, times, method, path)

    def drop_next(
        self,
        *,
        times: int = 1,
        method: str | None = None,
        path: str | None = None,
        after_handling: bool = False,
    ) -> None:
        """Close the connection without answering, as a network failure would."""
        self._add_fault(0, {}, {}, times, method, path, after_handling)

    def _add_fault(
        self,
        status: int,
        body: JSON,
        headers: dict[str, str],
        times: int,
        method: str | None,
        path: str | None,
        after: bool = False,
    ) -> None:
        pattern = re.compile(path) if path is not None else None
        with self.lock:
            self.faults.append(_Fault(status, body, headers, times, method, pattern, after))

    # -- inspection --------------------------------------------------------------------------

    def repo(self, full_name: str) -> Repo:
        with self.lock:
            return self.repos[full_name]

    def calls_to(self, method: str, path: str) -> list[Call]:
        """Calls with this method whose path matches the regex `path` (searched)."""
        with self.lock:
            return [c for c in self.calls if c.method == method and re.search(path, c.path)]

    def writes(self) -> list[Call]:
        with self.lock:
            return [c for c in self.calls if c.method != "GET"]

    def pulls_for(self, repo: str, branch: str) -> list[Pull]:
        with self.lock:
            return [p for p in self.repos[repo].pulls.values() if p.head == branch]

    # -- plumbing ----------------------------------------------------------------------------

    def _stamp(self) -> str:
        return self._now().strftime("%Y-%m-%dT%H:%M:%SZ")

    def _store_commit(
        self, repo: Repo, tree: str, parents: Iterable[str], message: str, *, author: str
    ) -> str:
        stamp = self._stamp()
        return repo.store_commit(
            tree, parents, message, author=author, date=stamp, seq=next(self._seq)
        )

    def _set_ref(self, repo: Repo, ref: str, sha: str | None) -> None:
        """Move (or with None delete) a ref; open pulls follow their head branch, as on GitHub."""
        if sha is None:
            repo.refs.pop(ref, None)
        else:
            repo.refs[ref] = sha
        branch = ref.removeprefix("heads/")
        for pull in repo.pulls.values():
            if pull.state != "open" or pull.head != branch:
                continue
            if sha is None:  # deleting the head branch closes its pull request
                pull.state, pull.closed_at = "closed", self._stamp()
                continue
            pull.head_sha, pull.updated_at = sha, self._stamp()
            protection = repo.protection.get(pull.base)
            if protection is not None and protection.dismiss_stale_reviews:
                for review in pull.reviews:
                    if review.state == "APPROVED" and review.commit_id != sha:
                        review.state = "DISMISSED"

    def _user_json(self, login: str) -> JSON:
        uid = self._user_ids.setdefault(login, len(self._user_ids) + 1)
        return {
            "login": login,
            "id": uid,
            "node_id": f"U_{uid}",
            "type": "Bot" if login.endswith("[bot]") else "User",
            "site_admin": False,
            "url": f"{self.api_url}/users/{login}",
            "html_url": f"{self.url}/{login}",
            "avatar_url": f"{self.url}/avatars/{login}",
        }

    def _repo_url(self, repo: Repo) -> str:
        return f"{self.api_url}/repos/{repo.full_name}"

    def _repo_json(self, repo: Repo, *, write: bool = True) -> JSON:
        url = self._repo_url(repo)
        return {
            "id": repo.id,
            "node_id": f"R_{repo.id}",
            "name": repo.name,
            "full_name": repo.full_name,
            "private": repo.private,
            "visibility": "private" if repo.private else "public",
            "owner": self._user_json(repo.owner) | {"type": "Organization"},
            "html_url": f"{self.url}/{repo.full_name}",
            "description": None,
            "fork": False,
            "url": url,
            "default_branch": repo.default_branch,
            "allow_merge_commit": "merge" in repo.merge_methods,
            "allow_squash_merge": "squash" in repo.merge_methods,
            "allow_rebase_merge": "rebase" in repo.merge_methods,
            "delete_branch_on_merge": False,
            "permissions": {"admin": False, "maintain": False, "push": write, "pull": True},
            "pulls_url": f"{url}/pulls{{/number}}",
            "git_refs_url": f"{url}/git/refs{{/sha}}",
            "contents_url": f"{url}/contents/{{+path}}",
            "created_at": "2024-01-01T00:00:00Z",
            "updated_at": self._stamp(),
            "pushed_at": self._stamp(),
        }

    def _ref_json(self, repo: Repo, ref: str, sha: str) -> JSON:
        url = self._repo_url(repo)
        return {
            "ref": f"refs/{ref}",
            "node_id": f"REF_{hashlib.sha1(ref.encode()).hexdigest()[:12]}",
            "url": f"{url}/git/refs/{quote(ref)}",
            "object": {"sha": sha, "type": "commit", "url": f"{url}/git/commits/{sha}"},
        }

    def _git_commit_json(self, repo: Repo, commit: Commit) -> JSON:
        url = self._repo_url(repo)
        person = {"name": commit.author, "email": f"{commit.author}@example.com"}
        return {
            "sha": commit.sha,
            "node_id": f"C_{commit.sha[:12]}",
            "url": f"{url}/git/commits/{commit.sha}",
            "html_url": f"{self.url}/{repo.full_name}/commit/{commit.sha}",
            "author": person | {"date": commit.date},
            "committer": person | {"date": commit.date},
            "message": commit.message,
            "tree": {"sha": commit.tree, "url": f"{url}/git/trees/{commit.tree}"},
            "parents": [
                {
                    "sha": p,
                    "url": f"{url}/git/commits/{p}",
                    "html_url": f"{self.url}/{repo.full_name}/commit/{p}",
                }
                for p in commit.parents
            ],
            "verification": {
                "verified": False,
                "reason": "unsigned",
                "signature": None,
                "payload": None,
            },
        }

    def _commit_json(self, repo: Repo, commit: Commit) -> JSON:
        url = self._repo_url(repo)
        git = self._git_commit_json(repo, commit)
        git.pop("sha")
        git.pop("node_id")
        git.pop("parents")
        git["comment_count"] = 0
        return {
            "sha": commit.sha,
            "node_id": f"C_{commit.sha[:12]}",
            "url": f"{url}/commits/{commit.sha}",
            "html_url": f"{self.url}/{repo.full_name}/commit/{commit.sha}",
            "comments_url": f"{url}/commits/{commit.sha}/comments",
            "commit": git,
            "author": self._user_json(commit.author),
            "committer": self._user_json(commit.author),
            "parents": [
                {"sha": p, "url": f"{url}/commits/{p}", "html_url": f"{self.url}/c/{p}"}
                for p in commit.parents
            ],
        }

    def _pull_json(self, repo: Repo, pull: Pull, *, full: bool) -> JSON:
        url = self._repo_url(repo)
        html = f"{self.url}/{repo.full_name}/pull/{pull.number}"
        base_sha = repo.branch(pull.base) or ""
        repo_json = self._repo_json(repo)

        def side(branch: str, sha: str) -> JSON:
            return {
                "label": f"{repo.owner}:{branch}",
                "ref": branch,
                "sha": sha,
                "user": self._user_json(repo.owner),
                "repo": repo_json,
            }

        out: JSON = {
            "url": f"{url}/pulls/{pull.number}",
            "id": 500_000 + pull.number,
            "node_id": f"PR_{pull.number}",
            "html_url": html,
            "diff_url": f"{html}.diff",
            "patch_url": f"{html}.patch",
            "issue_url": f"{url}/issues/{pull.number}",
            "commits_url": f"{url}/pulls/{pull.number}/commits",
            "review_comments_url": f"{url}/pulls/{pull.number}/comments",
            "comments_url": f"{url}/issues/{pull.number}/comments",
            "statuses_url": f"{url}/statuses/{pull.head_sha}",
            "number": pull.number,
            "state": pull.state,
            "locked": False,
            "title": pull.title,
            "user": self._user_json(pull.user),
            "body": pull.body,
            "labels": [self._label_json(repo, name) for name in pull.labels],
            "milestone": None,
            "created_at": pull.created_at,
            "updated_at": pull.updated_at,
            "closed_at": pull.closed_at,
            "merged_at": pull.merged_at,
            "merge_commit_sha": pull.merge_commit_sha,
            "assignee": None,
            "assignees": [],
            "requested_reviewers": [],
            "head": side(pull.head, pull.head_sha),
            "base": side(pull.base, base_sha),
            "_links": {"self": {"href": f"{url}/pulls/{pull.number}"}, "html": {"href": html}},
            "author_association": "MEMBER",
            "draft": pull.draft,
        }
        if full:
            mergeable, state, _ = self._mergeability(repo, pull)
            if pull.mergeable_pending > 0:
                pull.mergeable_pending -= 1
                mergeable, state = None, "unknown"
            out |= {
                "merged": pull.merged,
                "mergeable": mergeable,
                "rebaseable": mergeable,
                "mergeable_state": state,
                "merged_by": self._user_json(pull.merged_by) if pull.merged_by else None,
                "comments": len(pull.comments),
                "review_comments": 0,
                "maintainer_can_modify": False,
                "commits": len(repo.ancestors(pull.head_sha)) - len(repo.ancestors(base_sha))
                if base_sha
                else 1,
                "additions": 0,
                "deletions": 0,
                "changed_files": len(self._changed(repo, base_sha, pull.head_sha)),
            }
        return out

    def _review_json(self, repo: Repo, pull: Pull, review: Review) -> JSON:
        pull_url = f"{self._repo_url(repo)}/pulls/{pull.number}"
        html = f"{self.url}/{repo.full_name}/pull/{pull.number}#pullrequestreview-{review.id}"
        return {
            "id": review.id,
            "node_id": f"PRR_{review.id}",
            "user": self._user_json(review.user),
            "body": review.body,
            "state": review.state,
            "html_url": html,
            "pull_request_url": pull_url,
            "author_association": "MEMBER",
            "_links": {"html": {"href": html}, "pull_request": {"href": pull_url}},
            "submitted_at": review.submitted_at,
            "commit_id": review.commit_id,
        }

    def _comment_json(self, repo: Repo, pull: Pull, comment: Comment) -> JSON:
        url = self._repo_url(repo)
        return {
            "id": comment.id,
            "node_id": f"IC_{comment.id}",
            "url": f"{url}/issues/comments/{comment.id}",
            "html_url": f"{self.url}/{repo.full_name}/pull/{pull.number}#issuecomment-{comment.id}",
            "issue_url": f"{url}/issues/{pull.number}",
            "body": comment.body,
            "user": self._user_json(comment.user),
            "created_at": comment.created_at,
            "updated_at": comment.created_at,
            "author_association": "MEMBER",
        }

    def _label_json(self, repo: Repo, name: str) -> JSON:
        digest = int(hashlib.sha1(name.encode()).hexdigest()[:8], 16)
        return {
            "id": digest,
            "node_id": f"LA_{digest}",
            "url": f"{self._repo_url(repo)}/labels/{quote(name)}",
            "name": name,
            "color": repo.labels.get(name, "ededed"),
            "default": False,
            "description": None,
        }

    def _status_json(self, repo: Repo, sha: str, status: Status) -> JSON:
        return {
            "url": f"{self._repo_url(repo)}/statuses/{sha}",
            "id": status.id,
            "node_id": f"SC_{status.id}",
            "state": status.state,
            "description": status.description,
            "target_url": status.target_url,
            "context": status.context,
            "created_at": status.created_at,
            "updated_at": status.created_at,
            "creator": self._user_json(status.creator),
        }

    def _check_json(self, repo: Repo, run: CheckRun) -> JSON:
        return {
            "id": run.id,
            "node_id": f"CR_{run.id}",
            "head_sha": run.head_sha,
            "external_id": "",
            "url": f"{self._repo_url(repo)}/check-runs/{run.id}",
            "html_url": f"{self.url}/{repo.full_name}/runs/{run.id}",
            "details_url": None,
            "status": run.status,
            "conclusion": run.conclusion,
            "started_at": run.started_at,
            "completed_at": run.started_at if run.status == "completed" else None,
            "name": run.name,
            "output": {"title": None, "summary": None, "text": None, "annotations_count": 0},
            "pull_requests": [],
        }

    def _content_json(self, repo: Repo, path: str, ref: str, blob: str | None) -> JSON:
        url = self._repo_url(repo)
        html = f"{self.url}/{repo.full_name}/{'blob' if blob else 'tree'}/{ref}/{path}"
        api = f"{url}/contents/{quote(path)}?ref={quote(ref)}"
        out: JSON = {
            "type": "file" if blob else "dir",
            "name": path.rsplit("/", 1)[-1],
            "path": path,
            "sha": blob or hashlib.sha1(f"{ref}:{path}".encode()).hexdigest(),
            "size": len(repo.blobs[blob]) if blob else 0,
            "url": api,
            "html_url": html,
            "git_url": f"{url}/git/{'blobs' if blob else 'trees'}/{blob}",
            "download_url": f"{self.url}/raw/{repo.full_name}/{ref}/{path}" if blob else None,
            "_links": {"self": api, "git": f"{url}/git/blobs/{blob}", "html": html},
        }
        return out

    def _changed(self, repo: Repo, base: str, head: str) -> list[str]:
        old, new = repo.tree_at(base) if base else {}, repo.tree_at(head)
        return sorted(p for p in set(old) | set(new) if old.get(p) != new.get(p))

    def _page(self, req: _Req, items: list[Any]) -> list[Any]:
        """One page of `items` (`per_page`, `page`), with GitHub's `Link` header."""
        per_page = max(1, min(int(req.query.get("per_page", "30")), 100))
        page = max(1, int(req.query.get("page", "1")))
        last = max(1, -(-len(items) // per_page))

        def link(n: int) -> str:
            query = urlencode(req.query | {"page": str(n), "per_page": str(per_page)})
            return f"<{self.api_url}{req.path}?{query}>"

        rels = [(page + 1, "next"), (last, "last")] if page < last else []
        rels += [(page - 1, "prev"), (1, "first")] if page > 1 else []
        if rels:
            req.out_headers["Link"] = ", ".join(f'{link(n)}; rel="{rel}"' for n, rel in rels)
        return items[(page - 1) * per_page : page * per_page]

    # -- merge rules -------------------------------------------------------------------------

    def _check_state(self, repo: Repo, sha: str, context: str) -> str | None:
        """success | pending | failure for a required context, None when nothing reported it."""
        latest = [s for s in repo.statuses.get(sha, []) if s.context == context][-1:]
        runs = [r for r in repo.check_runs.get(sha, []) if r.name == context][-1:]
        for status in latest:
            return {"error": "failure"}.get(status.state, status.state)
        for run in runs:
            if run.status != "completed":
                return "pending"
            return "success" if run.conclusion in ("success", "neutral", "skipped") else "failure"
        return None

    def _approvals(self, repo: Repo, pull: Pull) -> int:
        latest: dict[str, Review] = {}
        for review in pull.reviews:
            if review.state in ("APPROVED", "CHANGES_REQUESTED"):
                latest[review.user] = review
        protection = repo.protection.get(pull.base)
        stale_ok = protection is None or not protection.dismiss_stale_reviews
        return sum(
            1
            for r in latest.values()
            if r.state == "APPROVED" and (stale_ok or r.commit_id == pull.head_sha)
        )

    def _blockers(self, repo: Repo, pull: Pull) -> list[str]:
        """Why branch protection refuses the merge, in GitHub's words; empty when it allows."""
        protection = repo.protection.get(pull.base)
        if protection is None:
            return []
        out: list[str] = []
        need = protection.required_approvals
        if need and self._approvals(repo, pull) < need:
            noun = "approving review is" if need == 1 else "approving reviews are"
            out.append(f"At least {need} {noun} required by reviewers with write access.")
        for context in protection.contexts:
            state = self._check_state(repo, pull.head_sha, context)
            if state in (None, "pending"):
                out.append(f'Required status check "{context}" is expected.')
            elif state == "failure":
                out.append(f'Required status check "{context}" is failing.')
        base_sha = repo.branch(pull.base)
        if protection.strict and base_sha and not repo.is_ancestor(base_sha, pull.head_sha):
            out.append("Head branch is out of date. Review and try the merge again.")
        return out

    def _mergeability(self, repo: Repo, pull: Pull) -> tuple[bool | None, str, list[str]]:
        """(`mergeable`, `mergeable_state`, blockers) as GitHub reports them for an open pull."""
        if pull.state != "open":
            return None, "unknown", []
        base_sha = repo.branch(pull.base)
        if base_sha is None:
            return False, "dirty", [_NOT_MERGEABLE]
        merge_base = repo.merge_base(base_sha, pull.head_sha)
        _, conflicts = merge_trees(
            repo.tree_at(merge_base) if merge_base else {},
            repo.tree_at(base_sha),
            repo.tree_at(pull.head_sha),
        )
        if conflicts:
            return False, "dirty", [_NOT_MERGEABLE]
        if pull.draft:
            return True, "draft", [_NOT_MERGEABLE]
        blockers = self._blockers(repo, pull)
        if blockers:
            protection = repo.protection[pull.base]
            only_behind = protection.strict and len(blockers) == 1 and "out of date" in blockers[0]
            return True, "behind" if only_behind else "blocked", blockers
        latest = {s.context: s.state for s in repo.statuses.get(pull.head_sha, [])}
        for run in repo.check_runs.get(pull.head_sha, []):
            latest[run.name] = (run.conclusion or "failure") if run.status == "completed" else ""
        failing = [c for c, state in latest.items() if state not in _PASSING]
        return True, "unstable" if failing else "clean", []

    def _do_merge(
        self,
        repo: Repo,
        pull: Pull,
        *,
        method: str,
        by: str,
        title: str | None,
        message: str | None,
    ) -> str:
        base_sha = repo.branch(pull.base)
        assert base_sha is not None
        merge_base = repo.merge_base(base_sha, pull.head_sha)
        base_tree = repo.tree_at(merge_base) if merge_base else {}
        if method == "rebase":
            sha = base_sha
            shared = set(repo.ancestors(merge_base)) if merge_base else set()
            for commit in reversed([c for c in repo.log(pull.head_sha) if c.sha not in shared]):
                parent_tree = repo.tree_at(commit.parents[0]) if commit.parents else {}
                entries, _ = merge_trees(parent_tree, repo.tree_at(sha), repo.tree_at(commit.sha))
                tree = repo.store_tree(entries)
                sha = self._store_commit(repo, tree, (sha,), commit.message, author=commit.author)
        else:
            entries, conflicts = merge_trees(
                base_tree, repo.tree_at(base_sha), repo.tree_at(pull.head_sha)
            )
            assert not conflicts, conflicts
            tree = repo.store_tree(entries)
            if method == "squash":
                head = title or f"{pull.title} (#{pull.number})"
                parents: tuple[str, ...] = (base_sha,)
            else:
                head = title or f"Merge pull request #{pull.number} from {repo.owner}/{pull.head}"
                parents = (base_sha, pull.head_sha)
            body = pull.title if message is None and method == "merge" else message or ""
            text = f"{head}\n\n{body}".rstrip() + "\n"
            sha = self._store_commit(repo, tree, parents, text, author=by)
        self._set_ref(repo, f"heads/{pull.base}", sha)
        stamp = self._stamp()
        pull.state, pull.merged, pull.merged_at, pull.closed_at = "closed", True, stamp, stamp
        pull.merged_by, pull.merge_commit_sha, pull.updated_at = by, sha, stamp
        return sha

    # -- the HTTP side -----------------------------------------------------------------------

    def _dispatch(
        self, method: str, raw_path: str, headers: Mapping[str, str], raw_body: bytes
    ) -> tuple[int, dict[str, str], bytes] | None:
        split = urlsplit(raw_path)
        path = unquote(split.path)
        rel = path.removeprefix(PREFIX)
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        try:
            body = json.loads(raw_body) if raw_body else None
        except ValueError:
            body = raw_body.decode("utf-8", errors="replace")
        with self.lock:
            sent, token = self._token(headers)
            call = Call(method, rel, query, body, token.login if token else None)
            self.calls.append(call)
            out = {"Content-Type": "application/json; charset=utf-8"}
            out |= {
                "X-RateLimit-Limit": "5000",
                "X-RateLimit-Remaining": str(max(0, 5000 - len(self.calls))),
                "X-RateLimit-Reset": str(int(self._now().timestamp()) + 3600),
                "X-RateLimit-Resource": "core",
                "X-GitHub-Request-Id": f"FAKE:{len(self.calls):06d}",
            }
            fault = self._take_fault(method, rel)
            if fault is not None and fault.after and token is not None:
                with contextlib.suppress(_HttpError):
                    self._route(method, rel, query, body, token, {})
            if fault is not None:
                call.status = fault.status
                if fault.status == 0:
                    return None
                payload = json.dumps(fault.body).encode()
                return fault.status, out | fault.headers, payload
            try:
                if not path.startswith(PREFIX + "/"):
                    raise _not_found()
                if token is None:
                    raise _HttpError(401, "Bad credentials" if sent else "Requires authentication")
                status, answer = self._route(method, rel, query, body, token, out)
            except _HttpError as e:
                status, answer = e.status, e.body
            call.status = status
            payload = b"" if status == 204 else json.dumps(answer).encode()
            return status, out, payload

    def _token(self, headers: Mapping[str, str]) -> tuple[bool, _Token | None]:
        """Whether credentials were sent, and whose they are."""
        value = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
        scheme, _, secret = value.partition(" ")
        if scheme.lower() not in ("token", "bearer"):
            return bool(value), None
        return True, self.tokens.get(secret.strip())

    def _take_fault(self, method: str, path: str) -> _Fault | None:
        for fault in self.faults:
            if fault.method not in (None, method):
                continue
            if fault.path is not None and not fault.path.search(path):
                continue
            fault.times -= 1
            if fault.times <= 0:
                self.faults.remove(fault)
            return fault
        return None

    def _route(
        self,
        method: str,
        path: str,
        query: dict[str, str],
        body: Any,
        token: _Token,
        out: dict[str, str],
    ) -> tuple[int, Any]:
        if method == "GET" and path == "/user":
            return 200, self._user_json(token.login)
        for verb, pattern, handler in self._routes:
            match = pattern.match(path)
            if match is None or verb != method:
                continue
            repo = self.repos.get(f"{match['owner']}/{match['repo']}")
            if repo is None:
                raise _HttpError(404, "Not Found", docs=f"{DOCS}/repos/repos#get-a-repository")
            if method != "GET" and not token.write:
                raise _HttpError(403, "Resource not accessible by personal access token")
            params = {k: v for k, v in match.groupdict().items() if v is not None}
            req = _Req(method, path, query, body, token.login, token.write, params, out)
            return handler(req, repo)
        raise _not_found()

    # -- handlers: repository, refs, git data ------------------------------------------------

    def _get_repo(self, req: _Req, repo: Repo) -> tuple[int, Any]:
        return 200, self._repo_json(repo, write=req.write)

    def _get_ref(self, req: _Req, repo: Repo) -> tuple[int, Any]:
        ref = req.params["ref"]
        if ref in repo.refs:
            return 200, self._ref_json(repo, ref, repo.refs[ref])
        if req.path.split("/")[5] == "refs":  # the older endpoint also lists refs by prefix
            found = [
                self._ref_json(repo, name, sha)
                for name, sha in sorted(repo.refs.items())
                if name.startswith(ref + "/")
            ]
            if found:
                return 200, found
        raise _not_found()

    def _create_ref(self, req: _Req, repo: Repo) -> tuple[int, Any]:
        body = _object(req.body)
        ref, sha = str(body.get("ref") or ""), str(body.get("sha") or "")
        if not ref.startswith("refs/") or ref.count("/") < 2:
            raise _HttpError(422, "Reference name must start with 'refs/' and have two slashes")
        if sha not in repo.commits:
            raise _HttpError(422, "Object does not exist")
        name = ref.removeprefix("refs/")
        if name in repo.refs:
            raise _HttpError(422, "Reference already exists")
        self._set_ref(repo, name, sha)
        return 201, self._ref_json(repo, name, sha)

    def _update_ref(self, req: _Req, repo: Repo) -> tuple[int, Any]:
        body = _object(req.body)
        name, sha = req.params["ref"], str(body.get("sha") or "")
        if name not in repo.refs:
            raise _HttpError(422, "Reference does not exist")
        if sha not in repo.commits:
            raise _HttpError(422, "Object does not exist")
        if not body.get("force") and not repo.is_ancestor(repo.refs[name], sha):
            raise _HttpError(422, "Update is not a fast forward")
        self._set_ref(repo, name, sha)
        return 200, self._ref_json(repo, name, sha)

    def _delete_ref(self, req: _Req, repo: Repo) -> tuple[int, Any]:
        name = req.params["ref"]
        if name not in repo.refs:
            raise _HttpError(422, "Reference does not exist")
        self._set_ref(repo, name, None)
        return 204, None

    def _create_blob(self, req: _Req, repo: Repo) -> tuple[int, Any]:
        body = _object(req.body)
        content = body.get("content")
        if not isinstance(content, str):
            raise _invalid("Blob", "content", "missing_field")
        encoding = body.get("encoding", "utf-8")
        data = base64.b64decode(content) if encoding == "base64" else content.encode("utf-8")
        sha = repo.store_blob(data)
        return 201, {"sha": sha, "url": f"{self._repo_url(repo)}/git/blobs/{sha}"}

    def _get_blob(self, req: _Req, repo: Repo) -> tuple[int, Any]:
        sha = req.params["sha"]
        if sha not in repo.blobs:
            raise _not_found()
        data = repo.blobs[sha]
        return 200, {
            "sha": sha,
            "node_id": f"B_{sha[:12]}",
            "size": len(data),
            "url": f"{self._repo_url(repo)}/git/blobs/{sha}",
            "content": base64.encodebytes(data).decode(),
            "encoding": "base64",
        }

    def _create_tree(self, req: _Req, repo: Repo) -> tuple[int, Any]:
        body = _object(req.body)
        base = body.get("base_tree")
        if base is not None and base not in repo.trees:
            raise _invalid("Tree", "base_tree")
        entries = dict(repo.trees[base]) if base else {}
        elements = body.get("tree")
        if not isinstance(elements, list):
            raise _invalid("Tree", "tree", "missing_field")
        for element in elements:
            if not isinstance(element, dict) or element.get("type", "blob") != "blob":
                raise _HttpError(422, "tree.type must be blob in this fake")
            path = str(element.get("path") or "")
            if "content" in element:
                entries[path] = repo.store_blob(str(element["content"]).encode("utf-8"))
            elif element.get("sha") is None:
                entries.pop(path, None)
            elif element["sha"] in repo.blobs:
                entries[path] = element["sha"]
            else:
                raise _HttpError(422, f"tree.sha {element['sha']} is not a valid blob")
        sha = repo.store_tree(entries)
        return 201, self._tree_json(repo, sha)

    def _tree_json(self, repo: Repo, sha: str) -> JSON:
        url = self._repo_url(repo)
        entries = [
            {
                "path": path,
                "mode": _MODE,
                "type": "blob",
                "sha": blob,
                "size": len(repo.blobs[blob]),
                "url": f"{url}/git/blobs/{blob}",
            }
            for path, blob in sorted(repo.trees[sha].items())
        ]
        return {"sha": sha, "url": f"{url}/git/trees/{sha}", "tree": entries, "truncated": False}

    def _get_tree(self, req: _Req, repo: Repo) -> tuple[int, Any]:
        if req.params["sha"] not in repo.trees:
            raise _not_found()
        return 200, self._tree_json(repo, req.params["sha"])

    def _create_git_commit(self, req: _Req, repo: Repo) -> tuple[int, Any]:
        body = _object(req.body)
        tree, parents = body.get("tree"), body.get("parents", [])
        if not isinstance(body.get("message"), str):
            raise _invalid("Commit", "message", "missing_field")
        if tree not in repo.trees:
            raise _HttpError(422, "Tree SHA does not exist")
        if not isinstance(parents, list) or any(p not in repo.commits for p in parents):
            raise _HttpError(422, "Parent SHA does not exist or is not a commit object")
        author = _object(body.get("author") or {}).get("name") or req.login
        sha = self._store_commit(repo, tree, parents, body["message"], author=str(author))
        return 201, self._git_commit_json(repo, repo.commits[sha])

    def _get_git_commit(self, req: _Req, repo: Repo) -> tuple[int, Any]:
        commit = repo.commits.get(req.params["sha"])
        if commit is None:
            raise _not_found()
        return 200, self._git_commit_json(repo, commit)

    # -- handlers: contents, commits, statuses, compare, branches ----------------------------

    def _get_contents(self, req: _Req, repo: Repo) -> tuple[int, Any]:
        ref = req.query.get("ref") or repo.default_branch
        if repo.resolve(ref) is None:
            raise _HttpError(404, f"No commit found for the ref {ref}")
        path = req.params["path"].strip("/")
        tree = repo.tree_at(ref)
        if path in tree:
            out = self._content_json(repo, path, ref, tree[path])
            data = repo.blobs[tree[path]]
            return 200, out | {"encoding": "base64", "content": base64.encodebytes(data).decode()}
        below = sorted({p[len(path) + 1 :].split("/")[0] for p in tree if p.startswith(path + "/")})
        if not below:
            raise _not_found()
        return 200, [
            self._content_json(repo, f"{path}/{name}", ref, tree.get(f"{path}/{name}"))
            for name in below
        ]

    def _put_contents(self, req: _Req, repo: Repo) -> tuple[int, Any]:
        body = _object(req.body)
        path = req.params["path"].strip("/")
        if not isinstance(body.get("message"), str):
            raise _invalid("Commit", "message", "missing_field")
        if not isinstance(body.get("content"), str):
            raise _invalid("Commit", "content", "missing_field")
        branch = str(body.get("branch") or repo.default_branch)
        parent = repo.branch(branch)
        if parent is None:
            raise _HttpError(404, f"Branch {branch} not found")
        current = repo.tree_at(parent).get(path)
        if current is not None and "sha" not in body:
            raise _HttpError(422, 'Invalid request.\n\n"sha" wasn\'t supplied.')
        if current is not None and body["sha"] != current:
            raise _HttpError(409, f"{path} does not match {body['sha']}")
        text = base64.b64decode(body["content"]).decode("utf-8")
        tree = repo.tree_with(repo.tree_at(parent), {path: text})
        sha = self._store_commit(repo, tree, (parent,), body["message"], author=req.login)
        self._set_ref(repo, f"heads/{branch}", sha)
        content = self._content_json(repo, path, branch, repo.tree_at(sha)[path])
        commit = self._git_commit_json(repo, repo.commits[sha])
        return (201 if current is None else 200), {"content": content, "commit": commit}

    def _resolve(self, repo: Repo, ref: str) -> Commit:
        sha = repo.resolve(ref)
        if sha is None:
            raise _HttpError(422, f"No commit found for SHA: {ref}")
        return repo.commits[sha]

    def _get_commit(self, req: _Req, repo: Repo) -> tuple[int, Any]:
        commit = self._resolve(repo, req.params["ref"])
        out = self._commit_json(repo, commit)
        changed = self._changed(repo, commit.parents[0] if commit.parents else "", commit.sha)
        files = [{"filename": p, "status": "modified", "sha": None} for p in changed]
        return 200, out | {"files": files, "stats": {"total": 0, "additions": 0, "deletions": 0}}

    def _combined_status(self, req: _Req, repo: Repo) -> tuple[int, Any]:
        commit = self._resolve(repo, req.params["ref"])
        latest: dict[str, Status] = {}
        for status in repo.statuses.get(commit.sha, []):
            latest[status.context] = status
        states = {s.state for s in latest.values()}
        if states & {"failure", "error"}:
            state = "failure"
        elif not states or "pending" in states:
            state = "pending"
        else:
            state = "success"
        url = self._repo_url(repo)
        return 200, {
            "state": state,
            "statuses": [self._status_json(repo, commit.sha, s) for s in latest.values()],
            "sha": commit.sha,
            "total_count": len(latest),
            "repository": self._repo_json(repo),
            "commit_url": f"{url}/commits/{commit.sha}",
            "url": f"{url}/commits/{commit.sha}/status",
        }

    def _list_check_runs(self, req: _Req, repo: Repo) -> tuple[int, Any]:
        commit = self._resolve(repo, req.params["ref"])
        runs = [self._check_json(repo, r) for r in repo.check_runs.get(commit.sha, [])]
        return 200, {"total_count": len(runs), "check_runs": self._page(req, runs)}

    def _create_check_run(self, req: _Req, repo: Repo) -> tuple[int, Any]:
        body = _object(req.body)
        sha = str(body.get("head_sha") or "")
        if not body.get("name") or sha not in repo.commits:
            raise _invalid("CheckRun", "head_sha" if body.get("name") else "name")
        status = str(body.get("status", "queued"))
        conclusion = body.get("conclusion")
        run = CheckRun(next(self._ids), str(body["name"]), sha, status, conclusion, self._stamp())
        if conclusion is not None:
            run.status = "completed"
        repo.check_runs.setdefault(sha, []).append(run)
        return 201, self._check_json(repo, run)

    def _create_status(self, req: _Req, repo: Repo) -> tuple[int, Any]:
        body = _object(req.body)
        sha = req.params["sha"]
        if sha not in repo.commits:
            raise _HttpError(422, f"No commit found for SHA: {sha}")
        state = body.get("state")
        if state not in ("error", "failure", "pending", "success"):
            raise _invalid("Status", "state")
        status = Status(
            next(self._ids),
            str(body.get("context") or "default"),
            str(state),
            str(body.get("description") or ""),
            body.get("target_url"),
            req.login,
            self._stamp(),
        )
        repo.statuses.setdefault(sha, []).append(status)
        return 201, self._status_json(repo, sha, status)

    def _list_statuses(self, req: _Req, repo: Repo) -> tuple[int, Any]:
        sha = req.params["sha"]
        found = [self._status_json(repo, sha, s) for s in reversed(repo.statuses.get(sha, []))]
        return 200, self._page(req, found)

    def _compare(self, req: _Req, repo: Repo) -> tuple[int, Any]:
        base_sha, head_sha = repo.resolve(req.params["base"]), repo.resolve(req.params["head"])
        if base_sha is None or head_sha is None:
            raise _not_found()
        merge_base = repo.merge_base(base_sha, head_sha)
        if merge_base is None:
            raise _HttpError(404, f"No common ancestor between {base_sha} and {head_sha}.")
        ahead = [s for s in repo.ancestors(head_sha) if s not in set(repo.ancestors(merge_base))]
        behind = [s for s in repo.ancestors(base_sha) if s not in set(repo.ancestors(merge_base))]
        if base_sha == head_sha:
            status = "identical"
        elif not behind:
            status = "ahead"
        elif not ahead:
            status = "behind"
        else:
            status = "diverged"
        url = self._repo_url(repo)
        spec = f"{req.params['base']}...{req.params['head']}"
        html = f"{self.url}/{repo.full_name}/compare/{spec}"
        files = self._changed(repo, merge_base, head_sha)
        return 200, {
            "url": f"{url}/compare/{spec}",
            "html_url": html,
            "permalink_url": html,
            "diff_url": f"{html}.diff",
            "patch_url": f"{html}.patch",
            "base_commit": self._commit_json(repo, repo.commits[base_sha]),
            "merge_base_commit": self._commit_json(repo, repo.commits[merge_base]),
            "status": status,
            "ahead_by": len(ahead),
            "behind_by": len(behind),
            "total_commits": len(ahead),
            "commits": [self._commit_json(repo, repo.commits[s]) for s in reversed(ahead)],
            "files": [{"filename": p, "status": "modified"} for p in files],
        }

    def _protection_json(self, repo: Repo, branch: str, protection: Protection) -> JSON:
        url = f"{self._repo_url(repo)}/branches/{quote(branch)}/protection"
        out: JSON = {
            "url": url,
            "enforce_admins": {"url": f"{url}/enforce_admins", "enabled": False},
            "required_linear_history": {"enabled": False},
            "allow_force_pushes": {"enabled": False},
            "allow_deletions": {"enabled": False},
            "required_signatures": {"url": f"{url}/required_signatures", "enabled": False},
        }
        if protection.contexts or protection.strict:
            out["required_status_checks"] = {
                "url": f"{url}/required_status_checks",
                "strict": protection.strict,
                "contexts": list(protection.contexts),
                "contexts_url": f"{url}/required_status_checks/contexts",
                "checks": [{"context": c, "app_id": None} for c in protection.contexts],
            }
        if protection.required_approvals:
            out["required_pull_request_reviews"] = {
                "url": f"{url}/required_pull_request_reviews",
                "dismiss_stale_reviews": protection.dismiss_stale_reviews,
                "require_code_owner_reviews": False,
                "required_approving_review_count": protection.required_approvals,
                "require_last_push_approval": False,
            }
        return out

    def _get_protection(self, req: _Req, repo: Repo) -> tuple[int, Any]:
        branch = req.params["branch"]
        if repo.branch(branch) is None:
            raise _HttpError(404, "Branch not found")
        protection = repo.protection.get(branch)
        if protection is None:
            raise _HttpError(404, "Branch not protected")
        return 200, self._protection_json(repo, branch, protection)

    def _get_branch(self, req: _Req, repo: Repo) -> tuple[int, Any]:
        branch = req.params["branch"]
        sha = repo.branch(branch)
        if sha is None:
            raise _HttpError(404, "Branch not found")
        url = f"{self._repo_url(repo)}/branches/{quote(branch)}"
        protection = repo.protection.get(branch)
        summary: JSON = {"enabled": protection is not None}
        if protection is not None:
            summary["required_status_checks"] = {
                "enforcement_level": "non_admins" if protection.contexts else "off",
                "contexts": list(protection.contexts),
                "checks": [{"context": c, "app_id": None} for c in protection.contexts],
            }
        return 200, {
            "name": branch,
            "commit": self._commit_json(repo, repo.commits[sha]),
            "_links": {"self": url, "html": f"{self.url}/{repo.full_name}/tree/{branch}"},
            "protected": protection is not None,
            "protection": summary,
            "protection_url": f"{url}/protection",
        }

    # -- handlers: pull requests -------------------------------------------------------------

    def _pull(self, repo: Repo, req: _Req) -> Pull:
        pull = repo.pulls.get(int(req.params["number"]))
        if pull is None:
            raise _not_found()
        return pull

    def _list_pulls(self, req: _Req, repo: Repo) -> tuple[int, Any]:
        state = req.query.get("state", "open")
        if state not in ("open", "closed", "all"):
            raise _invalid("PullRequest", "state")
        pulls = [p for p in repo.pulls.values() if state in ("all", p.state)]
        head = req.query.get("head")
        # GitHub wants `user:ref-name`; a bare branch name filters nothing.
        if head and ":" in head:
            owner, _, branch = head.partition(":")
            pulls = [p for p in pulls if owner == repo.owner and p.head == branch]
        if req.query.get("base"):
            pulls = [p for p in pulls if p.base == req.query["base"]]
        sort = req.query.get("sort", "created")
        key = (lambda p: (p.updated_at, p.number)) if sort != "created" else (lambda p: p.number)
        default = "desc" if sort == "created" else "asc"
        pulls.sort(key=key, reverse=req.query.get("direction", default) == "desc")
        found = [self._pull_json(repo, p, full=False) for p in pulls]
        return 200, self._page(req, found)

    def _create_pull(self, req: _Req, repo: Repo) -> tuple[int, Any]:
        body = _object(req.body)
        if not body.get("title"):
            raise _invalid("PullRequest", "title", "missing_field")
        head, base = str(body.get("head") or ""), str(body.get("base") or "")
        owner, _, branch = head.rpartition(":")
        if (owner and owner != repo.owner) or repo.branch(branch) is None:
            raise _invalid("PullRequest", "head")
        base_sha = repo.branch(base)
        if base_sha is None:
            raise _invalid("PullRequest", "base")
        for pull in repo.pulls.values():
            if pull.state == "open" and pull.head == branch and pull.base == base:
                raise _custom(
                    "PullRequest", f"A pull request already exists for {repo.owner}:{branch}."
                )
        head_sha = repo.branch(branch)
        assert head_sha is not None
        if repo.is_ancestor(head_sha, base_sha):
            raise _custom("PullRequest", f"No commits between {base} and {branch}")
        stamp = self._stamp()
        pull = Pull(
            number=repo.next_number,
            title=str(body["title"]),
            body=body.get("body"),
            head=branch,
            base=base,
            user=req.login,
            head_sha=head_sha,
            created_at=stamp,
            updated_at=stamp,
            draft=bool(body.get("draft", False)),
        )
        repo.next_number += 1
        repo.pulls[pull.number] = pull
        return 201, self._pull_json(repo, pull, full=True)

    def _get_pull(self, req: _Req, repo: Repo) -> tuple[int, Any]:
        return 200, self._pull_json(repo, self._pull(repo, req), full=True)

    def _update_pull(self, req: _Req, repo: Repo) -> tuple[int, Any]:
        pull = self._pull(repo, req)
        body = _object(req.body)
        if "state" in body and body["state"] not in ("open", "closed"):
            raise _invalid("PullRequest", "state")
        if body.get("state") == "open" and pull.state == "closed":
            if pull.merged:
                raise _custom("PullRequest", "Cannot reopen a merged pull request")
            if repo.branch(pull.head) is None:
                raise _invalid("PullRequest", "state")
            pull.state, pull.closed_at = "open", None
            pull.head_sha = repo.branch(pull.head) or pull.head_sha
        elif body.get("state") == "closed" and pull.state == "open":
            pull.state, pull.closed_at = "closed", self._stamp()
        if isinstance(body.get("title"), str):
            pull.title = body["title"]
        if "body" in body:
            pull.body = body["body"]
        if isinstance(body.get("base"), str):
            if repo.branch(body["base"]) is None:
                raise _invalid("PullRequest", "base")
            pull.base = body["base"]
        pull.updated_at = self._stamp()
        return 200, self._pull_json(repo, pull, full=True)

    def _is_merged(self, req: _Req, repo: Repo) -> tuple[int, Any]:
        if not self._pull(repo, req).merged:
            raise _not_found()
        return 204, None

    def _merge_pull(self, req: _Req, repo: Repo) -> tuple[int, Any]:
        pull = self._pull(repo, req)
        body = _object(req.body or {})
        method = str(body.get("merge_method") or "merge")
        if method not in _METHOD_REFUSED:
            raise _invalid("PullRequest", "merge_method")
        if pull.state != "open":
            raise _HttpError(405, _NOT_MERGEABLE)
        if method not in repo.merge_methods:
            raise _HttpError(405, _METHOD_REFUSED[method])
        if body.get("sha") is not None and body["sha"] != pull.head_sha:
            raise _HttpError(409, _HEAD_MODIFIED)
        mergeable, _, blockers = self._mergeability(repo, pull)
        if not mergeable or blockers:
            raise _HttpError(405, blockers[0] if blockers else _NOT_MERGEABLE)
        sha = self._do_merge(
            repo,
            pull,
            method=method,
            by=req.login,
            title=body.get("commit_title"),
            message=body.get("commit_message"),
        )
        return 200, {"sha": sha, "merged": True, "message": "Pull Request successfully merged"}

    def _list_reviews(self, req: _Req, repo: Repo) -> tuple[int, Any]:
        pull = self._pull(repo, req)
        found = [self._review_json(repo, pull, r) for r in pull.reviews if r.state != "PENDING"]
        return 200, self._page(req, found)

    def _create_review(self, req: _Req, repo: Repo) -> tuple[int, Any]:
        pull = self._pull(repo, req)
        body = _object(req.body)
        event = body.get("event")
        if event not in (None, "APPROVE", "REQUEST_CHANGES", "COMMENT"):
            raise _invalid("PullRequestReview", "event")
        if event == "APPROVE" and req.login == pull.user:
            raise _HttpError(
                422, "Unprocessable Entity", errors=["Can not approve your own pull request"]
            )
        if event == "REQUEST_CHANGES" and req.login == pull.user:
            raise _HttpError(
                422,
                "Unprocessable Entity",
                errors=["Can not request changes on your own pull request"],
            )
        text = str(body.get("body") or "")
        if event in ("REQUEST_CHANGES", "COMMENT") and not text:
            raise _HttpError(
                422, "Unprocessable Entity", errors=[f"Review Can not be empty for event {event}"]
            )
        commit_id = str(body.get("commit_id") or pull.head_sha)
        if commit_id not in repo.commits:
            raise _HttpError(
                422, "Unprocessable Entity", errors=[f"No commit found for SHA: {commit_id}"]
            )
        state = {
            "APPROVE": "APPROVED",
            "REQUEST_CHANGES": "CHANGES_REQUESTED",
            "COMMENT": "COMMENTED",
        }.get(str(event), "PENDING")
        review = Review(next(self._ids), req.login, state, text, commit_id, self._stamp())
        pull.reviews.append(review)
        return 200, self._review_json(repo, pull, review)

    def _list_comments(self, req: _Req, repo: Repo) -> tuple[int, Any]:
        pull = self._pull(repo, req)
        return 200, self._page(req, [self._comment_json(repo, pull, c) for c in pull.comments])

    def _create_comment(self, req: _Req, repo: Repo) -> tuple[int, Any]:
        pull = self._pull(repo, req)
        text = _object(req.body).get("body")
        if not isinstance(text, str) or not text:
            raise _invalid("IssueComment", "body", "missing_field")
        comment = Comment(next(self._ids), req.login, text, self._stamp())
        pull.comments.append(comment)
        return 201, self._comment_json(repo, pull, comment)

    def _list_labels(self, req: _Req, repo: Repo) -> tuple[int, Any]:
        pull = self._pull(repo, req)
        return 200, self._page(req, [self._label_json(repo, n) for n in pull.labels])

    def _add_labels(self, req: _Req, repo: Repo) -> tuple[int, Any]:
        pull = self._pull(repo, req)
        # The docs accept {"labels": [...]} or a bare array; PyGithub sends the array.
        names = req.body.get("labels") if isinstance(req.body, dict) else req.body
        if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
            raise _invalid("Label", "labels")
        for name in names:
            repo.labels.setdefault(name, "ededed")
            if name not in pull.labels:
                pull.labels.append(name)
        return 200, [self._label_json(repo, n) for n in pull.labels]

    def _remove_label(self, req: _Req, repo: Repo) -> tuple[int, Any]:
        pull = self._pull(repo, req)
        if req.params["name"] not in pull.labels:
            raise _HttpError(404, "Label does not exist")
        pull.labels.remove(req.params["name"])
        return 200, [self._label_json(repo, n) for n in pull.labels]


def _object(body: Any) -> JSON:
    if not isinstance(body, dict):
        raise _HttpError(400, "Problems parsing JSON")
    return cast(JSON, body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, fake: FakeGitHub) -> None:
        super().__init__(("127.0.0.1", 0), _RequestHandler)
        self.fake = fake


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeGitHub/1.0"
    # Headers and body leave in one write: two small writes meet the client's delayed ACK.
    wbufsize = -1

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def log_message(self, format: str, *args: Any) -> None:
        """Keep pytest output quiet; `FakeGitHub.calls` is the request log."""

    def _handle(self) -> None:
        fake = cast(_Server, self.server).fake
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        answer = fake._dispatch(self.command, self.path, dict(self.headers.items()), body)
        if answer is None:
            self.close_connection = True
            return
        status, out, payload = answer
        self.send_response(status)
        for name, value in out.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
