"""When each inspection report is due — a pure function of the clock, the calendar and what is done.

    due = due_reports(now_local, tz, ChinaCalendar(work_calendar), schedule, done, agent_down_since)

Rules (issue 5, item 4; the contracts ask for every report within 3 working days):

- daily (period = yesterday, ``2026-10-07``): every calendar day at `daily_time`; hospitals run
  on holidays, and so does the daily inspection.
- weekly (period = the previous ISO week, ``2026-W41``): on `weekly_weekday` (1 = Monday) at `time`.
- monthly / quarterly / yearly (``2026-09``, ``2026-Q3``, ``2026``): at `time` on the FIRST
  WORKING DAY after the period, by the mainland China calendar with its 调休 days. The September
  report is therefore due on 8 October 2026 (after the National Day holiday, 1–7 October), not on
  1 October, and the 2025 yearly report on Sunday 4 January 2026, a swapped working day.
- holiday inspection (kind ``inspection``, period = the first day off, ``2026-10-01``): at
  `inspection_time` on the last working day before each statutory holiday, with the reason
  ``国庆节前巡检`` (names joined when holidays touch: ``国庆节、中秋节前巡检``). Still due during the
  holiday if it was missed; not after the holiday.
- catch-up: a report whose due time passed and which is not in `done` stays due (for
  `catch_up_days`), so a report missed while the agent was down is produced at the next start.
  It is marked late when its due time fell while the agent was down, or when it is produced more
  than `late_after` after its due time.
- done: recorded in the store's report_runs (the report child records it once archived) and,
  when its kind has recipients, queued for each of them. The agent takes the record back
  (`forget_report`) from a child that archived a report but did not queue it, so the report
  stays owed and the next attempt sends it.
- deadline: the `deliver_within`-th working day after the period's last day (after the
  inspection day for inspections) — the contract's "within 3 working days".

The calendar comes in as an object (`ReportCalendar`), so tests and other sites can pass their
own; `ChinaCalendar` is the real one. For a year the `chinese-calendar` package does not know,
working days fall back to Monday–Friday plus the configured dates, no holiday inspection is
scheduled, and every DueReport touching that year says `calendar_guessed`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any, Literal, Protocol
from zoneinfo import ZoneInfo

from agent.clock.workcal import WorkCalendar
from agent.store import reports as stored

if TYPE_CHECKING:
    from agent.config.schema import ReportSchedule

__all__ = [
    "HOLIDAY_NAMES_ZH",
    "INSPECTION",
    "KINDS",
    "ChinaCalendar",
    "DueReport",
    "ReportCalendar",
    "delivery_deadline",
    "done_from_store",
    "due_reports",
    "first_working_day_after",
    "forget_report",
    "holiday_inspections",
    "period_bounds",
    "recorded_at",
    "check_hhmm",
    "schedule_from_config",
]

KINDS = ("daily", "weekly", "monthly", "quarterly", "yearly")
INSPECTION = "inspection"
ScheduledKind = Literal["daily", "weekly", "monthly", "quarterly", "yearly"]

HOLIDAY_NAMES_ZH = {
    "New Year's Day": "元旦",
    "Spring Festival": "春节",
    "Tomb-sweeping Day": "清明节",
    "Labour Day": "劳动节",
    "Dragon Boat Festival": "端午节",
    "National Day": "国庆节",
    "Mid-autumn Festival": "中秋节",
    "Anti-Fascist 70th Day": "抗战胜利纪念日",
}
"""chinese-calendar's holiday names (English) as the State Council notices write them."""

_MAX_SCAN_DAYS = 60
"""Longest run of days off (or search for a working day) the scheduler will walk; the longest
real one is about 10 days, so more means a broken calendar, reported as ValueError."""


def check_hhmm(v: str) -> str:
    h, _, m = v.partition(":")
    if not (len(h) == 2 and len(m) == 2 and h.isdigit() and m.isdigit()) or int(h) > 23 or int(m) > 59:
        raise ValueError(f"{v!r} is not a time of day HH:MM")
    return v


def _time(v: str) -> time:
    return time(int(v[:2]), int(v[3:]))


def schedule_from_config(reports: Any) -> ReportSchedule:
    """The schedule of a `reports` config section; its `daily_time` wins over the schedule's."""
    sched = reports.schedule
    daily = getattr(reports, "daily_time", None)
    return sched.model_copy(update={"daily_time": daily}) if daily else sched


