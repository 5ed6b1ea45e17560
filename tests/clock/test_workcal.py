"""Working-time deadlines against the real mainland China holiday schedule.

Calendar facts used below (each also checked against the chinesecalendar package in the test):

* 国务院办公厅关于2025年部分节假日安排的通知（国办发明电〔2024〕12号，2024-11-12）:
  端午节 5月31日（周六）至6月2日（周一）放假；
  国庆节、中秋节 10月1日（周三）至8日（周三）放假调休，9月28日（周日）、10月11日（周六）上班。
* 国务院办公厅关于2026年部分节假日安排的通知（2025-11-04，新华社受权发布）:
  春节 2月15日（周日）至23日（周一）放假调休，2月14日（周六）、2月28日（周六）上班。
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import chinese_calendar
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from agent.clock.timeutil import to_ms
from agent.clock.workcal import MAX_WORKING_SECONDS, Deadline, WorkCalendar
from agent.config.schema import WorkingHours

SH = ZoneInfo("Asia/Shanghai")
BERLIN = ZoneInfo("Europe/Berlin")
H = 3600.0
LEVEL3 = 4 * H  # 三级: restore within 4 h of working time
DEFAULT_SPANS = ((time(8, 0), time(12, 0)), (time(13, 30), time(17, 30)))
UNKNOWN_YEAR = 2035


def cal(tz: ZoneInfo = SH, **kw: object) -> WorkCalendar:
    return WorkCalendar(WorkingHours(**kw), tz)  # type: ignore[arg-type]


def sh(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=SH)


def package_knows(year: int) -> bool:
    try:
        chinese_calendar.is_workday(date(year, 1, 1))
    except NotImplementedError:
        return False
    return True


def reference_workday(d: date) -> bool:
    return bool(chinese_calendar.is_workday(d)) if package_knows(d.year) else d.weekday() < 5


# --- the calendar facts themselves ------------------------------------------------------------


def test_facts_match_the_state_council_notices() -> None:
    detail = chinese_calendar.get_holiday_detail
    # 2025 端午节: Saturday to Monday off.
    assert [detail(date(2025, 5, d))[0] for d in (30, 31)] == [False, True]
    assert detail(date(2025, 6, 2))[0] is True and detail(date(2025, 6, 3))[0] is False
    # 2025 国庆/中秋: 1–8 Oct off, Sunday 28 Sep and Saturday 11 Oct are working days.
    assert all(detail(date(2025, 10, d))[0] for d in range(1, 9))
    assert detail(date(2025, 9, 28)) == (False, "National Day")
    assert detail(date(2025, 10, 11)) == (False, "National Day")
    # 2026 春节: 15–23 Feb off, Saturday 14 Feb is a working day.
    assert all(detail(date(2026, 2, d))[0] for d in range(15, 24))
    assert detail(date(2026, 2, 14)) == (False, "Spring Festival")


def test_year_known_agrees_with_the_package() -> None:
    c = cal()
    assert [y for y in range(1990, 2060) if c.year_known(y)] == [
        y for y in range(1990, 2060) if package_knows(y)
    ]
    # chinesecalendar 1.11.0 ships 2004–2026; both years used below must be on the right side.
    assert c.year_known(2025) and c.year_known(2026)
    assert not c.year_known(UNKNOWN_YEAR)


def test_is_workday_uses_holidays_and_swapped_weekend_days() -> None:
    c = cal()
    assert c.is_workday(date(2025, 5, 30))  # Friday before 端午
    assert not c.is_workday(date(2025, 6, 2))  # Monday, 端午 holiday
    assert c.is_workday(date(2025, 9, 28))  # Sunday, 调休上班
    assert not c.is_workday(date(2025, 10, 8))  # Wednesday, 国庆 holiday
    assert not c.is_workday(date(2025, 6, 7))  # plain Saturday


# --- 三级 deadlines around holidays -------------------------------------------------------------


def test_level3_from_friday_1700_before_dragon_boat_lands_tuesday_1130() -> None:
    # 30 min on Friday (17:00–17:30); Sat–Mon are off; 3.5 h from Tuesday 08:00 → 11:30.
    d = cal().add_working_time(sh(2025, 5, 30, 17), LEVEL3)
    assert d == Deadline(sh(2025, 6, 3, 11, 30), ())
    assert d.at.tzinfo is SH


def test_level3_before_national_day_skips_the_whole_eight_day_break() -> None:
    d = cal().add_working_time(sh(2025, 9, 30, 17), LEVEL3)
    assert d.at == sh(2025, 10, 9, 11, 30)


def test_swapped_working_sunday_counts_as_working_time() -> None:
    c = cal()
    # Starting on 调休 Sunday 28 Sep 2025 at 09:00: 3 h in the morning, 1 h after lunch.
    assert c.add_working_time(sh(2025, 9, 28, 9), LEVEL3).at == sh(2025, 9, 28, 14, 30)
    # From Saturday evening the count starts Sunday 08:00, not Monday.
    assert c.add_working_time(sh(2025, 9, 27, 17), LEVEL3).at == sh(2025, 9, 28, 12)


def test_friday_before_spring_festival_continues_on_the_swapped_saturday() -> None:
    c = cal()
    assert c.add_working_time(sh(2026, 2, 13, 17), LEVEL3).at == sh(2026, 2, 14, 11, 30)
    # From that Saturday's close, 15–23 Feb are off: Tuesday 24 Feb 11:30.
    assert c.add_working_time(sh(2026, 2, 14, 17), LEVEL3).at == sh(2026, 2, 24, 11, 30)


def test_start_in_lunch_break_counts_from_1330() -> None:
    c = cal()
    assert c.add_working_time(sh(2025, 6, 4, 12, 30), H).at == sh(2025, 6, 4, 14, 30)
    # The full 4 h fit the afternoon exactly: the deadline is 17:30, not the next morning.
    assert c.add_working_time(sh(2025, 6, 4, 12, 30), LEVEL3).at == sh(2025, 6, 4, 17, 30)


def test_zero_duration_at_a_span_end_stays_there() -> None:
    c = cal()
    # 4 h from 13:30 ends at 17:30; adding nothing more must not jump to the next morning.
    end = c.add_working_time(sh(2025, 6, 4, 13, 30), LEVEL3).at
    assert end == sh(2025, 6, 4, 17, 30)
    assert c.add_working_time(end, 0).at == end
    assert c.add_working_time(sh(2025, 6, 4, 12), 0).at == sh(2025, 6, 4, 12)
    # Outside any span, zero still moves to where counting would begin.
    assert c.add_working_time(sh(2025, 6, 4, 12, 30), 0).at == sh(2025, 6, 4, 13, 30)


def test_span_ending_at_midnight_holds_a_zero_duration() -> None:
    c = cal(spans=["22:00-24:00"])
    end = c.add_working_time(sh(2025, 6, 4, 22), 2 * H).at
    assert end == sh(2025, 6, 5)
    assert c.add_working_time(end, 0).at == end  # not 22:00 of the next day
    assert c.add_working_time(end, H).at == sh(2025, 6, 5, 23)


def test_start_before_and_after_office_hours() -> None:
    c = cal()
    assert c.add_working_time(sh(2025, 6, 4, 6), H).at == sh(2025, 6, 4, 9)
    assert c.add_working_time(sh(2025, 6, 4, 18), H).at == sh(2025, 6, 5, 9)


def test_start_on_plain_saturday_counts_from_monday_0800() -> None:
    c = cal()
    assert c.add_working_time(sh(2025, 6, 7, 10), 0.5 * H).at == sh(2025, 6, 9, 8, 30)
    assert c.add_working_time(sh(2025, 6, 7, 10), LEVEL3).at == sh(2025, 6, 9, 12)


def test_start_given_in_utc_is_answered_in_site_time() -> None:
    d = cal().add_working_time(datetime(2025, 5, 30, 9, tzinfo=UTC), LEVEL3)  # 17:00 in Shanghai
    assert d.at == sh(2025, 6, 3, 11, 30)
    assert d.at.tzinfo is SH and d.at.hour == 11


def test_custom_spans() -> None:
    c = cal(spans=["09:00-17:00"])
    assert c.add_working_time(sh(2025, 5, 30, 16), 2 * H).at == sh(2025, 6, 3, 10)


# --- overrides and years the package does not know -------------------------------------------


def test_extra_holiday_overrides_a_known_year() -> None:
    c = cal(extra_holidays=[date(2025, 6, 3)])
    assert not c.is_workday(date(2025, 6, 3))
    assert c.add_working_time(sh(2025, 5, 30, 17), LEVEL3) == Deadline(sh(2025, 6, 4, 11, 30), ())


def test_extra_workday_overrides_a_statutory_holiday() -> None:
    c = cal(extra_workdays=[date(2025, 6, 2)])
    assert c.add_working_time(sh(2025, 5, 30, 17), LEVEL3).at == sh(2025, 6, 2, 11, 30)


def test_unknown_year_falls_back_to_monday_to_friday_and_says_so() -> None:
    c = cal()
    assert not c.year_known(UNKNOWN_YEAR)
    # Friday 28 Sep 2035: without configured dates, Monday 1 Oct is an ordinary working day.
    assert c.add_working_time(sh(2035, 9, 28, 17), LEVEL3) == Deadline(sh(2035, 10, 1, 11, 30), (2035,))


def test_unknown_year_uses_configured_holidays_and_workdays() -> None:
    golden_week = [date(2035, 10, d) for d in range(1, 6)]
    c = cal(extra_holidays=golden_week, extra_workdays=[date(2035, 9, 29)])
    assert c.is_workday(date(2035, 9, 29)) and not c.is_workday(date(2035, 10, 1))
    assert c.add_working_time(sh(2035, 9, 28, 17), LEVEL3) == Deadline(sh(2035, 9, 29, 11, 30), (2035,))
    assert c.add_working_time(sh(2035, 9, 29, 17), LEVEL3) == Deadline(sh(2035, 10, 8, 11, 30), (2035,))


def test_fallback_years_name_only_the_unknown_ones_crossed() -> None:
    c = cal()
    last = max(y for y in range(2004, 2100) if package_knows(y))
    inside = c.add_working_time(sh(last, 6, 1), H)
    assert inside.fallback_years == ()
    crossing = c.add_working_time(sh(last, 12, 31, 17), LEVEL3)
    assert crossing.at.year == last + 1
    assert crossing.fallback_years == (last + 1,)
    assert c.fallback_years_between(sh(last, 12, 1), sh(last + 2, 1, 5)) == (last + 1, last + 2)
    assert c.fallback_years_between(sh(last, 1, 1), sh(last, 12, 31)) == ()


def test_fallback_is_logged_once_per_year_per_calendar(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="sentinel.workcal")
    c = cal()
    c.add_working_time(sh(2025, 5, 30, 17), LEVEL3)
    assert caplog.records == []
    c.add_working_time(sh(UNKNOWN_YEAR, 3, 1, 9), 40 * H)
    c.working_seconds_between(sh(UNKNOWN_YEAR, 1, 1), sh(UNKNOWN_YEAR, 12, 31))
    c.is_workday(date(UNKNOWN_YEAR, 7, 1))
    msgs = [r.getMessage() for r in caplog.records]
    assert msgs == ["chinese-calendar does not know 2035: using Monday–Friday plus configured dates"]
    assert caplog.records[0].levelno == logging.WARNING
    cal().is_workday(date(UNKNOWN_YEAR, 7, 1))  # a second calendar says it again
    assert len(caplog.records) == 2


# --- working_seconds_between ------------------------------------------------------------------


def test_working_seconds_across_national_day_week() -> None:
    c = cal()
    # Sat 27 Sep – Sun 12 Oct 2025: working days are Sun 28, Mon 29, Tue 30 Sep and
    # Thu 9, Fri 10, Sat 11 Oct — six days of 8 h; a Monday–Friday count would give ten.
    assert c.working_seconds_between(sh(2025, 9, 27), sh(2025, 10, 13)) == 48 * H
    assert c.working_seconds_between(sh(2025, 9, 30, 17), sh(2025, 10, 9, 11, 30)) == LEVEL3


def test_working_seconds_partial_spans_and_antisymmetry() -> None:
    c = cal()
    a, b = sh(2025, 6, 4, 11), sh(2025, 6, 4, 14)
    assert c.working_seconds_between(a, b) == 1.5 * H
    assert c.working_seconds_between(b, a) == -1.5 * H
    assert c.working_seconds_between(a, a) == 0.0
    assert c.working_seconds_between(sh(2025, 6, 4, 12), sh(2025, 6, 4, 13, 30)) == 0.0


# --- is_working_time / next_working_instant ------------------------------------------------


def test_is_working_time_and_next_working_instant() -> None:
    c = cal()
    assert c.is_working_time(sh(2025, 6, 4, 8))
    assert not c.is_working_time(sh(2025, 6, 4, 12))  # span end is not inside it
    assert not c.is_working_time(sh(2025, 6, 2, 10))  # 端午 Monday
    assert c.is_working_time(sh(2025, 9, 28, 10))  # 调休 Sunday
    assert c.next_working_instant(sh(2025, 6, 4, 9)) == sh(2025, 6, 4, 9)
    assert c.next_working_instant(sh(2025, 6, 4, 12)) == sh(2025, 6, 4, 13, 30)
    assert c.next_working_instant(sh(2025, 5, 30, 18)) == sh(2025, 6, 3, 8)


# --- clock time (7×24 levels) ----------------------------------------------------------------


def test_add_clock_time_ignores_the_calendar() -> None:
    d = cal().add_clock_time(sh(2025, 9, 30, 23, 30), 2 * H)
    assert d == Deadline(sh(2025, 10, 1, 1, 30), ())
    assert d.at.tzinfo is SH


def test_add_clock_time_is_real_elapsed_time_across_dst() -> None:
    c = cal(BERLIN)
    d = c.add_clock_time(datetime(2025, 3, 30, 1, 30, tzinfo=BERLIN), H)
    # Wall-clock arithmetic would give the non-existent 02:30; one real hour later is 03:30 CEST.
    assert (d.at.hour, d.at.minute) == (3, 30)
    assert d.at.utcoffset() == timedelta(hours=2)


def test_deadline_ms_adapter_for_fault_records() -> None:
    c = cal()
    start = to_ms(sh(2025, 5, 30, 17))
    assert c.deadline_ms(start, LEVEL3, True) == (to_ms(sh(2025, 6, 3, 11, 30)), None)
    assert c.deadline_ms(start, 30 * 60, False) == (to_ms(sh(2025, 5, 30, 17, 30)), None)
    at, note = c.deadline_ms(to_ms(sh(2035, 9, 28, 17)), LEVEL3, True)
    assert at == to_ms(sh(2035, 10, 1, 11, 30))
    assert note is not None and "2035" in note


# --- DST: spans are wall times, lengths are real ------------------------------------------------

DST_DAYS = [date(2025, 3, 30), date(2025, 10, 26)]  # Sundays: Berlin springs forward / falls back


def test_whole_day_span_is_23_and_25_hours_on_dst_days() -> None:
    c = cal(BERLIN, spans=["00:00-24:00"], extra_workdays=DST_DAYS)
    spring, autumn = DST_DAYS
    b = lambda d, h=0: datetime(d.year, d.month, d.day, h, tzinfo=BERLIN)  # noqa: E731
    assert c.working_seconds_between(b(spring), b(spring + timedelta(days=1))) == 23 * H
    assert c.working_seconds_between(b(autumn), b(autumn + timedelta(days=1))) == 25 * H
    nxt = c.add_working_time(b(spring), 23 * H).at
    assert nxt == b(spring + timedelta(days=1))
    assert nxt.utcoffset() == timedelta(hours=2)


def test_span_edge_inside_the_spring_gap_is_not_counted_twice() -> None:
    # 02:30 does not exist on 30 Mar 2025 and maps to 03:30 CEST, past the next span's start
    # (03:00 CEST): the two spans together cover 01:00 CET to 04:00 CEST, two real hours.
    c = cal(BERLIN, spans=["01:00-02:30", "03:00-04:00"], extra_workdays=DST_DAYS)
    s = datetime(2025, 3, 30, 1, tzinfo=BERLIN)
    assert c.working_seconds_between(s, s.replace(hour=6)) == 2 * H
    assert c.add_working_time(s, 2 * H).at == s.replace(hour=4)


def test_gap_before_midnight_does_not_lend_time_to_the_next_day() -> None:
    # America/Nuuk springs forward at 01:00 UTC, Saturday 29 Mar 2025 23:00 → Sunday 00:00, so
    # Saturday 23:00–23:30 never happens; read naively it would be Sunday 00:00–00:30 again.
    nuuk = ZoneInfo("America/Nuuk")
    days = [date(2025, 3, 29), date(2025, 3, 30)]
    c = cal(nuuk, spans=["00:00-00:30", "23:00-23:30"], extra_workdays=days)
    sat, sun = datetime(2025, 3, 29, 22, tzinfo=nuuk), datetime(2025, 3, 30, 2, tzinfo=nuuk)
    assert c.working_seconds_between(sat, sun) == 0.5 * H
    assert c.add_working_time(sat, 0.5 * H).at == datetime(2025, 3, 30, 0, 30, tzinfo=nuuk)


def test_span_across_the_dst_change_has_its_real_length() -> None:
    c = cal(BERLIN, spans=["01:00-04:00", "08:00-12:00"], extra_workdays=DST_DAYS)
    spring, autumn = DST_DAYS
    s = datetime(spring.year, spring.month, spring.day, 1, tzinfo=BERLIN)
    assert c.working_seconds_between(s, s.replace(hour=5)) == 2 * H  # 01:00 CET → 04:00 CEST
    assert c.add_working_time(s, 2 * H).at == s.replace(hour=4)
    assert c.add_working_time(s, 2.5 * H).at == s.replace(hour=8, minute=30)
    a = datetime(autumn.year, autumn.month, autumn.day, 1, tzinfo=BERLIN)
    assert c.working_seconds_between(a, a.replace(hour=5)) == 4 * H  # 01:00 CEST → 04:00 CET
    assert c.add_working_time(a, 4 * H).at == a.replace(hour=4)
    # 2.5 h after 01:00 CEST is the second 02:30 of the night (CET, fold=1).
    late = c.add_working_time(a, 2.5 * H).at
    assert (late.hour, late.minute, late.fold) == (2, 30, 1)
    assert late.utcoffset() == timedelta(hours=1)


# --- validation and limits ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "kw",
    [
        {"spans": []},
        {"spans": ["8:00-12:00"]},
        {"spans": ["12:00-08:00"]},
        {"spans": ["08:00-08:00"]},
        {"spans": ["08:00-24:30"]},
        {"spans": ["08:60-12:00"]},
        {"spans": ["08:00-12:00", "11:00-14:00"]},
        {"extra_holidays": [date(2035, 1, 1)], "extra_workdays": [date(2035, 1, 1)]},
    ],
)
def test_invalid_working_hours_are_rejected(kw: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        WorkingHours(**kw)  # type: ignore[arg-type]


def test_working_hours_accept_yaml_shapes_and_are_frozen() -> None:
    wh = WorkingHours.model_validate(
        {"spans": ["13:30-17:30", "08:00-12:00"], "extra_holidays": ["2035-10-01"]}
    )
    assert wh.minutes() == ((480, 720), (810, 1050))
    assert wh.extra_holidays == (date(2035, 10, 1),)
    assert WorkingHours().spans == ("08:00-12:00", "13:30-17:30")
    with pytest.raises(ValidationError):
        wh.spans = ("00:00-24:00",)  # type: ignore[misc]


@pytest.mark.parametrize("seconds", [-1.0, float("nan"), float("inf"), MAX_WORKING_SECONDS + 1])
def test_bad_durations_are_refused(seconds: float) -> None:
    with pytest.raises(ValueError):
        cal().add_working_time(sh(2025, 6, 4, 9), seconds)


def test_negative_clock_time_and_naive_datetimes_are_refused() -> None:
    c = cal()
    with pytest.raises(ValueError):
        c.add_clock_time(sh(2025, 6, 4, 9), -1)
    with pytest.raises(ValueError, match="naive"):
        c.add_working_time(datetime(2025, 6, 4, 9), H)
    with pytest.raises(ValueError, match="naive"):
        c.working_seconds_between(datetime(2025, 6, 4, 9), sh(2025, 6, 4, 10))


def test_limits_keep_loops_bounded() -> None:
    c = cal()
    far = c.add_working_time(sh(2025, 1, 1), MAX_WORKING_SECONDS)  # the limit itself is fine
    assert c.working_seconds_between(sh(2025, 1, 1), far.at) == MAX_WORKING_SECONDS
    with pytest.raises(ValueError):
        c.working_seconds_between(sh(2025, 1, 1), sh(2050, 1, 1))
    # One working minute a day can never reach a year of working time within the scan limit.
    with pytest.raises(ValueError):
        cal(spans=["08:00-08:01"]).add_working_time(sh(2025, 1, 1), MAX_WORKING_SECONDS)


# --- properties --------------------------------------------------------------------------------

CAL = cal()
# Starts around real holidays (2025–2026 are known to the package) and into the fallback year
# after, at minute resolution plus odd seconds, so span edges are hit often.
starts = st.builds(
    lambda day, minute, second: sh(2025, 1, 1) + timedelta(days=day, minutes=minute, seconds=second),
    st.integers(0, 2 * 366 + 30),
    st.integers(0, 1439),
    st.sampled_from([0, 0, 0, 1, 59]),
)
# Whole milliseconds: exact in timedelta, so additivity can be checked exactly. Half-hour
# multiples make results land exactly on span ends, where off-by-one-span bugs live.
durations = st.one_of(
    st.integers(0, 200 * 3600 * 1000).map(lambda ms: ms / 1000),
    st.integers(0, 400).map(lambda n: n * 1800.0),
)


def reference_seconds(a: datetime, b: datetime) -> float:
    """Independent wall-clock count for Asia/Shanghai (no DST): overlap with each day's spans."""
    total = timedelta(0)
    d = a.astimezone(SH).date()
    while d <= b.astimezone(SH).date():
        if reference_workday(d):
            for s, e in DEFAULT_SPANS:
                lo = max(datetime.combine(d, s, SH), a)
                hi = min(datetime.combine(d, e, SH), b)
                if hi > lo:
                    total += hi - lo
        d += timedelta(days=1)
    return total.total_seconds()


