"""Report scheduling on a controllable clock with the real China calendar (chinese-calendar).

Dates checked against the State Council notices as the package ships them:
2025 National Day + Mid-autumn 1–8 Oct (28 Sep and 11 Oct worked); 2026 National Day 1–7 Oct
(20 Sep and 10 Oct worked), Mid-autumn 25–27 Sep; 2026 New Year 1–3 Jan (Sun 4 Jan worked);
2026 Spring Festival 15–23 Feb (Sat 14 Feb and Sat 28 Feb worked); 2024 Spring Festival
10–17 Feb (Sun 4 Feb and Sun 18 Feb worked); 2025 Spring Festival 28 Jan–4 Feb (Sun 26 Jan worked).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from agent.clock.workcal import WorkCalendar
from agent.config.schema import ReportSchedule, WorkingHours
from agent.reports.schedule import (
    INSPECTION,
    ChinaCalendar,
    DueReport,
    delivery_deadline,
    due_reports,
    first_working_day_after,
    schedule_from_config,
)

TZ = ZoneInfo("Asia/Shanghai")
CAL = ChinaCalendar(WorkCalendar(WorkingHours(), TZ))
SCHED = ReportSchedule()  # daily 07:30, weekly Monday 08:00, periods 08:00, inspections 14:00


def at(y: int, m: int, d: int, hh: int = 0, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=TZ)


class Clock:
    """Local wall clock that only moves when told to."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def advance(self, **kw: float) -> None:
        self.now += timedelta(**kw)


def due(
    now: datetime,
    kinds: tuple[str, ...] | None = None,
    done: set[tuple[str, str]] | None = None,
    down_since: datetime | None = None,
    sched: ReportSchedule = SCHED,
    cal: ChinaCalendar = CAL,
    since: datetime | None = None,
) -> list[DueReport]:
    out = due_reports(now, TZ, cal, sched, done or set(), down_since, monitoring_since=since)
    return [r for r in out if kinds is None or r.kind in kinds]


def labels(reports: list[DueReport]) -> list[tuple[str, str]]:
    return [(r.kind, r.period_label) for r in reports]


def test_september_monthly_is_due_after_the_national_day_holiday_not_on_1_october() -> None:
    clock = Clock(at(2026, 9, 30, 23, 0))
    seen: dict[tuple[str, str], datetime] = {}
    done: set[tuple[str, str]] = set()
    # Walk the clock hour by hour through the holiday; the daemon "writes" what is due.
    while clock.now < at(2026, 10, 12):
        for r in due(clock.now, ("monthly", "quarterly"), done, since=at(2026, 9, 1)):
            seen[(r.kind, r.period_label)] = clock.now
            done.add((r.kind, r.period_label))
            assert r.due_at == at(2026, 10, 8, 8, 0) and not r.late
            assert r.deadline == date(2026, 10, 10)  # 8, 9 and Saturday 10 Oct (a swapped working day)
        clock.advance(hours=1)
    assert seen == {("monthly", "2026-09"): at(2026, 10, 8, 8), ("quarterly", "2026-Q3"): at(2026, 10, 8, 8)}
    assert due(at(2026, 10, 1, 9), ("monthly",), since=at(2026, 9, 1)) == []
    assert due(at(2026, 10, 7, 23, 59), ("monthly",), since=at(2026, 9, 1)) == []


def test_october_monthly_is_due_on_the_first_working_day_of_november() -> None:
    assert due(at(2026, 11, 1, 23, 59), ("monthly",), done={("monthly", "2026-09")}) == []
    [r] = due(at(2026, 11, 2, 8, 0), ("monthly",), done={("monthly", "2026-09")})
    assert (r.period_label, r.due_at, r.late) == ("2026-10", at(2026, 11, 2, 8, 0), False)


def test_2025_national_day_runs_to_8_october_so_september_is_due_on_the_9th() -> None:
    assert first_working_day_after(date(2025, 9, 30), CAL) == date(2025, 10, 9)
    assert due(at(2025, 10, 8, 12), ("monthly",)) == []
    [r] = due(at(2025, 10, 9, 8, 0), ("monthly",))
    assert r.period_label == "2025-09"
    # 9, 10 and Saturday 11 Oct are the three working days.
    assert r.deadline == date(2025, 10, 11)


def test_yearly_report_is_due_on_a_swapped_working_sunday() -> None:
    # 1–3 Jan 2026 off, Sunday 4 Jan worked: the yearly, Q4 and December reports are due then.
    assert due(at(2026, 1, 3, 23), ("monthly", "quarterly", "yearly")) == []
    reports = due(at(2026, 1, 4, 8, 0), ("monthly", "quarterly", "yearly"))
    assert labels(reports) == [("monthly", "2025-12"), ("quarterly", "2025-Q4"), ("yearly", "2025")]
    assert {r.due_at for r in reports} == {at(2026, 1, 4, 8)}
    assert at(2026, 1, 4).weekday() == 6


