"""The ArgoCD client against a fake argocd-server: sync, status, wait, and every refusal."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from approval_engine.argocd import ArgoCDClient, SyncTimeoutError, app_status
from approval_engine.deploy import DEGRADED, HEALTHY, MISSING, PROGRESSING, AppStatus, Deployer
from approval_engine.errors import BackendError, TemporaryBackendError
from tests.fakes.argocd_api import ERROR, FAILED, INITIAL_REVISION, FakeArgoCD

APP = "checkout-prod"
MERGE = "9f" * 20
LATER = "a1" * 20


class FakeTime:
    """A monotonic clock that only `sleep` moves: nothing in these tests really waits."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def argocd() -> Iterator[FakeArgoCD]:
    with FakeArgoCD() as fake:
        fake.add_app(APP)
        fake.push(APP, MERGE)  # the merge is on the tracked branch, as after a real merge
        yield fake


@pytest.fixture
def time_() -> FakeTime:
    return FakeTime()


def make_client(
    argocd: FakeArgoCD, time_: FakeTime, *, token: str | None = None, **options: object
) -> ArgoCDClient:
    return ArgoCDClient(
        base_url=argocd.url,
        token=SecretStr(token or argocd.token),
        sleep=time_.sleep,
        clock=time_.clock,
        verify_tls=False,  # plain HTTP on loopback; spares loading the CA bundle per client
        **options,  # type: ignore[arg-type]
    )


@pytest.fixture
def client(argocd: FakeArgoCD, time_: FakeTime) -> Iterator[ArgoCDClient]:
    with make_client(argocd, time_) as c:
        yield c


def refusal(call: object) -> BackendError:
    assert callable(call)
    with pytest.raises(BackendError) as caught:
        call()
    return caught.value


# -- the Deployer protocol ---------------------------------------------------------------------


def test_the_client_is_a_deployer(client: ArgoCDClient) -> None:
    deployer: Deployer = client

    assert deployer.status(APP) == AppStatus(APP, "Synced", INITIAL_REVISION, HEALTHY)


def test_statuses_reads_the_wanted_apps_in_one_request(
    argocd: FakeArgoCD, client: ArgoCDClient
) -> None:
    argocd.add_app("cart-prod")
    argocd.add_app("search-prod")
    argocd.set_health("cart-prod", "Degraded", "CrashLoopBackOff")
    before = len(argocd.calls)

    found = client.statuses([APP, "cart-prod", "no-such-app"])

    assert len(argocd.calls) == before + 1
    assert sorted(found) == sorted([APP, "cart-prod"])
    assert found["cart-prod"].health == "Degraded"
    assert found["cart-prod"].message == "CrashLoopBackOff"


def test_sync_posts_the_revision_and_the_app_goes_progressing_then_healthy(
    argocd: FakeArgoCD, client: ArgoCDClient
) -> None:
    argocd.lifecycle(APP, running=1, progressing=1)

    client.sync(APP, revision=MERGE)
    seen = [client.status(APP) for _ in range(3)]

    assert argocd.syncs(APP) == [{"revision": MERGE, "prune": False, "dryRun": False}]
    # While the operation runs ArgoCD still calls the old pods Healthy; the client does not.
    assert argocd.calls[-3].response["status"]["health"]["status"] == HEALTHY
    assert [(s.health, s.revision) for s in seen] == [
        (PROGRESSING, INITIAL_REVISION),
        (PROGRESSING, MERGE),
        (HEALTHY, MERGE),
    ]
    assert seen[0].message.startswith("sync operation running")
    assert seen[2] == AppStatus(APP, "Synced", MERGE, HEALTHY, "")


def test_wait_polls_until_the_revision_is_healthy(
    argocd: FakeArgoCD, client: ArgoCDClient, time_: FakeTime
) -> None:
    argocd.lifecycle(APP, running=2, progressing=3)

    client.sync(APP, revision=MERGE)
    status = client.wait(APP, revision=MERGE, timeout=600, poll_every=10)

    assert status == AppStatus(APP, "Synced", MERGE, HEALTHY, "")
    assert time_.sleeps == [10] * 5  # two reads Running, three Progressing, then Healthy


