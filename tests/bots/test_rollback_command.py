"""/rollback: a person asks for the revert of an applied change; every other case says why not."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from approval_engine import audit
from bots.testing import FakeChat

MONDAY_NOON = datetime(2026, 11, 16, 12, 0, tzinfo=UTC)


@pytest.fixture
def chat(tmp_path: Path) -> Iterator[FakeChat]:
    fake = FakeChat(tmp_path / "data", clock=lambda: MONDAY_NOON)
    yield fake
    fake.close()


def applied_scale(chat: FakeChat) -> str:
    chat.say("/scale checkout 4 staging", as_="alice")
    chat.say("/approve scale-1", as_="bob")
    assert chat.runtime.engine.get("scale-1").state.value == "applied"
    return "scale-1"


def test_rollback_opens_a_revert_that_someone_else_approves(chat: FakeChat) -> None:
    original = applied_scale(chat)

    asked = chat.say(f"/rollback {original} p95 doubled", as_="alice")

    assert not asked.error, asked.text
    assert asked.text.startswith(
        "Opened rollback-2 to revert scale-1; it needs 1 approval(s) from someone else.\n"
    )
    assert (
        "Why: Revert scale-1 (autoscaling.minReplicas 2 → 4): alice asked for it with "
        "/rollback: p95 doubled" in asked.text
    )
    assert "-  minReplicas: 4\n+  minReplicas: 2" in asked.text
    assert [a.kind for a in asked.announcements] == ["opened"]
    assert chat.say("/approve rollback-2", as_="alice").error  # she asked for it

    approved = chat.say("/approve rollback-2", as_="bob")

    assert [a.kind for a in approved.announcements] == [
        "approved",
        "merged",
        "syncing",
        "applied",
        "rolled_back",
    ]
    assert approved.announcements[-1].text == (
        "scale-1 rolled back: rollback-2 is applied, so checkout/staging has "
        "autoscaling.minReplicas 2 again"
    )
    spec = chat.runtime.cluster.spec("checkout", "staging")
    assert spec is not None and spec.min_replicas == 2
    again = chat.say("/rollback scale-1", as_="alice")
    assert again.error and again.text == "scale-1 was already rolled back by rollback-2"


def test_asking_again_shows_the_open_revert(chat: FakeChat) -> None:
    applied_scale(chat)
    chat.say("/rollback scale-1", as_="alice")
    again = chat.say("/rollback scale-1", as_="dave")
    assert not again.error
    assert again.text.startswith("rollback-2 already reverts scale-1 (open, 0 of 1 approvals)")
    assert [p.id for p in chat.runtime.engine.proposals()] == ["rollback-2"]


@pytest.mark.parametrize(
    ("text", "who", "expected"),
    [
        ("/rollback", "alice", "Usage: /rollback <id> [reason], e.g. /rollback scale-3"),
        ("/rollback scale-9", "alice", "no proposal 'scale-9'"),
        (
            "/rollback scale-1",
            "alice",
            "scale-1 is open, not applied; there is nothing to roll back (/reject scale-1 "
            "withdraws it)",
        ),
        ("/rollback scale-1", "carol", "Not allowed: /rollback needs the operator role"),
    ],
)
def test_rollback_refusals_say_why(chat: FakeChat, text: str, who: str, expected: str) -> None:
    chat.say("/scale checkout 4 staging", as_="alice")

    said = chat.say(text, as_=who)

    assert said.error
    assert expected in said.text
    assert [p.id for p in chat.runtime.engine.proposals()] == ["scale-1"]
    if who == "carol" or "open" in expected:
        last = audit.tail(chat.runtime.store, limit=1)[0]
        assert (last.actor, last.action) == (who, "denied")


def test_help_lists_rollback_for_operators(chat: FakeChat) -> None:
    assert "/rollback <id> [reason]" in chat.say("/help", as_="alice").text
    assert "/rollback" not in chat.say("/help", as_="carol").text
