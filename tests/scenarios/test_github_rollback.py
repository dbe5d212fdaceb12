"""GitHub and ArgoCD configured (fakes on loopback): a change that degrades its target's SLOs
after the apply gets a revert pull request, labelled `rollback`, with the numbers in its body;
once the revert is merged and synced, the original is rolled back."""

from __future__ import annotations

from datetime import timedelta

from approval_engine.model import State
from tests.scenarios._gitops import World

VALUES = "helm-charts/checkout/values-prod.yaml"


def test_a_degraded_apply_produces_a_revert_pull_request(gitops: World) -> None:
    window = gitops.chat.runtime.engine.verifier.window  # policy.yaml verify_window: 15m
    gitops.clock.advance(timedelta(minutes=5))  # history before the change, in the simulation
    gitops.chat.say("/scale checkout 1-1 prod", as_="alice")
    gitops.chat.say("/approve scale-1", as_="bob")
    gitops.chat.say("/approve scale-1", as_="dave")
    gitops.ticks(lambda: gitops.proposal("scale-1").state == State.APPLIED)
    assert gitops.repo().pulls and not gitops.gh.pulls_for("acme/gitops", "opsgate/rollback-2")

    gitops.clock.advance(window)
    gitops.chat.runtime.gateway.tick()

    assert gitops.kinds("scale-1")[-1] == "degraded"
    pull = gitops.pull("rollback-2")
    assert pull.labels[:3] == ["opsgate", "manual", "rollback"]
    assert pull.title.startswith("rollback: checkout/prod autoscaling.minReplicas 1 → 3")
    body = pull.body or ""
    assert "Revert scale-1" in body
    assert "error\\_ratio" in body and "(max 2 %)" in body  # markdown-escaped
    branch = gitops.repo().file(VALUES, "opsgate/rollback-2") or ""
    assert "minReplicas: 3" in branch and "maxReplicas: 12" in branch

    approved = gitops.chat.say("/approve rollback-2", as_="bob")  # one approval: fast track

    assert "1 of 1" in approved.text, approved.text
    assert gitops.pull("rollback-2").merged
    gitops.ticks(lambda: gitops.proposal("scale-1").state == State.ROLLED_BACK)
    assert gitops.proposal("rollback-2").state == State.APPLIED
    assert "minReplicas: 3" in (gitops.repo().file(VALUES) or "")
    assert "scale-1 rolled back: rollback-2 is applied" in " ".join(gitops.announced())
