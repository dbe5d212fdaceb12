"""The PR backend protocol that local git and GitHub both implement, and its optional extras.

A backend that hosts pull requests offers more than branches: labels, comments, reviews, a
mergeability check and the pull request's state as the host has it. Each is a small protocol
of its own; the engine asks `isinstance(backend, Reviewer)` and so on, so the local git
backend (which has none of them) keeps working unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class PullRequest:
    branch: str
    head_sha: str
    url: str


@dataclass(frozen=True)
class Mergeability:
    """Whether the host would merge now (None: it is still computing) and why, for chat."""

    mergeable: bool | None
    reason: str


@dataclass(frozen=True)
class PullState:
    """A branch's pull request as the host has it, for reconciling the store."""

    number: int
    state: str  # open | closed
    merged: bool
    head_sha: str
    merge_commit_sha: str | None
    url: str
    title: str
    body: str


class PRBackend(Protocol):
    """Every call is idempotent: repeated after a crash, it never branches or merges twice."""

    name: str

    def base_head(self) -> str:
        """The commit the base branch points at now."""
        ...

    def read_file(self, path: str, *, ref: str | None = None) -> str:
        """A file's text at `ref` (default: the base branch); BackendError when absent."""
        ...

    def contains(self, revision: str, commit: str) -> bool:
        """Whether `revision` has `commit` in its history (a later merge carries an earlier one)."""
        ...

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
        """Make `branch` hold `files` (on top of base_sha, or of the branch when it exists).

        A branch that does not contain base_sha (the base moved and the files were rendered
        again on it) gets a merge of itself and base_sha holding base_sha's tree and `files`:
        it merges cleanly again, without a force push."""
        ...

    def merge(self, *, proposal_id: str, branch: str, head_sha: str, title: str) -> str:
        """Merge the branch at head_sha into the base; return the merge commit."""
        ...

    def close(self, *, proposal_id: str, branch: str, reason: str) -> None:
        """Close without merging."""
        ...


@runtime_checkable
class Labeler(Protocol):
    """Labels on the branch's pull request; adding one it has, or removing one it lacks, is
    no error."""

    def label(self, branch: str, labels: Iterable[str]) -> None: ...

    def unlabel(self, branch: str, labels: Iterable[str]) -> None: ...


@runtime_checkable
class Commenter(Protocol):
    def comment(self, branch: str, text: str, *, once: str | None = None) -> None:
        """Comment on the branch's pull request; with `once`, not if a comment carries it."""
        ...


@runtime_checkable
class Reviewer(Protocol):
    def review(self, branch: str, *, approver_login: str, head_sha: str, body: str) -> str:
        """Record a chat approval as a review of head_sha; repeating it records nothing new."""
        ...


@runtime_checkable
class MergeCheck(Protocol):
    def mergeability(self, branch: str) -> Mergeability: ...


@runtime_checkable
class PullTracker(Protocol):
    def pull_state(self, branch: str) -> PullState | None:
        """The branch's open pull request, else its newest one; None when it never had one."""
        ...
