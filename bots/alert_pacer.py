"""A chat destination's send limit: calls `interval` apart, at most `per_minute` a minute."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

__all__ = ["Pacer"]


class Pacer:
    """Measured from when a call finished, so the platform never sees two closer than `interval`.

    Slack allows about one message a second per channel; Telegram one a second per chat and
    20 a minute in a group (bots/send_queue.py paces command replies the same way).
    """

    def __init__(
        self,
        *,
        interval: float,
        per_minute: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if interval < 0 or (per_minute is not None and per_minute < 1):
            raise ValueError(f"no such limit: interval {interval}, per_minute {per_minute}")
        self.interval, self.per_minute = interval, per_minute
        self._clock = clock
        self._done: deque[float] = deque(maxlen=per_minute or 1)

    def delay(self) -> float:
        """Seconds until the next call may start."""
        if not self._done:
            return 0.0
        now = self._clock()
        wait = self.interval - (now - self._done[-1])
        if self.per_minute is not None and len(self._done) == self.per_minute:
            wait = max(wait, 60.0 - (now - self._done[0]))
        return max(wait, 0.0)

    def wait(self, stop: threading.Event) -> bool:
        """Sleep until a call may start; False when `stop` was set meanwhile."""
        while (pause := self.delay()) > 0:
            if stop.wait(pause):
                return False
        return not stop.is_set()

    def sent(self, messages: int = 1) -> None:
        """A call finished that put `messages` messages in the chat (a graph is a second one)."""
        now = self._clock()
        for _ in range(messages):
            self._done.append(now)
