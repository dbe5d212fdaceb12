"""The fake GitHub REST API answers the real PyGithub client like GitHub, refusals included."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest
import requests
from github import (
    Auth,
    BadCredentialsException,
    Github,
    GithubException,
    InputGitTreeElement,
    RateLimitExceededException,
    UnknownObjectException,
)
from github.Repository import Repository

from tests.fakes.github_api import BOT_LOGIN, FakeGitHub

REPO = "acme/gitops"
VALUES = "helm-charts/checkout/values.yaml"
SEED = {VALUES: "replicas: 2\n", "terraform/prod/hpa.tf": "min = 2\n", "README.md": "gitops\n"}


@pytest.fixture
def gh() -> Iterator[FakeGitHub]:
    with FakeGitHub() as fake:
        fake.create_repo(REPO, files=SEED)
        yield fake


def client(gh: FakeGitHub, token: str | None = None) -> Github:
    return Github(
        auth=Auth.Token(token or gh.token),
        base_url=gh.api_url,
        retry=None,
        seconds_between_requests=None,
        seconds_between_writes=None,
    )


@pytest.fixture
def repo(gh: FakeGitHub) -> Repository:
    return client(gh).get_repo(REPO)


def branch_with(repo: Repository, branch: str, files: dict[str, str]) -> str:
    """Create `branch` from main holding `files`, through the git data API like the backend."""
    base = repo.get_git_commit(repo.get_branch("main").commit.sha)
    elements = [InputGitTreeElement(p, "100644", "blob", content=t) for p, t in files.items()]
    tree = repo.create_git_tree(elements, base_tree=base.tree)
    commit = repo.create_git_commit(f"change {branch}", tree, [base])
    repo.create_git_ref(f"refs/heads/{branch}", commit.sha)
    return commit.sha


# --- repository, contents, git data ---------------------------------------------------------


def test_repository_and_contents(repo: Repository) -> None:
    assert (repo.full_name, repo.default_branch, repo.private) == (REPO, "main", True)
    found = repo.get_contents(VALUES)
    assert not isinstance(found, list)
    assert found.decoded_content == b"replicas: 2\n"
    assert found.path == VALUES and found.name == "values.yaml" and found.type == "file"
    listing = repo.get_contents("helm-charts/checkout")
    assert isinstance(listing, list) and [c.path for c in listing] == [VALUES]


def test_missing_things_are_404_with_githubs_body(gh: FakeGitHub, repo: Repository) -> None:
    with pytest.raises(UnknownObjectException) as missing:
        repo.get_contents("nope.yaml")
    assert missing.value.status == 404
    assert missing.value.data["message"] == "Not Found"
    assert missing.value.data["documentation_url"].startswith("https://docs.github.com/")
    with pytest.raises(UnknownObjectException):
        client(gh).get_repo("acme/nope")
    with pytest.raises(GithubException) as no_ref:
        repo.get_contents(VALUES, ref="no-such-branch")
    assert no_ref.value.status == 404


def test_tokens_are_checked(gh: FakeGitHub) -> None:
    with pytest.raises(BadCredentialsException) as bad:
        client(gh, "ghp_wrong").get_repo(REPO)
    assert bad.value.status == 401 and bad.value.data["message"] == "Bad credentials"
    answer = requests.get(f"{gh.api_url}/repos/{REPO}", timeout=5)
    assert answer.status_code == 401
    assert answer.json()["message"] == "Requires authentication"
    bearer = requests.get(
        f"{gh.api_url}/repos/{REPO}", headers={"Authorization": f"Bearer {gh.token}"}, timeout=5
    )
    assert bearer.status_code == 200 and bearer.json()["full_name"] == REPO


def test_a_read_only_token_cannot_write(gh: FakeGitHub) -> None:
    gh.add_token("ghp_reader", "rita", write=False)
    repo = client(gh, "ghp_reader").get_repo(REPO)
    assert repo.get_branch("main").commit.sha == gh.repo(REPO).branch("main")
    with pytest.raises(GithubException) as refused:
        repo.create_git_ref("refs/heads/x", gh.repo(REPO).branch("main") or "")
    assert refused.value.status == 403
    assert refused.value.data["message"] == "Resource not accessible by personal access token"


def test_git_data_api_builds_a_real_commit(gh: FakeGitHub, repo: Repository) -> None:
    main = repo.get_git_ref("heads/main").object.sha
    head = branch_with(repo, "opsgate/burst-1", {VALUES: "replicas: 4\n"})

    commit = repo.get_git_commit(head)
    assert [p.sha for p in commit.parents] == [main]
    assert commit.message == "change opsgate/burst-1"
    assert repo.get_git_ref("heads/opsgate/burst-1").object.sha == head
    fake = gh.repo(REPO)
    assert fake.file(VALUES, "opsgate/burst-1") == "replicas: 4\n"
    assert fake.file("README.md", "opsgate/burst-1") == "gitops\n"  # the base tree is kept
    assert fake.file(VALUES) == "replicas: 2\n"
    blob = repo.get_git_blob(repo.get_contents(VALUES, ref=head).sha)  # type: ignore[union-attr]
    assert base64.b64decode(blob.content) == b"replicas: 4\n"


def test_ref_updates_must_fast_forward(gh: FakeGitHub, repo: Repository) -> None:
    first = branch_with(repo, "feature", {VALUES: "replicas: 3\n"})
    other = gh.push(REPO, "main", {"README.md": "changed\n"})
    ref = repo.get_git_ref("heads/feature")

    with pytest.raises(GithubException) as refused:
        ref.edit(other, force=False)
    assert refused.value.status == 422
    assert refused.value.data["message"] == "Update is not a fast forward"
    with pytest.raises(GithubException) as exists:
        repo.create_git_ref("refs/heads/feature", first)
    assert exists.value.data["message"] == "Reference already exists"

    ref.edit(other, force=True)
    assert gh.repo(REPO).branch("feature") == other
    ref.delete()
    assert gh.repo(REPO).branch("feature") is None
    with pytest.raises(UnknownObjectException):
        repo.get_git_ref("heads/feature").object  # noqa: B018


def test_contents_put_creates_and_updates_with_sha_checks(gh: FakeGitHub, repo: Repository) -> None:
    created = repo.create_file("new.txt", "add", "one\n", branch="main")
    assert gh.repo(REPO).file("new.txt") == "one\n"
    with pytest.raises(GithubException) as stale:
        repo.update_file("new.txt", "edit", "two\n", sha="0" * 40, branch="main")
    assert stale.value.status == 409
    repo.update_file("new.txt", "edit", "two\n", sha=created["content"].sha, branch="main")
    assert gh.repo(REPO).file("new.txt") == "two\n"
    assert gh.repo(REPO).log()[0].message == "edit"


def test_compare_reports_ancestry(gh: FakeGitHub, repo: Repository) -> None:
    base = gh.repo(REPO).branch("main") or ""
    later = gh.push(REPO, "main", {"README.md": "v2\n"})
    side = branch_with(repo, "side", {VALUES: "replicas: 9\n"})

    assert repo.compare(base, later).status == "ahead"
    assert repo.compare(later, base).status == "behind"
    assert repo.compare(later, later).status == "identical"
    diverged = repo.compare(side, base[:10])
    assert (diverged.status, diverged.ahead_by) == ("behind", 0)
    gh.push(REPO, "main", {"README.md": "v3\n"})
    assert repo.compare("side", "main").status == "diverged"
    with pytest.raises(UnknownObjectException):
        repo.compare("f" * 40, base)


# --- pull requests ----------------------------------------------------------------------------


def test_pull_lifecycle(gh: FakeGitHub, repo: Repository) -> None:
    head = branch_with(repo, "opsgate/burst-1", {VALUES: "replicas: 4\n"})
    pull = repo.create_pull(base="main", head="opsgate/burst-1", title="Scale", body="why")

    assert (pull.number, pull.state, pull.head.sha, pull.base.ref) == (1, "open", head, "main")
    assert pull.html_url.endswith(f"/{REPO}/pull/1")
    assert pull.user.login == BOT_LOGIN
    listed = list(repo.get_pulls(state="open", head="acme:opsgate/burst-1"))
    assert [p.number for p in listed] == [1]
    assert list(repo.get_pulls(head="acme:other")) == []
    # Like GitHub, a head filter without the owner filters nothing.
    assert [p.number for p in repo.get_pulls(head="other")] == [1]

    pull.edit(title="Scale checkout", body="because")
    again = repo.get_pull(1)
    assert (again.title, again.body, again.mergeable, again.mergeable_state) == (
        "Scale checkout",
        "because",
        True,
        "clean",
    )
    pull.edit(state="closed")
    assert repo.get_pull(1).state == "closed"
    assert list(repo.get_pulls(state="open")) == []
    assert [p.number for p in repo.get_pulls(state="closed")] == [1]


def test_pull_refusals(repo: Repository) -> None:
    branch_with(repo, "b", {VALUES: "replicas: 4\n"})
    repo.create_pull(base="main", head="b", title="t", body="")

    with pytest.raises(GithubException) as twice:
        repo.create_pull(base="main", head="b", title="t", body="")
    assert twice.value.status == 422
    assert twice.value.data["errors"][0]["message"] == "A pull request already exists for acme:b."
    with pytest.raises(GithubException) as no_head:
        repo.create_pull(base="main", head="nope", title="t", body="")
    assert no_head.value.data["errors"] == [
        {"resource": "PullRequest", "field": "head", "code": "invalid"}
    ]
    repo.create_git_ref("refs/heads/empty", repo.get_branch("main").commit.sha)
    with pytest.raises(GithubException) as empty:
        repo.create_pull(base="main", head="empty", title="t", body="")
    assert empty.value.data["errors"][0]["message"] == "No commits between main and empty"


def test_listing_pages_follow_link_headers(repo: Repository, gh: FakeGitHub) -> None:
    for n in range(5):
        branch_with(repo, f"b{n}", {VALUES: f"replicas: {n + 10}\n"})
        repo.create_pull(base="main", head=f"b{n}", title=f"t{n}", body="")
    paged = Github(
        auth=Auth.Token(gh.token),
        base_url=gh.api_url,
        retry=None,
        per_page=2,
        seconds_between_requests=None,
        seconds_between_writes=None,
    )

    numbers = [p.number for p in paged.get_repo(REPO).get_pulls(state="all")]

    assert numbers == [5, 4, 3, 2, 1]  # newest first, over three pages
    assert len(gh.calls_to("GET", r"/pulls$")) == 3


@pytest.mark.parametrize("method", ["squash", "merge", "rebase"])
def test_merge_writes_a_real_commit_on_base(gh: FakeGitHub, repo: Repository, method: str) -> None:
    base = gh.repo(REPO).branch("main")
    head = branch_with(repo, "b", {VALUES: "replicas: 4\n"})
    pull = repo.create_pull(base="main", head="b", title="Scale", body="")

    result = pull.merge(merge_method=method, sha=head, commit_title="Scale (#1)")

    fake = gh.repo(REPO)
    assert result.merged and result.sha == fake.branch("main")
    assert fake.file(VALUES) == "replicas: 4\n"
    merged = fake.commits[result.sha]
    expected = {"squash": (base,), "merge": (base, head), "rebase": (base,)}[method]
    assert merged.parents == expected
    after = repo.get_pull(1)
    assert (after.merged, after.state, after.merge_commit_sha) == (True, "closed", result.sha)
    assert after.merged_by.login == BOT_LOGIN
    assert pull.is_merged()


def test_merge_refusals_in_githubs_words(gh: FakeGitHub, repo: Repository) -> None:
    head = branch_with(repo, "b", {VALUES: "replicas: 4\n"})
    pull = repo.create_pull(base="main", head="b", title="Scale", body="")

    with pytest.raises(GithubException) as stale:
        pull.merge(sha="0" * 40)
    assert stale.value.status == 409
    assert (
        stale.value.data["message"] == "Head branch was modified. Review and try the merge again."
    )

    gh.repo(REPO).merge_methods.discard("rebase")
    with pytest.raises(GithubException) as method:
        pull.merge(merge_method="rebase", sha=head)
    assert (method.value.status, method.value.data["message"]) == (
        405,
        "Rebase merges are not allowed on this repository.",
    )

    gh.push(REPO, "main", {VALUES: "replicas: 3\n"})  # the same file, changed apart
    assert (repo.get_pull(1).mergeable, repo.get_pull(1).mergeable_state) == (False, "dirty")
    with pytest.raises(GithubException) as conflict:
        pull.merge(sha=head)
    assert (conflict.value.status, conflict.value.data["message"]) == (
        405,
        "Pull Request is not mergeable",
    )


def test_branch_protection_blocks_until_reviews_and_checks(
    gh: FakeGitHub, repo: Repository
) -> None:
    head = branch_with(repo, "b", {VALUES: "replicas: 4\n"})
    pull = repo.create_pull(base="main", head="b", title="Scale", body="")
    gh.protect(REPO, "main", required_approvals=2, contexts=["ci/test"], dismiss_stale_reviews=True)

    assert repo.get_pull(1).mergeable_state == "blocked"
    with pytest.raises(GithubException) as blocked:
        pull.merge(sha=head)
    assert blocked.value.status == 405
    assert blocked.value.data["message"] == (
        "At least 2 approving reviews are required by reviewers with write access."
    )
    protection = repo.get_branch("main").get_protection()
    assert protection.required_pull_request_reviews.required_approving_review_count == 2
    assert protection.required_status_checks.contexts == ["ci/test"]

    gh.approve(REPO, 1, by="alice")
    gh.approve(REPO, 1, by="bob")
    with pytest.raises(GithubException) as checks:
        pull.merge(sha=head)
    assert checks.value.data["message"] == 'Required status check "ci/test" is expected.'
    gh.set_status(REPO, head, "ci/test", "failure")
    assert repo.get_commit(head).get_combined_status().state == "failure"
    with pytest.raises(GithubException) as failing:
        pull.merge(sha=head)
    assert failing.value.data["message"] == 'Required status check "ci/test" is failing.'

    gh.add_check_run(REPO, head, "ci/test", conclusion="success")
    gh.set_status(REPO, head, "ci/test", "success")
    assert repo.get_pull(1).mergeable_state == "clean"
    assert pull.merge(sha=head).merged


def test_a_push_voids_approvals_when_protection_dismisses_stale_reviews(
    gh: FakeGitHub, repo: Repository
) -> None:
    branch_with(repo, "b", {VALUES: "replicas: 4\n"})
    repo.create_pull(base="main", head="b", title="Scale", body="")
    gh.protect(REPO, "main", required_approvals=1, dismiss_stale_reviews=True)
    gh.approve(REPO, 1, by="alice")
    assert repo.get_pull(1).mergeable_state == "clean"

    pushed = gh.push(REPO, "b", {VALUES: "replicas: 5\n"})

    pull = repo.get_pull(1)
    assert (pull.head.sha, pull.mergeable_state) == (pushed, "blocked")
    assert [r.state for r in pull.get_reviews()] == ["DISMISSED"]


def test_reviews_comments_and_labels(gh: FakeGitHub, repo: Repository) -> None:
    head = branch_with(repo, "b", {VALUES: "replicas: 4\n"})
    pull = repo.create_pull(base="main", head="b", title="Scale", body="")
    gh.add_token("ghp_alice", "alice")
    as_alice = client(gh, "ghp_alice").get_repo(REPO).get_pull(1)

    with pytest.raises(GithubException) as own:
        pull.create_review(commit=repo.get_commit(head), body="ok", event="APPROVE")
    assert own.value.status == 422
    assert own.value.data["errors"] == ["Can not approve your own pull request"]
    review = as_alice.create_review(commit=repo.get_commit(head), body="ok", event="APPROVE")
    assert (review.state, review.user.login, review.commit_id) == ("APPROVED", "alice", head)
    pull.create_review(body="noted", event="COMMENT")
    assert [(r.user.login, r.state) for r in pull.get_reviews()] == [
        ("alice", "APPROVED"),
        (BOT_LOGIN, "COMMENTED"),
    ]

    pull.create_issue_comment("opened by opsgate")
    assert [c.body for c in pull.get_issue_comments()] == ["opened by opsgate"]
    pull.add_to_labels("opsgate", "risk:low")
    pull.add_to_labels("opsgate")
    assert [label.name for label in pull.get_labels()] == ["opsgate", "risk:low"]
    assert gh.repo(REPO).pulls[1].labels == ["opsgate", "risk:low"]


def test_outside_changes_show_through_the_api(gh: FakeGitHub, repo: Repository) -> None:
    branch_with(repo, "b", {VALUES: "replicas: 4\n"})
    branch_with(repo, "c", {"README.md": "c\n"})
    repo.create_pull(base="main", head="b", title="one", body="")
    repo.create_pull(base="main", head="c", title="two", body="")

    sha = gh.merge_pull(REPO, 1, by="carol")
    gh.close_pull(REPO, 2, by="carol")

    one, two = repo.get_pull(1), repo.get_pull(2)
    assert (one.merged, one.merge_commit_sha, one.merged_by.login) == (True, sha, "carol")
    assert (two.state, two.merged) == ("closed", False)
    assert repo.get_branch("main").commit.sha == sha


def test_deleting_the_head_branch_closes_its_pull(gh: FakeGitHub, repo: Repository) -> None:
    branch_with(repo, "b", {VALUES: "replicas: 4\n"})
    repo.create_pull(base="main", head="b", title="one", body="")
    repo.get_git_ref("heads/b").delete()
    assert repo.get_pull(1).state == "closed"


# --- failures -------------------------------------------------------------------------------


def test_primary_rate_limit_is_403_with_reset(gh: FakeGitHub, repo: Repository) -> None:
    gh.rate_limit_next(reset_at=1_900_000_000)

    with pytest.raises(RateLimitExceededException) as limited:
        repo.get_branch("main")
    headers = limited.value.headers or {}
    assert limited.value.status == 403
    assert headers["x-ratelimit-remaining"] == "0"
    assert headers["x-ratelimit-reset"] == "1900000000"
    assert repo.get_branch("main").name == "main"  # only the next call


def test_secondary_rate_limit_is_429_with_retry_after(gh: FakeGitHub, repo: Repository) -> None:
    gh.throttle_next(retry_after=42, times=2, method="POST")

    for _ in range(2):
        with pytest.raises(GithubException) as throttled:
            repo.create_git_ref("refs/heads/x", gh.repo(REPO).branch("main") or "")
        assert throttled.value.status == 429
        assert (throttled.value.headers or {})["retry-after"] == "42"
    assert repo.get_branch("main").name == "main"  # GETs were never throttled
    repo.create_git_ref("refs/heads/x", gh.repo(REPO).branch("main") or "")


def test_server_errors_and_dropped_connections(gh: FakeGitHub, repo: Repository) -> None:
    gh.fail_next(502, path=r"/branches/")
    with pytest.raises(GithubException) as bad_gateway:
        repo.get_branch("main")
    assert bad_gateway.value.status == 502

    gh.drop_next()
    with pytest.raises(requests.ConnectionError):
        repo.get_branch("main")
    assert repo.get_branch("main").name == "main"
    assert [c.status for c in gh.calls_to("GET", r"/branches/main$")] == [502, 0, 200]


def test_every_call_is_recorded(gh: FakeGitHub, repo: Repository) -> None:
    repo.get_branch("main")
    repo.create_git_ref("refs/heads/x", gh.repo(REPO).branch("main") or "")

    last = gh.calls[-1]
    assert (last.method, last.path, last.login, last.status) == (
        "POST",
        f"/repos/{REPO}/git/refs",
        BOT_LOGIN,
        201,
    )
    assert last.body == {"ref": "refs/heads/x", "sha": gh.repo(REPO).branch("main")}
    assert [c.method for c in gh.writes()] == ["POST"]
