"""PR backends: where a proposal's branch lives and how it is merged."""

from approval_engine.prs.base import PRBackend, PullRequest

__all__ = ["PRBackend", "PullRequest"]
