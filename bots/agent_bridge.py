"""Where agents meet the rest: their change requests go to the engine, their news to chat."""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager

from agents.runner import RunResult, SubmitFn, Submitted
from approval_engine.engine import Engine
from approval_engine.errors import ApprovalError
from approval_engine.model import ChangeRequest
from approval_engine.notify import Announcement
from approval_engine.rbac import agent_actor
from bots.gateway import Gateway

log = logging.getLogger(__name__)


def submitter(engine: Engine, lock: AbstractContextManager[object]) -> SubmitFn:
    """An agent's ChangeRequest becomes a proposal exactly as a person's /scale does."""

    def submit(request: ChangeRequest) -> Submitted:
        name = request.requested_by.removeprefix("agent:")
        try:
            with lock:
                outcome = engine.propose(request, actor=agent_actor(name))
        except ApprovalError as e:
            return Submitted(outcome="refused", message=str(e))
        proposal = outcome.proposal
        return Submitted(
            outcome=outcome.action,
            proposal_id=proposal.id if proposal else None,
            message=outcome.message,
        )

    return submit


def announce_run(gateway: Gateway, result: RunResult) -> None:
    """After a scheduled run: say what is new, then deliver what the engine queued."""
    notifier = gateway.notifier
    if notifier is not None:
        for finding in result.new_findings:
            if finding.severity == "info" and finding.change is None:
                continue
            text = f"[{result.agent}] {finding.severity}: {finding.title}"
            try:
                notifier.announce(Announcement(kind="finding", text=text))
            except Exception:
                log.exception("announcing a finding of %s failed", result.agent)
    gateway.tick()