def test_spring_festival_inspection_falls_on_the_swapped_saturday() -> None:
    # 2026: Saturday 14 Feb is worked, 15–23 Feb off: the inspection is on the Saturday.
    assert due(at(2026, 2, 14, 13, 59), (INSPECTION,)) == []
    [r] = due(at(2026, 2, 14, 14, 0), (INSPECTION,))
    assert (r.period_label, r.reason, r.due_at, r.late) == (
        "2026-02-15",
        "春节前巡检",
        at(2026, 2, 14, 14),
        False,
    )
    # First working day after the holiday is Tue 24 Feb: 24, 25, 26.
    assert r.deadline == date(2026, 2, 26)
    # 2025: Sunday 26 Jan worked, Monday 27 Jan the last working day before 28 Jan.
    [r25] = due(at(2025, 1, 27, 15), (INSPECTION,))
    assert (r25.period_label, r25.reason, r25.due_at) == ("2025-01-28", "春节前巡检", at(2025, 1, 27, 14))
    assert due(at(2025, 1, 26, 15), (INSPECTION,)) == []  # the swapped Sunday is not the last one


def test_three_working_days_count_the_swapped_sunday_after_spring_festival() -> None:
    # 2024: 9 Feb worked, 10–17 Feb off, Sunday 18 Feb worked.
    assert delivery_deadline(date(2024, 2, 8), CAL) == date(2024, 2, 19)  # 9, 18 (Sun), 19
    assert first_working_day_after(date(2024, 2, 9), CAL) == date(2024, 2, 18)
    [r] = due(at(2024, 2, 9, 7, 30), ("daily",), since=at(2024, 2, 8))
    assert (r.period_label, r.deadline) == ("2024-02-08", date(2024, 2, 19))


def test_holiday_inspections_name_the_holiday_and_join_touching_ones() -> None:
    [r] = due(at(2025, 9, 30, 14), (INSPECTION,))
    assert (r.period_label, r.reason) == ("2025-10-01", "国庆节、中秋节前巡检")  # Mid-autumn on 6 Oct
    # 2026: Mid-autumn 25–27 Sep, then three working days, then National Day.
    [mid] = due(at(2026, 9, 24, 14), (INSPECTION,))
    assert (mid.period_label, mid.reason) == ("2026-09-25", "中秋节前巡检")
    [nat] = due(at(2026, 9, 30, 14), (INSPECTION,), done={(INSPECTION, "2026-09-25")})
    assert (nat.period_label, nat.reason) == ("2026-10-01", "国庆节前巡检")
    # An ordinary weekend is no holiday.
    assert due(at(2026, 11, 6, 15), (INSPECTION,)) == []


def test_missed_while_down_is_due_at_the_next_start_and_late() -> None:
    # Agent first started 28 Sep, stopped at 06:00 on 8 Oct 2026 and comes back at 10:15 on 9 Oct.
    down, since = at(2026, 10, 8, 6, 0), at(2026, 9, 28, 9)
    done = {("weekly", "2026-W40"), (INSPECTION, "2026-10-01")}
    done |= {("daily", (date(2026, 9, 28) + timedelta(days=k)).isoformat()) for k in range(9)}
    reports = due(at(2026, 10, 9, 10, 15), done=done, down_since=down, since=since)
    assert labels(reports) == [
        ("daily", "2026-10-07"),  # due 8 Oct 07:30, agent already down
        ("monthly", "2026-09"),
        ("quarterly", "2026-Q3"),
        ("daily", "2026-10-08"),  # due 9 Oct 07:30
    ]
    assert all(r.late for r in reports)
    # A routine look while running: just due is not late; more than late_after behind is.
    done |= {("daily", "2026-10-07"), ("daily", "2026-10-08")}
    [fresh] = due(at(2026, 10, 10, 7, 31), ("daily",), done=done, since=since)
    assert (fresh.period_label, fresh.late) == ("2026-10-09", False)
    [stale] = due(at(2026, 10, 10, 9, 0), ("daily",), done=done, since=since)
    assert stale.late


