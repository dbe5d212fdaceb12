"""A PR backend on GitHub or GitHub Enterprise through PyGithub: branches, pull requests, merges.

Files are written with the git data API (one tree and one commit for all of them) and the
branch is moved without force, so a push cannot be lost and a branch never gains a commit it
already holds. Every call may be repeated after a crash: `open` finds the branch and the pull
request an earlier attempt made, `merge` finds the earlier merge of the same head, `close`
finds nothing left to close. Server errors and dropped connections are retried here with
backoff; rate limits become TemporaryBackendError with GitHub's `retry_after`.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Literal, TypeVar

from github import Auth, Github, GithubException, InputGitTreeElement
from github.GitRef import GitRef
from github.PullRequest import PullRequest as GitHubPull
from github.Repository import Repository
from pydantic import SecretStr

from approval_engine.errors import BackendError, TemporaryBackendError
from approval_engine.prs._github_errors import (
    GitHubError,
    GitHubNotMergeableError,
    Mergeability,
    PullState,
    RetryPolicy,
    approval_text,
    approvals,
    describe,
    retrying,
    translate,
    unmet,
    unreachable,
)
from approval_engine.prs.base import PullRequest

__all__ = [
    "DEFAULT_API_URL",
    "GitHubBackend",
    "MergeMethod",
    "Mergeability",
    "PullState",
    "RetryPolicy",
]

T = TypeVar("T")
MergeMethod = Literal["squash", "merge", "rebase"]
DEFAULT_API_URL = "https://api.github.com"
DEFAULT_RETRY = RetryPolicy()
_TRAILER = "Opsgate-Proposal"
_REBASE_TRAILER = "Opsgate-Rebase"
_OWN_PULL_NOTE = (
    "\n\n_GitHub does not let the account that opened a pull request approve it; "
    "a separate review token lets opsgate record real approvals._"
)


def _snapshot(pull: GitHubPull) -> PullState:
    # Only fields the list endpoint returns: anything else would cost a request per pull.
    return PullState(
        number=pull.number,
        state=pull.state,
        merged=pull.merged_at is not None,
        head_sha=pull.head.sha,
        merge_commit_sha=pull.merge_commit_sha if pull.merged_at is not None else None,
        url=pull.html_url,
        title=pull.title,
        body=pull.body or "",
    )


def _absent(fn: Callable[[], T]) -> Callable[[], T | None]:
    """`fn`, answering None where GitHub answers 404."""

    def run() -> T | None:
        try:
            return fn()
        except GithubException as e:
            if e.status == 404:
                return None
            raise

    return run


class GitHubBackend:
    """The PRBackend protocol on one GitHub repository, plus labels, comments and reviews.

    `review_token` is a second identity for approvals: GitHub refuses an approving review
    from the account that opened the pull request, so with one token approvals are recorded
    as comment reviews that name the approver. `pace` keeps PyGithub's spacing of requests
    (GitHub asks integrators to space writes); tests turn it off, and pass `sleep`/`clock`.
    """

    name = "github"

    def __init__(
        self,
        *,
        repo: str,
        token: SecretStr,
        base_branch: str = "main",
        api_base_url: str = DEFAULT_API_URL,
        merge_method: MergeMethod = "squash",
        review_token: SecretStr | None = None,
        retry: RetryPolicy = DEFAULT_RETRY,
        timeout: int = 15,
        pace: bool = True,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        owner, _, name = repo.partition("/")
        if not owner or not name or "/" in name:
            raise BackendError(f"github.repo must be owner/name, not {repo!r}")
        self.repo_name = repo
        self.owner = owner
        self.base_branch = base_branch
        self.merge_method: MergeMethod = merge_method
        self.retry = retry
        self._sleep = sleep
        self._clock = clock

        def connect(secret: SecretStr) -> Repository:
            client = Github(
                auth=Auth.Token(secret.get_secret_value()),
                base_url=api_base_url.rstrip("/"),
                timeout=timeout,
                user_agent="opsgate",
                retry=None,  # retried in _call, where each attempt is bounded and seen
                seconds_between_requests=0.25 if pace else None,
                seconds_between_writes=1.0 if pace else None,
                lazy=True,
            )
            return client.get_repo(repo)

        self._repo = connect(token)
        self._reviewer = connect(review_token) if review_token is not None else self._repo

    # --- reads ----------------------------------------------------------------------------

    def check(self) -> None:
        """Fail with a clear message when the repository or its base branch is out of reach."""
        self._call(f"reading {self.repo_name}", self._repo.complete)
        if self._ref(self.base_branch) is None:
            raise BackendError(f"{self.repo_name} has no branch {self.base_branch}")

    def base_head(self) -> str:
        ref = self._ref(self.base_branch)
        if ref is None:
            self.check()
            raise BackendError(f"{self.repo_name} has no branch {self.base_branch}")
        return ref.object.sha

    def branch_head(self, branch: str) -> str | None:
        ref = self._ref(branch)
        return None if ref is None else ref.object.sha

    def read_file(self, path: str, *, ref: str | None = None) -> str:
        rev = ref or self.base_branch
        text = self._text(path, rev)
        if text is None:
            raise BackendError(f"{path} does not exist at {rev[:12]} in {self.repo_name}")
        return text

    def contains(self, revision: str, commit: str) -> bool:
        if revision == commit:
            return True
        status = self._call(
            f"comparing {commit[:7]} with {revision[:7]}",
            _absent(lambda: self._repo.compare(commit, revision).status),
        )
        return status in ("ahead", "identical")

    # --- the protocol ---------------------------------------------------------------------

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
        what = f"opening {branch}"
        ref = self._ref(branch)
        head = None if ref is None else ref.object.sha
        if head is not None and not self.contains(head, base_sha):
            # Re-rendered on a moved base: merge the base in, as GitHub's "Update branch" does.
            message = (
                f"Update {branch} with {self.base_branch} at {base_sha[:7]}\n\n"
                f"{_REBASE_TRAILER}: {proposal_id}\n"
            )
            head = self._commit(base_sha, files, message, what=what, first=head)
            self._move(branch, ref, head, what=what)
        else:
            parent = head or base_sha
            changed = {p: text for p, text in files.items() if self._text(p, parent) != text}
            if changed or head is None:
                message = f"{title}\n\n{_TRAILER}: {proposal_id}\n"
                commit = self._commit(parent, changed, message, what=what)
                self._move(branch, ref, commit, what=what)
                head = commit
        pull = self._open_pull(branch)
        if pull is None:
            pull = self._create_pull(branch, title=title, body=body, what=what)
        elif pull.title != title or pull.body != body:
            number = pull.number
            self._call(what, lambda: self._repo.get_pull(number).edit(title=title, body=body))
        return PullRequest(branch=branch, head_sha=head, url=pull.url)

    def merge(self, *, proposal_id: str, branch: str, head_sha: str, title: str) -> str:
        pulls = self._pulls(branch)
        for done in pulls:
            # Only a merge of this very head counts, as in the local backend.
            if done.merged and done.head_sha == head_sha and done.merge_commit_sha:
                return done.merge_commit_sha
        pull = next((p for p in pulls if p.state == "open"), None)
        if pull is None:
            raise BackendError(f"{branch} has no open pull request to merge; closed on GitHub?")
        if pull.head_sha != head_sha:
            raise BackendError(
                f"{branch} moved on GitHub to {pull.head_sha[:7]}; "
                f"the approvals were for {head_sha[:7]}"
            )
        number = pull.number
        try:
            return self._call(
                f"merging #{number} ({branch})",
                lambda: (
                    self._repo.get_pull(number)
                    .merge(
                        commit_title=f"{title} (#{number})",
                        commit_message=f"{_TRAILER}: {proposal_id}",
                        merge_method=self.merge_method,
                        sha=head_sha,
                    )
                    .sha
                ),
            )
        except GitHubError as e:
            if e.status not in (405, 409):
                raise
            # A merge whose answer was lost is "not mergeable" the second time: look.
            again = next((p for p in self._pulls(branch) if p.number == number), None)
            if again is not None and again.merged and again.head_sha == head_sha:
                return again.merge_commit_sha or ""
            why = f" ({self.mergeability(branch).reason})" if e.status == 405 else ""
            raise GitHubNotMergeableError(
                f"GitHub refused to merge #{number}: {e.reason}{why}",
                status=e.status,
                reason=e.reason,
            ) from e

    def close(self, *, proposal_id: str, branch: str, reason: str) -> None:
        text = f"Closed by opsgate ({proposal_id}): {reason}"
        for pull in self._pulls(branch, state="open"):
            self._close_pull(pull.number, text)
        ref = self._ref(branch)
        if ref is not None:
            try:
                self._call(f"deleting {branch}", ref.delete)
            except GitHubError as e:
                if e.status not in (404, 422):  # already gone
                    raise

    # --- beyond the protocol --------------------------------------------------------------

    def pull_state(self, branch: str) -> PullState | None:
        """The branch's open pull request, else its newest one; None when it never had one."""
        pulls = self._pulls(branch)
        return next((p for p in pulls if p.state == "open"), pulls[0] if pulls else None)

    def pull_number(self, branch: str) -> int | None:
        state = self.pull_state(branch)
        return None if state is None else state.number

    def label(self, branch: str, labels: Iterable[str]) -> None:
        names = list(labels)
        number = self._number(branch)
        if names:
            issue = self._repo.get_issue(number)
            self._call(f"labelling #{number}", lambda: issue.add_to_labels(*names))

    def unlabel(self, branch: str, labels: Iterable[str]) -> None:
        number = self._number(branch)
        issue = self._repo.get_issue(number)

        def remove(name: str) -> Callable[[], None]:
            return lambda: issue.remove_from_labels(name)

        for name in labels:
            try:
                self._call(f"unlabelling #{number}", remove(name))
            except GitHubError as e:
                if e.status != 404:  # the pull request did not carry it
                    raise

    def comment(self, branch: str, text: str, *, once: str | None = None) -> None:
        """Comment on the branch's pull request; with `once`, a marker the comment carries
        (hidden), and nothing is posted when a comment already carries it."""
        number = self._number(branch)
        issue = self._repo.get_issue(number)
        if once is not None:
            marker = f"<!-- opsgate-once {once} -->"
            said = self._call(
                f"reading comments on #{number}",
                lambda: any(marker in (c.body or "") for c in issue.get_comments()),
            )
            if said:
                return
            text = f"{text}\n{marker}"
        self._call(f"commenting on #{number}", lambda: issue.create_comment(text))

    def review(self, branch: str, *, approver_login: str, head_sha: str, body: str) -> str:
        """Record a chat approval as a review of head_sha; returns `APPROVED` or `COMMENTED`.

        Repeating it for the same approver and head records nothing new."""
        pull = self._open_pull(branch)
        if pull is None:
            raise BackendError(f"{branch} has no open pull request to review")
        if pull.head_sha != head_sha:
            raise BackendError(
                f"{branch} moved to {pull.head_sha[:7]}; approval was for {head_sha[:7]}"
            )
        number, what = pull.number, f"reviewing #{pull.number}"
        marker = f"<!-- opsgate-approval {approver_login} {head_sha} -->"
        earlier = self._call(
            what,
            lambda: [(r.state, r.body or "") for r in self._repo.get_pull(number).get_reviews()],
        )
        for state, text in earlier:
            if marker in text:
                return state
        text = approval_text(approver_login, head_sha, body) + f"\n{marker}"

        def submit(event: str, note: str = "") -> None:
            target = self._reviewer.get_pull(number)
            commit = self._reviewer.get_commit(head_sha)
            target.create_review(commit=commit, body=text + note, event=event)

        try:
            self._call(what, lambda: submit("APPROVE"))
            return "APPROVED"
        except GitHubError as e:
            if e.status != 422 or "own pull request" not in e.reason:
                raise
        self._call(what, lambda: submit("COMMENT", _OWN_PULL_NOTE))
        return "COMMENTED"

    def mergeability(self, branch: str) -> Mergeability:
        """Whether GitHub would merge the branch's pull request now, and what stands in the way."""
        pull = self._open_pull(branch)
        if pull is None:
            return Mergeability(False, f"{branch} has no open pull request")
        number = pull.number
        full = self._call(f"reading #{number}", lambda: self._repo.get_pull(number).complete())
        state = "merged" if full.merged else full.mergeable_state
        if full.mergeable is None or state not in ("blocked", "behind", "unstable"):
            problems = []
        else:  # say what GitHub waits for
            problems = self._unmet(number, full.head.sha, all_failing=state == "unstable")
        return describe(
            state, full.mergeable, number=number, base=self.base_branch, problems=problems
        )

    # --- plumbing -------------------------------------------------------------------------

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        """Run one PyGithub step; server errors and lost connections are retried with backoff."""

        def classify(e: Exception) -> BackendError | None:
            if isinstance(e, GithubException):
                return translate(e.status, e.headers or {}, e.data, what=what, now=self._clock())
            if isinstance(e, OSError):  # requests' connection errors and timeouts are OSErrors
                return unreachable(what, e)
            return None

        return retrying(fn, classify, self.retry, sleep=self._sleep)

    def _close_pull(self, number: int, text: str) -> None:
        """Say why, once, then close: a crash in between says it only once on the retry."""
        issue = self._repo.get_issue(number)
        said = self._call(
            f"reading comments on #{number}",
            lambda: any(c.body == text for c in issue.get_comments()),
        )
        if not said:
            self._call(f"commenting on #{number}", lambda: issue.create_comment(text))
        self._call(f"closing #{number}", lambda: self._repo.get_pull(number).edit(state="closed"))

    def _ref(self, branch: str) -> GitRef | None:
        def get() -> GitRef:
            ref = self._repo.get_git_ref(f"heads/{branch}")
            ref.complete()  # its url becomes the /git/refs/ one that PATCH and DELETE need
            return ref

        return self._call(f"reading branch {branch}", _absent(get))

    def _text(self, path: str, ref: str) -> str | None:
        def get() -> str | None:
            found = self._repo.get_contents(path, ref=ref)
            if isinstance(found, list):
                raise BackendError(f"{path} is a directory, not a file")
            if found.encoding == "none":  # over 1 MB the contents API leaves the text out
                blob = self._repo.get_git_blob(found.sha)
                return base64.b64decode(blob.content).decode("utf-8")
            return found.decoded_content.decode("utf-8")

        return self._call(f"reading {path} at {ref[:12]}", _absent(get))

    def _commit(
        self,
        parent: str,
        files: Mapping[str, str],
        message: str,
        *,
        what: str,
        first: str | None = None,
    ) -> str:
        """`files` written on `parent`'s tree; with `first`, a merge of `first` and `parent`."""

        def write() -> str:
            base = self._repo.get_git_commit(parent)
            tree = base.tree
            if files:
                elements = [
                    InputGitTreeElement(path, "100644", "blob", content=text)
                    for path, text in sorted(files.items())
                ]
                tree = self._repo.create_git_tree(elements, base_tree=base.tree)
            parents = [base] if first is None else [self._repo.get_git_commit(first), base]
            return self._repo.create_git_commit(message, tree, parents).sha

        return self._call(what, write)

    def _move(self, branch: str, ref: GitRef | None, commit: str, *, what: str) -> None:
        """Point the branch at `commit`: create it, or fast-forward it from where it was."""
        try:
            if ref is None:
                self._call(what, lambda: self._repo.create_git_ref(f"refs/heads/{branch}", commit))
            else:
                self._call(what, lambda: ref.edit(commit, force=False))
        except GitHubError as e:
            if e.status != 422:
                raise
            raise TemporaryBackendError(
                f"{branch} moved on GitHub while opsgate was writing it ({e.reason}); try again",
                retry_after=1.0,
            ) from e

    def _pulls(self, branch: str, *, state: str = "all") -> list[PullState]:
        """The branch's pull requests into the base, newest first."""
        head = f"{self.owner}:{branch}"  # GitHub ignores a head filter without the owner
        return self._call(
            f"finding pull requests of {branch}",
            lambda: [
                _snapshot(p)
                for p in self._repo.get_pulls(state=state, head=head, base=self.base_branch)
            ],
        )

    def _open_pull(self, branch: str) -> PullState | None:
        return next(iter(self._pulls(branch, state="open")), None)

    def _number(self, branch: str) -> int:
        number = self.pull_number(branch)
        if number is None:
            raise BackendError(f"{branch} has no pull request on GitHub")
        return number

    def _create_pull(self, branch: str, *, title: str, body: str, what: str) -> PullState:
        def create() -> PullState:
            base = self.base_branch
            return _snapshot(self._repo.create_pull(base=base, head=branch, title=title, body=body))

        try:
            return self._call(what, create)
        except GitHubError as e:
            # Opened by an attempt whose answer was lost: find it instead of failing.
            existing = self._open_pull(branch) if e.status == 422 else None
            if existing is None:
                raise
            return existing

    def _unmet(self, number: int, head: str, *, all_failing: bool = False) -> list[str]:
        """What branch protection still wants before #number merges, in words for chat."""

        def read() -> list[str]:
            commit = self._repo.get_commit(head)
            found = {s.context: s.state for s in commit.get_combined_status().statuses}
            for run in commit.get_check_runs():
                done = run.status == "completed"
                found[run.name] = (run.conclusion or "failure") if done else "pending"
            try:
                rules = self._repo.get_branch(self.base_branch).get_protection()
            except GithubException as e:
                if e.status not in (403, 404):  # not protected, or the token may not read it
                    raise
                return unmet(None, found, need=0, have=0)
            reviews, checks = rules.required_pull_request_reviews, rules.required_status_checks
            need = reviews.required_approving_review_count if reviews else 0
            fresh = head if reviews and reviews.dismiss_stale_reviews else None
            pull = self._repo.get_pull(number)
            seen = (
                [(r.user.login, r.state, r.commit_id) for r in pull.get_reviews()] if need else []
            )
            required = None if all_failing else list(checks.contexts) if checks else []
            return unmet(required, found, need=need, have=approvals(seen, head=fresh))

        return self._call(f"reading what #{number} waits for", read)