def test_a_degraded_rollout_comes_back_with_argocds_message(
    argocd: FakeArgoCD, client: ArgoCDClient
) -> None:
    message = 'Deployment "checkout" exceeded its progress deadline'
    argocd.lifecycle(APP, running=1, progressing=1, outcome=DEGRADED, message=message)

    client.sync(APP, revision=MERGE)
    status = client.wait(APP, revision=MERGE, timeout=60, poll_every=5)

    assert (status.health, status.revision, status.message) == (DEGRADED, MERGE, message)


@pytest.mark.parametrize("phase", [FAILED, ERROR])
def test_a_failed_sync_operation_is_degraded_at_the_revision_it_tried(
    argocd: FakeArgoCD, client: ArgoCDClient, phase: str
) -> None:
    message = "one or more objects failed to apply, reason: quota exceeded"
    argocd.lifecycle(APP, running=1, outcome=phase, message=message)

    client.sync(APP, revision=MERGE)
    status = client.wait(APP, revision=MERGE, timeout=60, poll_every=5)

    assert status.health == DEGRADED
    assert status.revision == MERGE
    assert status.sync == "OutOfSync"
    assert status.message == f"sync {phase.lower()}: {message}"


def test_wait_gives_up_at_the_timeout_with_the_last_status(
    argocd: FakeArgoCD, client: ArgoCDClient, time_: FakeTime
) -> None:
    argocd.lifecycle(APP, running=1, hold=True)
    client.sync(APP, revision=MERGE)

    with pytest.raises(SyncTimeoutError) as caught:
        client.wait(APP, revision=MERGE, timeout=30, poll_every=7)

    assert time_.now == 30
    assert time_.sleeps == [7, 7, 7, 7, 2]  # the last nap ends at the deadline
    assert caught.value.last is not None
    assert caught.value.last.health == PROGRESSING
    assert f"did not reach {MERGE[:7]}" in str(caught.value)
    assert isinstance(caught.value, BackendError)


def test_wait_rides_out_an_outage_while_polling(
    argocd: FakeArgoCD, client: ArgoCDClient, time_: FakeTime
) -> None:
    argocd.lifecycle(APP, running=0, progressing=0)
    client.sync(APP, revision=MERGE)
    argocd.fail_next(4, status=503)  # one whole status() call: the first try and three retries

    status = client.wait(APP, revision=MERGE, timeout=60, poll_every=5)

    assert status.health == HEALTHY
    assert time_.sleeps == [0.5, 1.0, 2.0, 5]


def test_missing_is_settled_too(argocd: FakeArgoCD, client: ArgoCDClient) -> None:
    argocd.set_health(APP, MISSING, "Deployment checkout is missing")

    status = client.wait(APP, revision=INITIAL_REVISION, timeout=5, poll_every=1)

    assert (status.health, status.message) == (MISSING, "Deployment checkout is missing")


# -- ArgoCD will not start the sync: refresh instead -------------------------------------------


def test_a_sync_while_argocd_runs_an_operation_asks_for_a_refresh_instead(
    argocd: FakeArgoCD, client: ArgoCDClient
) -> None:
    argocd.lifecycle(APP, running=1, progressing=0)
    argocd.begin_sync(APP, MERGE)  # ArgoCD's own automated sync of the merge got there first

    client.sync(APP, revision=MERGE)  # no error
    status = client.wait(APP, revision=MERGE, timeout=60, poll_every=5)

    refused = argocd.calls_to("POST", f"/api/v1/applications/{APP}/sync")
    assert [c.status for c in refused] == [400]
    assert argocd.apps[APP].refreshes == ["normal"]
    assert status == AppStatus(APP, "Synced", MERGE, HEALTHY, "")


def test_sending_the_same_sync_twice_is_harmless(argocd: FakeArgoCD, client: ArgoCDClient) -> None:
    argocd.lifecycle(APP, hold=True)

    client.sync(APP, revision=MERGE)
    client.sync(APP, revision=MERGE)  # a restart between the sync and its record re-sends it

    assert len(argocd.syncs(APP)) == 1


