"""When a promotion may move its stage: ``spec.schedule`` (a not-before time, maintenance windows). Pure.

A window opens at each time its cron expression names, in its time zone, and stays open for its
duration (elapsed time: a window that spans a daylight-saving change is as long as written). Cron
is evaluated by cronsim, which follows Debian's cron through DST changes: a start in the hour that
is skipped in spring happens when the clock resumes, a start in the hour repeated in autumn happens
once. The schedule is asked only before a generation sends anything: once a move may have been
sent, or a gate runs, a window closing changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from secretstage.domain.gate import parse_duration

MAX_WINDOW_SECONDS = 7 * 24 * 3600


class InvalidSchedule(ValueError):
    """spec.schedule cannot be evaluated: ``field`` and ``detail`` (what is wrong, and the fix)."""

    def __init__(self, field: str, detail: str) -> None:
        self.field, self.detail = field, detail
        super().__init__(f"{field} {detail}")


@dataclass(frozen=True)
class Window:
    cron: str
    duration: timedelta
    zone: ZoneInfo
    field: str  # spec.schedule.windows[i], for messages

    def open_at(self, now: datetime) -> datetime | None:
        """The start of an occurrence of this window that contains ``now``, if one does.

        The starts after ``now - duration`` are walked forward and compared in UTC: cron works in wall
        time, and in the hour repeated in autumn a wall-time comparison (which Python makes ignoring
        ``fold``) would reopen a window that has already run its elapsed duration.
        """
        now = now.astimezone(UTC)
        since = (now - self.duration - timedelta(seconds=1)).astimezone(self.zone)
        for start in CronSim(self.cron, since):
            start_utc = start.astimezone(UTC)
            if start_utc > now:
                return None
            if now < start_utc + self.duration:
                return start_utc
        return None

    def next_start(self, after: datetime) -> datetime | None:
        """The first start strictly after ``after`` (None: none in the next 50 years)."""
        start = next(CronSim(self.cron, after.astimezone(self.zone)), None)
        return start.astimezone(UTC) if start is not None else None


@dataclass(frozen=True)
class Schedule:
    not_before: datetime | None
    windows: tuple[Window, ...]

    def wait(self, now: datetime) -> Wait | None:
        """None when the promotion may proceed at ``now``; else until when, and why."""
        earliest = now
        if self.not_before is not None and now < self.not_before:
            earliest = self.not_before
        if not self.windows:
            if earliest == now:
                return None
            return Wait(earliest, "NotBefore", f"spec.schedule.notBefore is {_iso(earliest)}")
        if any(window.open_at(earliest) for window in self.windows):
            if earliest == now:
                return None
            return Wait(earliest, "NotBefore", f"spec.schedule.notBefore is {_iso(earliest)}; a window is open then")
        starts = [s for s in (w.next_start(earliest) for w in self.windows) if s is not None]
        if not starts:
            return Wait(None, "OutsideWindow", "no window of spec.schedule.windows opens in the next 50 years")
        opens = min(starts)
        if self.not_before is not None and now < self.not_before:
            why = f"spec.schedule.notBefore is {_iso(self.not_before)} and no window is open then"
        else:
            why = "no window of spec.schedule.windows is open"
        return Wait(opens, "OutsideWindow", f"{why}; the next opens at {_iso(opens)}")


@dataclass(frozen=True)
class Wait:
    until: datetime | None  # None: never (as far as cron can tell)
    reason: str  # NotBefore | OutsideWindow
    message: str


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime:
    """An RFC 3339 time as Kubernetes writes it (2026-12-24T02:00:00Z, or with an offset)."""
    moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError("it has no time zone (add Z or an offset such as +08:00)")
    return moment.astimezone(UTC)


def parse_schedule(spec: Mapping[str, Any] | None) -> Schedule | None:
    """``spec.schedule``, checked; InvalidSchedule names the field and the fix."""
    if not spec:
        return None
    not_before = None
    if spec.get("notBefore"):
        try:
            not_before = parse_time(str(spec["notBefore"]))
        except ValueError as exc:
            raise InvalidSchedule(
                "spec.schedule.notBefore",
                f"{spec['notBefore']!r} is not a time: {exc}; write it as 2026-12-24T02:00:00Z",
            ) from None
    windows: list[Window] = []
    raw: Sequence[Mapping[str, Any]] = spec.get("windows") or []
    for index, item in enumerate(raw):
        field = f"spec.schedule.windows[{index}]"
        windows.append(_window(item, field))
    return Schedule(not_before, tuple(windows))


def _window(item: Mapping[str, Any], field: str) -> Window:
    cron = str(item.get("cron") or "").strip()
    try:
        CronSim(cron, datetime(2026, 1, 1))
    except CronSimError as exc:
        raise InvalidSchedule(
            f"{field}.cron",
            f"{cron!r} is not a cron expression ({exc}); write five fields: minute hour day-of-month month "
            "day-of-week, e.g. '0 2 * * 1-5'",
        ) from None
    if len(cron.split()) != 5:
        raise InvalidSchedule(f"{field}.cron", f"{cron!r} must have five fields (minute hour day month weekday)")
    seconds = parse_duration(str(item.get("duration") or ""))
    if not seconds or seconds > MAX_WINDOW_SECONDS:
        raise InvalidSchedule(
            f"{field}.duration", f"{item.get('duration')!r} must be a duration from 1s to 168h, e.g. 2h or 90m"
        )
    zone_name = str(item.get("timeZone") or "UTC")
    try:
        zone = ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidSchedule(
            f"{field}.timeZone", f"{zone_name!r} is not a time zone of the IANA database; e.g. Asia/Shanghai or UTC"
        ) from None
    return Window(cron, timedelta(seconds=seconds), zone, field)