def in_closed_span(at: datetime) -> bool:
    local = at.astimezone(SH)
    return reference_workday(local.date()) and any(s <= local.time() <= e for s, e in DEFAULT_SPANS)


def in_open_span(at: datetime) -> bool:
    local = at.astimezone(SH)
    return reference_workday(local.date()) and any(s < local.time() < e for s, e in DEFAULT_SPANS)


@given(starts, durations)
@settings(max_examples=300, deadline=None)
def test_result_lies_in_a_working_span_and_holds_exactly_the_duration(start: datetime, w: float) -> None:
    d = CAL.add_working_time(start, w)
    assert d.at >= start
    assert in_closed_span(d.at)
    assert reference_seconds(start, d.at) == w
    assert CAL.working_seconds_between(start, d.at) == w


@given(starts, durations)
@settings(max_examples=200, deadline=None)
def test_result_is_the_earliest_such_instant(start: datetime, w: float) -> None:
    at = CAL.add_working_time(start, w).at
    if w > 0:
        # A moment earlier there was still working time left to count.
        assert CAL.working_seconds_between(start, at - timedelta(milliseconds=1)) < w
    elif in_closed_span(start):
        assert at == start
    else:
        # Nothing to count: the next span start, with no working time skipped on the way.
        assert at > start
        assert at.astimezone(SH).time() in {s for s, _ in DEFAULT_SPANS}
        assert reference_seconds(start, at) == 0


