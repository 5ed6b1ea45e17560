"""Report and availability periods, written the way a contract or a committee writes them.

    2026            the year           2026-Q4     a quarter
    2026-11         a month            2026-W48    an ISO week (Monday to Monday)
    2026-11-23      a day
    2026-11-01..2026-11-15             whole days, both inclusive
    2026-11-01 08:00..2026-11-01 18:00 from..to, the end exclusive

Every boundary is a local midnight (or local time) in the site's time zone, converted to UTC.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

_YEAR = re.compile(r"^(\d{4})$")
_MONTH = re.compile(r"^(\d{4})-(\d{1,2})$")
_QUARTER = re.compile(r"^(\d{4})-?[Qq]([1-4])$")
_WEEK = re.compile(r"^(\d{4})-?[Ww](\d{1,2})$")
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}[ T]\d{1,2}:\d{2}(:\d{2})?$")

FORMS = (
    "2026, 2026-11, 2026-Q4, 2026-W48, 2026-11-23, 2026-11-01..2026-11-15 "
    "or 'YYYY-MM-DD HH:MM..YYYY-MM-DD HH:MM'"
)


class PeriodError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Period:
    label: str
    start: datetime
    """Local (site time zone), inclusive."""
    end: datetime
    """Local, exclusive."""

    @property
    def start_ms(self) -> int:
        return _ms(self.start)

    @property
    def end_ms(self) -> int:
        return _ms(self.end)

    @property
    def year(self) -> int:
        return self.start.year

    def describe(self) -> str:
        end = self.end - timedelta(microseconds=1)
        if self.start.time() == self.end.time() == datetime.min.time():
            return f"{self.start:%Y-%m-%d} 至 {end:%Y-%m-%d}"
        return f"{self.start:%Y-%m-%d %H:%M} 至 {self.end:%Y-%m-%d %H:%M}"


def _ms(dt: datetime) -> int:
    delta = dt.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86400 + delta.seconds) * 1000 + delta.microseconds // 1000


def _midnight(d: date, tz: ZoneInfo) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=tz)


def _month_start(year: int, month: int, tz: ZoneInfo) -> datetime:
    year += (month - 1) // 12
    month = (month - 1) % 12 + 1
    return datetime(year, month, 1, tzinfo=tz)


def parse_period(text: str, tz: ZoneInfo) -> Period:
    t = text.strip()
    try:
        if m := _YEAR.match(t):
            y = int(m[1])
            return Period(t, datetime(y, 1, 1, tzinfo=tz), datetime(y + 1, 1, 1, tzinfo=tz))
        if m := _MONTH.match(t):
            y, mo = int(m[1]), int(m[2])
            if not 1 <= mo <= 12:
                raise PeriodError(f"month {mo} does not exist")
            return Period(f"{y}-{mo:02d}", _month_start(y, mo, tz), _month_start(y, mo + 1, tz))
        if m := _QUARTER.match(t):
            y, q = int(m[1]), int(m[2])
            return Period(f"{y}-Q{q}", _month_start(y, 3 * q - 2, tz), _month_start(y, 3 * q + 1, tz))
        if m := _WEEK.match(t):
            y, w = int(m[1]), int(m[2])
            monday = date.fromisocalendar(y, w, 1)
            return Period(f"{y}-W{w:02d}", _midnight(monday, tz), _midnight(monday + timedelta(days=7), tz))
        if _DAY.match(t):
            d = date.fromisoformat(t)
            return Period(t, _midnight(d, tz), _midnight(d + timedelta(days=1), tz))
        if ".." in t:
            a, b = (x.strip() for x in t.split("..", 1))
            start = _endpoint(a, tz, end=False)
            end = _endpoint(b, tz, end=True)
            if end <= start:
                raise PeriodError("the end of the period must come after its start")
            return Period(t, start, end)
    except ValueError as exc:
        if isinstance(exc, PeriodError):
            raise
        raise PeriodError(f"invalid period {text!r}: {exc}") from None
    raise PeriodError(f"invalid period {text!r}: use {FORMS}")


def _endpoint(s: str, tz: ZoneInfo, end: bool) -> datetime:
    if _DAY.match(s):
        d = date.fromisoformat(s)
        # A whole-day end is inclusive: "2026-11-01..2026-11-15" covers the 15th.
        return _midnight(d + timedelta(days=1) if end else d, tz)
    if _DATETIME.match(s):
        return datetime.fromisoformat(s.replace(" ", "T")).replace(tzinfo=tz)
    raise PeriodError(f"invalid period boundary {s!r}: use YYYY-MM-DD or 'YYYY-MM-DD HH:MM'")

