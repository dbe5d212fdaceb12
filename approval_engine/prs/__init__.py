"""PR backends: where a proposal's branch lives and how it is merged."""

from approval_engine.prs.base import (
    Commenter,
    Labeler,
    Mergeability,
    MergeCheck,
    PRBackend,
    PullRequest,
    PullState,
    PullTracker,
    Reviewer,
)

__all__ = [
    "Commenter",
    "Labeler",
    "MergeCheck",
    "Mergeability",
    "PRBackend",
    "PullRequest",
    "PullState",
    "PullTracker",
    "Reviewer",
]
