"""The fake ArgoCD API answers plain HTTP requests the way argocd-server does."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.fakes.argocd_api import (
    DEGRADED,
    FAILED,
    HEALTHY,
    INITIAL_REVISION,
    PROGRESSING,
    FakeArgoCD,
)

APP = "checkout-prod"
MERGE = "9f" * 20
APPS = "/api/v1/applications"


@pytest.fixture
def argocd() -> Iterator[FakeArgoCD]:
    with FakeArgoCD() as fake:
        fake.add_app(APP)
        yield fake


@pytest.fixture
def http(argocd: FakeArgoCD) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {argocd.token}"}
    with httpx.Client(base_url=argocd.url, headers=headers, verify=False) as client:
        yield client


def get_app(http: httpx.Client, **params: str) -> dict[str, Any]:
    response = http.get(f"{APPS}/{APP}", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def sync(http: httpx.Client, revision: str = MERGE, **extra: Any) -> httpx.Response:
    body = {"revision": revision, "prune": False, "dryRun": False, **extra}
    return http.post(f"{APPS}/{APP}/sync", json=body)


def phase(app: dict[str, Any]) -> str | None:
    state = app["status"].get("operationState")
    return None if state is None else str(state["phase"])


# -- reading -----------------------------------------------------------------------------------


def test_get_returns_an_application_with_spec_and_status(http: httpx.Client) -> None:
    app = get_app(http)

    assert app["metadata"]["name"] == APP
    assert app["spec"]["source"] == {
        "repoURL": "https://github.com/acme/gitops.git",
        "path": "helm-charts/checkout",
        "targetRevision": "main",
    }
    assert app["status"]["sync"]["status"] == "Synced"
    assert app["status"]["sync"]["revision"] == INITIAL_REVISION
    assert app["status"]["health"] == {"status": HEALTHY}
    assert "operation" not in app
    assert "operationState" not in app["status"]


def test_list_has_items_and_filters_by_project(argocd: FakeArgoCD, http: httpx.Client) -> None:
    argocd.add_app("payments-prod", project="payments")

    every = http.get(APPS).json()
    payments = http.get(APPS, params={"projects": "payments"}).json()

    assert [a["metadata"]["name"] for a in every["items"]] == [APP, "payments-prod"]
    assert [a["metadata"]["name"] for a in payments["items"]] == ["payments-prod"]
    assert every["metadata"]["resourceVersion"]


def test_version_is_full_with_a_session_and_bare_without(argocd: FakeArgoCD) -> None:
    with httpx.Client(base_url=argocd.url) as anonymous:
        bare = anonymous.get("/api/version")
    full = httpx.get(
        f"{argocd.url}/api/version", headers={"Authorization": f"Bearer {argocd.token}"}
    )

    assert bare.status_code == 200 and bare.json() == {"Version": argocd.version}
    assert full.json()["Version"] == argocd.version
    assert "GoVersion" in full.json()


# -- errors as grpc-gateway writes them --------------------------------------------------------


def test_no_token_is_401_no_session_information(argocd: FakeArgoCD) -> None:
    response = httpx.get(f"{argocd.url}{APPS}/{APP}")

    assert response.status_code == 401
    assert response.json() == {
        "error": "no session information",
        "code": 16,
        "message": "no session information",
    }


def test_a_wrong_token_is_401_invalid_session(argocd: FakeArgoCD) -> None:
    response = httpx.get(f"{argocd.url}{APPS}", headers={"Authorization": "Bearer nope"})

    assert response.status_code == 401
    assert response.json()["code"] == 16
    assert response.json()["message"].startswith("invalid session")


def test_the_argocd_token_cookie_is_a_session_too(argocd: FakeArgoCD) -> None:
    response = httpx.get(f"{argocd.url}{APPS}", headers={"Cookie": f"argocd.token={argocd.token}"})

    assert response.status_code == 200


def test_an_unknown_app_is_permission_denied_unless_a_project_is_named(
    http: httpx.Client,
) -> None:
    hidden = http.get(f"{APPS}/nope")
    named = http.get(f"{APPS}/nope", params={"project": "default"})
    wrong_project = http.get(f"{APPS}/{APP}", params={"project": "payments"})

    assert hidden.status_code == 403
    assert hidden.json() == {
        "error": "permission denied",
        "code": 7,
        "message": "permission denied",
    }
    assert named.status_code == 404
    assert named.json()["code"] == 5
    assert named.json()["message"] == 'applications.argoproj.io "nope" not found'
    assert wrong_project.status_code == 404


def test_a_token_without_the_sync_right_is_refused(argocd: FakeArgoCD) -> None:
    argocd.add_token("read-only", actions=["get"], sub="viewer")
    argocd.push(APP, MERGE)

    response = httpx.post(
        f"{argocd.url}{APPS}/{APP}/sync",
        json={"revision": MERGE},
        headers={"Authorization": "Bearer read-only"},
    )

    assert response.status_code == 403
    assert response.json()["message"].startswith(
        f"permission denied: applications, sync, default/{APP}, sub: viewer"
    )


def test_fail_next_answers_5xx_then_recovers(argocd: FakeArgoCD, http: httpx.Client) -> None:
    argocd.fail_next(2, status=503)

    first, second, third = (http.get(f"{APPS}/{APP}") for _ in range(3))

    assert (first.status_code, second.status_code, third.status_code) == (503, 503, 200)
    assert first.json()["code"] == 14
    assert [c.status for c in argocd.calls] == [503, 503, 200]


# -- syncing -----------------------------------------------------------------------------------


def test_sync_sets_the_operation_and_the_app_goes_progressing_then_healthy(
    argocd: FakeArgoCD, http: httpx.Client
) -> None:
    argocd.push(APP, MERGE)
    argocd.lifecycle(APP, running=1, progressing=2)

    accepted = sync(http)
    reads = [get_app(http) for _ in range(5)]

    assert accepted.status_code == 200
    assert accepted.json()["operation"]["sync"]["revision"] == MERGE
    assert [phase(a) for a in reads] == [
        "Running",
        "Succeeded",
        "Succeeded",
        "Succeeded",
        "Succeeded",
    ]
    assert [a["status"]["health"]["status"] for a in reads] == [
        HEALTHY,  # the old pods, before the controller has applied anything
        PROGRESSING,
        PROGRESSING,
        HEALTHY,
        HEALTHY,
    ]
    assert "operation" in reads[0] and "operation" not in reads[1]
    done = reads[-1]["status"]
    assert done["sync"] == done["sync"] | {"status": "Synced", "revision": MERGE}
    assert done["operationState"]["syncResult"]["revision"] == MERGE
    assert done["history"][-1]["revision"] == MERGE
    assert argocd.syncs(APP) == [{"revision": MERGE, "prune": False, "dryRun": False}]


def test_a_degraded_outcome_carries_its_message(argocd: FakeArgoCD, http: httpx.Client) -> None:
    argocd.push(APP, MERGE)
    argocd.lifecycle(APP, running=0, progressing=1, outcome=DEGRADED, message="crash loop")

    sync(http)
    reads = [get_app(http) for _ in range(2)]

    assert reads[1]["status"]["health"] == {"status": DEGRADED, "message": "crash loop"}
    assert reads[1]["status"]["sync"]["revision"] == MERGE


def test_a_failed_operation_keeps_the_old_revision_running(
    argocd: FakeArgoCD, http: httpx.Client
) -> None:
    argocd.push(APP, MERGE)
    argocd.lifecycle(APP, running=1, outcome=FAILED, message="quota exceeded")

    sync(http)
    running, failed = get_app(http), get_app(http)

    assert phase(running) == "Running"
    state = failed["status"]["operationState"]
    assert (state["phase"], state["message"]) == (FAILED, "quota exceeded")
    assert state["syncResult"]["revision"] == MERGE
    assert failed["status"]["sync"]["status"] == "OutOfSync"
    assert failed["status"]["history"] == []
    assert "operation" not in failed


def test_a_second_sync_while_one_runs_is_refused_as_argocd_does(
    argocd: FakeArgoCD, http: httpx.Client
) -> None:
    argocd.push(APP, MERGE)
    argocd.lifecycle(APP, hold=True)
    sync(http)

    again = sync(http)

    assert again.status_code == 400
    assert again.json() == {
        "error": "another operation is already in progress",
        "code": 9,
        "message": "another operation is already in progress",
    }
    assert len(argocd.syncs(APP)) == 1


def test_hold_freezes_the_lifecycle_until_the_test_advances_it(
    argocd: FakeArgoCD, http: httpx.Client
) -> None:
    argocd.push(APP, MERGE)
    argocd.lifecycle(APP, running=1, progressing=1, hold=True)
    sync(http)

    frozen = [phase(get_app(http)) for _ in range(3)]
    argocd.advance(APP)
    running = get_app(http)
    argocd.settle(APP)
    done = get_app(http)

    assert frozen == [None, None, None]
    assert phase(running) == "Running"
    assert done["status"]["health"]["status"] == HEALTHY
    assert done["status"]["sync"]["revision"] == MERGE


def test_a_revision_git_does_not_hold_cannot_be_resolved(http: httpx.Client) -> None:
    response = sync(http, revision="ab" * 20)

    assert response.status_code == 400
    assert response.json()["message"] == f"unable to resolve '{'ab' * 20}' to a commit SHA"


def test_an_automated_app_refuses_a_pinned_revision(argocd: FakeArgoCD, http: httpx.Client) -> None:
    argocd.apps[APP].auto_sync = True
    argocd.push(APP, MERGE)

    response = sync(http)

    assert response.status_code == 400
    assert response.json()["code"] == 9
    assert response.json()["message"] == f"Cannot sync to {MERGE}: auto-sync currently set to main"


def test_a_refresh_sees_the_new_head_and_an_automated_app_syncs_to_it(
    argocd: FakeArgoCD, http: httpx.Client
) -> None:
    argocd.apps[APP].auto_sync = True
    argocd.lifecycle(APP, running=0, progressing=0)
    argocd.push(APP, MERGE)

    stale = get_app(http)
    refreshed = get_app(http, refresh="normal")
    done = get_app(http)

    assert stale["status"]["sync"] == stale["status"]["sync"] | {"revision": INITIAL_REVISION}
    assert argocd.apps[APP].refreshes == ["normal"]
    assert refreshed["status"]["operationState"]["operation"]["initiatedBy"] == {"automated": True}
    assert done["status"]["sync"]["status"] == "Synced"
    assert done["status"]["sync"]["revision"] == MERGE


def test_set_health_and_conditions_show_in_the_status(
    argocd: FakeArgoCD, http: httpx.Client
) -> None:
    argocd.set_health(APP, "Missing", "the Deployment is gone")
    argocd.apps[APP].conditions.append({"type": "ComparisonError", "message": "repo unreachable"})

    status = get_app(http)["status"]

    assert status["health"] == {"status": "Missing", "message": "the Deployment is gone"}
    assert status["conditions"] == [{"type": "ComparisonError", "message": "repo unreachable"}]
