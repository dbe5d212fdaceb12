"""A per-chat send queue: one message at a time, paced, waiting out rate limits."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TypeVar

__all__ = ["MAX_SEND_ATTEMPTS", "ChatSender"]

log = logging.getLogger(__name__)

MAX_SEND_ATTEMPTS = 5
T = TypeVar("T")


class ChatSender:
    """One send at a time per chat, `min_interval` apart, waiting out the platform's 429s.

    Groups (negative chat ids) also get at most `group_per_minute` sends in any 60 seconds,
    Telegram's documented limit; private chats only the per-second pace.
    """

    def __init__(
        self,
        *,
        min_interval: float,
        retry_after: Callable[[Exception], float | None],
        group_per_minute: int = 20,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._min_interval, self._sleep = min_interval, sleep
        self._retry_after = retry_after
        self._group_per_minute = group_per_minute
        self._locks: dict[int, asyncio.Lock] = {}
        self._sent: dict[int, deque[float]] = {}

    async def run(self, chat_id: int, call: Callable[[], Awaitable[T]]) -> T:
        async with self._locks.setdefault(chat_id, asyncio.Lock()):
            sent = self._sent.setdefault(chat_id, deque(maxlen=max(self._group_per_minute, 1)))
            pause = self._pause(chat_id, sent, now=time.monotonic())
            if pause > 0:
                await self._sleep(pause)
            for attempt in range(1, MAX_SEND_ATTEMPTS + 1):
                try:
                    result = await call()
                    break
                except Exception as e:
                    wait = self._retry_after(e)
                    if wait is None or attempt == MAX_SEND_ATTEMPTS:
                        raise
                    log.warning("flood control in chat %s: waiting %gs", chat_id, wait)
                    await self._sleep(wait)
            sent.append(time.monotonic())
            return result

    def _pause(self, chat_id: int, sent: deque[float], *, now: float) -> float:
        if not sent:
            return 0.0
        wait = self._min_interval - (now - sent[-1])
        if chat_id < 0 and len(sent) == sent.maxlen:  # a group's 20 in the last minute
            wait = max(wait, 60.0 - (now - sent[0]))
        return wait