def test_daily_report_at_its_time_for_yesterday() -> None:
    sched = ReportSchedule(daily_time="06:45", kinds=("daily",), catch_up_days=1)
    assert due(at(2026, 11, 18, 6, 44), sched=sched, done={("daily", "2026-11-16")}) == []
    [r] = due(at(2026, 11, 18, 6, 45), sched=sched, done={("daily", "2026-11-16")})
    assert (r.period_label, r.due_at, r.late) == ("2026-11-17", at(2026, 11, 18, 6, 45), False)
    assert r.deadline == date(2026, 11, 20)
    # On holidays too: hospitals do not close.
    [h] = due(at(2026, 10, 2, 6, 45), sched=sched, done={("daily", "2026-09-30")})
    assert h.period_label == "2026-10-01"


def test_weekly_report_on_the_set_weekday() -> None:
    friday = ReportSchedule(kinds=("weekly",), weekly_weekday=5, time="09:00")
    earlier = {("weekly", f"2026-W{w}") for w in range(38, 45)}
    # Week 45 is 2–8 Nov 2026; its report is due on Friday 13 Nov at 09:00.
    assert due(at(2026, 11, 13, 8, 59), sched=friday, done=earlier) == []
    [r] = due(at(2026, 11, 13, 9, 0), sched=friday, done=earlier)
    assert (r.period_label, r.due_at) == ("2026-W45", at(2026, 11, 13, 9, 0))
    assert r.deadline == date(2026, 11, 11)  # 9, 10, 11 Nov: due after the deadline, as configured
    monday = ReportSchedule(kinds=("weekly",))
    [m] = due(at(2026, 11, 9, 8, 0), sched=monday, done=earlier)
    assert (m.period_label, m.due_at) == ("2026-W45", at(2026, 11, 9, 8, 0))


def test_year_boundary_iso_week_label() -> None:
    sched = ReportSchedule(kinds=("weekly",))
    [r] = due(at(2027, 1, 4, 8), sched=sched, since=at(2026, 12, 28))
    assert r.period_label == "2026-W53"  # 28 Dec 2026 – 3 Jan 2027


def test_unknown_year_falls_back_to_weekdays_and_says_so() -> None:
    if CAL.year_known(2027):  # pragma: no cover - a newer chinese-calendar knows 2027
        pytest.skip("chinese-calendar knows 2027 already")
    [r] = due(at(2027, 1, 1, 8), ("yearly",))
    assert r.due_at.date() == date(2027, 1, 1) and r.calendar_guessed  # a Friday, New Year unknown
    configured = ChinaCalendar(WorkCalendar(WorkingHours(extra_holidays=(date(2027, 1, 1),)), TZ))
    assert due(at(2027, 1, 1, 8), ("yearly",), cal=configured) == []
    [r2] = due(at(2027, 1, 4, 8), ("yearly",), cal=configured)
    assert r2.due_at.date() == date(2027, 1, 4)


def test_done_reports_are_not_due_and_old_ones_stop_at_the_horizon() -> None:
    sched = ReportSchedule(kinds=("monthly",), catch_up_days=20)
    assert labels(due(at(2026, 11, 2, 8), sched=ReportSchedule(kinds=("monthly",)))) == [
        ("monthly", "2026-09"),  # due 8 Oct, 25 days ago: within the default 31 days
        ("monthly", "2026-10"),
    ]
    reports = due(at(2026, 11, 2, 8), sched=sched)
    assert labels(reports) == [("monthly", "2026-10")]  # September: beyond 20 days
    assert due(at(2026, 11, 2, 8), sched=sched, done={("monthly", "2026-10")}) == []
    since = due_reports(
        at(2026, 11, 2, 8),
        TZ,
        CAL,
        ReportSchedule(kinds=("daily",)),
        set(),
        None,
        monitoring_since=at(2026, 10, 30, 12),
    )
    assert labels(since) == [("daily", "2026-10-30"), ("daily", "2026-10-31"), ("daily", "2026-11-01")]


def test_inspection_missed_during_the_holiday_is_still_due_but_not_after_it() -> None:
    [r] = due(at(2026, 10, 3, 9), (INSPECTION,), down_since=at(2026, 9, 30, 12))
    assert r.reason == "国庆节前巡检" and r.late
    assert due(at(2026, 10, 8, 9), (INSPECTION,)) == []


def test_schedule_settings_are_validated_and_daily_time_comes_from_reports() -> None:
    with pytest.raises(ValidationError):
        ReportSchedule(time="8:00")
    with pytest.raises(ValidationError):
        ReportSchedule(weekly_weekday=0)

    class Reports:
        daily_time = "06:15"
        schedule = ReportSchedule(weekly_weekday=3)

    merged = schedule_from_config(Reports())
    assert (merged.daily_time, merged.weekly_weekday) == ("06:15", 3)
    with pytest.raises(ValueError):
        due_reports(datetime(2026, 1, 1), TZ, CAL, SCHED, set(), None)
