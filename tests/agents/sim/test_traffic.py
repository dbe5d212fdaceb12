"""The simulated traffic: repeatable, with daily, weekly, holiday and burst patterns."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
from numpy.typing import NDArray

from agents.sim.clock import to_minute
from agents.sim.traffic import HOLIDAY_FACTOR, TrafficModel, holiday_name

MONDAY = datetime(2026, 11, 16, tzinfo=UTC)


def minutes(start: datetime, *, hours: float) -> NDArray[np.int64]:
    first = to_minute(start)
    return np.arange(first, first + int(hours * 60), dtype=np.int64)


def mean_rps(model: TrafficModel, service: str, start: datetime, *, hours: float) -> float:
    return float(model.demand(service, "prod", minutes(start, hours=hours)).mean())


def test_the_same_seed_gives_the_same_numbers_and_another_seed_does_not() -> None:
    span = minutes(MONDAY, hours=48)
    first = TrafficModel(seed=7).demand("checkout", "prod", span)
    again = TrafficModel(seed=7).demand("checkout", "prod", span)
    other = TrafficModel(seed=8).demand("checkout", "prod", span)
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_a_minute_has_the_same_value_whatever_else_was_asked_with_it() -> None:
    model = TrafficModel(seed=7)
    span = minutes(MONDAY, hours=24)
    whole = model.demand("search", "prod", span)
    parts = np.array_split(span, 7)
    backwards = {i: model.demand("search", "prod", parts[i]) for i in reversed(range(7))}
    assert np.array_equal(whole, np.concatenate([backwards[i] for i in range(7)]))
    assert np.array_equal(whole[100:101], model.demand("search", "prod", span[100:101]))


def test_days_are_busier_than_nights() -> None:
    model = TrafficModel(seed=7)
    tuesday = MONDAY + timedelta(days=1)
    night = mean_rps(model, "checkout", tuesday + timedelta(hours=2), hours=2)
    late_morning = mean_rps(model, "checkout", tuesday + timedelta(hours=11), hours=1)
    evening = mean_rps(model, "checkout", tuesday + timedelta(hours=19), hours=1)
    assert late_morning > 3 * night
    assert evening > 3 * night


def test_weekends_are_quieter_for_shops_and_flatter_for_search() -> None:
    model = TrafficModel(seed=7)
    saturday = MONDAY + timedelta(days=5)

    def weekend_ratio(service: str) -> float:
        weekday = mean_rps(model, service, MONDAY + timedelta(days=1), hours=72)
        weekend = mean_rps(model, service, saturday, hours=48)
        return weekend / weekday

    assert 0.5 < weekend_ratio("checkout") < 0.7
    assert 0.5 < weekend_ratio("cart") < 0.7
    assert weekend_ratio("search") > 0.8


def test_production_levels_match_the_profiles_and_staging_is_a_tenth() -> None:
    model = TrafficModel(seed=7)
    week = minutes(MONDAY + timedelta(days=1), hours=24)
    prod = float(model.demand("checkout", "prod", week).mean())
    staging = float(model.demand("checkout", "staging", week).mean())
    assert 100 < prod < 145
    assert 0.08 < staging / prod < 0.12


def test_checkout_has_a_marketing_burst_every_monday_at_ten() -> None:
    model = TrafficModel(seed=7)
    for week in range(4):
        monday = MONDAY + timedelta(weeks=week)
        burst = mean_rps(model, "checkout", monday + timedelta(hours=10, minutes=5), hours=0.75)
        tuesday = mean_rps(
            model, "checkout", monday + timedelta(days=1, hours=10, minutes=5), hours=0.75
        )
        assert 1.3 < burst / tuesday < 1.75
    found = model.windows(
        "checkout",
        "prod",
        start_minute=to_minute(MONDAY),
        end_minute=to_minute(MONDAY + timedelta(weeks=2)),
    )
    bursts = [w for w in found if w.name == "checkout-monday-marketing"]
    assert [(w.start, w.end) for w in bursts] == [
        (MONDAY + timedelta(weeks=n, hours=10), MONDAY + timedelta(weeks=n, hours=11))
        for n in range(2)
    ]
    assert all(1.4 <= w.factor <= 1.6 for w in bursts)


def test_the_marketing_burst_is_production_checkout_only() -> None:
    model = TrafficModel(seed=7)
    start, end = to_minute(MONDAY), to_minute(MONDAY + timedelta(days=1))
    assert model.windows("checkout", "staging", start_minute=start, end_minute=end) == []
    assert model.windows("cart", "prod", start_minute=start, end_minute=end) == []


def test_holidays_are_quieter_and_skip_the_burst() -> None:
    assert holiday_name(date(2026, 5, 25)) == "memorial-day"
    assert holiday_name(date(2026, 12, 25)) == "christmas"
    assert holiday_name(date(2026, 12, 18)) is None
    model = TrafficModel(seed=7)
    christmas = mean_rps(model, "checkout", datetime(2026, 12, 25, tzinfo=UTC), hours=24)
    friday_before = mean_rps(model, "checkout", datetime(2026, 12, 18, tzinfo=UTC), hours=24)
    assert 0.5 < christmas / friday_before < 0.7
    memorial = datetime(2026, 5, 25, tzinfo=UTC)
    found = model.windows(
        "checkout",
        "prod",
        start_minute=to_minute(memorial),
        end_minute=to_minute(memorial + timedelta(days=1)),
    )
    assert [(w.name, w.factor) for w in found] == [("memorial-day", HOLIDAY_FACTOR)]


def test_search_has_occasional_flash_bursts_that_show_in_the_demand() -> None:
    model = TrafficModel(seed=7)
    start = MONDAY - timedelta(weeks=4)
    flashes = model.windows(
        "search", "prod", start_minute=to_minute(start), end_minute=to_minute(MONDAY)
    )
    assert 3 <= len(flashes) <= 16
    for flash in flashes:
        assert flash.kind == "flash"
        assert 10 <= (flash.end - flash.start) / timedelta(minutes=1) <= 20
        during = mean_rps(model, "search", flash.start + timedelta(minutes=2), hours=1 / 10)
        before = mean_rps(model, "search", flash.start - timedelta(minutes=8), hours=1 / 10)
        assert during > 1.5 * before


def test_events_list_the_scripted_patterns_for_the_services_asked_about() -> None:
    model = TrafficModel(seed=7)
    names = {e.name for e in model.events(("checkout",))}
    assert "checkout-monday-marketing" in names
    assert "search-flash" not in names
    assert {"christmas", "boxing-day", "new-year", "memorial-day"} <= names
