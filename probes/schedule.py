"""Expected schedules for things that must happen on time: backups, above all.

"A full backup every day by 04:00, 2 h grace" is an expectation, not an age limit: at 05:00
last night's backup is still fine; at 06:01 a backup from yesterday afternoon is not, because
it belongs to the previous slot. Schedules are read in the site's time zone.

Forms (English or Chinese weekday names):
    daily 04:00          every day, due at 04:00
    weekly sun 02:00     once a week (mon..sun or 周一..周日)
    monthly 1 03:00      once a month on that day (clamped to the month's last day)
    every 15m            at most 15 minutes apart (an interval, not a clock time)
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta, tzinfo
from typing import Any, Literal

from probes.values import parse_duration

__all__ = ["Expectation", "Verdict"]

_WEEKDAYS = {
    "mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6,
    "周一": 0, "周二": 1, "周三": 2, "周四": 3, "周五": 4, "周六": 5, "周日": 6, "周天": 6,
}  # fmt: skip
_WEEKDAY_ZH = ("周一", "周二", "周三", "周四", "周五", "周六", "周日")
_HHMM = r"([01]?\d|2[0-3]):([0-5]\d)"
_DAILY = re.compile(rf"^daily\s+{_HHMM}$")
_WEEKLY = re.compile(rf"^weekly\s+(\S+)\s+{_HHMM}$")
_MONTHLY = re.compile(rf"^monthly\s+(\d{{1,2}})\s+{_HHMM}$")
_EVERY = re.compile(r"^every\s+(\S+)$")


@dataclass(frozen=True, slots=True)
class Verdict:
    met: bool
    due: datetime | None
    """The slot being judged (UTC): its due time; for `every`, when the next run is due."""
    deadline: datetime | None
    """Due time plus grace (UTC)."""
    window_start: datetime | None
    """A completion after this instant (UTC) satisfies the slot."""
    age_s: float | None
    """now - newest, None when nothing was ever seen."""


@dataclass(frozen=True, slots=True)
class Expectation:
    kind: Literal["daily", "weekly", "monthly", "every"]
    at: time = time(0, 0)
    weekday: int = 0
    day: int = 1
    every_s: float = 0.0

    @classmethod
    def parse(cls, value: Any) -> Expectation:
        if isinstance(value, Expectation):
            return value
        if not isinstance(value, str):
            raise ValueError("a schedule is a string like 'daily 04:00', 'weekly sun 02:00', 'every 15m'")
        text = " ".join(value.strip().lower().split())
        if m := _DAILY.match(text):
            return cls("daily", time(int(m[1]), int(m[2])))
        if m := _WEEKLY.match(text):
            if m[1] not in _WEEKDAYS:
                raise ValueError(f"unknown weekday {m[1]!r}: use mon..sun or 周一..周日")
            return cls("weekly", time(int(m[2]), int(m[3])), weekday=_WEEKDAYS[m[1]])
        if m := _MONTHLY.match(text):
            day = int(m[1])
            if not 1 <= day <= 31:
                raise ValueError("the day of the month must be 1..31")
            return cls("monthly", time(int(m[2]), int(m[3])), day=day)
        if m := _EVERY.match(text):
            return cls("every", every_s=parse_duration(m[1]))
        raise ValueError(
            f"invalid schedule {value!r}: use 'daily 04:00', 'weekly sun 02:00', "
            "'monthly 1 03:00' or 'every 15m'"
        )

    def __str__(self) -> str:
        hhmm = self.at.strftime("%H:%M")
        if self.kind == "daily":
            return f"daily {hhmm}"
        if self.kind == "weekly":
            return f"weekly {list(_WEEKDAYS)[self.weekday]} {hhmm}"
        if self.kind == "monthly":
            return f"monthly {self.day} {hhmm}"
        return f"every {self.every_s:g}s"

    def describe_zh(self) -> str:
        hhmm = self.at.strftime("%H:%M")
        if self.kind == "daily":
            return f"每天 {hhmm} 前"
        if self.kind == "weekly":
            return f"每{_WEEKDAY_ZH[self.weekday]} {hhmm} 前"
        if self.kind == "monthly":
            return f"每月 {self.day} 日 {hhmm} 前"
        minutes = self.every_s / 60
        return f"每 {minutes:g} 分钟" if minutes < 120 else f"每 {minutes / 60:g} 小时"

    def judge(self, newest: datetime | None, now: datetime, tz: tzinfo, grace_s: float) -> Verdict:
        """Was the newest completion (aware datetime) on time for the latest slot whose
        deadline has passed at `now`?"""
        age = None if newest is None else (now - newest).total_seconds()
        if self.kind == "every":
            window_start = now - timedelta(seconds=self.every_s + grace_s)
            due = None if newest is None else newest + timedelta(seconds=self.every_s)
            deadline = None if due is None else due + timedelta(seconds=grace_s)
            met = newest is not None and newest > window_start
            return Verdict(met, due, deadline, window_start, age)
        due = self._latest_due_at_or_before(now - timedelta(seconds=grace_s), tz)
        window_start = self._latest_due_at_or_before(due - timedelta(microseconds=1), tz)
        met = newest is not None and newest > window_start
        return Verdict(met, due, due + timedelta(seconds=grace_s), window_start, age)

    def _due_on(self, day: datetime, tz: tzinfo) -> datetime:
        """The due instant (UTC) on the local calendar date of `day`."""
        local = datetime.combine(day.date(), self.at, tzinfo=tz)
        return local.astimezone(UTC)

    def _latest_due_at_or_before(self, instant: datetime, tz: tzinfo) -> datetime:
        local = instant.astimezone(tz)
        if self.kind == "daily":
            candidates = (local - timedelta(days=d) for d in range(3))
        elif self.kind == "weekly":
            back = (local.weekday() - self.weekday) % 7
            candidates = (local - timedelta(days=back + 7 * w) for w in range(3))
        else:
            candidates = (self._month_day(local, back) for back in range(3))
        for cand in candidates:
            due = self._due_on(cand, tz)
            if due <= instant:
                return due
        raise AssertionError("unreachable: a slot exists within three periods")

    def _month_day(self, local: datetime, months_back: int) -> datetime:
        year, month = local.year, local.month - months_back
        while month < 1:
            month += 12
            year -= 1
        last = calendar.monthrange(year, month)[1]
        return local.replace(year=year, month=month, day=min(self.day, last))

