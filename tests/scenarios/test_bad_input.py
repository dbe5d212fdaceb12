"""Bad input gets a clear reply and changes nothing."""

import pytest

from approval_engine import audit
from bots.testing import FakeChat


def _nothing_changed(chat: FakeChat) -> None:
    assert chat.runtime.engine.proposals(active_only=False) == []
    assert chat.runtime.backend.branches() == ["main"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/scale checkout -1", "Replicas must be at least 1"),
        ("/scale checkout abc", "'abc' is not a whole number of replicas"),
        ("/scale checkout 1.5", "not a whole number"),
        ("/scale nosuch 3", "unknown service 'nosuch'"),
        ("/scale chekout 3", "did you mean checkout?"),
        ("/scale checkout 3 qa", "checkout is not deployed in 'qa'"),
        ("/scale checkout 100000", "at most 40 replicas"),
        ("/scale checkout", "Usage: /scale <service> <replicas> [env]"),
        ("/approve nosuch", "no proposal 'nosuch'"),
        ("/approve", "Usage: /approve <id>"),
        ("/diff", "Usage: /diff <id>"),
        ('/scale "checkout 3', "check the quotes"),
        ("status", "Commands start with /"),
        ("/", "Type a command after the /"),
    ],
)
def test_bad_command_gets_a_clear_error(chat: FakeChat, text: str, expected: str) -> None:
    said = chat.say(text, as_="alice")
    assert said.error, said.text
    assert expected in said.text
    _nothing_changed(chat)


def test_viewer_cannot_reject_and_the_refusal_is_audited(chat: FakeChat) -> None:
    chat.say("/scale checkout 4", as_="alice")
    said = chat.say("/reject scale-1", as_="carol")
    assert said.error
    assert "/reject needs the operator role; you are a viewer" in said.text
    assert chat.runtime.engine.get("scale-1").state.value == "open"
    denial = audit.tail(chat.runtime.store, limit=1)[0]
    assert (denial.actor, denial.action) == ("carol", "denied")


def test_long_line_is_refused(chat: FakeChat) -> None:
    said = chat.say("/scale checkout 4 " + "x" * 10_000, as_="alice")
    assert said.error
    assert "commands are at most 4000" in said.text
    _nothing_changed(chat)


def test_non_utf8_text_is_refused(chat: FakeChat) -> None:
    text = b"/scale checkout \xff\xfe".decode("utf-8", errors="replace")
    said = chat.say(text, as_="alice")
    assert said.error
    assert "not UTF-8" in said.text
    _nothing_changed(chat)


def test_empty_line_gets_a_hint(chat: FakeChat) -> None:
    said = chat.say("   ", as_="alice")
    assert "Type /help" in said.text
    _nothing_changed(chat)


def test_unknown_identity_is_refused(chat: FakeChat) -> None:
    said = chat.say("/status", as_="mallory")
    assert said.error
    assert "I don't know console:mallory" in said.text