def test_an_automated_app_is_refreshed_and_syncs_itself(
    argocd: FakeArgoCD, client: ArgoCDClient
) -> None:
    argocd.apps[APP].auto_sync = True
    argocd.lifecycle(APP, running=1, progressing=1)

    client.sync(APP, revision=MERGE)
    status = client.wait(APP, revision=MERGE, timeout=60, poll_every=5)

    assert argocd.syncs(APP) == []
    assert argocd.apps[APP].history[-1]["initiatedBy"] == {"automated": True}
    assert status.revision == MERGE and status.health == HEALTHY


def test_another_refused_sync_is_an_error(argocd: FakeArgoCD, client: ArgoCDClient) -> None:
    error = refusal(lambda: client.sync(APP, revision=LATER))  # not on the branch

    assert not isinstance(error, TemporaryBackendError)
    assert str(error) == (
        f"ArgoCD refused to sync {APP} (400: unable to resolve '{LATER}' to a commit SHA)"
    )


# -- status ------------------------------------------------------------------------------------


def test_out_of_sync_after_a_later_merge_still_reports_what_runs(
    argocd: FakeArgoCD, client: ArgoCDClient
) -> None:
    argocd.lifecycle(APP, running=0, progressing=0)
    client.sync(APP, revision=MERGE)
    argocd.settle(APP)
    argocd.push(APP, LATER)

    status = client.refresh(APP)

    assert (status.sync, status.revision, status.health) == ("OutOfSync", MERGE, HEALTHY)


def test_error_conditions_join_the_message(argocd: FakeArgoCD, client: ArgoCDClient) -> None:
    argocd.set_health(APP, DEGRADED, "1 pod crash-looping")
    argocd.apps[APP].conditions += [
        {"type": "ComparisonError", "message": "repository not accessible"},
        {"type": "OrphanedResourceWarning", "message": "noise"},
    ]

    status = client.status(APP)

    assert status.message == "1 pod crash-looping; ComparisonError: repository not accessible"


def test_app_status_of_a_bare_application_is_unknown() -> None:
    assert app_status({"metadata": {"name": "x"}}) == AppStatus("x", "Unknown", None, "Unknown")


def test_refresh_hard_apps_and_version(argocd: FakeArgoCD, client: ArgoCDClient) -> None:
    argocd.add_app("payments-prod", project="payments")

    client.refresh(APP, hard=True)

    assert argocd.apps[APP].refreshes == ["hard"]
    assert client.apps() == [APP, "payments-prod"]
    assert client.version() == argocd.version


def test_a_project_narrows_apps_and_goes_on_every_call(argocd: FakeArgoCD, time_: FakeTime) -> None:
    argocd.add_app("payments-prod", project="payments")
    with make_client(argocd, time_, project="default", prune=True) as client:
        names = client.apps()
        client.sync(APP, revision=MERGE)
        client.status(APP)

    assert names == [APP]
    assert argocd.syncs(APP)[-1] == {
        "revision": MERGE,
        "prune": True,
        "dryRun": False,
        "project": "default",
    }
    assert argocd.calls[-1].query["project"] == ["default"]


# -- refusals ----------------------------------------------------------------------------------


def test_a_refused_token_is_a_permanent_error(argocd: FakeArgoCD, time_: FakeTime) -> None:
    with make_client(argocd, time_, token="stolen-and-revoked") as client:
        error = refusal(lambda: client.status(APP))

    assert not isinstance(error, TemporaryBackendError)
    assert "refused the token" in str(error)
    assert "invalid session" in str(error)
    assert time_.sleeps == []  # no retry


def test_an_unknown_app_in_a_project_is_not_found(argocd: FakeArgoCD, time_: FakeTime) -> None:
    with make_client(argocd, time_, project="default") as client:
        error = refusal(lambda: client.sync("nope", revision=MERGE))

    assert str(error) == "ArgoCD has no application named nope in project default"


