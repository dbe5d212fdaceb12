"""GitHub configured (fakes on loopback): main moves under a proposal's pull request. When the
proposal's file changed there, opsgate renders it again on the new main and pushes a merge of
main to the pull request's branch; the approvals stand when the change is the same and are
void, with a word in chat, when it is not. A restart in the middle finishes it once."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from approval_engine.model import State
from tests.fakes.github_api import merge_trees
from tests.scenarios._gitops import REPO, World

VALUES = "helm-charts/checkout/values-prod.yaml"
OTHER = "helm-charts/checkout/values-staging.yaml"


def applied(gitops: World) -> Callable[[], bool]:
    return lambda: gitops.proposal("scale-1").state == State.APPLIED


def approved_by_bob(gitops: World) -> str:
    """scale-1: checkout/prod minReplicas 3 → 6, 1 of 2 approvals; returns its head."""
    assert "Opened scale-1" in gitops.chat.say("/scale checkout 6 prod", as_="alice")
    gitops.chat.say("/approve scale-1", as_="bob")
    return gitops.proposal("scale-1").head_sha


def push_to_main(gitops: World, path: str, old: str, new: str) -> str:
    text = gitops.repo().file(path) or ""
    assert old in text
    return gitops.gh.push(REPO, "main", {path: text.replace(old, new, 1)}, author="carol")


def poll(gitops: World) -> None:
    gitops.clock.advance(gitops.chat.runtime.engine.poll_pulls_every)
    gitops.chat.runtime.gateway.tick()


def approvers(gitops: World) -> list[str]:
    return [a.approver for a in gitops.proposal("scale-1").current_approvals()]


def each_once(gitops: World) -> None:
    repeated = {t: n for t, n in Counter(gitops.announced()).items() if n > 1}
    assert not repeated, f"announced more than once: {repeated}"


def test_main_moving_in_another_file_leaves_the_pull_request_alone(gitops: World) -> None:
    head = approved_by_bob(gitops)
    push_to_main(gitops, OTHER, "maxReplicas: 6", "maxReplicas: 8")

    poll(gitops)

    assert gitops.pull("scale-1").head_sha == head == gitops.proposal("scale-1").head_sha
    assert approvers(gitops) == ["bob"]
    gitops.chat.say("/approve scale-1", as_="dave")
    gitops.ticks(applied(gitops))
    assert "maxReplicas: 8" in (gitops.repo().file(OTHER) or "")


def test_a_neighbouring_line_moved_on_main_is_merged_in_and_the_approvals_stand(
    gitops: World,
) -> None:
    head = approved_by_bob(gitops)
    main = push_to_main(gitops, VALUES, "maxReplicas: 12", "maxReplicas: 14")

    poll(gitops)

    pull = gitops.pull("scale-1")
    proposal = gitops.proposal("scale-1")
    assert pull.head_sha == proposal.head_sha != head
    assert gitops.repo().commits[pull.head_sha].parents == (head, main)
    assert proposal.base_sha == main
    assert approvers(gitops) == ["bob"]
    [comment] = pull.comments
    assert "the change itself is the same, so its approvals stand" in comment.body
    assert not any("re-rendered" in t for t in gitops.announced())  # nothing for chat

    gitops.chat.say("/approve scale-1", as_="dave")
    gitops.ticks(applied(gitops))
    text = gitops.repo().file(VALUES) or ""
    assert "minReplicas: 6" in text and "maxReplicas: 14" in text
    each_once(gitops)


def test_the_knob_moved_on_main_voids_the_approvals_and_chat_is_told(gitops: World) -> None:
    approved_by_bob(gitops)
    push_to_main(gitops, VALUES, "minReplicas: 3", "minReplicas: 4")

    poll(gitops)

    proposal = gitops.proposal("scale-1")
    assert [(k.old, k.new) for k in proposal.knobs] == [(4, 6)]
    assert approvers(gitops) == []
    assert gitops.pull("scale-1").title.startswith("scale: checkout/prod autoscaling.minReplicas 4")
    said = [t for t in gitops.announced() if "re-rendered" in t]
    assert said == [
        "scale-1 was re-rendered on the new base: autoscaling.minReplicas is 4 on the base "
        "now, not 3 (the proposal still sets 6); approvals by bob are void. "
        "Read /diff scale-1 before approving."
    ]
    [comment] = gitops.pull("scale-1").comments
    assert "Approvals by bob are void" in comment.body

    gitops.chat.say("/approve scale-1", as_="dave")
    assert gitops.proposal("scale-1").state == State.OPEN  # 1 of 2 on the new head
    gitops.chat.say("/approve scale-1", as_="bob")
    gitops.ticks(applied(gitops))
    assert "minReplicas: 6" in (gitops.repo().file(VALUES) or "")
    each_once(gitops)


def test_a_conflict_with_main_is_resolved_by_rendering_again_right_before_the_merge(
    gitops: World,
) -> None:
    head = approved_by_bob(gitops)
    main = push_to_main(gitops, VALUES, "maxReplicas: 12", "maxReplicas: 14")
    repo = gitops.repo()
    merge_base = repo.merge_base(main, head)
    assert merge_base is not None
    _, conflicts = merge_trees(repo.tree_at(merge_base), repo.tree_at(main), repo.tree_at(head))
    assert conflicts == [VALUES]  # as it stands, GitHub would refuse the merge

    # No poll in between: the deciding approval's merge looks at main first.
    gitops.chat.say("/approve scale-1", as_="dave")

    pull = gitops.pull("scale-1")
    assert pull.merged
    assert gitops.repo().commits[pull.head_sha].parents == (head, main)
    text = gitops.repo().file(VALUES) or ""
    assert "minReplicas: 6" in text and "maxReplicas: 14" in text
    assert not any("cannot be merged yet" in t for t in gitops.announced())


def test_a_restart_after_the_new_head_was_pushed_finishes_the_rerender_once(
    gitops: World,
) -> None:
    head = approved_by_bob(gitops)
    push_to_main(gitops, VALUES, "minReplicas: 3", "minReplicas: 4")
    dying = gitops.kill(backend="open")  # the re-render's push happens, its record does not

    poll(gitops)

    assert dying.dead
    assert gitops.pull("scale-1").head_sha != head
    assert gitops.proposal("scale-1").pending_push
    gitops.start()
    gitops.chat.runtime.gateway.tick()

    proposal = gitops.proposal("scale-1")
    pull = gitops.pull("scale-1")
    assert proposal.head_sha == pull.head_sha and not proposal.pending_push
    assert len([c for c in gitops.repo().log(pull.head) if c.message.startswith("Update")]) == 1
    assert len(pull.comments) == 1
    assert len([t for t in gitops.announced() if "re-rendered" in t]) == 1
    for name in ("dave", "bob"):
        gitops.chat.say("/approve scale-1", as_=name)
    gitops.ticks(applied(gitops))
    each_once(gitops)
