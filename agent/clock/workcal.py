"""Working-time calendar: fault deadlines such as 三级 "restore within 4 h of working time".

Working days follow the mainland China calendar — statutory holidays off, swapped weekend days
(调休上班日) on — as published yearly by the State Council and shipped in the `chinesecalendar`
package. That package only knows the years it was released for; for any other year we fall back
to Monday–Friday and log a warning, so a deadline in an unknown year is still computed but never
silently presented as authoritative (`Deadline.fallback_years` says which years were guessed).
`extra_holidays` / `extra_workdays` from the configuration override either source, which is how a
site fills in next year's notice before the package catches up, or records a local day off.

Working spans are wall-clock times of the site's zone, evaluated per local day and converted to
real instants, so a span that straddles a DST change is as long as it really is. All arithmetic
runs on aware UTC datetimes and `timedelta` (integer microseconds), so adding durations piecewise
gives exactly the same instant as adding their sum.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cache
from zoneinfo import ZoneInfo

from agent.clock.timeutil import from_ms, to_ms
from agent.config.schema import WorkingHours

log = logging.getLogger("sentinel.workcal")

MAX_WORKING_SECONDS = 366 * 86400.0
"""Longest working-time duration accepted; contract deadlines are hours, so more is a config error."""

_MAX_SCAN_DAYS = 20 * 366
"""Calendar days a single computation may walk; keeps every loop bounded whatever the spans are."""

_ONE_DAY = timedelta(days=1)
_ZERO = timedelta(0)
_DAY_CACHE_LIMIT = 4096

Interval = tuple[datetime, datetime]


@dataclass(frozen=True, slots=True)
class Deadline:
    at: datetime
    """Aware, in the site's zone. Python compares same-zone datetimes by wall time and ignores
    `fold`, so order or store deadlines as UTC instants (`timeutil.to_ms`), not as wall times."""
    fallback_years: tuple[int, ...] = ()
    """Years the package did not know and Monday–Friday plus configured dates was used for."""


@cache
def _package_knows(year: int) -> bool:
    # The package has no "supported years" API; its functions raise NotImplementedError outside
    # the range they have data for. Ask once per year and remember, so hot loops never hit it.
    try:
        import chinese_calendar

        chinese_calendar.is_workday(date(year, 6, 1))
    except NotImplementedError:
        return False
    return True


def _aware(dt: datetime, what: str) -> datetime:
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"{what} is a naive datetime: attach a time zone")
    return dt.astimezone(UTC)


def _duration(seconds: float) -> timedelta:
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"duration must be a finite number of seconds >= 0, not {seconds!r}")
    return timedelta(seconds=seconds)


class WorkCalendar:
    """Working days and hours of one site; answers deadline and elapsed-working-time questions."""

    def __init__(self, hours: WorkingHours, tz: ZoneInfo) -> None:
        self.hours = hours
        self.tz = tz
        self._minutes = hours.minutes()
        self._extra_off = frozenset(hours.extra_holidays)
        self._extra_on = frozenset(hours.extra_workdays)
        self._days: dict[date, tuple[Interval, ...]] = {}
        self._warned: set[int] = set()
        self._lock = threading.Lock()

    # --- days -------------------------------------------------------------------------------

    @staticmethod
    def year_known(year: int) -> bool:
        """Whether the chinese-calendar package has the State Council schedule for `year`."""
        return _package_knows(year)

    def is_workday(self, d: date) -> bool:
        if d in self._extra_on:
            return True
        if d in self._extra_off:
            return False
        if _package_knows(d.year):
            import chinese_calendar  # its tables load on the first working-time question

            return bool(chinese_calendar.is_workday(d))
        self._warn_fallback(d.year)
        return d.weekday() < 5

    def _warn_fallback(self, year: int) -> None:
        with self._lock:
            if year in self._warned:
                return
            self._warned.add(year)
        log.warning("chinese-calendar does not know %d: using Monday–Friday plus configured dates", year)

    # --- spans as real instants ---------------------------------------------------------------

    def _midnight(self, d: date) -> datetime:
        return datetime(d.year, d.month, d.day, tzinfo=self.tz).astimezone(UTC)

    def _wall(self, d: date, minute: int) -> datetime:
        if minute == 1440:
            return self._midnight(d + _ONE_DAY)
        return datetime(d.year, d.month, d.day, minute // 60, minute % 60, tzinfo=self.tz).astimezone(UTC)

    def _intervals(self, d: date) -> tuple[Interval, ...]:
        """Working [start, end] of local day `d` in UTC, ordered and disjoint."""
        cached = self._days.get(d)
        if cached is not None:
            return cached
        out: list[Interval] = []
        if self.is_workday(d):
            # Wall times inside a DST gap map to instants out of order, so clamp each span into
            # the day and behind the previous one: intervals stay disjoint and sorted, and a day
            # never lends working time to its neighbour.
            floor, ceiling = self._midnight(d), self._midnight(d + _ONE_DAY)
            for m1, m2 in self._minutes:
                start = max(self._wall(d, m1), floor)
                end = min(self._wall(d, m2), ceiling)
                if end > start:
                    out.append((start, end))
                    floor = end
        result = tuple(out)
        if len(self._days) >= _DAY_CACHE_LIMIT:
            self._days.clear()
        self._days[d] = result
        return result

    def _first_day(self, utc: datetime) -> date:
        d = utc.astimezone(self.tz).date()
        # Only in a zone whose DST gap straddles midnight can local midnight lie after an
        # instant of the same local date; then that instant belongs to the previous day's window.
        return d - _ONE_DAY if self._midnight(d) > utc else d

    def _walk(self, first: date) -> Iterator[tuple[date, tuple[Interval, ...]]]:
        d = first
        for _ in range(_MAX_SCAN_DAYS):
            yield d, self._intervals(d)
            try:
                d += _ONE_DAY
            except OverflowError:
                raise ValueError("working time runs past the end of the calendar") from None
        raise ValueError(f"no result within {_MAX_SCAN_DAYS} calendar days; check the working hours")

    def _unknown_years(self, first: date, last: date) -> tuple[int, ...]:
        return tuple(y for y in range(first.year, last.year + 1) if not _package_knows(y))

    # --- public questions ---------------------------------------------------------------------

    def is_working_time(self, at: datetime) -> bool:
        """Whether `at` lies inside a working span (start included, end excluded)."""
        utc = _aware(at, "at")
        return any(s <= utc < e for s, e in self._intervals(self._first_day(utc)))

    def next_working_instant(self, at: datetime) -> datetime:
        """`at` if it is working time, else the start of the next working span (site zone)."""
        utc = _aware(at, "at")
        for _, intervals in self._walk(self._first_day(utc)):
            for s, e in intervals:
                if utc < e:
                    return max(utc, s).astimezone(self.tz)
        raise AssertionError("unreachable: _walk raises when it runs out")

    def add_working_time(self, start: datetime, seconds: float) -> Deadline:
        """The instant at which `seconds` of working time have elapsed since `start`.

        A start outside working hours starts counting at the next working span. The result is
        the earliest such instant, so it lies inside a span or exactly at a span's end (4 h from
        13:30 with the default hours is 17:30 that day, not 08:00 the next morning).
        """
        remaining = _duration(seconds)
        if seconds > MAX_WORKING_SECONDS:
            raise ValueError(
                f"{seconds:g} s of working time is more than the {MAX_WORKING_SECONDS:g} s limit"
            )
        cur = _aware(start, "start")
        first = self._first_day(cur)
        # At exactly local midnight, a span of the previous day ending at 24:00 still holds the
        # start (see below); it adds no working time, so fallback years still begin at `first`.
        scan_from = first - _ONE_DAY if cur == self._midnight(first) else first
        for d, intervals in self._walk(scan_from):
            for s, e in intervals:
                # A span ending exactly at `cur` still counts: with nothing left to add, `cur`
                # itself is the answer, which keeps add(add(t, a), b) == add(t, a + b).
                if e < cur:
                    continue
                pos = max(cur, s)
                available = e - pos
                if remaining <= available:
                    at = pos + remaining
                    return Deadline(at.astimezone(self.tz), self._unknown_years(first, d))
                remaining -= available
                cur = e
        raise AssertionError("unreachable: _walk raises when it runs out")

    def working_seconds_between(self, a: datetime, b: datetime) -> float:
        """Working time inside [a, b]; negative when b is before a (antisymmetric)."""
        ua, ub = _aware(a, "a"), _aware(b, "b")
        if ub < ua:
            return -self.working_seconds_between(b, a)
        first = self._first_day(ua)
        last = ub.astimezone(self.tz).date()
        if (last - first).days > _MAX_SCAN_DAYS:
            raise ValueError(f"more than {_MAX_SCAN_DAYS} calendar days between {a} and {b}")
        total = _ZERO
        for d, intervals in self._walk(first):
            for s, e in intervals:
                overlap = min(e, ub) - max(s, ua)
                if overlap > _ZERO:
                    total += overlap
            if d >= last:
                break
        return total.total_seconds()

    def fallback_years_between(self, a: datetime, b: datetime) -> tuple[int, ...]:
        """Years between a and b (site dates) for which working days had to be guessed."""
        da = _aware(a, "a").astimezone(self.tz).date()
        db = _aware(b, "b").astimezone(self.tz).date()
        return self._unknown_years(min(da, db), max(da, db))

    def add_clock_time(self, start: datetime, seconds: float) -> Deadline:
        """Plain elapsed time for 7×24 levels; in UTC so a DST change does not shift it."""
        at = _aware(start, "start") + _duration(seconds)
        return Deadline(at.astimezone(self.tz))

    def deadline_ms(self, start_ms: int, seconds: float, working_time: bool) -> tuple[int, str | None]:
        """Epoch-ms adapter in the shape `agent.faults.Deadlines` expects: (deadline, note).

        The note is set only when working days had to be guessed, so the fault record itself
        says its deadline is not backed by a published holiday schedule.
        """
        start = from_ms(start_ms, self.tz)
        if not working_time:
            return to_ms(self.add_clock_time(start, seconds).at), None
        d = self.add_working_time(start, seconds)
        if not d.fallback_years:
            return to_ms(d.at), None
        years = ", ".join(str(y) for y in d.fallback_years)
        note = f"chinese-calendar does not know {years}: Monday–Friday plus configured dates used"
        return to_ms(d.at), note
