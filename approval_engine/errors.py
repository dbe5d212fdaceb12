"""The approval engine's exception tree.

ApprovalError                 root of everything this package raises
├── ConfigError               config/ is invalid; the message names file, key and reason
├── TargetError               a (service, env, knob) that config/targets.yaml does not know
├── EditError                 a file could not be edited as asked (missing key, parse failure)
├── PolicyDeniedError              policy refused an action; `reason` is safe to show in chat
├── ProposalNotFoundError          no proposal with that id
├── InvalidTransitionError         a state change the state machine does not allow
├── AuditError                the audit log is broken (see `opsgate audit verify`)
├── PartialDeliveryError      a notifier reached some destinations; it keeps the rest in order
└── BackendError              a PR backend or deployer failed
    ├── TemporaryBackendError the same call may succeed later; `retry_after` in seconds
    │   └── RateLimitedError  the host is rate-limiting opsgate; the engine waits it out
    ├── NotMergeableError     the host will not merge yet (conflict, checks, reviews); it waits
    └── SyncTimeoutError      ArgoCD did not reach the revision in time (approval_engine.argocd)
"""

from __future__ import annotations


class ApprovalError(Exception):
    """Root of the approval engine's errors."""


class ConfigError(ApprovalError):
    """Invalid configuration; the text names the file, the key and the reason."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class TargetError(ApprovalError):
    """A target or knob that config/targets.yaml does not define."""


class EditError(ApprovalError):
    """A file could not be edited as asked."""


class PolicyDeniedError(ApprovalError):
    """Policy refused the action; the message says why and is safe to show in chat."""


class ProposalNotFoundError(ApprovalError):
    """No proposal has that id."""


class InvalidTransitionError(ApprovalError):
    """The state machine does not allow that change of state."""


class AuditError(ApprovalError):
    """The audit log does not verify."""


class PartialDeliveryError(ApprovalError):
    """Some destinations missed an announcement; it stays queued, and later ones may be offered.

    Raised by a notifier that keeps each destination's order itself (one that raises anything
    else is offered nothing more until the failed announcement goes through).
    """


class BackendError(ApprovalError):
    """A PR backend or deployer call failed for good."""


class TemporaryBackendError(BackendError):
    """A PR backend or deployer call failed for now; try again after `retry_after` seconds."""

    def __init__(self, message: str, *, retry_after: float = 5.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RateLimitedError(TemporaryBackendError):
    """The host is rate-limiting opsgate: nothing more is asked of it for `retry_after` seconds.

    `backend_wide` when every call has to wait (a limit on the token, like GitHub's primary
    one), not only the work that was refused (a secondary limit on one kind of request)."""

    host = "the PR host"
    backend_wide = False


class NotMergeableError(BackendError):
    """The host refused the merge for now (a conflict, failing checks, missing reviews): the
    proposal stays approved and the merge is tried again later."""
