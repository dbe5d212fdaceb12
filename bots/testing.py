"""A fake chat for tests and experiments: `chat.say("/approve scale-1", as_="bob")` → reply."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from approval_engine.engine import utc_now
from approval_engine.notify import Announcement
from bots.app import Runtime, build_runtime
from bots.config import load_config
from bots.render import render_text
from bots.settings import PROJECT_ROOT, RuntimeSettings
from bots.types import ChatEvent, Reply


@dataclass
class Said:
    """What one message produced: the reply and the announcements that followed it."""

    reply: Reply
    announcements: list[Announcement] = field(default_factory=list)

    @property
    def text(self) -> str:
        return render_text(self.reply)

    @property
    def error(self) -> bool:
        return self.reply.error

    def __contains__(self, needle: str) -> bool:
        return needle in self.text or any(needle in a.text for a in self.announcements)


class FakeChat:
    """The demo's runtime on a data directory of the test's, spoken to as any person."""

    def __init__(
        self,
        data_dir: Path,
        *,
        config_dir: Path = PROJECT_ROOT / "config",
        demo: bool = True,
        clock: Callable[[], datetime] = utc_now,
        resume: bool = True,
    ) -> None:
        """`resume=False` leaves in-flight proposals and queued news for the first `tick()`,
        after a test has installed another notifier on `runtime.gateway`."""
        self.announcements: list[Announcement] = []
        settings = RuntimeSettings(data_dir=data_dir, config_dir=config_dir)
        config = load_config(config_dir, repo_root=PROJECT_ROOT)
        self.runtime: Runtime = build_runtime(
            settings, config, notifier=self, demo=demo, clock=clock
        )
        if resume:
            self.runtime.gateway.tick()

    def announce(self, announcement: Announcement) -> None:
        self.announcements.append(announcement)

    def say(self, text: str, *, as_: str, platform: str = "console") -> Said:
        before = len(self.announcements)
        replies: list[Reply] = []
        event = ChatEvent(
            platform=platform, principal=f"{platform}:{as_}", channel=f"{platform}:{as_}", text=text
        )
        self.runtime.gateway.dispatch(event, replies.append)
        return Said(reply=replies[0], announcements=self.announcements[before:])

    def close(self) -> None:
        self.runtime.close()
