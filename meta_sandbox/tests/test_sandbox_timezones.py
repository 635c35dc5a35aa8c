"""Ad account time zones and currencies, and the business clock tests can move: insights days,
date presets and object timestamps are in the ad account's time zone, as on Meta."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest

from meta_sandbox.testing import RunningSandbox, start_sandbox
from meta_sandbox.tests.sandbox_http import graph_get, graph_post

LA, UTC_ACT, BERLIN = "act_1000000001", "act_1000000002", "act_1000000003"


@pytest.fixture
def sandbox() -> Iterator[RunningSandbox]:
    with start_sandbox(accounts=3, campaigns_per_account=6, seed=7) as running:
        yield running


def test_it_gives_accounts_time_zones_and_currencies_cycled_over_the_defaults(sandbox: RunningSandbox) -> None:
    sandbox.set_clock("2026-01-15T12:00:00+00:00")
    fields = "timezone_name,timezone_offset_hours_utc,currency"
    accounts = graph_get(sandbox, "me/adaccounts", fields=fields).json()["data"]
    assert [(a["timezone_name"], a["timezone_offset_hours_utc"], a["currency"]) for a in accounts] == [
        ("America/Los_Angeles", -8, "USD"),
        ("UTC", 0, "EUR"),
        ("Europe/Berlin", 1, "GBP"),
    ]
    sandbox.set_clock("2026-07-01T12:00:00+00:00")  # daylight saving time
    assert graph_get(sandbox, LA, fields=fields).json()["timezone_offset_hours_utc"] == -7
    sandbox.reset(accounts=2, campaigns_per_account=2, timezones=["Asia/Kolkata"], currencies=["JPY", "INR"])
    accounts = graph_get(sandbox, "me/adaccounts", fields=fields).json()["data"]
    assert [(a["timezone_offset_hours_utc"], a["currency"]) for a in accounts] == [
        (5.5, "JPY"),
        (5.5, "INR"),
    ]
    for bad in ({"timezones": ["Mars/Olympus"]}, {"timezones": []}, {"currencies": ["usd"]}):
        with pytest.raises(ValueError, match="timezones|currencies"):
            sandbox.reset(**bad)


def test_it_renders_every_timestamp_in_its_accounts_zone_with_the_offset(sandbox: RunningSandbox) -> None:
    sandbox.set_clock("2026-01-15T12:00:00+00:00")
    sandbox.reset(accounts=3, campaigns_per_account=6, seed=7)
    fields = "created_time,updated_time,start_time"
    for account, suffix in ((LA, "-0800"), (UTC_ACT, "+0000"), (BERLIN, "+0100")):
        campaign = graph_get(sandbox, f"{account}/campaigns", fields=fields).json()["data"][0]
        assert all(campaign[f].endswith(suffix) for f in fields.split(",")), campaign
        adset = graph_get(sandbox, f"{campaign['id']}/adsets", fields="created_time,updated_time").json()["data"][0]
        assert adset["created_time"].endswith(suffix) and adset["updated_time"].endswith(suffix)
    created = graph_get(sandbox, LA, fields="created_time").json()["created_time"]
    assert created.endswith("T00:00:00-0800")  # a local midnight
    row = sandbox.campaigns(account=LA)[0]
    graph_post(sandbox, row["id"], name="x")
    # An edit is stamped at business time, in the account's zone.
    assert sandbox.campaigns(account=LA)[0]["updated_time"].startswith("2026-01-15T04:00")


def test_it_counts_todays_spend_over_the_accounts_local_day(sandbox: RunningSandbox) -> None:
    # 02:00 UTC on 3 December is 18:00 on 2 December in Los Angeles: 18 of its 24 hours are gone.
    sandbox.set_clock("2026-12-03T02:00:00+00:00")
    sandbox.reset(accounts=1, statuses={"ACTIVE": 10}, seed=3, delivery_issues=[])
    ads = graph_get(sandbox, f"{LA}/ads", fields="created_time", limit=500).json()["data"]
    settled = {a["id"] for a in ads if a["created_time"] < "2026-12-02"}  # ran all of 2 December
    params = {"fields": "ad_id,spend", "level": "ad", "time_increment": 1, "limit": 500}
    today = graph_get(sandbox, f"{LA}/insights", date_preset="today", **params).json()["data"]
    assert today and {r["date_start"] for r in today} == {"2026-12-02"}  # the LA date, the day before in UTC

    sandbox.set_clock("2026-12-03T12:00:00-08:00")  # the next LA day: 2 December is now complete
    yesterday = {
        r["ad_id"]: Decimal(r["spend"])
        for r in graph_get(sandbox, f"{LA}/insights", date_preset="yesterday", **params).json()["data"]
    }
    partial = {r["ad_id"]: Decimal(r["spend"]) for r in today if r["ad_id"] in settled}
    assert len(partial) >= 5
    ratio = sum(partial.values()) / sum(yesterday[ad] for ad in partial)
    assert ratio == pytest.approx(Decimal("0.75"), abs=Decimal("0.01"))


def test_it_resolves_presets_and_ranges_in_local_days(sandbox: RunningSandbox) -> None:
    sandbox.set_clock("2026-12-03T02:00:00+00:00")
    la = graph_get(sandbox, f"{LA}/insights", date_preset="last_7d").json()["data"][0]
    utc = graph_get(sandbox, f"{UTC_ACT}/insights", date_preset="last_7d").json()["data"][0]
    assert (la["date_start"], la["date_stop"]) == ("2026-11-25", "2026-12-01")
    assert (utc["date_start"], utc["date_stop"]) == ("2026-11-26", "2026-12-02")
    month = graph_get(sandbox, f"{LA}/insights", date_preset="this_month").json()["data"][0]
    assert (month["date_start"], month["date_stop"]) == ("2026-12-01", "2026-12-02")
    ranged = graph_get(
        sandbox, f"{BERLIN}/insights", time_range='{"since":"2026-11-30","until":"2026-12-01"}', time_increment=1
    ).json()["data"]
    assert [r["date_start"] for r in ranged] == ["2026-11-30", "2026-12-01"]


def test_it_keeps_past_local_days_fixed_and_the_spend_multiplier_on_today(sandbox: RunningSandbox) -> None:
    sandbox.set_clock("2026-12-03T02:00:00+00:00")
    campaign = next(c["id"] for c in sandbox.campaigns(account=LA) if c["effective_status"] == "ACTIVE")
    today = graph_get(sandbox, f"{campaign}/insights", fields="spend", date_preset="today").json()["data"]
    daily = {"fields": "spend", "date_preset": "last_14d", "time_increment": 1}
    history = graph_get(sandbox, f"{campaign}/insights", **daily).json()["data"]
    sandbox.faults(spend_multiplier={campaign: 10})
    spiked = graph_get(sandbox, f"{campaign}/insights", fields="spend", date_preset="today").json()["data"]
    assert Decimal(spiked[0]["spend"]) == pytest.approx(10 * Decimal(today[0]["spend"]), rel=Decimal("0.01"))
    assert graph_get(sandbox, f"{campaign}/insights", **daily).json()["data"] == history


def test_it_moves_the_business_clock_and_lets_time_flow(sandbox: RunningSandbox) -> None:
    moved = sandbox.set_clock(1_800_000_000)
    assert moved["epoch"] == pytest.approx(1_800_000_000, abs=1) and moved["now"].startswith("2027-01-15T08:00")
    sandbox.reset(accounts=1, campaigns_per_account=1)
    assert sandbox.clock()["offset_s"] == moved["offset_s"]  # reset keeps the clock
    assert sandbox.clock()["epoch"] >= moved["epoch"]
    assert sandbox.set_clock()["offset_s"] == 0
    for bad in ("2026-12-03T02:00:00", "tomorrow", -5):
        with pytest.raises(ValueError, match="now"):
            sandbox.set_clock(bad)
