"""The engine end to end on a real git repo, SQLite and the ArgoCD stand-in: one proposal per
knob, the full path to applied, and what fails and why."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from agents.sim.workload import WorkloadSpec
from approval_engine import audit
from approval_engine.config import TargetsConfig, load_model
from approval_engine.engine import Engine
from approval_engine.errors import BackendError, PolicyDeniedError, TemporaryBackendError
from approval_engine.model import Proposal, State
from approval_engine.targets import Targets
from tests.approval_engine._support import (
    ALICE,
    BOB,
    CONFIG_DIR,
    DAVE,
    Boot,
    Clock,
    FailingCloseBackend,
    ManualArgoCD,
    Node,
    Recorder,
    StalledDeployer,
    UnreachableMergeBackend,
    branch_commits,
    git,
    merge_commits,
    wish,
)

CHECKOUT_STAGING = "helm-charts/checkout/values-staging.yaml"


def open_proposal(engine: Engine, service: str, env: str, *changes: tuple[str, int]) -> Proposal:
    outcome = engine.propose(wish(service, env, *changes), actor=ALICE)
    assert outcome.action == "opened", outcome.message
    assert outcome.proposal is not None
    return outcome.proposal


def changed_files(node: Node, old: str, new: str) -> list[str]:
    return git(node.git.path, "diff", "--name-only", old, new).split()


# --- the full path ----------------------------------------------------------------------------


def test_an_approved_change_is_merged_once_synced_and_applied_to_the_cluster(
    node: Node, chat: Recorder
) -> None:
    engine = node.engine
    base = node.git.base_head()
    proposal = open_proposal(engine, "checkout", "staging", ("min_replicas", 4))
    assert proposal.title == "scale: checkout/staging autoscaling.minReplicas 2 → 4"
    assert "-  minReplicas: 2\n+  minReplicas: 4\n" in proposal.diff

    outcome = engine.approve(proposal.id, actor=BOB)

    done = outcome.proposal
    assert done.state == State.APPLIED
    values = node.git.read_file(CHECKOUT_STAGING)
    assert "  minReplicas: 4\n" in values
    merges = merge_commits(node.git.path, proposal.id)
    assert len(merges) == 1, f"{len(merges)} merge commits"
    merge = merges[0]
    assert merge.sha == done.merge_sha == node.git.base_head()
    assert merge.parents == (base, proposal.head_sha)
    assert len(branch_commits(node.git.path, proposal.id)) == 1
    assert changed_files(node, base, merge.sha) == [CHECKOUT_STAGING]
    spec = node.cluster.spec("checkout", "staging")
    assert spec is not None
    assert spec.min_replicas == 4
    engine.deliver(chat)
    assert chat.kinds() == ["opened", "approved", "merged", "syncing", "applied"]
    assert [e.action for e in audit.tail(engine.store)] == [
        "proposed",
        "approved",  # bob's approval
        "approved",  # the state change it completed
        "merged",
        "syncing",
        "applied",
    ]
    assert audit.verify(engine.store).ok


def test_prod_walks_the_same_path_after_the_second_approval(node: Node, chat: Recorder) -> None:
    proposal = open_proposal(node.engine, "checkout", "prod", ("min_replicas", 5))
    node.engine.approve(proposal.id, actor=BOB)
    node.engine.approve(proposal.id, actor=DAVE)

    node.engine.deliver(chat)
    assert chat.kinds() == ["opened", "approval", "approved", "merged", "syncing", "applied"]
    spec = node.cluster.spec("checkout", "prod")
    assert spec is not None
    assert spec.min_replicas == 5


def test_search_replica_floor_is_edited_in_terraform_not_in_its_chart(node: Node) -> None:
    base = node.git.base_head()
    proposal = open_proposal(node.engine, "search", "prod", ("min_replicas", 4))
    assert [(k.path, k.key, k.old, k.new) for k in proposal.knobs] == [
        ("terraform/environments/prod/hpa.tf", "module.search_hpa.min_replicas", 2, 4)
    ]

    node.engine.approve(proposal.id, actor=BOB)
    node.engine.approve(proposal.id, actor=DAVE)

    assert node.engine.get(proposal.id).state == State.APPLIED
    hcl = node.git.read_file("terraform/environments/prod/hpa.tf")
    assert "  min_replicas           = 4\n" in hcl
    assert "  # floor agreed with the search team\n" in hcl
    assert changed_files(node, base, node.git.base_head()) == ["terraform/environments/prod/hpa.tf"]
    spec = node.cluster.spec("search", "prod")
    assert spec is not None
    assert (spec.hpa_enabled, spec.min_replicas, spec.max_replicas) == (True, 4, 24)


def test_cart_in_staging_has_no_hpa_so_its_replica_count_is_edited(node: Node) -> None:
    proposal = open_proposal(node.engine, "cart", "staging", ("replicas", 3))

    node.engine.approve(proposal.id, actor=BOB)

    values = node.git.read_file("helm-charts/cart/values-staging.yaml")
    assert "replicaCount: 3  # fixed size: the HPA is off in staging\n" in values
    assert node.cluster.spec("cart", "staging") == WorkloadSpec(
        replicas=3,
        hpa_enabled=False,
        min_replicas=1,
        max_replicas=4,
        target_cpu_percent=75,
        cpu_request_millicores=250,
    )


def test_several_knobs_of_one_wish_land_in_one_commit(node: Node) -> None:
    proposal = open_proposal(
        node.engine, "checkout", "prod", ("min_replicas", 13), ("max_replicas", 16)
    )
    assert proposal.title == (
        "scale: checkout/prod autoscaling.minReplicas 3 → 13, autoscaling.maxReplicas 12 → 16"
    )
    assert len(branch_commits(node.git.path, proposal.id)) == 1

    node.engine.approve(proposal.id, actor=BOB)
    node.engine.approve(proposal.id, actor=DAVE)

    spec = node.cluster.spec("checkout", "prod")
    assert spec is not None
    assert (spec.min_replicas, spec.max_replicas) == (13, 16)


# --- one open proposal per (service, env, knob) ---------------------------------------------


def test_a_repeated_wish_updates_the_open_proposal_instead_of_opening_another(
    node: Node, chat: Recorder
) -> None:
    first = open_proposal(node.engine, "checkout", "staging", ("min_replicas", 4))

    again = node.engine.propose(wish("checkout", "staging", ("min_replicas", 5)), actor=ALICE)

    assert again.action == "updated"
    assert again.proposal is not None
    assert again.proposal.id == first.id
    assert again.proposal.head_sha != first.head_sha
    assert again.proposal.title == "scale: checkout/staging autoscaling.minReplicas 2 → 5"
    assert [c.parents[0] for c in branch_commits(node.git.path, first.id)] == [
        first.head_sha,
        first.base_sha,
    ], "the update is a second commit on the same branch"
    assert node.git.read_file(CHECKOUT_STAGING, ref=first.branch).count("minReplicas: 5") == 1
    assert [p.id for p in node.engine.proposals()] == [first.id]
    node.engine.deliver(chat)
    assert chat.kinds() == ["opened", "updated"]


def test_a_wish_adding_a_knob_folds_into_the_proposal_that_holds_the_other(node: Node) -> None:
    first = open_proposal(node.engine, "checkout", "staging", ("min_replicas", 4))
    node.engine.propose(
        wish("checkout", "staging", ("min_replicas", 4), ("max_replicas", 9)), actor=ALICE
    )

    then = node.engine.propose(wish("checkout", "staging", ("max_replicas", 10)), actor=ALICE)

    assert then.proposal is not None
    assert then.proposal.id == first.id
    assert {k.knob: k.new for k in then.proposal.knobs} == {"min_replicas": 4, "max_replicas": 10}


def test_a_wish_on_another_knob_of_the_same_target_is_refused_naming_the_holder(
    engine: Engine,
) -> None:
    first = open_proposal(engine, "checkout", "staging", ("min_replicas", 4))

    with pytest.raises(PolicyDeniedError) as caught:
        engine.propose(wish("checkout", "staging", ("target_cpu", 60)), actor=DAVE)

    assert str(caught.value) == (
        f"checkout/staging is locked by {first.id} (open, proposed by alice: checkout/staging "
        "autoscaling.minReplicas 2 → 4); one change per service and environment at a time, "
        f"so approve or reject {first.id} first"
    )
    assert [p.id for p in engine.proposals()] == [first.id]
    # another environment of the same service is another lock
    assert open_proposal(engine, "checkout", "prod", ("target_cpu", 60)).id != first.id


def test_repeating_the_identical_wish_changes_nothing(node: Node) -> None:
    first = open_proposal(node.engine, "checkout", "prod", ("min_replicas", 4))
    node.engine.approve(first.id, actor=BOB)

    again = node.engine.propose(wish("checkout", "prod", ("min_replicas", 4)), actor=ALICE)

    assert again.action == "unchanged"
    assert again.message == f"{first.id} already proposes exactly this: {first.title}"
    assert again.proposal is not None
    assert again.proposal.head_sha == first.head_sha
    assert [a.approver for a in again.proposal.current_approvals()] == ["bob"]
    assert len(branch_commits(node.git.path, first.id)) == 1


def test_repeating_the_identical_wish_announces_nothing_new(node: Node, chat: Recorder) -> None:
    open_proposal(node.engine, "checkout", "staging", ("min_replicas", 4))

    node.engine.propose(wish("checkout", "staging", ("min_replicas", 4)), actor=ALICE)

    node.engine.deliver(chat)
    assert chat.kinds() == ["opened"]


def test_a_wish_already_true_on_the_base_proposes_nothing(node: Node) -> None:
    outcome = node.engine.propose(wish("checkout", "staging", ("min_replicas", 2)), actor=ALICE)

    assert (outcome.action, outcome.proposal) == ("noop", None)
    assert outcome.message == "Nothing to change: checkout/staging already has min_replicas = 2."
    assert node.engine.proposals(active_only=False) == []
    assert node.git.branches() == ["main"]


def test_a_wish_back_to_the_base_value_supersedes_the_open_proposal(
    node: Node, chat: Recorder
) -> None:
    first = open_proposal(node.engine, "checkout", "staging", ("min_replicas", 4))

    outcome = node.engine.propose(wish("checkout", "staging", ("min_replicas", 2)), actor=ALICE)

    assert outcome.action == "noop"
    assert node.engine.get(first.id).state == State.SUPERSEDED
    assert node.git.branch_head(first.branch) is None
    node.engine.deliver(chat)
    assert chat.kinds() == ["opened", "superseded"]
    assert open_proposal(node.engine, "checkout", "staging", ("min_replicas", 4)).id != first.id


IN_FLIGHT: dict[State, dict[str, Any]] = {
    # how to make a proposal wait in a state after its approval
    State.APPROVED: {"backend": UnreachableMergeBackend},
    State.MERGED: {
        "deployer": lambda argocd: StalledDeployer(
            argocd, error=TemporaryBackendError("argocd is down")
        )
    },
    State.SYNCING: {"deployer": StalledDeployer},
}


@pytest.mark.parametrize("state", list(IN_FLIGHT), ids=str)
def test_a_proposal_in_flight_blocks_a_new_one_on_its_knob(boot: Boot, state: State) -> None:
    engine = boot(**IN_FLIGHT[state]).engine
    proposal = open_proposal(engine, "checkout", "staging", ("min_replicas", 4))
    engine.approve(proposal.id, actor=BOB)
    assert engine.get(proposal.id).state == state

    with pytest.raises(PolicyDeniedError) as caught:
        engine.propose(wish("checkout", "staging", ("min_replicas", 6)), actor=DAVE)

    assert str(caught.value) == (
        f"{proposal.id} is already changing checkout/staging ({state.value}); "
        "try again when it is applied"
    )
    assert audit.tail(engine.store, limit=1)[0].action == "denied"
    assert [p.id for p in engine.proposals(active_only=False)] == [proposal.id]


# --- what goes wrong ----------------------------------------------------------------------------


def test_a_temporary_merge_failure_waits_in_approved_and_is_retried(boot: Boot) -> None:
    node = boot(backend=UnreachableMergeBackend)
    backend = node.engine.backend
    assert isinstance(backend, UnreachableMergeBackend)
    proposal = open_proposal(node.engine, "checkout", "staging", ("min_replicas", 4))
    node.engine.approve(proposal.id, actor=BOB)
    node.engine.reconcile()
    assert node.engine.get(proposal.id).state == State.APPROVED

    backend.down = False
    node.engine.reconcile()

    assert node.engine.get(proposal.id).state == State.APPLIED
    assert len(merge_commits(node.git.path, proposal.id)) == 1


def test_a_change_the_cluster_cannot_run_fails_with_the_reason_and_frees_the_knob(
    node: Node, chat: Recorder
) -> None:
    # search in staging has max_replicas 4 in Terraform; a floor of 6 is above its ceiling.
    proposal = open_proposal(node.engine, "search", "staging", ("min_replicas", 6))

    node.engine.approve(proposal.id, actor=BOB)

    failed = node.engine.get(proposal.id)
    assert failed.state == State.FAILED
    assert "max_replicas (4) must be >= min_replicas (6)" in failed.message
    node.engine.deliver(chat)
    assert chat.kinds()[-1] == "failed"
    assert open_proposal(node.engine, "search", "staging", ("min_replicas", 3)).id != proposal.id


def test_a_rollout_that_never_becomes_healthy_fails_after_the_sync_timeout(
    boot: Boot, clock: Clock
) -> None:
    node = boot(deployer=StalledDeployer)
    proposal = open_proposal(node.engine, "checkout", "staging", ("min_replicas", 4))
    node.engine.approve(proposal.id, actor=BOB)
    timeout = node.engine.policy.config.sync_timeout

    clock.advance(timeout)
    node.engine.reconcile()
    assert node.engine.get(proposal.id).state == State.SYNCING

    clock.advance(timedelta(seconds=1))
    node.engine.reconcile()

    failed = node.engine.get(proposal.id)
    assert (failed.state, failed.message) == (State.FAILED, "sync timed out")


def test_a_rollout_overtaken_by_a_later_merge_of_the_same_app_is_still_applied(
    boot: Boot, clock: Clock
) -> None:
    argocd = ManualArgoCD()
    node = boot(deployer=lambda _: argocd)
    # Two targets one ArgoCD app deploys (the target lock keeps one target's changes apart).
    config = load_model(CONFIG_DIR / "targets.yaml", TargetsConfig)
    cart = config.services["cart"].model_copy(update={"argocd_app": "checkout-{env}"})
    shared = config.model_copy(update={"services": {**config.services, "cart": cart}})
    engine = Engine(
        store=node.store,
        backend=node.git,
        deployer=argocd,
        targets=Targets(shared),
        policy=node.engine.policy.config,
        clock=clock,
    )
    floor = open_proposal(engine, "checkout", "staging", ("min_replicas", 4))
    target = open_proposal(engine, "cart", "staging", ("target_cpu", 60))
    engine.approve(floor.id, actor=BOB)
    engine.approve(target.id, actor=BOB)  # merged on top of floor's merge, synced before it settled
    assert [engine.get(p.id).state for p in (floor, target)] == [State.SYNCING] * 2

    argocd.settle("checkout-staging")
    clock.advance(engine.policy.config.sync_timeout + timedelta(seconds=1))
    engine.reconcile()

    assert engine.get(target.id).state == State.APPLIED
    assert engine.get(floor.id).state == State.APPLIED, engine.get(floor.id).message


def test_a_branch_that_cannot_be_closed_yet_is_closed_by_a_later_reconcile(
    boot: Boot, clock: Clock
) -> None:
    node = boot(backend=lambda g: FailingCloseBackend(g, BackendError("branch is protected")))
    backend = node.engine.backend
    assert isinstance(backend, FailingCloseBackend)
    proposal = open_proposal(node.engine, "checkout", "staging", ("min_replicas", 4))
    clock.advance(node.engine.policy.config.proposal_ttl)

    node.engine.reconcile()  # does not raise

    assert node.engine.get(proposal.id).state == State.EXPIRED
    assert node.git.branch_head(proposal.branch) is not None
    backend.broken = False
    node.engine.reconcile()
    assert node.git.branch_head(proposal.branch) is None


def test_a_rejection_stands_when_the_branch_cannot_be_closed_yet(boot: Boot) -> None:
    node = boot(backend=lambda g: FailingCloseBackend(g, TemporaryBackendError("host down")))
    backend = node.engine.backend
    assert isinstance(backend, FailingCloseBackend)
    proposal = open_proposal(node.engine, "checkout", "staging", ("min_replicas", 4))

    assert node.engine.reject(proposal.id, actor=BOB).state == State.REJECTED

    assert node.git.branch_head(proposal.branch) is not None
    backend.broken = False
    node.engine.reconcile()
    assert node.git.branch_head(proposal.branch) is None
