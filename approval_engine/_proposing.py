"""Proposing: render a wish into file edits, then open a proposal or fold it into the open one."""

from __future__ import annotations

from typing import TYPE_CHECKING

from approval_engine import audit, rebase
from approval_engine import store as db
from approval_engine._announcing import allow, denied
from approval_engine._outcomes import ProposeOutcome
from approval_engine._pushing import first_push
from approval_engine.editors import edit_value, read_value, unified_diff
from approval_engine.errors import TargetError
from approval_engine.model import ChangeRequest, EditedKnob, Proposal, Risk, Scalar, State
from approval_engine.pr_text import code, plain
from approval_engine.rbac import Actor
from approval_engine.risk import assess

if TYPE_CHECKING:
    from approval_engine.engine import Engine

__all__ = ["assess_risk", "propose", "render"]


def propose(engine: Engine, request: ChangeRequest, *, actor: Actor) -> ProposeOutcome:
    allow(engine, actor, "propose", request.service, lambda: engine.policy.check_propose(actor))
    engine.targets.check_env(request.service, request.env)
    allow(engine, actor, "propose", request.service, lambda: engine.policy.check_change(request))
    engine.backoff.guard()
    base = engine.backend.base_head()
    with engine.store.transaction() as session:
        holders = {
            db.lock_holder(session, f"{request.service}/{request.env}/{c.knob}")
            for c in request.changes
        } - {None}
        if len(holders) > 1:
            busy = ", ".join(sorted(h for h in holders if h))
            existing = None
        else:
            busy = ""
            holder = next(iter(holders), None)
            existing = db.load_proposal(session, holder) if holder else None
    if busy:
        raise denied(
            engine,
            actor,
            "propose",
            request.service,
            f"{busy} already change these knobs; reject or finish them first",
        )
    if existing is not None and existing.state != State.OPEN:
        raise denied(
            engine,
            actor,
            "propose",
            existing.id,
            f"{existing.id} is already changing {request.service}/{request.env} "
            f"({existing.state.value}); try again when it is applied",
        )
    allow(
        engine,
        actor,
        "propose",
        request.service,
        lambda: engine.noise.check_lock(request, existing),
    )
    wanted = {c.knob: c.value for c in request.changes}
    if existing is not None:
        # A repeated wish folds into the open proposal: its other knobs keep their values.
        wanted = {k.knob: k.new for k in existing.knobs} | wanted
    knobs, files = render(engine, request.service, request.env, wanted, ref=base)
    if not knobs:
        if existing is not None:
            engine._transition(
                existing.id,
                State.SUPERSEDED,
                actor=actor.name,
                text=f"{existing.id} superseded: {request.service}/{request.env} already "
                f"has {_knob_list(wanted)} on the base branch.",
                close_reason="already true on the base branch",
            )
        return ProposeOutcome(
            proposal=None,
            action="noop",
            message=f"Nothing to change: {request.service}/{request.env} already has "
            f"{_knob_list(wanted)}.",
        )
    if existing is not None:
        return _update(engine, existing, request, actor=actor, knobs=knobs, files=files, base=base)
    return _open(engine, request, actor=actor, knobs=knobs, files=files, base=base)


def render(
    engine: Engine, service: str, env: str, wanted: dict[str, Scalar], *, ref: str
) -> tuple[list[EditedKnob], dict[str, tuple[str, str]]]:
    """Edit the files for `wanted`; returns the knobs that move and path → (before, after)."""
    files: dict[str, tuple[str, str]] = {}
    knobs: list[EditedKnob] = []
    for knob, value in wanted.items():
        location = engine.targets.locate(service, env, knob)
        if location.path is None or location.key is None:
            if location.constant != value:
                raise TargetError(f"{service}/{env} {knob} is fixed at {location.constant}")
            continue
        if location.path not in files:
            text = engine.backend.read_file(location.path, ref=ref)
            files[location.path] = (text, text)
        before, current = files[location.path]
        old = read_value(before, location.key, path=location.path)
        if old == value and type(old) is type(value):
            continue
        files[location.path] = (
            before,
            edit_value(current, location.key, value, path=location.path),
        )
        knobs.append(
            EditedKnob(knob=knob, path=location.path, key=location.key, old=old, new=value)
        )
    return knobs, {p: ba for p, ba in files.items() if ba[0] != ba[1]}