def test_an_unknown_app_without_a_project_is_an_explained_permission_denied(
    client: ArgoCDClient,
) -> None:
    error = refusal(lambda: client.status("nope"))

    assert "no application named nope" in str(error)
    assert "may not read it" in str(error)


def test_a_token_without_the_right_to_sync_says_so(argocd: FakeArgoCD, time_: FakeTime) -> None:
    argocd.add_token("viewer-token", actions=["get"], sub="viewer")
    with make_client(argocd, time_, token="viewer-token") as client:
        error = refusal(lambda: client.sync(APP, revision=MERGE))

    assert str(error).startswith(f"ArgoCD refused the token to sync {APP} (permission denied: ")


# -- outages -----------------------------------------------------------------------------------


def test_503_then_ok_is_retried_with_backoff(
    argocd: FakeArgoCD, client: ArgoCDClient, time_: FakeTime
) -> None:
    argocd.fail_next(2, status=503)

    status = client.status(APP)

    assert status.health == HEALTHY
    assert [c.status for c in argocd.calls] == [503, 503, 200]
    assert time_.sleeps == [0.5, 1.0]


def test_a_sync_is_retried_through_a_502(argocd: FakeArgoCD, client: ArgoCDClient) -> None:
    argocd.fail_next(1, status=502, path="/sync")

    client.sync(APP, revision=MERGE)

    assert len(argocd.syncs(APP)) == 1


def test_5xx_that_lasts_becomes_a_temporary_error(
    argocd: FakeArgoCD, client: ArgoCDClient, time_: FakeTime
) -> None:
    argocd.fail_next(10, status=500)

    error = refusal(lambda: client.status(APP))

    assert isinstance(error, TemporaryBackendError)
    assert error.retry_after >= 1
    assert "500" in str(error)
    assert len(argocd.calls) == 4  # the first try and three retries
    assert time_.sleeps == [0.5, 1.0, 2.0]


def test_no_connection_becomes_a_temporary_error(time_: FakeTime) -> None:
    with FakeArgoCD() as gone:
        url = gone.url
    with ArgoCDClient(
        base_url=url, token=SecretStr("tok"), retries=2, sleep=time_.sleep, clock=time_.clock
    ) as client:
        error = refusal(lambda: client.status(APP))

    assert isinstance(error, TemporaryBackendError)
    assert f"cannot reach ArgoCD at {url}" in str(error)
    assert len(time_.sleeps) == 2


# -- the token stays secret --------------------------------------------------------------------


def test_the_token_never_shows_in_reprs_errors_or_logs(
    argocd: FakeArgoCD, time_: FakeTime, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    token = argocd.token
    with make_client(argocd, time_) as client:
        texts = [repr(client), str(vars(client).get("_token"))]
        argocd.fail_next(10, status=503)
        texts.append(str(refusal(lambda: client.status(APP))))
        argocd._faults.clear()
        texts.append(str(refusal(lambda: client.status("nope"))))
        argocd.lifecycle(APP, hold=True)
        client.sync(APP, revision=MERGE)
        with pytest.raises(SyncTimeoutError) as timeout:
            client.wait(APP, revision=MERGE, timeout=3, poll_every=1)
        texts.append(str(timeout.value))
    with make_client(argocd, time_, token=token[::-1]) as wrong:
        texts.append(str(refusal(lambda: wrong.status(APP))))

    assert argocd.calls[0].headers["Authorization"] == f"Bearer {token}"  # it was sent
    for text in [*texts, caplog.text]:
        assert token not in text
        assert token[::-1] not in text
    assert "retrying" in caplog.text  # the logs did run


def test_an_error_that_echoes_the_token_is_scrubbed(argocd: FakeArgoCD, time_: FakeTime) -> None:
    argocd.add_app(argocd.token)  # absurd, but then ArgoCD's own message holds the token

    with make_client(argocd, time_, project="other") as client:
        error = refusal(lambda: client.status(argocd.token))

    assert argocd.token not in str(error)
    assert "***" in str(error)
