"""GitHub configured (fakes on loopback): GitHub rate-limits opsgate. The wait GitHub names
(Retry-After, or X-RateLimit-Reset) is honoured between ticks: no call reaches GitHub until it
has passed, across a restart too, and the proposal's thread hears once when opsgate retries."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta

from approval_engine.model import State
from tests.scenarios._gitops import World

LIMITED = "GitHub is rate-limiting opsgate"


def applied(gitops: World, proposal_id: str = "scale-1") -> Callable[[], bool]:
    return lambda: gitops.proposal(proposal_id).state == State.APPLIED


def approved_twice(gitops: World) -> None:
    assert "Opened scale-1" in gitops.chat.say("/scale checkout 6 prod", as_="alice")
    gitops.chat.say("/approve scale-1", as_="bob")
    gitops.chat.say("/approve scale-1", as_="dave")


def limited(gitops: World) -> list[str]:
    return [t for t in gitops.announced() if LIMITED in t]


def ticks_without_github(gitops: World, *, times: int = 3) -> None:
    calls = len(gitops.gh.calls)
    for _ in range(times):
        gitops.chat.runtime.gateway.tick()
    assert gitops.gh.calls[calls:] == [], [f"{c.method} {c.path}" for c in gitops.gh.calls[calls:]]


def test_a_429_with_retry_after_is_waited_out_before_github_is_asked_again(
    gitops: World,
) -> None:
    gitops.gh.throttle_next(retry_after=120, method="PUT", path="/merge$")

    approved_twice(gitops)

    assert gitops.proposal("scale-1").state == State.APPROVED
    assert limited(gitops) == [f"{LIMITED}; retrying at 10:02 UTC"]
    ticks_without_github(gitops)
    gitops.clock.advance(timedelta(seconds=119))
    ticks_without_github(gitops)

    gitops.clock.advance(timedelta(seconds=1))
    gitops.ticks(applied(gitops))

    assert gitops.pull("scale-1").merged
    assert len(gitops.gh.calls_to("PUT", "/merge$")) == 2
    assert len(limited(gitops)) == 1


def test_the_primary_limit_pauses_every_call_until_x_ratelimit_reset(gitops: World) -> None:
    assert "Opened scale-1" in gitops.chat.say("/scale cart 5 prod", as_="alice")
    gitops.gh.rate_limit_next(reset_at=int(time.time()) + 600, method="PUT", path="/merge$")
    gitops.chat.say("/scale checkout 6 prod", as_="alice")  # scale-2
    gitops.chat.say("/approve scale-2", as_="bob")
    gitops.chat.say("/approve scale-2", as_="dave")
    assert limited(gitops) == [f"{LIMITED}; retrying at 10:10 UTC"]

    # The limit is the token's: scale-1's poll waits too, and so does a new wish.
    gitops.clock.advance(gitops.chat.runtime.engine.poll_pulls_every)
    ticks_without_github(gitops)
    calls = len(gitops.gh.calls)
    refused = gitops.chat.say("/scale search 4 prod", as_="alice")
    assert refused.error
    assert f"{LIMITED}; try again after 10:10 UTC" in refused.text
    assert gitops.gh.calls[calls:] == []

    gitops.clock.advance(timedelta(minutes=9))
    gitops.ticks(applied(gitops, "scale-2"))
    assert gitops.pull("scale-2").merged
    assert "Opened scale-3" in gitops.chat.say("/scale search 4 prod", as_="alice")
    assert len(limited(gitops)) == 1


def test_a_restart_during_the_pause_honours_it(gitops: World) -> None:
    gitops.gh.throttle_next(retry_after=120, method="PUT", path="/merge$")
    approved_twice(gitops)
    assert gitops.proposal("scale-1").state == State.APPROVED

    gitops.start()

    ticks_without_github(gitops)
    gitops.clock.advance(timedelta(seconds=120))
    gitops.ticks(applied(gitops))
    assert gitops.pull("scale-1").merged
    assert len(limited(gitops)) == 1
