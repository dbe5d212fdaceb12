"""The per-chat send queue: paced, a group's 20 a minute, and 429s waited out."""

from __future__ import annotations

import asyncio

import pytest

from bots.send_queue import ChatSender

GROUP, PRIVATE = -1_002_000_000_001, 4242


class ThrottledError(Exception):
    def __init__(self, seconds: float) -> None:
        super().__init__(f"retry after {seconds}")
        self.seconds = seconds


def _sender(waits: list[float], **options: float) -> ChatSender:
    async def sleep(seconds: float) -> None:  # record instead of waiting: the clock stands still
        waits.append(seconds)

    return ChatSender(
        min_interval=options.get("min_interval", 0.0),
        retry_after=lambda e: e.seconds if isinstance(e, ThrottledError) else None,
        sleep=sleep,
    )


async def _send(sender: ChatSender, chat: int, times: int) -> None:
    async def call() -> None:
        return None

    for _ in range(times):
        await sender.run(chat, call)


def test_a_group_gets_at_most_twenty_messages_a_minute() -> None:
    waits: list[float] = []
    asyncio.run(_send(_sender(waits), GROUP, 21))
    assert len(waits) == 1 and 59 < waits[0] <= 60  # the 21st waits out the minute


def test_a_private_chat_is_only_paced_per_message() -> None:
    waits: list[float] = []
    asyncio.run(_send(_sender(waits, min_interval=1.0), PRIVATE, 25))
    assert len(waits) == 24 and all(0.9 < w <= 1.0 for w in waits)


def test_a_429_is_waited_out_then_sent_and_other_errors_raise() -> None:
    waits: list[float] = []
    sender = _sender(waits)
    attempts: list[int] = []

    async def flaky() -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise ThrottledError(7)
        return "sent"

    async def broken() -> None:
        raise ValueError("chat not found")

    assert asyncio.run(sender.run(PRIVATE, flaky)) == "sent"
    assert waits == [7, 7]
    with pytest.raises(ValueError, match="chat not found"):
        asyncio.run(sender.run(PRIVATE, broken))
