"""A PR backend on a local bare git repository: the embedded default for the demo.

Branches are written with git's plumbing (hash-object, update-index on a private index,
commit-tree, update-ref with the expected old value), so no working tree goes stale and two
processes cannot both move a ref from the same old commit.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

from approval_engine.errors import BackendError
from approval_engine.prs.base import PullRequest

_ZERO = "0" * 40
_TRAILER = "Opsgate-Proposal"
_REBASE_TRAILER = "Opsgate-Rebase"  # not the merge trailer: find_merge must not take it


class GitError(BackendError):
    """A git command failed."""


class LocalGitBackend:
    name = "local_git"

    def __init__(self, path: Path, *, base_branch: str = "main") -> None:
        self.path = path
        self.base_branch = base_branch
        if not (path / "HEAD").exists():
            raise BackendError(f"{path} is not a git repository (run opsgate demo --reset?)")

    # --- set-up ---------------------------------------------------------------------------

    @classmethod
    def create(
        cls, path: Path, *, source: Path, include: Iterable[str], base_branch: str = "main"
    ) -> LocalGitBackend:
        """A new bare repository whose first commit holds `include` dirs copied from `source`."""
        path.mkdir(parents=True, exist_ok=True)
        _git(path, "init", "--quiet", "--bare", f"--initial-branch={base_branch}")
        backend = cls(path, base_branch=base_branch)
        files: dict[str, str] = {}
        for top in include:
            for file in sorted((source / top).rglob("*")):
                if file.is_file() and "__pycache__" not in file.parts:
                    files[file.relative_to(source).as_posix()] = file.read_text(encoding="utf-8")
        commit = backend._commit(parent=None, files=files, message="Seed the GitOps repository")
        backend._move_ref(f"refs/heads/{base_branch}", new=commit, old=_ZERO)
        return backend

    # --- reads ----------------------------------------------------------------------------

    def base_head(self) -> str:
        return self._rev(f"refs/heads/{self.base_branch}") or ""

    def branch_head(self, branch: str) -> str | None:
        return self._rev(f"refs/heads/{branch}")

    def read_file(self, path: str, *, ref: str | None = None) -> str:
        rev = ref or f"refs/heads/{self.base_branch}"
        result = _run(self.path, "show", f"{rev}:{path}", check=False)
        if result.returncode != 0:
            raise BackendError(f"{path} does not exist at {rev[:12]}")
        return result.stdout

    def log(self, ref: str | None = None, *, limit: int = 20) -> list[str]:
        out = _git(self.path, "log", "--format=%h %s", f"-{limit}", ref or self.base_branch)
        return out.splitlines()

    def branches(self) -> list[str]:
        out = _git(self.path, "for-each-ref", "--format=%(refname:short)", "refs/heads/")
        return out.split()

    def contains(self, revision: str, commit: str) -> bool:
        result = _run(self.path, "merge-base", "--is-ancestor", commit, revision, check=False)
        return result.returncode == 0

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
        ref = f"refs/heads/{branch}"
        head = self._rev(ref)
        behind = head is not None and not self.contains(head, base_sha)
        if head is not None and not behind and self._holds(head, files):
            return PullRequest(branch=branch, head_sha=head, url=self._url(branch))
        if head is not None and behind:
            # Re-rendered on a moved base: merge the base in, as GitHub's "Update branch" does.
            message = (
                f"Update {branch} with {self.base_branch} at {base_sha[:7]}\n\n"
                f"{_REBASE_TRAILER}: {proposal_id}\n"
            )
            commit = self._commit(parent=base_sha, files=files, message=message, first=head)
        else:
            message = f"{title}\n\n{body}\n\n{_TRAILER}: {proposal_id}\n"
            commit = self._commit(parent=head or base_sha, files=files, message=message)
        self._move_ref(ref, new=commit, old=head or _ZERO)
        return PullRequest(branch=branch, head_sha=commit, url=self._url(branch))

    def merge(self, *, proposal_id: str, branch: str, head_sha: str, title: str) -> str:
        done = self.find_merge(proposal_id)
        # Only a merge of this very head counts: ids restart with a new store on an old repo.
        if done is not None and self._rev(f"{done}^2") == head_sha:
            return done
        base = self.base_head()
        result = _run(self.path, "merge-tree", "--write-tree", base, head_sha, check=False)
        if result.returncode != 0:
            raise BackendError(
                f"{branch} no longer merges cleanly into {self.base_branch}: "
                f"{result.stdout.strip().splitlines()[-1] if result.stdout.strip() else 'conflict'}"
            )
        tree = result.stdout.split()[0]
        message = f"Merge {proposal_id}: {title}\n\n{_TRAILER}: {proposal_id}\n"
        commit = _git(self.path, "commit-tree", tree, "-p", base, "-p", head_sha, "-m", message)
        self._move_ref(f"refs/heads/{self.base_branch}", new=commit.strip(), old=base)
        return commit.strip()

    def close(self, *, proposal_id: str, branch: str, reason: str) -> None:
        head = self._rev(f"refs/heads/{branch}")
        if head is not None:
            _git(self.path, "update-ref", "-d", f"refs/heads/{branch}", head)

    def find_merge(self, proposal_id: str) -> str | None:
        out = _git(
            self.path,
            "log",
            "--merges",
            "--format=%H",
            "--fixed-strings",
            f"--grep={_TRAILER}: {proposal_id}",
            self.base_branch,
        )
        for sha in out.split():
            message = _git(self.path, "log", "-1", "--format=%B", sha)
            if f"{_TRAILER}: {proposal_id}\n" in message + "\n":
                return sha
        return None

    # --- plumbing -------------------------------------------------------------------------

    def _url(self, branch: str) -> str:
        return f"{self.path}#{branch}"

    def _rev(self, ref: str) -> str | None:
        result = _run(
            self.path, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False
        )
        return result.stdout.strip() or None

    def _holds(self, commit: str, files: Mapping[str, str]) -> bool:
        for path, text in files.items():
            result = _run(self.path, "show", f"{commit}:{path}", check=False)
            if result.returncode != 0 or result.stdout != text:
                return False
        return True

    def _commit(
        self,
        *,
        parent: str | None,
        files: Mapping[str, str],
        message: str,
        first: str | None = None,
    ) -> str:
        """`files` written on `parent`'s tree; with `first`, a merge whose parents are `first`
        and then `parent`."""
        with tempfile.TemporaryDirectory(prefix="opsgate-index-") as tmp:
            env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
            if parent is not None:
                _git(self.path, "read-tree", parent, env=env)
            for path, text in files.items():
                blob = _git(self.path, "hash-object", "-w", "--stdin", input_text=text).strip()
                _git(
                    self.path,
                    "update-index",
                    "--add",
                    "--cacheinfo",
                    f"100644,{blob},{path}",
                    env=env,
                )
            tree = _git(self.path, "write-tree", env=env).strip()
        args = ["commit-tree", tree, "-m", message]
        parents = [p for p in (first, parent) if p is not None]
        args[2:2] = [arg for p in parents for arg in ("-p", p)]
        return _git(self.path, *args).strip()

    def _move_ref(self, ref: str, *, new: str, old: str) -> None:
        result = _run(self.path, "update-ref", ref, new, old, check=False)
        if result.returncode != 0:
            raise BackendError(f"{ref} moved while opsgate was writing it; try again")


_IDENTITY = {
    "GIT_AUTHOR_NAME": "opsgate",
    "GIT_AUTHOR_EMAIL": "opsgate@localhost",
    "GIT_COMMITTER_NAME": "opsgate",
    "GIT_COMMITTER_EMAIL": "opsgate@localhost",
}


def _run(
    repo: Path,
    *args: str,
    check: bool = True,
    env: Mapping[str, str] | None = None,
    input_text: str | None = None,
) -> subprocess.CompletedProcess[str]:
    git = shutil.which("git")
    if git is None:
        raise GitError("git is not installed; the local GitOps repository needs it")
    full_env = {**os.environ, **_IDENTITY, **(env or {})}
    # Bytes in and out: text mode would turn CRLF into LF and break byte-for-byte files.
    raw = subprocess.run(
        [git, "--git-dir", str(repo), *args],
        capture_output=True,
        env=full_env,
        input=None if input_text is None else input_text.encode("utf-8"),
        check=False,
    )
    result = subprocess.CompletedProcess(
        raw.args,
        raw.returncode,
        raw.stdout.decode("utf-8", errors="replace"),
        raw.stderr.decode("utf-8", errors="replace"),
    )
    if check and result.returncode != 0:
        raise GitError(f"git {args[0]} failed: {result.stderr.strip() or result.stdout.strip()}")
    return result


def _git(
    repo: Path, *args: str, env: Mapping[str, str] | None = None, input_text: str | None = None
) -> str:
    return _run(repo, *args, env=env, input_text=input_text).stdout
