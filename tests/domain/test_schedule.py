"""spec.schedule evaluated with an injected clock: windows in their time zones, through DST changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from secretstage.domain.schedule import InvalidSchedule, Schedule, parse_schedule


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def schedule(**spec: object) -> Schedule:
    parsed = parse_schedule(spec)
    assert parsed is not None
    return parsed


def walk(plan: Schedule, start: datetime, end: datetime, step: timedelta = timedelta(minutes=5)) -> list[str]:
    """Every change between may-proceed and must-wait, minute by minute of the injected clock."""
    changes, was_open, now = [], None, start
    while now <= end:
        is_open = plan.wait(now) is None
        if is_open != was_open:
            changes.append(f"{now:%Y-%m-%dT%H:%MZ} {'open' if is_open else 'closed'}")
            was_open = is_open
        now += step
    return changes


def test_weekday_window_in_shanghai() -> None:
    plan = schedule(windows=[{"cron": "0 2 * * 1-5", "duration": "2h", "timeZone": "Asia/Shanghai"}])
    monday_0230_cst = utc("2026-12-06T18:30:00")  # Monday 02:30 in Shanghai (UTC+8)
    assert plan.wait(monday_0230_cst) is None
    later = plan.wait(utc("2026-12-06T20:00:00"))  # 04:00 there: closed
    assert later is not None
    assert later.reason == "OutsideWindow"
    assert later.until == utc("2026-12-07T18:00:00")  # Tuesday 02:00 in Shanghai
    friday_night = plan.wait(utc("2026-12-11T20:00:00"))  # Friday 04:00 there: next is Monday
    assert friday_night is not None
    assert friday_night.until == utc("2026-12-13T18:00:00")


def test_a_promotion_walks_through_the_spring_dst_change_and_two_windows() -> None:
    """Berlin, 02:30 for 1h, daily. On 2026-03-29 the clock jumps 02:00 -> 03:00: that day's window
    starts when the clock resumes (Debian cron), 03:00 CEST = 01:00 UTC, and lasts an hour of elapsed time."""
    plan = schedule(windows=[{"cron": "30 2 * * *", "duration": "1h", "timeZone": "Europe/Berlin"}])
    assert walk(plan, utc("2026-03-28T00:00:00"), utc("2026-03-30T06:00:00")) == [
        "2026-03-28T00:00Z closed",
        "2026-03-28T01:30Z open",  # 02:30 CET
        "2026-03-28T02:30Z closed",
        "2026-03-29T01:00Z open",  # 02:30 does not exist: 03:00 CEST
        "2026-03-29T02:00Z closed",
        "2026-03-30T00:30Z open",  # 02:30 CEST
        "2026-03-30T01:30Z closed",
    ]


def test_the_autumn_dst_change_opens_the_window_once() -> None:
    """2026-10-25: 03:00 CEST becomes 02:00 CET, so 02:30 happens twice; the window opens at the first."""
    plan = schedule(windows=[{"cron": "30 2 * * *", "duration": "1h", "timeZone": "Europe/Berlin"}])
    assert walk(plan, utc("2026-10-24T22:00:00"), utc("2026-10-25T04:00:00")) == [
        "2026-10-24T22:00Z closed",
        "2026-10-25T00:30Z open",  # 02:30 CEST
        "2026-10-25T01:30Z closed",  # one elapsed hour: 02:30 CET, the second 02:30, does not reopen it
    ]


def test_two_windows_the_earliest_opening_wins() -> None:
    plan = schedule(
        windows=[
            {"cron": "0 22 * * *", "duration": "1h", "timeZone": "UTC"},
            {"cron": "0 9 * * *", "duration": "30m", "timeZone": "Asia/Shanghai"},  # 01:00 UTC
        ]
    )
    wait = plan.wait(utc("2026-12-07T10:00:00"))
    assert wait is not None
    assert wait.until == utc("2026-12-07T22:00:00")
    wait = plan.wait(utc("2026-12-07T23:30:00"))
    assert wait is not None
    assert wait.until == utc("2026-12-08T01:00:00")
    assert plan.wait(utc("2026-12-08T01:10:00")) is None


def test_not_before() -> None:
    plan = schedule(notBefore="2026-12-24T02:00:00Z")
    wait = plan.wait(utc("2026-12-23T00:00:00"))
    assert wait is not None
    assert (wait.reason, wait.until) == ("NotBefore", utc("2026-12-24T02:00:00"))
    assert plan.wait(utc("2026-12-24T02:00:00")) is None
    with_window = schedule(
        notBefore="2026-12-24T02:00:00+08:00", windows=[{"cron": "0 3 * * *", "duration": "1h", "timeZone": "UTC"}]
    )
    wait = with_window.wait(utc("2026-12-20T03:30:00"))  # a window is open now, but it is too early
    assert wait is not None
    assert wait.until == utc("2026-12-24T03:00:00")  # the first window after notBefore (18:00 UTC the 23rd)


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ({"windows": [{"cron": "0 25 * * *", "duration": "1h"}]}, "spec.schedule.windows[0].cron '0 25 * * *'"),
        ({"windows": [{"cron": "@daily", "duration": "1h"}]}, "spec.schedule.windows[0].cron"),
        ({"windows": [{"cron": "0 2 * * *", "duration": "2 hours"}]}, "spec.schedule.windows[0].duration"),
        ({"windows": [{"cron": "0 2 * * *", "duration": "200h"}]}, "from 1s to 168h"),
        ({"windows": [{"cron": "0 2 * * *", "duration": "1h", "timeZone": "Mars/Olympus"}]}, "timeZone 'Mars/Olympus'"),
        ({"notBefore": "2026-12-24T02:00:00"}, "spec.schedule.notBefore '2026-12-24T02:00:00' is not a time"),
        ({"notBefore": "2026-12-24T02:00:00"}, "it has no time zone"),
        ({"notBefore": "Christmas"}, "write it as 2026-12-24T02:00:00Z"),
    ],
)
def test_bad_schedules_name_the_field_and_the_fix(spec: dict[str, object], needle: str) -> None:
    with pytest.raises(InvalidSchedule) as err:
        parse_schedule(spec)
    assert needle in str(err.value)
