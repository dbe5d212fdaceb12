"""The local git PR backend: seeding, branches, merges and closes on a real bare repository,
every call safe to repeat."""

from __future__ import annotations

from pathlib import Path

import pytest

from approval_engine.errors import BackendError
from approval_engine.prs.local_git import LocalGitBackend
from tests.approval_engine._support import REPO_ROOT, branch_commits, git, merge_commits

VALUES = "helm-charts/checkout/values-staging.yaml"
HPA = "terraform/environments/prod/hpa.tf"


@pytest.fixture
def repo(repo_path: Path) -> LocalGitBackend:
    return LocalGitBackend(repo_path)


def open_branch(
    repo: LocalGitBackend, proposal_id: str, files: dict[str, str], *, base: str | None = None
) -> str:
    pull = repo.open(
        proposal_id=proposal_id,
        branch=f"opsgate/{proposal_id}",
        base_sha=base or repo.base_head(),
        files=files,
        title=f"{proposal_id}: a change",
        body="because",
    )
    return pull.head_sha


def edited(repo: LocalGitBackend, path: str, old: str, new: str) -> dict[str, str]:
    text = repo.read_file(path)
    assert old in text
    return {path: text.replace(old, new, 1)}


def merge(repo: LocalGitBackend, proposal_id: str, head: str) -> str:
    return repo.merge(
        proposal_id=proposal_id, branch=f"opsgate/{proposal_id}", head_sha=head, title="a change"
    )


# --- seeding ------------------------------------------------------------------------------


def test_the_seed_is_one_commit_holding_exactly_the_included_folders(repo: LocalGitBackend) -> None:
    expected = {
        path.relative_to(REPO_ROOT).as_posix()
        for top in ("helm-charts", "terraform")
        for path in (REPO_ROOT / top).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }

    tracked = set(git(repo.path, "ls-tree", "-r", "--name-only", "main").split())

    assert tracked == expected
    assert repo.log() == [f"{repo.base_head()[:7]} Seed the GitOps repository"]
    assert repo.branches() == ["main"]


def test_seeded_files_are_byte_for_byte_those_of_the_checkout(repo: LocalGitBackend) -> None:
    for path in (VALUES, HPA, "helm-charts/argocd/checkout-prod.yaml"):
        assert repo.read_file(path) == (REPO_ROOT / path).read_text(encoding="utf-8"), path


def test_a_directory_that_is_not_a_repository_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match="is not a git repository"):
        LocalGitBackend(tmp_path)


def test_reading_a_missing_file_names_it(repo: LocalGitBackend) -> None:
    with pytest.raises(BackendError, match=r"helm-charts/nope\.yaml does not exist"):
        repo.read_file("helm-charts/nope.yaml")


# --- branches -----------------------------------------------------------------------------


def test_opening_writes_one_commit_on_a_new_branch_from_the_base(repo: LocalGitBackend) -> None:
    base = repo.base_head()
    files = edited(repo, VALUES, "minReplicas: 2", "minReplicas: 4")

    head = open_branch(repo, "scale-1", files)

    assert repo.branch_head("opsgate/scale-1") == head
    assert repo.base_head() == base, "opening never moves the base"
    [commit] = branch_commits(repo.path, "scale-1")
    assert (commit.sha, commit.parents) == (head, (base,))
    assert commit.message.startswith("scale-1: a change\n\nbecause\n\nOpsgate-Proposal: scale-1")
    assert git(repo.path, "diff", "--name-only", base, head).split() == [VALUES]
    assert repo.read_file(VALUES, ref=head) == files[VALUES]


def test_opening_again_with_the_same_files_is_a_no_op(repo: LocalGitBackend) -> None:
    files = edited(repo, VALUES, "minReplicas: 2", "minReplicas: 4")
    head = open_branch(repo, "scale-1", files)

    assert open_branch(repo, "scale-1", files) == head
    assert len(branch_commits(repo.path, "scale-1")) == 1


def test_opening_with_new_files_adds_a_commit_on_top_of_the_branch(repo: LocalGitBackend) -> None:
    first = open_branch(repo, "scale-1", edited(repo, VALUES, "minReplicas: 2", "minReplicas: 4"))

    second = open_branch(repo, "scale-1", edited(repo, VALUES, "minReplicas: 2", "minReplicas: 5"))

    assert second != first
    assert git(repo.path, "rev-parse", f"{second}^").strip() == first
    assert "minReplicas: 5" in repo.read_file(VALUES, ref="opsgate/scale-1")


def test_line_endings_and_unicode_survive_byte_for_byte(repo: LocalGitBackend) -> None:
    text = '# ünïcödé\r\nreplicaCount: 2\r\nnote: "tab\tend"\r\n'

    head = open_branch(repo, "scale-1", {"helm-charts/odd/values.yaml": text})

    assert repo.read_file("helm-charts/odd/values.yaml", ref=head) == text