@given(starts, durations, durations)
@settings(max_examples=200, deadline=None)
def test_monotonic_in_the_duration(start: datetime, a: float, b: float) -> None:
    lo, hi = sorted((a, b))
    assert CAL.add_working_time(start, lo).at <= CAL.add_working_time(start, hi).at


@given(starts, durations, durations)
@settings(max_examples=200, deadline=None)
def test_additive(start: datetime, a: float, b: float) -> None:
    step = CAL.add_working_time(start, a).at
    assert CAL.add_working_time(step, b).at == CAL.add_working_time(start, a + b).at


@given(starts, st.integers(0, 40 * 24 * 3600))
@settings(max_examples=300, deadline=None)
def test_working_seconds_between_is_the_inverse(a: datetime, gap: int) -> None:
    b = a + timedelta(seconds=gap)
    w = CAL.working_seconds_between(a, b)
    assert w == reference_seconds(a, b)
    t = CAL.add_working_time(a, w).at
    assert CAL.working_seconds_between(a, t) == w
    # Between t and b nothing is working time, so t is b or the end of the last span before b
    # (or, with no working time at all, the next working start after a).
    assert CAL.working_seconds_between(min(t, b), max(t, b)) == 0
    if w > 0:
        assert t <= b
    if in_open_span(b):
        assert t == b