class ReportCalendar(Protocol):
    def is_workday(self, d: date) -> bool: ...

    def holiday_names(self, d: date) -> tuple[str, ...]:
        """Statutory holiday names (Chinese) of day `d` if it is a day off for one; else ()."""
        ...

    def year_known(self, year: int) -> bool: ...


class ChinaCalendar:
    """The mainland China calendar of a site: WorkCalendar's days plus holiday names."""

    def __init__(self, work: WorkCalendar) -> None:
        self.work = work

    def is_workday(self, d: date) -> bool:
        return self.work.is_workday(d)

    def year_known(self, year: int) -> bool:
        return WorkCalendar.year_known(year)

    def holiday_names(self, d: date) -> tuple[str, ...]:
        if not self.year_known(d.year) or self.work.is_workday(d):
            return ()
        import chinese_calendar

        off, name = chinese_calendar.get_holiday_detail(d)
        if not off or name is None:
            return ()
        return (HOLIDAY_NAMES_ZH.get(name, name),)


@dataclass(frozen=True, slots=True)
class DueReport:
    kind: str
    """daily, weekly, monthly, quarterly, yearly, or inspection."""
    period_label: str
    """As agent.periods parses it (2026-10-07, 2026-W41, 2026-09, 2026-Q3, 2026); for an
    inspection the first day of the holiday."""
    due_at: datetime
    """Aware, in the site's zone."""
    late: bool
    deadline: date
    """Last day to deliver within `deliver_within` working days."""
    reason: str | None = None
    """Inspection reason, e.g. 国庆节前巡检."""
    calendar_guessed: bool = False
    """A year involved is unknown to chinese-calendar: Monday–Friday was assumed."""


# --------------------------------------------------------------------------- calendar walks


def _working_days_after(d: date, cal: ReportCalendar) -> Iterator[date]:
    day = d
    for _ in range(_MAX_SCAN_DAYS * 12):
        day += timedelta(days=1)
        if cal.is_workday(day):
            yield day
    raise ValueError(f"no working day within {_MAX_SCAN_DAYS * 12} days after {d}: check the calendar")


def first_working_day_after(d: date, cal: ReportCalendar) -> date:
    return next(_working_days_after(d, cal))


def delivery_deadline(last_day: date, cal: ReportCalendar, within: int = 3) -> date:
    """The `within`-th working day after `last_day` (the contract's delivery deadline)."""
    days = _working_days_after(last_day, cal)
    for _ in range(within - 1):
        next(days)
    return next(days)


# --------------------------------------------------------------------------- periods


