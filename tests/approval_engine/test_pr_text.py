"""The pull request's title and body: what reviewers read on GitHub (golden files), and text
from people and agents that cannot turn into links, mentions, HTML or markup there."""

from __future__ import annotations

import re
from collections.abc import Callable

from approval_engine.model import EditedKnob, Proposal, Risk, RiskLevel, State
from approval_engine.pr_text import code, plain, pr_body, pr_title
from tests.approval_engine._support import START


def burst(**changes: object) -> Proposal:
    proposal = Proposal(
        id="burst-7",
        kind="burst",
        service="checkout",
        env="prod",
        state=State.OPEN,
        title="burst: checkout/prod autoscaling.minReplicas 3 → 8",
        rationale="Monday 10:00 burst: 3.1x the usual load for about 2h.",
        proposer="agent:BurstPredictor",
        contributors=["agent:BurstPredictor", "alice"],
        branch="opsgate/burst-7",
        base_sha="0" * 40,
        head_sha="",
        diff="--- a/values.yaml\n+++ b/values.yaml\n@@ -1 +1 @@\n"
        "-minReplicas: 3\n+minReplicas: 8\n",
        files={},
        knobs=[
            EditedKnob(
                knob="min_replicas",
                path="helm-charts/checkout/values-prod.yaml",
                key="autoscaling.minReplicas",
                old=3,
                new=8,
            )
        ],
        quorum=2,
        created_at=START,
        updated_at=START,
        expires_at=START,
        state_since=START,
        confidence=0.87,
        risk=Risk(RiskLevel.MEDIUM, ("prod environment", "raises minReplicas 3 → 8")),
        evidence=["p95 of last 4 Mondays: 310 rps", "capacity at 3 replicas: 120 rps"],
        app="checkout-prod",
    )
    for name, value in changes.items():
        setattr(proposal, name, value)
    return proposal


def test_an_agents_proposal_renders_as_the_golden_body(golden: Callable[[str, str], None]) -> None:
    proposal = burst()
    assert pr_title(proposal) == "burst: checkout/prod autoscaling.minReplicas 3 → 8 (burst-7)"
    golden("github/pr-body-agent.md", pr_body(proposal))


def test_user_text_cannot_link_mention_or_inject_markup() -> None:
    hostile = (
        "# Approved!\n\n[click](https://evil.example) ![x](https://evil.example/x.png) "
        "<img src=x onerror=alert(1)> cc @octocat see #12 `code` **bold** | cell"
    )

    body = pr_body(burst(rationale=hostile, evidence=[hostile]))

    bare = re.sub(r"\\.", "", body)  # what is left once every escaped character is gone
    for bad in ("[click](", "![x](", "<img", "@octocat", "#12", "\n# Approved", "**bold**"):
        assert bad not in bare, bad
    assert "@\u200boctocat" in body and "\\[click\\]" in body and "\\<img" in body


def test_values_become_code_spans_no_backtick_or_pipe_can_break() -> None:
    assert code("m5.large") == "`m5.large`"
    assert code("a`b") == "``a`b``"
    assert code("`x`") == "`` `x` ``"
    assert code("a|b") == "`a\\|b`"
    assert plain("line one\n- line two") == "line one - line two"  # one paragraph
    assert plain("- a list") == "\\- a list"


def test_a_diff_holding_a_fence_gets_a_longer_fence() -> None:
    body = pr_body(burst(diff="+```\n+not the end\n"))
    assert "````diff\n+```\n+not the end\n````" in body