berlin_cal = cal(
    BERLIN, spans=["00:30-02:30", "03:00-03:30", "08:00-12:00", "22:00-24:00"], extra_workdays=DST_DAYS
)
berlin_starts = st.builds(
    lambda day, minute: datetime(2025, 3, 27, tzinfo=UTC) + timedelta(days=day, minutes=minute),
    st.sampled_from([0, 1, 2, 3, 4, 210, 211, 212, 213, 214]),  # around 30 Mar and 26 Oct 2025
    st.integers(0, 1439),
)


@given(berlin_starts, durations, durations)
@settings(max_examples=300, deadline=None)
def test_properties_hold_across_dst_changes(start: datetime, a: float, b: float) -> None:
    c = berlin_cal
    step = c.add_working_time(start, a).at
    total = c.add_working_time(start, a + b).at
    assert total.tzinfo is BERLIN
    # Same-zone comparisons use wall time and ignore fold, so compare instants in UTC.
    assert c.add_working_time(step, b).at.astimezone(UTC) == total.astimezone(UTC)
    assert step.astimezone(UTC) <= total.astimezone(UTC)
    # a + b is a float sum (0.001 + 0.012 != 0.013); durations are whole ms, so 1 µs is exact enough.
    assert c.working_seconds_between(start, total) == pytest.approx(a + b, abs=1e-6)
    assert c.working_seconds_between(start, step) == a
    # The result is working time or the end of a span (an instant just before it is working).
    just_before = total.astimezone(UTC) - timedelta(microseconds=1)  # real time, not wall time
    assert c.is_working_time(total) or c.is_working_time(just_before)