def period_bounds(kind: str, label_day: date) -> tuple[str, date, date]:
    """(label, first day, last day) of the `kind` period that contains `label_day`."""
    if kind == "daily":
        return label_day.isoformat(), label_day, label_day
    if kind == "weekly":
        iso = label_day.isocalendar()
        first = label_day - timedelta(days=iso.weekday - 1)
        return f"{iso.year}-W{iso.week:02d}", first, first + timedelta(days=6)
    if kind == "monthly":
        first = label_day.replace(day=1)
        nxt = date(first.year + first.month // 12, first.month % 12 + 1, 1)
        return f"{first:%Y-%m}", first, nxt - timedelta(days=1)
    if kind == "quarterly":
        q = (label_day.month - 1) // 3
        first = date(label_day.year, 3 * q + 1, 1)
        nxt = date(first.year + (q == 3), (3 * q + 3) % 12 + 1, 1)
        return f"{first.year}-Q{q + 1}", first, nxt - timedelta(days=1)
    if kind == "yearly":
        return str(label_day.year), date(label_day.year, 1, 1), date(label_day.year, 12, 31)
    raise ValueError(f"unknown report kind {kind!r}")


def _periods_back(kind: str, today: date) -> Iterator[tuple[str, date, date]]:
    """Periods of `kind` that ended before `today`, most recent first (unbounded)."""
    cursor = today - timedelta(days=1)
    while True:
        label, first, last = period_bounds(kind, cursor)
        if last >= today:  # the current, unfinished period
            cursor = first - timedelta(days=1)
            continue
        yield label, first, last
        cursor = first - timedelta(days=1)


def _due_at(kind: str, last: date, sched: ReportSchedule, cal: ReportCalendar, tz: ZoneInfo) -> datetime:
    if kind == "daily":
        return datetime.combine(last + timedelta(days=1), _time(sched.daily_time), tz)
    if kind == "weekly":
        # `last` is a Sunday; the weekday after it (1 = the next day, Monday).
        return datetime.combine(last + timedelta(days=sched.weekly_weekday), _time(sched.time), tz)
    return datetime.combine(first_working_day_after(last, cal), _time(sched.time), tz)


@dataclass(frozen=True, slots=True)
class HolidayInspection:
    due_day: date
    """The last working day before the holiday."""
    first_off: date
    last_off: date
    names: tuple[str, ...]

    @property
    def reason(self) -> str:
        return f"{'、'.join(self.names)}前巡检"


def holiday_inspections(first: date, last: date, cal: ReportCalendar) -> list[HolidayInspection]:
    """Inspections due on days first..last: each working day followed by days off with a
    statutory holiday among them."""
    out = []
    d = first
    while d <= last:
        if cal.is_workday(d) and not cal.is_workday(d + timedelta(days=1)):
            names: dict[str, None] = {}
            off = d + timedelta(days=1)
            end = off
            for _ in range(_MAX_SCAN_DAYS):
                if cal.is_workday(end):
                    break
                names.update(dict.fromkeys(cal.holiday_names(end)))
                end += timedelta(days=1)
            else:
                raise ValueError(f"more than {_MAX_SCAN_DAYS} days off after {d}: check the calendar")
            if names:
                out.append(HolidayInspection(d, off, end - timedelta(days=1), tuple(names)))
        d += timedelta(days=1)
    return out


# --------------------------------------------------------------------------- what is due


def _guessed(cal: ReportCalendar, *days: date) -> bool:
    return any(not cal.year_known(d.year) for d in days)


def due_reports(
    now_local: datetime,
    tz: ZoneInfo,
    calendar: ReportCalendar,
    config_schedule: ReportSchedule,
    done: Iterable[tuple[str, str]],
    agent_down_since: datetime | None,
    *,
    monitoring_since: datetime | None = None,
) -> list[DueReport]:
    """Every report due at `now_local` and not in `done`, oldest first.

    `agent_down_since`: when the agent stopped before this start (its last heartbeat), or None
    for a routine check while running; a report due since then was missed and is late.
    `monitoring_since`: the first start of the agent; periods that ended before it are not
    owed (there was nothing to report on).
    """
    if now_local.tzinfo is None:
        raise ValueError("now_local must be an aware datetime")
    sched = config_schedule
    now = now_local.astimezone(tz)
    horizon = now - timedelta(days=sched.catch_up_days)
    late_after = timedelta(minutes=sched.late_after_minutes)
    finished = set(done)
    since_day = monitoring_since.astimezone(tz).date() if monitoring_since is not None else None

    def is_late(due: datetime) -> bool:
        missed = agent_down_since is not None and due >= agent_down_since
        return missed or now - due > late_after

    out: list[DueReport] = []
    for kind in sched.kinds:
        for label, _first, last in _periods_back(kind, now.date()):
            due = _due_at(kind, last, sched, calendar, tz)
            if due > now:
                continue
            if due < horizon or (since_day is not None and last < since_day):
                break
            if (kind, label) in finished:
                continue
            deadline = delivery_deadline(last, calendar, sched.deliver_within)
            guessed = _guessed(calendar, last, due.date(), deadline)
            out.append(DueReport(kind, label, due, is_late(due), deadline, None, guessed))
    if sched.holiday_inspection:
        for h in holiday_inspections(horizon.date(), now.date(), calendar):
            due = datetime.combine(h.due_day, _time(sched.inspection_time), tz)
            label = h.first_off.isoformat()
            if due > now or now.date() > h.last_off or (INSPECTION, label) in finished:
                continue
            if monitoring_since is not None and due < monitoring_since:
                continue
            deadline = delivery_deadline(h.due_day, calendar, sched.deliver_within)
            out.append(DueReport(INSPECTION, label, due, is_late(due), deadline, h.reason, False))
    out.sort(key=lambda r: (r.due_at, KINDS.index(r.kind) if r.kind in KINDS else len(KINDS)))
    return out


def done_from_store(store: Any) -> set[tuple[str, str]]:
    """(kind, period) of every report written so far (the store's report_runs)."""
    return stored.done(store.db)


def recorded_at(store: Any, kind: str, period: str) -> int | None:
    """When the report of `kind` and `period` was generated (ms), if it is recorded as done."""
    return stored.generated_at(store.db, kind, period)


def forget_report(store: Any, kind: str, period: str) -> None:
    """Take the report off the done list, so the schedule owes it again.

    For a report that was archived but not queued for its recipients: it is not done until
    it is on its way to them, and the next attempt writes and queues it anew.
    """
    with store.tx() as db:
        stored.forget(db, kind, period)
