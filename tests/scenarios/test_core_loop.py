"""The core loop as people use it: /scale → proposal → /approve → merged → applied."""

from pathlib import Path

from approval_engine import audit
from bots.testing import FakeChat


def test_scale_in_staging_is_applied_after_one_approval(chat: FakeChat) -> None:
    opened = chat.say("/scale checkout 4", as_="alice")
    assert not opened.error, opened.text
    assert "Opened scale-1" in opened.text
    assert "-  minReplicas: 2" in opened.text
    assert "+  minReplicas: 4" in opened.text

    approved = chat.say("/approve scale-1", as_="bob")
    assert "Approved scale-1 (1 of 1 approvals)" in approved.text
    kinds = [a.kind for a in approved.announcements]
    assert kinds == ["approved", "merged", "syncing", "applied"]

    status = chat.say("/status", as_="carol")
    staging = status.reply.tables[0]
    checkout = next(row for row in staging.rows if row[0] == "checkout")
    assert checkout[2].startswith("4-6"), checkout
    assert chat.runtime.cluster.spec("checkout", "staging").min_replicas == 4  # type: ignore[union-attr]
    assert "No open proposals." in status.text


def test_prod_needs_two_approvers_and_says_so(chat: FakeChat) -> None:
    chat.say("/scale checkout 6 prod", as_="alice")
    first = chat.say("/approve scale-1", as_="bob")
    assert "1 of 2 approvals" in first.text
    assert "1 more approval(s) needed" in first.text
    assert chat.runtime.engine.get("scale-1").state.value == "open"
    second = chat.say("/approve scale-1", as_="dave")
    assert "2 of 2 approvals" in second.text
    assert chat.runtime.engine.get("scale-1").state.value == "applied"
    assert chat.runtime.cluster.spec("checkout", "prod").min_replicas == 6  # type: ignore[union-attr]


def test_scale_above_the_hpa_ceiling_raises_the_ceiling_too(chat: FakeChat) -> None:
    said = chat.say("/scale checkout 8", as_="alice")
    assert "+  minReplicas: 8" in said.text
    assert "+  maxReplicas: 8" in said.text


def test_scale_without_hpa_edits_replica_count(chat: FakeChat) -> None:
    said = chat.say("/scale cart 3", as_="alice")
    assert "+replicaCount: 3" in said.text


def test_scale_of_terraform_owned_hpa_edits_the_module(chat: FakeChat) -> None:
    said = chat.say("/scale search 3 prod", as_="alice")
    assert "terraform/environments/prod/hpa.tf" in said.text
    assert "+  min_replicas           = 3" in said.text


def test_proposer_cannot_approve_own_change(chat: FakeChat) -> None:
    chat.say("/scale checkout 4", as_="alice")
    said = chat.say("/approve scale-1", as_="alice")
    assert said.error
    assert "alice proposed scale-1; someone else must approve it" in said.text


def test_approving_twice_is_idempotent(chat: FakeChat) -> None:
    chat.say("/scale checkout 6 prod", as_="alice")
    chat.say("/approve scale-1", as_="bob")
    again = chat.say("/approve scale-1", as_="bob")
    assert "You already approved scale-1 (1 of 2 approvals)" in again.text
    assert len(chat.runtime.engine.get("scale-1").approvals) == 1


def test_reject_closes_the_proposal(chat: FakeChat) -> None:
    chat.say("/scale checkout 4", as_="alice")
    said = chat.say("/reject scale-1 not during the sale", as_="bob")
    assert "Rejected scale-1" in said.text
    proposal = chat.runtime.engine.get("scale-1")
    assert proposal.state.value == "rejected"
    assert "opsgate/scale-1" not in chat.runtime.backend.branches()


def test_ids_count_up_across_kinds(chat: FakeChat) -> None:
    chat.say("/scale checkout 4", as_="alice")
    said = chat.say("/scale cart 3 prod", as_="alice")
    assert "Opened scale-2" in said.text


def test_repeated_wish_updates_the_open_proposal(chat: FakeChat) -> None:
    chat.say("/scale checkout 6 prod", as_="alice")
    chat.say("/approve scale-1", as_="bob")
    again = chat.say("/scale checkout 7 prod", as_="alice")
    assert "Updated scale-1 instead of opening another" in again.text
    assert any("approvals by bob are void" in a.text for a in again.announcements)
    proposal = chat.runtime.engine.get("scale-1")
    assert proposal.current_approvals() == []
    assert len(chat.runtime.engine.proposals()) == 1


def test_help_shows_only_what_the_role_may_run(chat: FakeChat) -> None:
    viewer = chat.say("/help", as_="carol").text
    approver = chat.say("/help", as_="alice").text
    assert "/status" in viewer and "/status" in approver
    assert "/approve" not in viewer and "/scale" not in viewer
    assert "/approve" in approver and "/scale" in approver


def test_unknown_command_suggests_the_near_one(chat: FakeChat) -> None:
    said = chat.say("/aprove scale-1", as_="alice")
    assert said.error
    assert "Did you mean /approve?" in said.text


def test_demo_as_switches_the_speaker(chat: FakeChat) -> None:
    said = chat.say("/as carol", as_="alice")
    assert "You are now carol" in said.text
    denied = chat.say("/scale checkout 3", as_="alice")  # same channel: now carol speaks
    assert denied.error and "viewer" in denied.text


def test_state_survives_a_restart(tmp_path: Path) -> None:
    first = FakeChat(tmp_path / "data")
    first.say("/scale checkout 6 prod", as_="alice")
    first.say("/approve scale-1", as_="bob")
    first.close()
    second = FakeChat(tmp_path / "data")
    said = second.say("/approve scale-1", as_="dave")
    assert "2 of 2 approvals" in said.text
    assert second.runtime.engine.get("scale-1").state.value == "applied"
    assert audit.verify(second.runtime.store).ok
    second.close()