# --- merging and closing ------------------------------------------------------------------


def test_merging_makes_one_merge_commit_with_the_trailer_and_moves_the_base(
    repo: LocalGitBackend,
) -> None:
    base = repo.base_head()
    head = open_branch(repo, "scale-1", edited(repo, VALUES, "minReplicas: 2", "minReplicas: 4"))

    sha = merge(repo, "scale-1", head)

    assert repo.base_head() == sha
    [commit] = merge_commits(repo.path, "scale-1")
    assert (commit.sha, commit.parents) == (sha, (base, head))
    assert commit.message.startswith("Merge scale-1: a change")
    assert "minReplicas: 4" in repo.read_file(VALUES)


def test_merging_again_returns_the_first_merge_and_changes_nothing(repo: LocalGitBackend) -> None:
    head = open_branch(repo, "scale-1", edited(repo, VALUES, "minReplicas: 2", "minReplicas: 4"))
    sha = merge(repo, "scale-1", head)

    assert merge(repo, "scale-1", head) == sha
    assert repo.base_head() == sha
    assert len(merge_commits(repo.path, "scale-1")) == 1


def test_a_merge_is_found_by_its_exact_proposal_id_not_a_prefix(repo: LocalGitBackend) -> None:
    head = open_branch(repo, "scale-10", edited(repo, VALUES, "minReplicas: 2", "minReplicas: 4"))
    merge(repo, "scale-10", head)

    assert repo.find_merge("scale-1") is None
    assert repo.find_merge("scale-10") == repo.base_head()


def test_a_later_merge_contains_an_earlier_one_and_not_the_other_way(
    repo: LocalGitBackend,
) -> None:
    base = repo.base_head()
    one = open_branch(repo, "scale-1", edited(repo, VALUES, "minReplicas: 2", "minReplicas: 4"))
    two = open_branch(
        repo,
        "scale-2",
        edited(repo, HPA, "min_replicas           = 2", "min_replicas           = 3"),
        base=base,
    )
    first = merge(repo, "scale-1", one)
    second = merge(repo, "scale-2", two)

    assert repo.contains(second, first)
    assert repo.contains(first, first)
    assert not repo.contains(first, second)
    assert not repo.contains(base, two), "an unmerged branch is in no base revision"
    assert not repo.contains("f" * 40, first), "an unknown revision contains nothing"


def test_branches_on_independent_files_both_merge_after_the_base_moved(
    repo: LocalGitBackend,
) -> None:
    base = repo.base_head()
    helm = open_branch(repo, "scale-1", edited(repo, VALUES, "minReplicas: 2", "minReplicas: 4"))
    hcl = open_branch(
        repo,
        "scale-2",
        edited(repo, HPA, "min_replicas           = 2", "min_replicas           = 3"),
        base=base,
    )
    merge(repo, "scale-1", helm)

    merge(repo, "scale-2", hcl)

    assert "minReplicas: 4" in repo.read_file(VALUES)
    assert "min_replicas           = 3" in repo.read_file(HPA)


def test_a_conflicting_branch_is_refused_and_the_base_stays(repo: LocalGitBackend) -> None:
    base = repo.base_head()
    four = open_branch(repo, "scale-1", edited(repo, VALUES, "minReplicas: 2", "minReplicas: 4"))
    five = open_branch(
        repo, "scale-2", edited(repo, VALUES, "minReplicas: 2", "minReplicas: 5"), base=base
    )
    merged = merge(repo, "scale-1", four)

    with pytest.raises(BackendError, match="opsgate/scale-2 no longer merges cleanly into main"):
        merge(repo, "scale-2", five)

    assert repo.base_head() == merged
    assert merge_commits(repo.path, "scale-2") == []


def test_closing_deletes_the_branch_and_closing_again_is_harmless(repo: LocalGitBackend) -> None:
    open_branch(repo, "scale-1", edited(repo, VALUES, "minReplicas: 2", "minReplicas: 4"))

    repo.close(proposal_id="scale-1", branch="opsgate/scale-1", reason="rejected")
    repo.close(proposal_id="scale-1", branch="opsgate/scale-1", reason="rejected")

    assert repo.branch_head("opsgate/scale-1") is None
    assert repo.branches() == ["main"]


def test_a_ref_that_moved_meanwhile_is_not_overwritten(repo: LocalGitBackend) -> None:
    base = repo.base_head()
    head = open_branch(repo, "scale-1", edited(repo, VALUES, "minReplicas: 2", "minReplicas: 4"))

    with pytest.raises(BackendError, match="moved while opsgate was writing it"):
        repo._move_ref("refs/heads/opsgate/scale-1", new=base, old=base)

    assert repo.branch_head("opsgate/scale-1") == head