def _open(
    engine: Engine,
    request: ChangeRequest,
    *,
    actor: Actor,
    knobs: list[EditedKnob],
    files: dict[str, tuple[str, str]],
    base: str,
) -> ProposeOutcome:
    allow(engine, actor, "propose", request.service, lambda: engine.noise.check_budget(request))
    now = engine.clock()
    risk = assess_risk(engine, request, knobs, files)
    with engine.store.transaction() as session:
        number = db.next_number(session, "proposal")
        proposal_id = f"{request.kind}-{number}"
        proposal = Proposal(
            id=proposal_id,
            kind=request.kind,
            service=request.service,
            env=request.env,
            state=State.OPEN,
            title=_title(request, knobs),
            rationale=request.rationale,
            proposer=actor.name,
            contributors=[actor.name],
            branch=f"opsgate/{proposal_id}",
            base_sha=base,
            head_sha="",
            diff=_diff(files),
            files={p: after for p, (_, after) in files.items()},
            knobs=knobs,
            quorum=engine.policy.quorum(request.env, risk, revert=request.reverts is not None),
            created_at=now,
            updated_at=now,
            expires_at=now + engine.policy.config.proposal_ttl,
            state_since=now,
            confidence=request.confidence,
            risk=risk,
            evidence=list(request.evidence),
            app=engine.targets.app(request.service, request.env),
            pending_push=True,
            reverts=request.reverts,
        )
        db.write_proposal(session, proposal)
        for key in proposal.lock_keys:
            db.take_lock(session, key, proposal_id)
        audit.record(
            session,
            at=now,
            actor=actor.name,
            action="proposed",
            subject=proposal_id,
            detail={
                "change": request.describe(),
                "rationale": request.rationale,
                "risk": risk.level.value,
                "risk_reasons": list(risk.reasons),
            },
        )
    proposal, later = first_push(engine, proposal, actor=actor)
    return ProposeOutcome(
        proposal=proposal,
        action="opened",
        message=f"Opened {proposal.id}: {proposal.title}{later}",
    )


def assess_risk(
    engine: Engine,
    request: ChangeRequest,
    knobs: list[EditedKnob],
    files: dict[str, tuple[str, str]],
) -> Risk:
    return assess(
        env=request.env,
        knobs=knobs,
        files={path: after for path, (_, after) in files.items()},
        stateful=engine.targets.kind(request.service) == "database",
        confidence=request.confidence,
        policy=engine.policy.config,
        now=engine.clock(),
    )


def _update(
    engine: Engine,
    existing: Proposal,
    request: ChangeRequest,
    *,
    actor: Actor,
    knobs: list[EditedKnob],
    files: dict[str, tuple[str, str]],
    base: str,
) -> ProposeOutcome:
    now = engine.clock()
    new_files = {p: after for p, (_, after) in files.items()}
    if new_files == existing.files and not existing.pending_push:
        return ProposeOutcome(
            proposal=existing,
            action="unchanged",
            message=f"{existing.id} already proposes exactly this: {existing.title}",
        )
    risk = assess_risk(engine, request, knobs, files)
    with engine.store.transaction() as session:
        current = db.load_proposal(session, existing.id)
        assert current is not None
        current.title = _title(request, knobs)
        current.rationale = request.rationale
        current.confidence = request.confidence
        current.risk = risk
        current.quorum = engine.policy.quorum(request.env, risk, revert=current.reverts is not None)
        current.diff = _diff(files)
        current.files = {p: after for p, (_, after) in files.items()}
        current.knobs = knobs
        current.base_sha = base
        rebase.forget(session, current.id)  # rendered on the base just now
        if actor.name not in current.contributors:
            current.contributors.append(actor.name)
        current.updated_at = now
        current.expires_at = now + engine.policy.config.proposal_ttl
        current.pending_push = True
        db.release_locks(session, current.id)
        for key in current.lock_keys:
            db.take_lock(session, key, current.id)
        db.write_proposal(session, current)
        audit.record(
            session,
            at=now,
            actor=actor.name,
            action="updated",
            subject=current.id,
            detail={
                "change": request.describe(),
                "base": base,
                "risk": risk.level.value,
                "risk_reasons": list(risk.reasons),
            },
        )
    note = _update_note(existing.knobs, knobs, by=actor.name)
    proposal, later = first_push(engine, current, actor=actor, note=note)
    return ProposeOutcome(
        proposal=proposal,
        action="updated",
        message=f"Updated {proposal.id} instead of opening another: {proposal.title}{later}",
    )


def _title(request: ChangeRequest, knobs: list[EditedKnob]) -> str:
    changes = ", ".join(f"{k.key} {k.old} → {k.new}" for k in knobs)
    return f"{request.kind}: {request.service}/{request.env} {changes}"


def _update_note(before: list[EditedKnob], after: list[EditedKnob], *, by: str) -> str:
    """The comment on an updated pull request: what each knob proposed before, and now."""
    was = {k.key: k.new for k in before}
    lines = [f"opsgate updated this pull request: {plain(by)} asked again."]
    for knob in after:
        earlier = f"{code(was[knob.key])} → " if knob.key in was else "newly "
        lines.append(f"- {code(knob.key)}: {earlier}{code(knob.new)} (base: {code(knob.old)})")
    now = {k.key for k in after}
    lines.extend(f"- {code(key)}: no longer changed" for key in was if key not in now)
    return "\n".join(lines)


def _diff(files: dict[str, tuple[str, str]]) -> str:
    return "".join(unified_diff(path, before, after) for path, (before, after) in files.items())


def _knob_list(wanted: dict[str, Scalar]) -> str:
    return ", ".join(f"{k} = {v}" for k, v in wanted.items())
