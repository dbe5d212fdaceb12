"""The per-destination pace: one call per interval, and a per-minute ceiling for groups."""

from __future__ import annotations

import threading

from bots.alert_pacer import Pacer


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_calls_are_an_interval_apart_measured_from_the_end_of_the_last() -> None:
    clock = Clock()
    pacer = Pacer(interval=1.0, clock=clock)
    assert pacer.delay() == 0
    pacer.sent()
    clock.now += 0.25
    assert pacer.delay() == 0.75
    clock.now += 0.75
    assert pacer.delay() == 0


def test_a_group_gets_at_most_its_per_minute_in_any_60_seconds() -> None:
    clock = Clock()
    pacer = Pacer(interval=1.0, per_minute=20, clock=clock)
    for _ in range(20):
        assert pacer.delay() == 0
        pacer.sent()
        clock.now += 1.0
    assert pacer.delay() == 40.0  # the first of the 20 finished 20 s ago
    clock.now += 40.0
    assert pacer.delay() == 0


def test_a_graph_counts_as_a_second_message() -> None:
    clock = Clock()
    pacer = Pacer(interval=0, per_minute=2, clock=clock)
    pacer.sent(2)
    assert pacer.delay() == 60.0


def test_waiting_ends_early_when_asked_to_stop() -> None:
    pacer = Pacer(interval=30.0)
    pacer.sent()
    stop = threading.Event()
    threading.Timer(0.05, stop.set).start()
    assert pacer.wait(stop) is False
