"""Report and availability periods, written the way a contract or a committee writes them.

    2026            the year           2026-Q4     a quarter
    2026-11         a month            2026-W48    an ISO week (Monday to Monday)
    2026-11-23      a day
    2026-11-01..2026-11-15             whole days, both inclusive
    2026-11-01 08:00..2026-11-01 18:00 from..to, the end exclusive
    service         the contract's service period (服务期) containing now
    service:2026    the service period that starts in 2026
    service:2026-04-14                 the service period that starts that day

Every boundary is a local midnight (or local time) in the site's time zone, converted to UTC.

The contract year (`contract_year`) is what verdicts, downtime budgets and overdue limits run
over: the configured service period containing an instant, else the calendar year (cut where a
service period begins or ends, so contract years never overlap).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from agent.config.contract import Contract, ServicePeriod

_YEAR = re.compile(r"^(\d{4})$")
_MONTH = re.compile(r"^(\d{4})-(\d{1,2})$")
_QUARTER = re.compile(r"^(\d{4})-?[Qq]([1-4])$")
_WEEK = re.compile(r"^(\d{4})-?[Ww](\d{1,2})$")
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}[ T]\d{1,2}:\d{2}(:\d{2})?$")

_SERVICE = re.compile(r"^service(?::(.*))?$", re.IGNORECASE)

FORMS = (
    "2026, 2026-11, 2026-Q4, 2026-W48, 2026-11-23, 2026-11-01..2026-11-15, "
    "'YYYY-MM-DD HH:MM..YYYY-MM-DD HH:MM', "
    "service (the current service period), service:2026 or service:2026-04-14"
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
    service: ServicePeriod | None = field(default=None, compare=False)
    """The contract's service period this is, if it is one (its target and overdue limits)."""

    @property
    def start_ms(self) -> int:
        return _ms(self.start)

    @property
    def end_ms(self) -> int:
        return _ms(self.end)

    @property
    def year(self) -> int:
        return self.start.year

    def limits_or(self, default: Mapping[int, int]) -> dict[int, int]:
        """Overdue limits per level: the service period's own, else `default` (faults.yearly_limits)."""
        own = self.service.overdue_limits if self.service is not None else None
        return dict(own if own is not None else default)

    def target_or(self, default: float) -> float:
        """Availability target (%): the service period's own, else `default` (the system's)."""
        own = self.service.target if self.service is not None else None
        return own if own is not None else default

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


# ------------------------------------------------------------------------- service periods


def service_period(sp: ServicePeriod, tz: ZoneInfo) -> Period:
    start, end = sp.local_bounds(tz)
    return Period(sp.label, start, end, sp)


def _services(contract: Contract, tz: ZoneInfo) -> list[Period]:
    return [service_period(sp, tz) for sp in contract.service_periods]


def _day_label(start: datetime, end: datetime) -> str:
    return f"{start:%Y-%m-%d}..{end - timedelta(days=1):%Y-%m-%d}"


def contract_year(contract: Contract, tz: ZoneInfo, at_ms: int) -> Period:
    """The service period containing the instant, or else its calendar year.

    Outside every service period the calendar year stands in, cut at the service periods
    around it (a contract starting 2026-04-14 leaves 2026-01-01..2026-04-13), so that no
    instant belongs to two contract years and nothing is counted against two budgets.
    """
    year = datetime.fromtimestamp(at_ms / 1000, tz).year
    start = datetime(year, 1, 1, tzinfo=tz)
    end = datetime(year + 1, 1, 1, tzinfo=tz)
    for p in _services(contract, tz):
        if p.start_ms <= at_ms < p.end_ms:
            return p
        if p.end_ms <= at_ms and p.end > start:
            start = p.end
        elif p.start_ms > at_ms and p.start < end:
            end = p.start
    whole = (start, end) == (datetime(year, 1, 1, tzinfo=tz), datetime(year + 1, 1, 1, tzinfo=tz))
    return Period(str(year) if whole else _day_label(start, end), start, end)


def current_service_period(contract: Contract, tz: ZoneInfo, now_ms: int) -> Period | None:
    return next((p for p in _services(contract, tz) if p.start_ms <= now_ms < p.end_ms), None)


def last_complete_service_period(contract: Contract, tz: ZoneInfo, now_ms: int) -> Period | None:
    """The latest service period that had ended by `now_ms` (its end is at or before now)."""
    done = [p for p in _services(contract, tz) if p.end_ms <= now_ms]
    return done[-1] if done else None


def _configured(periods: list[Period]) -> str:
    return ", ".join(_day_label(p.start, p.end) for p in periods)


def _service(arg: str | None, tz: ZoneInfo, contract: Contract, now_ms: int) -> Period:
    periods = _services(contract, tz)
    if not periods:
        raise PeriodError(
            "--period service needs the contract's service periods, "
            "but contract.service_periods is empty in the configuration"
        )
    if arg is None:
        current = current_service_period(contract, tz, now_ms)
        if current is None:
            today = datetime.fromtimestamp(now_ms / 1000, tz).date()
            raise PeriodError(
                f"no service period contains today ({today}); configured: {_configured(periods)}; "
                "use service:YYYY or service:YYYY-MM-DD"
            )
        return current
    a = arg.strip()
    if _YEAR.match(a):
        found = [p for p in periods if p.start.year == int(a)]
        if len(found) > 1:
            starts = ", ".join(f"service:{p.start:%Y-%m-%d}" for p in found)
            raise PeriodError(f"{len(found)} service periods start in {a}: use {starts}")
    elif _DAY.match(a):
        try:
            day = date.fromisoformat(a)
        except ValueError as exc:
            raise PeriodError(f"invalid period 'service:{a}': {exc}") from None
        found = [p for p in periods if p.start.date() == day]
    else:
        raise PeriodError(f"invalid period 'service:{a}': use service, service:YYYY or service:YYYY-MM-DD")
    if not found:
        when = f"in {a}" if _YEAR.match(a) else f"on {a}"
        raise PeriodError(f"no service period starts {when}; configured: {_configured(periods)}")
    return found[0]


def resolve_period(text: str, tz: ZoneInfo, contract: Contract, now_ms: int) -> Period:
    """Any --period text: the forms of `parse_period`, plus the service-period forms."""
    t = text.strip()
    if m := _SERVICE.match(t):
        return _service(m[1], tz, contract, now_ms)
    return parse_period(t, tz)
