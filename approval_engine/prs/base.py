"""The PR backend protocol that local git and GitHub both implement."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class PullRequest:
    branch: str
    head_sha: str
    url: str


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
        """Make `branch` hold `files` (on top of base_sha, or of the branch when it exists)."""
        ...

    def merge(self, *, proposal_id: str, branch: str, head_sha: str, title: str) -> str:
        """Merge the branch at head_sha into the base; return the merge commit."""
        ...

    def close(self, *, proposal_id: str, branch: str, reason: str) -> None:
        """Close without merging."""
        ...
