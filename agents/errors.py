"""The agents' exception tree, in one place.

AgentError                      root of everything raised by agents/
├── AgentConfigError            config/agents.yaml is wrong; `.problems` names file, key, reason
├── UnknownAgentError           a name no registered agent has
├── AgentTimeoutError           a run took longer than its timeout
├── SourceError                 a source cannot answer this question (unknown signal, bad range)
└── TemporaryAgentError         worth retrying later; `.retry_after` seconds, when known
    └── SourceUnavailableError  a source is down or slow: replies show it as degraded
"""

from __future__ import annotations


class AgentError(Exception):
    """Root of the errors raised by agents and their sources."""


class AgentConfigError(AgentError):
    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


class UnknownAgentError(AgentError):
    pass


class AgentTimeoutError(AgentError):
    pass


class SourceError(AgentError):
    pass


class TemporaryAgentError(AgentError):
    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class SourceUnavailableError(TemporaryAgentError):
    def __init__(self, source: str, reason: str, *, retry_after: float | None = None) -> None:
        super().__init__(f"{source} is unavailable: {reason}", retry_after=retry_after)
        self.source = source
        self.reason = reason
