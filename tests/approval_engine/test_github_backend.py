"""The GitHub PR backend: the real PyGithub against the fake GitHub API, every call safe to
repeat, every failure turned into an error that says what to do."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from approval_engine.errors import BackendError, RateLimitedError, TemporaryBackendError
from approval_engine.prs.base import PRBackend, PullRequest
from approval_engine.prs.github import GitHubBackend, Mergeability
from tests.fakes.github_api import BOT_LOGIN, FakeGitHub

REPO = "acme/gitops"
VALUES = "helm-charts/checkout/values-prod.yaml"
HPA = "terraform/environments/prod/hpa.tf"
SEED = {
    VALUES: "replicaCount: 2\nautoscaling:\n  minReplicas: 2\n",
    HPA: 'module "hpa" {\n  min_replicas = 2\n}\n',
    "README.md": "the GitOps repository\n",
}
BRANCH = "opsgate/burst-1"
NOW = 1_900_000_000.0


@pytest.fixture
def gh() -> Iterator[FakeGitHub]:
    with FakeGitHub() as fake:
        fake.create_repo(REPO, files=SEED)
        yield fake


@pytest.fixture
def sleeps() -> list[float]:
    return []


def make(
    gh: FakeGitHub, sleeps: list[float], *, repo: str = REPO, **options: object
) -> GitHubBackend:
    settings: dict[str, object] = {
        "token": SecretStr(gh.token),
        "api_base_url": gh.api_url,
        "pace": False,
        "sleep": sleeps.append,
        "clock": lambda: NOW,
    }
    return GitHubBackend(repo=repo, **(settings | options))  # type: ignore[arg-type]


@pytest.fixture
def backend(gh: FakeGitHub, sleeps: list[float]) -> GitHubBackend:
    return make(gh, sleeps)


def open_pull(
    backend: GitHubBackend,
    files: dict[str, str] | None = None,
    *,
    body: str = "because traffic doubles at 9am",
    base: str | None = None,
) -> PullRequest:
    return backend.open(
        proposal_id="burst-1",
        branch=BRANCH,
        base_sha=base or backend.base_head(),
        files=files if files is not None else {VALUES: SEED[VALUES].replace("2\n", "4\n", 1)},
        title="burst-1: checkout prod replicaCount 2 → 4",
        body=body,
    )


def merge(backend: GitHubBackend, head: str) -> str:
    return backend.merge(proposal_id="burst-1", branch=BRANCH, head_sha=head, title="burst-1")


def test_it_is_a_pr_backend(backend: GitHubBackend) -> None:
    typed: PRBackend = backend
    assert typed.name == "github"


# --- open -------------------------------------------------------------------------------------


def test_open_makes_a_branch_a_commit_and_a_pull(gh: FakeGitHub, backend: GitHubBackend) -> None:
    base = backend.base_head()

    pull = open_pull(backend)

    repo = gh.repo(REPO)
    assert repo.branch(BRANCH) == pull.head_sha
    commit = repo.commits[pull.head_sha]
    assert commit.parents == (base,)
    assert "Opsgate-Proposal: burst-1" in commit.message
    assert repo.file(VALUES, BRANCH) == "replicaCount: 4\nautoscaling:\n  minReplicas: 2\n"
    assert repo.file(HPA, BRANCH) == SEED[HPA]
    assert repo.file(VALUES) == SEED[VALUES]  # the base is untouched
    [made] = gh.pulls_for(REPO, BRANCH)
    assert (made.title, made.body, made.base, made.head_sha, made.state) == (
        "burst-1: checkout prod replicaCount 2 → 4",
        "because traffic doubles at 9am",
        "main",
        pull.head_sha,
        "open",
    )
    assert pull.url == f"{gh.url}/{REPO}/pull/{made.number}"
    assert backend.pull_number(BRANCH) == made.number
    assert backend.read_file(VALUES, ref=pull.head_sha).startswith("replicaCount: 4")


def test_opening_again_updates_the_pull_and_never_opens_a_second(
    gh: FakeGitHub, backend: GitHubBackend
) -> None:
    first = open_pull(backend)
    commits_before = len(gh.calls_to("POST", "/git/commits$"))

    again = open_pull(backend, body="because traffic triples at 9am")

    assert again == first  # same files: no new commit
    assert len(gh.calls_to("POST", "/git/commits$")) == commits_before
    assert len(gh.calls_to("POST", "/pulls$")) == 1
    [pull] = gh.pulls_for(REPO, BRANCH)
    assert pull.body == "because traffic triples at 9am"

    unchanged = len(gh.writes())
    open_pull(backend, body="because traffic triples at 9am")
    assert len(gh.writes()) == unchanged  # nothing differs: nothing is written


def test_a_changed_wish_commits_on_top_of_the_branch(
    gh: FakeGitHub, backend: GitHubBackend
) -> None:
    first = open_pull(backend)

    second = open_pull(backend, {VALUES: SEED[VALUES].replace("2\n", "6\n", 1), HPA: SEED[HPA]})

    repo = gh.repo(REPO)
    assert second.head_sha != first.head_sha
    assert repo.commits[second.head_sha].parents == (first.head_sha,)
    assert repo.file(VALUES, BRANCH).startswith("replicaCount: 6")  # type: ignore[union-attr]
    [pull] = gh.pulls_for(REPO, BRANCH)
    assert pull.head_sha == second.head_sha
    [tree_write] = gh.calls_to("POST", "/git/trees$")[1:]
    assert [e["path"] for e in tree_write.body["tree"]] == [VALUES]  # only what differs


def test_files_rendered_on_a_moved_base_merge_the_base_into_the_branch(
    gh: FakeGitHub, backend: GitHubBackend
) -> None:
    first = open_pull(backend)
    moved = SEED[VALUES].replace("replicaCount: 2", "replicaCount: 3")
    main = gh.push(REPO, "main", {VALUES: moved, "README.md": "moved\n"})
    rendered = {VALUES: moved.replace("minReplicas: 2", "minReplicas: 4")}

    pull = open_pull(backend, rendered, base=main)
    again = open_pull(backend, rendered, base=main)

    repo = gh.repo(REPO)
    commit = repo.commits[pull.head_sha]
    assert commit.parents == (first.head_sha, main)  # a fast-forward of the branch: no force
    assert "Opsgate-Rebase: burst-1" in commit.message
    assert repo.file(VALUES, BRANCH) == rendered[VALUES]
    assert repo.file("README.md", BRANCH) == "moved\n"  # main's tree, not the old branch's
    assert again == pull  # safe to repeat
    sha = merge(backend, pull.head_sha)
    assert repo.file(VALUES, sha) == rendered[VALUES]


def test_a_crash_between_branch_and_pull_resumes(gh: FakeGitHub, backend: GitHubBackend) -> None:
    gh.fail_next(500, times=4, method="POST", path="/pulls$")  # more than the retries

    with pytest.raises(TemporaryBackendError):
        open_pull(backend)
    head = gh.repo(REPO).branch(BRANCH)
    assert head is not None and gh.pulls_for(REPO, BRANCH) == []

    pull = open_pull(backend)

    assert pull.head_sha == head
    assert len(gh.calls_to("POST", "/git/commits$")) == 1
    assert len(gh.calls_to("POST", "/git/refs$")) == 1
    assert [p.number for p in gh.pulls_for(REPO, BRANCH)] == [1]


def test_a_pull_opened_whose_answer_was_lost_is_found(
    gh: FakeGitHub, backend: GitHubBackend, sleeps: list[float]
) -> None:
    gh.fail_next(502, method="POST", path="/pulls$", after_handling=True)

    pull = open_pull(backend)

    assert [p.number for p in gh.pulls_for(REPO, BRANCH)] == [1]
    assert [c.status for c in gh.calls_to("POST", "/pulls$")] == [502, 422]
    assert pull.url.endswith("/pull/1")
    assert sleeps == [1.0]


def test_a_branch_moved_while_writing_is_temporary(gh: FakeGitHub, backend: GitHubBackend) -> None:
    open_pull(backend)
    gh.fail_next(422, method="PATCH", message="Update is not a fast forward")

    with pytest.raises(TemporaryBackendError, match="moved on GitHub while opsgate was writing"):
        open_pull(backend, {VALUES: "replicaCount: 8\n"})


# --- merge ------------------------------------------------------------------------------------


def test_merge_moves_the_base_to_the_new_content(gh: FakeGitHub, backend: GitHubBackend) -> None:
    base = backend.base_head()
    pull = open_pull(backend)

    sha = merge(backend, pull.head_sha)

    repo = gh.repo(REPO)
    assert backend.base_head() == sha == repo.branch("main")
    assert repo.commits[sha].parents == (base,)  # squash, the default
    assert repo.commits[sha].message.startswith("burst-1 (#1)")
    assert "Opsgate-Proposal: burst-1" in repo.commits[sha].message
    assert backend.read_file(VALUES).startswith("replicaCount: 4")
    merged = backend.pull_state(BRANCH)
    assert merged is not None and (merged.merged, merged.merge_commit_sha) == (True, sha)
    assert backend.contains(sha, base)
    assert not backend.contains(base, sha)
    assert not backend.contains(sha, "f" * 40)
    [put] = gh.calls_to("PUT", "/merge$")
    assert put.body["merge_method"] == "squash" and put.body["sha"] == pull.head_sha


def test_merge_method_is_configurable(gh: FakeGitHub, sleeps: list[float]) -> None:
    backend = make(gh, sleeps, merge_method="merge")
    pull = open_pull(backend)

    sha = merge(backend, pull.head_sha)

    assert gh.repo(REPO).commits[sha].parents[1] == pull.head_sha


def test_merge_is_idempotent(gh: FakeGitHub, backend: GitHubBackend) -> None:
    pull = open_pull(backend)

    first = merge(backend, pull.head_sha)
    second = merge(backend, pull.head_sha)

    assert first == second
    assert len(gh.calls_to("PUT", "/merge$")) == 1


def test_a_merge_whose_answer_was_lost_is_found(
    gh: FakeGitHub, backend: GitHubBackend, sleeps: list[float]
) -> None:
    pull = open_pull(backend)
    gh.fail_next(502, method="PUT", path="/merge$", after_handling=True)

    sha = merge(backend, pull.head_sha)

    assert sha == gh.repo(REPO).branch("main")
    assert [c.status for c in gh.calls_to("PUT", "/merge$")] == [502, 405]
    assert len(gh.repo(REPO).log()) == 2  # seed + one merge


def test_a_stale_head_is_never_merged(gh: FakeGitHub, backend: GitHubBackend) -> None:
    pull = open_pull(backend)
    base = backend.base_head()
    gh.push(REPO, BRANCH, {VALUES: "replicaCount: 40\n"}, author="mallory")

    with pytest.raises(BackendError, match=r"moved on GitHub to [0-9a-f]{7}; the approvals"):
        merge(backend, pull.head_sha)
    assert backend.base_head() == base
    assert gh.calls_to("PUT", "/merge$") == []


def test_github_refusing_a_stale_sha_is_an_error(gh: FakeGitHub, backend: GitHubBackend) -> None:
    pull = open_pull(backend)
    gh.fail_next(
        409, method="PUT", message="Head branch was modified. Review and try the merge again."
    )

    with pytest.raises(BackendError, match="Head branch was modified"):
        merge(backend, pull.head_sha)


def test_merging_a_pull_closed_on_github_says_so(gh: FakeGitHub, backend: GitHubBackend) -> None:
    pull = open_pull(backend)
    gh.close_pull(REPO, 1)

    with pytest.raises(BackendError, match="no open pull request to merge"):
        merge(backend, pull.head_sha)


# --- close ------------------------------------------------------------------------------------


def test_close_comments_closes_and_deletes_the_branch_once(
    gh: FakeGitHub, backend: GitHubBackend
) -> None:
    open_pull(backend)

    backend.close(proposal_id="burst-1", branch=BRANCH, reason="superseded by burst-2")

    [pull] = gh.pulls_for(REPO, BRANCH)
    assert pull.state == "closed" and not pull.merged
    assert [c.body for c in pull.comments] == ["Closed by opsgate (burst-1): superseded by burst-2"]
    assert gh.repo(REPO).branch(BRANCH) is None
    writes = len(gh.writes())
    backend.close(proposal_id="burst-1", branch=BRANCH, reason="superseded by burst-2")
    assert len(gh.writes()) == writes


def test_a_close_interrupted_after_its_comment_says_it_once(
    gh: FakeGitHub, backend: GitHubBackend
) -> None:
    open_pull(backend)
    gh.fail_next(500, times=4, method="PATCH", path=r"/pulls/1$")

    with pytest.raises(TemporaryBackendError):
        backend.close(proposal_id="burst-1", branch=BRANCH, reason="expired")
    backend.close(proposal_id="burst-1", branch=BRANCH, reason="expired")

    [pull] = gh.pulls_for(REPO, BRANCH)
    assert pull.state == "closed" and len(pull.comments) == 1


# --- failures ---------------------------------------------------------------------------------


def test_a_rate_limit_with_reset_is_temporary_with_retry_after(
    gh: FakeGitHub, backend: GitHubBackend, sleeps: list[float]
) -> None:
    gh.rate_limit_next(reset_at=int(NOW) + 90)

    with pytest.raises(TemporaryBackendError) as limited:
        backend.base_head()

    assert limited.value.retry_after == 90
    assert "rate limit" in str(limited.value)
    assert sleeps == []  # not slept on here: the caller honours retry_after
    assert len(gh.calls) == 1
    # The primary limit counts every call of the token: the engine pauses them all.
    assert isinstance(limited.value, RateLimitedError)
    assert (limited.value.host, limited.value.backend_wide) == ("GitHub", True)


def test_429_with_retry_after_is_temporary(gh: FakeGitHub, backend: GitHubBackend) -> None:
    gh.throttle_next(retry_after=42)

    with pytest.raises(TemporaryBackendError) as throttled:
        open_pull(backend)

    assert throttled.value.retry_after == 42
    assert isinstance(throttled.value, RateLimitedError)
    assert not throttled.value.backend_wide  # a secondary limit: only this work waits


def test_a_secondary_limit_without_headers_waits_a_minute(
    gh: FakeGitHub, backend: GitHubBackend
) -> None:
    gh.fail_next(403, message="You have exceeded a secondary rate limit. Please wait a bit.")

    with pytest.raises(TemporaryBackendError) as limited:
        backend.base_head()

    assert limited.value.retry_after == 60
    assert isinstance(limited.value, RateLimitedError) and not limited.value.backend_wide


def test_a_502_is_retried_with_backoff(
    gh: FakeGitHub, backend: GitHubBackend, sleeps: list[float]
) -> None:
    gh.fail_next(502, path="/git/ref/heads/main$")

    assert backend.base_head() == gh.repo(REPO).branch("main")
    assert sleeps == [1.0]


def test_a_dropped_connection_is_retried(
    gh: FakeGitHub, backend: GitHubBackend, sleeps: list[float]
) -> None:
    gh.drop_next(times=2)

    assert backend.read_file(HPA) == SEED[HPA]
    assert sleeps == [1.0, 2.0]


def test_server_errors_that_last_become_temporary(
    gh: FakeGitHub, backend: GitHubBackend, sleeps: list[float]
) -> None:
    gh.fail_next(503, times=10)

    with pytest.raises(TemporaryBackendError, match="GitHub answered 503") as failed:
        backend.base_head()

    assert sleeps == [1.0, 2.0, 4.0]
    assert len(gh.calls) == 4
    assert failed.value.retry_after == 8.0


def test_an_unknown_repository_is_a_clear_error(gh: FakeGitHub, sleeps: list[float]) -> None:
    backend = make(gh, sleeps, repo="acme/nope")

    with pytest.raises(BackendError) as missing:
        backend.base_head()

    text = str(missing.value)
    assert not isinstance(missing.value, TemporaryBackendError)
    assert "acme/nope" in text and "404" in text and "check github.repo" in text


def test_a_bad_token_is_a_clear_error_that_hides_the_token(gh: FakeGitHub) -> None:
    backend = GitHubBackend(
        repo=REPO, token=SecretStr("ghp_secret_value"), api_base_url=gh.api_url, pace=False
    )

    with pytest.raises(BackendError) as refused:
        backend.check()

    assert "Bad credentials" in str(refused.value) and "token" in str(refused.value)
    assert "ghp_secret_value" not in str(refused.value)
    assert "ghp_secret_value" not in repr(backend.__dict__)


def test_a_missing_file_is_named(backend: GitHubBackend) -> None:
    with pytest.raises(BackendError, match=r"helm-charts/nope\.yaml does not exist at main"):
        backend.read_file("helm-charts/nope.yaml")


def test_a_bad_repo_name_is_refused(gh: FakeGitHub) -> None:
    with pytest.raises(BackendError, match="owner/name"):
        GitHubBackend(repo="gitops", token=SecretStr("x"), api_base_url=gh.api_url)


# --- mergeability, reviews, labels, comments, reconcile ---------------------------------------


def test_unmet_branch_protection_is_explained(gh: FakeGitHub, backend: GitHubBackend) -> None:
    pull = open_pull(backend)
    gh.protect(REPO, "main", required_approvals=2, contexts=["ci/test"])

    verdict = backend.mergeability(BRANCH)

    assert verdict == Mergeability(
        False,
        "required check ci/test has not reported; GitHub wants 2 approving reviews, has 0",
    )
    with pytest.raises(BackendError) as refused:
        merge(backend, pull.head_sha)
    assert "At least 2 approving reviews are required" in str(refused.value)
    assert "GitHub wants 2 approving reviews, has 0" in str(refused.value)

    gh.set_status(REPO, pull.head_sha, "ci/test", "failure")
    gh.approve(REPO, 1, by="alice")
    assert backend.mergeability(BRANCH).reason == (
        "check ci/test is failure; GitHub wants 2 approving reviews, has 1"
    )
    gh.set_status(REPO, pull.head_sha, "ci/test", "success")
    gh.approve(REPO, 1, by="bob")
    assert backend.mergeability(BRANCH) == Mergeability(True, "ready to merge")
    assert merge(backend, pull.head_sha) == gh.repo(REPO).branch("main")


def test_conflicts_pending_and_unstable_are_explained(
    gh: FakeGitHub, backend: GitHubBackend
) -> None:
    pull = open_pull(backend)
    gh.add_check_run(REPO, pull.head_sha, "lint", conclusion="failure")
    assert backend.mergeability(BRANCH) == Mergeability(
        True, "mergeable, though check lint is failure"
    )

    gh.repo(REPO).pulls[1].mergeable_pending = 1
    assert backend.mergeability(BRANCH).mergeable is None

    gh.push(REPO, "main", {VALUES: "replicaCount: 3\n"})
    verdict = backend.mergeability(BRANCH)
    assert verdict.mergeable is False and "conflicts with main" in verdict.reason
    assert backend.mergeability("opsgate/none") == Mergeability(
        False, "opsgate/none has no open pull request"
    )


def test_one_token_records_the_approval_as_a_comment_review(
    gh: FakeGitHub, backend: GitHubBackend
) -> None:
    pull = open_pull(backend)

    state = backend.review(BRANCH, approver_login="alice", head_sha=pull.head_sha, body="LGTM")
    again = backend.review(BRANCH, approver_login="alice", head_sha=pull.head_sha, body="LGTM")

    [review] = gh.repo(REPO).pulls[1].reviews
    assert state == again == "COMMENTED"
    assert (review.user, review.state, review.commit_id) == (BOT_LOGIN, "COMMENTED", pull.head_sha)
    assert "Approved in chat by @alice" in review.body
    assert "GitHub names the token's account as the reviewer" in review.body
    assert "separate review token" in review.body


def test_a_review_token_records_real_approvals(gh: FakeGitHub, sleeps: list[float]) -> None:
    gh.add_token("ghp_reviewer", "opsgate-reviewer")
    backend = make(gh, sleeps, review_token=SecretStr("ghp_reviewer"))
    pull = open_pull(backend)
    gh.protect(REPO, "main", required_approvals=1)

    assert backend.review(BRANCH, approver_login="bob", head_sha=pull.head_sha, body="") == (
        "APPROVED"
    )

    [review] = gh.repo(REPO).pulls[1].reviews
    assert (review.user, review.state) == ("opsgate-reviewer", "APPROVED")
    assert "@bob" in review.body
    assert backend.mergeability(BRANCH).mergeable is True


def test_a_review_of_a_moved_head_is_refused(gh: FakeGitHub, backend: GitHubBackend) -> None:
    pull = open_pull(backend)
    gh.push(REPO, BRANCH, {VALUES: "replicaCount: 9\n"})

    with pytest.raises(BackendError, match="approval was for"):
        backend.review(BRANCH, approver_login="alice", head_sha=pull.head_sha, body="")
    assert gh.repo(REPO).pulls[1].reviews == []


def test_labels_and_comments(gh: FakeGitHub, backend: GitHubBackend) -> None:
    open_pull(backend)

    backend.label(BRANCH, ["opsgate", "manual", "risk:low"])
    backend.label(BRANCH, ["opsgate"])
    backend.comment(BRANCH, "Changed: minReplicas 4 → 6")

    pull = gh.repo(REPO).pulls[1]
    assert pull.labels == ["opsgate", "manual", "risk:low"]
    assert [c.body for c in pull.comments] == ["Changed: minReplicas 4 → 6"]
    with pytest.raises(BackendError, match="no pull request"):
        backend.comment("opsgate/none", "hello")


def test_unlabel_removes_only_what_the_pull_carries(gh: FakeGitHub, backend: GitHubBackend) -> None:
    open_pull(backend)
    backend.label(BRANCH, ["opsgate", "risk:low"])

    backend.unlabel(BRANCH, ["risk:low", "risk:high"])

    assert gh.repo(REPO).pulls[1].labels == ["opsgate"]


def test_a_comment_once_is_posted_once_however_often_it_is_repeated(
    gh: FakeGitHub, backend: GitHubBackend
) -> None:
    open_pull(backend)

    backend.comment(BRANCH, "Updated: minReplicas 4 → 6", once="burst-1 update abc")
    backend.comment(BRANCH, "Updated: minReplicas 4 → 6", once="burst-1 update abc")
    backend.comment(BRANCH, "Updated: minReplicas 6 → 8", once="burst-1 update def")

    bodies = [c.body for c in gh.repo(REPO).pulls[1].comments]
    assert len(bodies) == 2
    assert bodies[0].startswith("Updated: minReplicas 4 → 6\n<!-- opsgate-once burst-1")


def test_pull_state_sees_changes_made_outside_opsgate(
    gh: FakeGitHub, backend: GitHubBackend
) -> None:
    assert backend.pull_state(BRANCH) is None
    pull = open_pull(backend)
    pushed = gh.push(REPO, BRANCH, {HPA: "min_replicas = 3\n"})

    state = backend.pull_state(BRANCH)
    assert state is not None and (state.state, state.head_sha, state.merged) == (
        "open",
        pushed,
        False,
    )
    assert pushed != pull.head_sha

    sha = gh.merge_pull(REPO, 1, by="carol")
    state = backend.pull_state(BRANCH)
    assert state is not None
    assert (state.state, state.merged, state.merge_commit_sha) == ("closed", True, sha)
