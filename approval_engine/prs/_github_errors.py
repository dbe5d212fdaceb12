"""GitHub's answers in opsgate's words: errors, retries, mergeability; no SDK here.

BackendError
├── GitHubError             GitHub refused for good: 401, 403, 404, 405, 409, 422; `status`
│   └── GitHubNotMergeableError  a merge refused (405, 409); also a NotMergeableError
└── TemporaryBackendError
    └── GitHubTemporaryError  5xx, no answer (status 0), or a rate limit (403/429); `retry_after`
        └── GitHubRateLimitError  a rate limit; also a RateLimitedError, `backend_wide` for
                                  the primary limit (per token), not for a secondary one
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from approval_engine.errors import (
    BackendError,
    NotMergeableError,
    RateLimitedError,
    TemporaryBackendError,
)
from approval_engine.prs.base import Mergeability, PullState

__all__ = [
    "PASSING",
    "GitHubError",
    "GitHubNotMergeableError",
    "GitHubRateLimitError",
    "GitHubTemporaryError",
    "Mergeability",
    "PullState",
    "RetryPolicy",
    "approval_text",
    "approvals",
    "describe",
    "retrying",
    "translate",
    "unmet",
    "unreachable",
]

T = TypeVar("T")
PASSING = ("success", "neutral", "skipped")

# GitHub: "Otherwise, wait for at least one minute before retrying."
_DEFAULT_WAIT = 60.0
_HINTS = {
    401: "check that the GitHub token is right and has not expired",
    403: "the token lacks permission on the repository",
    404: "check github.repo, the branch, and that the token can see the repository",
}


class GitHubError(BackendError):
    """GitHub refused a call for good; `status` is the HTTP status, `reason` GitHub's words."""

    def __init__(self, message: str, *, status: int, reason: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


class GitHubNotMergeableError(GitHubError, NotMergeableError):
    """GitHub refused to merge a pull request that may merge later (405, 409)."""


class GitHubTemporaryError(TemporaryBackendError):
    """GitHub could not answer now; `status` is 0 when no answer came at all."""

    def __init__(self, message: str, *, status: int, reason: str, retry_after: float) -> None:
        super().__init__(message, retry_after=retry_after)
        self.status = status
        self.reason = reason

    @property
    def transient(self) -> bool:
        """A server or network failure, worth retrying at once with backoff (not a rate limit)."""
        return self.status == 0 or self.status >= 500


class GitHubRateLimitError(GitHubTemporaryError, RateLimitedError):
    """GitHub's rate limit: the primary one (per token, `backend_wide`) or a secondary one."""

    host = "GitHub"

    def __init__(
        self, message: str, *, status: int, reason: str, retry_after: float, backend_wide: bool
    ) -> None:
        super().__init__(message, status=status, reason=reason, retry_after=retry_after)
        self.backend_wide = backend_wide


def reason_of(data: object) -> str:
    """GitHub's `message`, with the `errors` list a 422 carries."""
    if not isinstance(data, Mapping):
        return str(data or "no message")
    message = str(data.get("message") or "no message")
    details = []
    for error in data.get("errors") or []:
        if isinstance(error, Mapping):
            details.append(str(error.get("message") or f"{error.get('field')} {error.get('code')}"))
        else:
            details.append(str(error))
    return f"{message}: {'; '.join(details)}" if details else message


def _header(headers: Mapping[str, object], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return str(value)
    return None


def rate_limit_wait(
    status: int, headers: Mapping[str, object], reason: str, *, now: float
) -> float | None:
    """Seconds to wait when this answer is a rate limit, else None (GitHub's documented rules)."""
    retry_after = _header(headers, "retry-after")
    remaining = _header(headers, "x-ratelimit-remaining")
    limited = status == 429 or (
        status == 403
        and (retry_after is not None or remaining == "0" or "rate limit" in reason.lower())
    )
    if not limited:
        return None
    if retry_after is not None and retry_after.strip().isdigit():
        return max(1.0, float(retry_after))
    reset = _header(headers, "x-ratelimit-reset")
    if remaining == "0" and reset is not None and reset.strip().isdigit():
        return max(1.0, float(math.ceil(int(reset) - now)))
    return _DEFAULT_WAIT


def translate(
    status: int, headers: Mapping[str, object], data: object, *, what: str, now: float
) -> BackendError:
    """The error for GitHub's answer to `what` (a phrase like "merging #3")."""
    reason = reason_of(data)
    wait = rate_limit_wait(status, headers, reason, now=now)
    if wait is not None:
        # The primary limit counts every call of the token; a secondary one, calls of a kind.
        primary = _header(headers, "x-ratelimit-remaining") == "0" or (
            "api rate limit exceeded" in reason.lower()
        )
        return GitHubRateLimitError(
            f"{what}: GitHub's rate limit is reached ({reason}); try again in {wait:.0f}s",
            status=status,
            reason=reason,
            retry_after=wait,
            backend_wide=primary and "secondary" not in reason.lower(),
        )
    if status >= 500 or (status == 405 and "base branch was modified" in reason.lower()):
        hinted = _header(headers, "retry-after")
        return GitHubTemporaryError(
            f"{what}: GitHub answered {status} ({reason})",
            status=status,
            reason=reason,
            retry_after=float(hinted) if hinted and hinted.isdigit() else 1.0,
        )
    hint = _HINTS.get(status)
    text = f"{what}: GitHub answered {status}, {reason}" + (f"; {hint}" if hint else "")
    return GitHubError(text, status=status, reason=reason)


def unreachable(what: str, error: Exception) -> GitHubTemporaryError:
    """No answer at all: refused, reset, timed out."""
    return GitHubTemporaryError(
        f"{what}: GitHub did not answer ({error.__class__.__name__})",
        status=0,
        reason=str(error),
        retry_after=1.0,
    )


def approvals(reviews: Iterable[tuple[str, str, str]], *, head: str | None) -> int:
    """People whose latest deciding review (user, state, commit) approves; of `head` if given."""
    latest: dict[str, tuple[str, str]] = {}
    for user, state, commit in reviews:
        if state in ("APPROVED", "CHANGES_REQUESTED"):
            latest[user] = (state, commit)
    return sum(1 for s, c in latest.values() if s == "APPROVED" and head in (None, c))


def unmet(
    required: Sequence[str] | None, checks: Mapping[str, str], *, need: int, have: int
) -> list[str]:
    """What still stands before a merge: the `required` checks (None: every failing one) that
    have not passed, and approving reviews short of `need`."""
    problems: list[str] = []
    failing = [c for c, s in checks.items() if s not in PASSING]
    contexts = failing if required is None else required
    for context in contexts:
        state = checks.get(context)
        if state is None:
            problems.append(f"required check {context} has not reported")
        elif state == "pending":
            problems.append(f"check {context} is still running")
        elif state not in PASSING:
            problems.append(f"check {context} is {state}")
    if have < need:
        problems.append(f"GitHub wants {need} approving reviews, has {have}")
    return problems


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently server errors and lost connections are retried."""

    retries: int = 3
    backoff: float = 1.0  # seconds before the first retry, doubling after each
    max_backoff: float = 30.0  # a longer wait is left to the caller, via retry_after


def retrying(
    fn: Callable[[], T],
    classify: Callable[[Exception], BackendError | None],
    policy: RetryPolicy,
    *,
    sleep: Callable[[float], None],
) -> T:
    """`fn()`, again after transient failures (`classify` turns exceptions into our errors;
    None lets one through), waiting `backoff` doubling, or longer when GitHub says so."""
    attempt = 0
    while True:
        try:
            return fn()
        except Exception as e:
            error = classify(e)
            if error is None:
                raise
            if not isinstance(error, GitHubTemporaryError) or not error.transient:
                raise error from e
            delay = max(policy.backoff * 2**attempt, error.retry_after)
            if attempt >= policy.retries or delay > policy.max_backoff:
                error.retry_after = max(error.retry_after, min(delay, policy.max_backoff))
                raise error from e
        sleep(delay)
        attempt += 1


def describe(
    state: str, mergeable: bool | None, *, number: int, base: str, problems: list[str]
) -> Mergeability:
    """GitHub's `mergeable_state` of pull #number, with what stands in the way."""
    if state == "merged":
        return Mergeability(False, f"#{number} is already merged")
    if mergeable is None or state == "unknown":
        return Mergeability(None, f"GitHub is still working out whether #{number} merges")
    if mergeable is False or state == "dirty":
        return Mergeability(False, f"#{number} conflicts with {base}; re-render it on the new base")
    if state == "draft":
        return Mergeability(False, f"#{number} is a draft")
    if state == "behind":
        problems = [*problems, f"#{number} is behind {base}, which must be merged in first"]
    if state in ("blocked", "behind"):
        return Mergeability(False, "; ".join(problems) or "branch protection blocks the merge")
    if state == "unstable":
        return Mergeability(True, "mergeable, though " + ("; ".join(problems) or "checks failed"))
    return Mergeability(True, "ready to merge")


def approval_text(login: str, head_sha: str, body: str) -> str:
    return (
        f"Approved in chat by @{login} for {head_sha[:7]}.\n\n{body}\n\n"
        f"_opsgate submits this review with its own GitHub token, so GitHub names the "
        f"token's account as the reviewer; the approver is @{login}._"
    )
