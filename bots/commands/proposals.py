"""/proposals, /diff, /approve, /reject: looking at proposals and deciding on them."""

from __future__ import annotations

from datetime import datetime

from approval_engine.model import Proposal
from bots.errors import UsageError
from bots.router import Context, Router
from bots.types import Button, Reply, Table


def _age(since: datetime, now: datetime) -> str:
    minutes = int((now - since).total_seconds() // 60)
    if minutes < 60:
        return f"{minutes}m"
    if minutes < 48 * 60:
        return f"{minutes // 60}h"
    return f"{minutes // 1440}d"


def proposal_card(proposal: Proposal, *, headline: str = "", show_diff: bool = True) -> Reply:
    """The card people decide on: what, why, diff, approvals, and the commands to decide."""
    approvals = proposal.current_approvals()
    names = ", ".join(a.approver for a in approvals) or "none yet"
    lines = [
        headline or f"{proposal.id}: {proposal.title}",
        f"State: {proposal.state.value} · proposed by {proposal.proposer} · "
        f"approvals {len(approvals)} of {proposal.quorum} ({names})",
    ]
    if proposal.risk is not None:
        lines.append(f"Risk: {proposal.risk.summary()}")
    lines.append(f"Why: {proposal.rationale}")
    if proposal.message:
        lines.append(f"Note: {proposal.message}")
    buttons: tuple[Button, ...] = ()
    if proposal.state.value == "open":
        buttons = (
            Button("Approve", f"/approve {proposal.id}", style="primary"),
            Button("Reject", f"/reject {proposal.id}", style="danger"),
            Button("Show diff", f"/diff {proposal.id}"),
        )
    return Reply(
        text="\n".join(lines),
        code=proposal.diff if show_diff else "",
        buttons=buttons,
        card=proposal.id,
    )


def _one_id(ctx: Context, usage: str) -> str:
    if not ctx.args:
        raise UsageError(f"Usage: {usage} (/proposals lists the open ones)")
    return ctx.args[0].lower()


def install(router: Router) -> None:
    @router.command(
        "proposals", usage="/proposals [all]", summary="open proposals (all: closed ones too)"
    )
    def proposals(ctx: Context) -> Reply:
        show_all = bool(ctx.args) and ctx.args[0] == "all"
        items = ctx.services.engine.proposals(active_only=not show_all)
        if not items:
            return Reply(text="No open proposals." if not show_all else "No proposals yet.")
        now = ctx.services.engine.clock()
        rows = tuple(
            (
                p.id,
                p.state.value,
                p.title.split(": ", 1)[-1],
                p.proposer,
                f"{len(p.current_approvals())} of {p.quorum}",
                _age(p.created_at, now),
            )
            for p in items
        )
        columns = ("id", "state", "change", "proposer", "approvals", "age")
        return Reply(tables=(Table(columns=columns, rows=rows),))

    @router.command("diff", usage="/diff <id>", summary="a proposal's diff and state")
    def diff(ctx: Context) -> Reply:
        proposal = ctx.services.engine.get(_one_id(ctx, "/diff <id>"))
        return proposal_card(proposal)

    @router.command("approve", role="approver", usage="/approve <id>", summary="approve a proposal")
    def approve(ctx: Context) -> Reply:
        proposal_id = _one_id(ctx, "/approve <id>")
        head = ctx.args[1] if len(ctx.args) > 1 else None
        outcome = ctx.services.engine.approve(proposal_id, actor=ctx.actor, head=head)
        if outcome.already:
            return Reply(
                text=f"You already approved {proposal_id} "
                f"({outcome.count} of {outcome.quorum} approvals); it is "
                f"{outcome.proposal.state.value}."
            )
        missing = outcome.quorum - outcome.count
        more = f" {missing} more approval(s) needed." if missing > 0 else ""
        return Reply(
            text=f"Approved {proposal_id} ({outcome.count} of {outcome.quorum} approvals).{more}"
        )

    @router.command(
        "reject", role="operator", usage="/reject <id> [reason]", summary="reject a proposal"
    )
    def reject(ctx: Context) -> Reply:
        proposal_id = _one_id(ctx, "/reject <id> [reason]")
        reason = " ".join(ctx.args[1:])
        proposal = ctx.services.engine.reject(proposal_id, actor=ctx.actor, reason=reason)
        return Reply(text=f"Rejected {proposal.id}; its branch is closed.")
