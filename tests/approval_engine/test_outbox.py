"""The announcement outbox: queued with the change it announces, sent in order, exactly once,
and kept while chat is unreachable."""

from __future__ import annotations

from approval_engine import store as db
from approval_engine.engine import Engine
from approval_engine.model import Proposal
from tests.approval_engine._support import ALICE, BOB, FlakyNotifier, Node, wish


def open_proposal(engine: Engine) -> Proposal:
    outcome = engine.propose(wish("checkout", "staging", ("min_replicas", 4)), actor=ALICE)
    assert outcome.proposal is not None, outcome.message
    return outcome.proposal


def pending(engine: Engine) -> list[str]:
    with engine.store.transaction() as session:
        return [row.kind for row in db.pending_outbox(session)]


def test_announcements_wait_in_the_outbox_while_chat_is_down(node: Node) -> None:
    proposal = open_proposal(node.engine)
    node.engine.approve(proposal.id, actor=BOB)
    chat = FlakyNotifier(down=True)

    assert node.engine.deliver(chat) == 0
    assert pending(node.engine) == ["opened", "approved", "merged", "syncing", "applied"]

    chat.down = False
    assert node.engine.deliver(chat) == 5
    assert node.engine.deliver(chat) == 0
    assert chat.kinds() == ["opened", "approved", "merged", "syncing", "applied"]
    assert pending(node.engine) == []


def test_a_failed_send_stops_delivery_there_and_the_rest_follows_once_in_order(
    node: Node,
) -> None:
    proposal = open_proposal(node.engine)
    node.engine.approve(proposal.id, actor=BOB)
    chat = FlakyNotifier(fail_on=3)

    assert node.engine.deliver(chat) == 2
    assert pending(node.engine) == ["merged", "syncing", "applied"]
    assert node.engine.deliver(chat) == 3

    assert chat.kinds() == ["opened", "approved", "merged", "syncing", "applied"]
    chat.assert_each_once()
