"""The chat edge's exception tree.

BotError                 root of everything this package raises
├── CommandError         the user's command cannot be done; the text is safe to show in chat
│   └── UsageError       the command was typed wrong; the text shows the right form
└── StartupError         opsgate cannot start (bad config, missing data dir); printed, no traceback
"""

from __future__ import annotations


class BotError(Exception):
    """Root of the chat edge's errors."""


class CommandError(BotError):
    """A command that cannot be done; the message is safe to show in chat."""


class UsageError(CommandError):
    """A command typed wrong; the message shows how to type it."""


class StartupError(BotError):
    """opsgate cannot start; the message says why and what to do."""
