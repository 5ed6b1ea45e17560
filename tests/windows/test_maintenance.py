"""Maintenance windows: schedule forms, scoping, DST rules, and the active/covering/boundary trio."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from agent.config.windows import WindowSpec
from agent.windows import maintenance as m
from agent.windows.maintenance import MaintenanceSchedule, TooManyOccurrences, Window, occurrences

SH = ZoneInfo("Asia/Shanghai")
BERLIN = ZoneInfo("Europe/Berlin")
H = 3_600_000
MIN = 60_000


def utc(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> int:
    return int(datetime(y, mo, d, h, mi, tzinfo=UTC).timestamp()) * 1000


def local(tz: ZoneInfo, y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> int:
    return int(datetime(y, mo, d, h, mi, tzinfo=tz).timestamp()) * 1000


def spec(**kw: Any) -> WindowSpec:
    base: dict[str, Any] = {"name": "w", "systems": ["HIS"], "reason": "升级"}
    base.update(kw)
    return WindowSpec.model_validate(base)


def starts(windows: list[Window], tz: ZoneInfo) -> list[str]:
    return [datetime.fromtimestamp(w.start_ms / 1000, tz).strftime("%Y-%m-%d %a %H:%M") for w in windows]


# --------------------------------------------------------------------------------------
# one-off


def test_one_off_boundaries_start_inclusive_end_exclusive() -> None:
    s = spec(start="2025-05-01 22:00", end="2025-05-02 01:00", ticket="CHG-1")
    sched = MaintenanceSchedule([s], SH)
    start, end = 1746108000000, 1746108000000 + 3 * H  # 2025-05-01T14:00Z: 22:00 at UTC+8
    assert sched.active(start - 1, "HIS", "his-login") is None
    w = sched.active(start, "HIS", "his-login")
    assert w == Window("w", start, end, ("HIS",), (), "升级", "CHG-1")
    assert sched.active(end - 1, "HIS", "his-login") == w
    assert sched.active(end, "HIS", "his-login") is None


def test_one_off_iso_with_offset_and_yaml_datetime() -> None:
    a = occurrences(spec(start="2025-05-01T22:00+08:00", end="2025-05-01T23:00+08:00"), BERLIN, 0, 2**42)
    # An explicit offset wins over the site zone.
    assert [(w.start_ms, w.end_ms) for w in a] == [(1746108000000, 1746108000000 + H)]
    # PyYAML turns "2025-05-01 22:00:00" into a naive datetime: that is site time.
    raw = yaml.safe_load("start: 2025-05-01 22:00:00\nend: 2025-05-01 23:30:00")
    b = occurrences(spec(**raw), SH, 0, 2**42)
    assert [(w.start_ms, w.end_ms) for w in b] == [(1746108000000, 1746108000000 + 90 * MIN)]


def test_one_off_occurrences_respect_the_range() -> None:
    s = spec(start="2025-05-01 22:00", end="2025-05-02 01:00")
    start = 1746108000000
    assert occurrences(s, SH, start + 3 * H, start + 5 * H) == []  # range starts at the end
    assert occurrences(s, SH, start - H, start) == []  # range ends at the start
    assert len(occurrences(s, SH, start + H, start + H + 1)) == 1  # began before the range


# --------------------------------------------------------------------------------------
# recurring forms


def test_weekly_sunday_0200_for_2h_in_shanghai_exact_utc() -> None:
    s = spec(weekly={"days": ["sun"], "at": "02:00", "duration": "2h"})
    ws = occurrences(s, SH, utc(2025, 5, 26), utc(2025, 6, 16))
    # 2025-06-01 is a Sunday; 02:00 at UTC+8 is 18:00 UTC on Saturday.
    assert [(w.start_ms, w.end_ms) for w in ws] == [
        (1748714400000, 1748721600000),
        (1748714400000 + 7 * 24 * H, 1748721600000 + 7 * 24 * H),
        (1748714400000 + 14 * 24 * H, 1748721600000 + 14 * 24 * H),
    ]
    sched = MaintenanceSchedule([s], SH)
    assert sched.active(1748714400000 - 1, "HIS", "c") is None
    assert sched.active(1748714400000, "HIS", "c") is not None
    assert sched.active(1748721600000, "HIS", "c") is None


def test_weekly_several_days_and_short_time_form() -> None:
    s = spec(weekly={"days": ["Tue", "sat"], "at": "3:05", "duration": 600})
    ws = occurrences(s, SH, local(SH, 2025, 6, 2), local(SH, 2025, 6, 9))
    assert starts(ws, SH) == ["2025-06-03 Tue 03:05", "2025-06-07 Sat 03:05"]
    assert all(w.end_ms - w.start_ms == 10 * MIN for w in ws)


def test_monthly_last_day() -> None:
    s = spec(monthly={"day": "last", "at": "23:00", "duration": "2h"})
    ws = occurrences(s, SH, local(SH, 2024, 1, 1), local(SH, 2025, 5, 1))
    days = [datetime.fromtimestamp(w.start_ms / 1000, SH).date() for w in ws]
    # 2023-12-31 23:00 runs until 01:00 on the first day of the range: it overlaps, so it is listed.
    assert days[:5] == [
        date(2023, 12, 31),
        date(2024, 1, 31),
        date(2024, 2, 29),
        date(2024, 3, 31),
        date(2024, 4, 30),
    ]
    assert date(2025, 2, 28) in days and days[-1] == date(2025, 4, 30) and len(days) == 17
    # Runs into the next month's first day, real duration.
    sched = MaintenanceSchedule([s], SH)
    assert sched.active(local(SH, 2025, 3, 1, 0, 59), "HIS", "c") is not None
    assert sched.active(local(SH, 2025, 3, 1, 1, 0), "HIS", "c") is None


def test_monthly_day_31_skips_short_months() -> None:
    s = spec(monthly={"day": 31, "at": "01:00", "duration": "1h"})
    ws = occurrences(s, SH, local(SH, 2025, 1, 1), local(SH, 2026, 1, 1))
    months = [datetime.fromtimestamp(w.start_ms / 1000, SH).month for w in ws]
    assert months == [1, 3, 5, 7, 8, 10, 12]


def test_cron_weekdays_2200_for_3h_crosses_midnight() -> None:
    s = spec(cron="0 22 * * 1-5", duration="3h")
    # Mon 2025-06-02 .. Mon 2025-06-09: crontab 1-5 is Monday to Friday (APScheduler alone
    # would read it as Tuesday to Saturday).
    ws = occurrences(s, SH, local(SH, 2025, 6, 2), local(SH, 2025, 6, 9))
    assert starts(ws, SH) == [
        f"2025-06-0{d} {n} 22:00"
        for d, n in zip(range(2, 7), ["Mon", "Tue", "Wed", "Thu", "Fri"], strict=True)
    ]
    assert all(w.end_ms - w.start_ms == 3 * H for w in ws)
    sched = MaintenanceSchedule([s], SH)
    assert sched.active(local(SH, 2025, 6, 7, 0, 59), "HIS", "c") is not None  # Friday's, after midnight
    assert sched.active(local(SH, 2025, 6, 7, 1, 0), "HIS", "c") is None
    assert sched.active(local(SH, 2025, 6, 7, 22, 30), "HIS", "c") is None  # Saturday: none
    assert sched.active(local(SH, 2025, 6, 9, 0, 30), "HIS", "c") is None  # Sunday night: none
    assert sched.active(local(SH, 2025, 6, 10, 0, 30), "HIS", "c") is not None  # Monday's


@pytest.mark.parametrize(
    ("dow", "expected"),
    [
        ("0", ["Sun"]),
        ("7", ["Sun"]),
        ("sun", ["Sun"]),
        ("5-7", ["Fri", "Sat", "Sun"]),
        ("*/2", ["Tue", "Thu", "Sat", "Sun"]),
        ("mon,wed-fri", ["Mon", "Wed", "Thu", "Fri"]),
        ("0-7", ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]),
    ],
)
def test_cron_day_of_week_uses_crontab_numbering(dow: str, expected: list[str]) -> None:
    ws = occurrences(
        spec(cron=f"0 3 * * {dow}", duration="1h"), SH, local(SH, 2025, 6, 2), local(SH, 2025, 6, 9)
    )
    assert [s.split()[1] for s in starts(ws, SH)] == expected


def test_cron_is_parsed_once_per_schedule(monkeypatch: pytest.MonkeyPatch) -> None:
    sched = MaintenanceSchedule([spec(cron="0 22 * * 1-5", duration="3h")], SH)
    from apscheduler.triggers.cron import CronTrigger

    calls = []
    real = CronTrigger.from_crontab
    monkeypatch.setattr(CronTrigger, "from_crontab", lambda *a, **k: calls.append(a) or real(*a, **k))
    t = local(SH, 2025, 6, 3, 23)
    for i in range(1000):
        assert sched.active(t + i * 1000, "HIS", "c") is not None
    assert calls == []


def test_active_reuses_the_days_occurrences(monkeypatch: pytest.MonkeyPatch) -> None:
    sched = MaintenanceSchedule([spec(weekly={"days": ["tue"], "at": "22:00", "duration": "3h"})], SH)
    calls: list[tuple[int, int]] = []
    real = m._Compiled.occurrences

    def counting(self: Any, a: int, b: int) -> list[Window]:
        calls.append((a, b))
        return real(self, a, b)

    monkeypatch.setattr(m._Compiled, "occurrences", counting)
    t = local(SH, 2025, 6, 3, 22, 30)
    for i in range(500):
        sched.active(t + i * 1000, "HIS", f"check-{i % 7}")
    assert len(calls) == 1  # one computation per spec and day, shared by every check


def test_valid_from_and_valid_until_inclusive_by_start_date() -> None:
    s = spec(
        weekly={"days": ["sun"], "at": "23:00", "duration": "2h"},
        valid_from="2025-06-08",
        valid_until=date(2025, 6, 22),
    )
    ws = occurrences(s, SH, local(SH, 2025, 5, 1), local(SH, 2025, 8, 1))
    assert starts(ws, SH) == ["2025-06-08 Sun 23:00", "2025-06-15 Sun 23:00", "2025-06-22 Sun 23:00"]
    sched = MaintenanceSchedule([s], SH)
    # The last occurrence keeps its full duration past valid_until.
    assert sched.active(local(SH, 2025, 6, 23, 0, 30), "HIS", "c") is not None
    assert sched.active(local(SH, 2025, 6, 29, 23, 30), "HIS", "c") is None
    assert sched.active(local(SH, 2025, 6, 1, 23, 30), "HIS", "c") is None


def test_valid_window_on_cron_clamps_enumeration() -> None:
    s = spec(cron="0 1 * * *", duration="1h", valid_from=date(2025, 6, 10), valid_until=date(2025, 6, 11))
    ws = occurrences(s, SH, local(SH, 2020, 1, 1), local(SH, 2030, 1, 1))
    assert starts(ws, SH) == ["2025-06-10 Tue 01:00", "2025-06-11 Wed 01:00"]


def test_too_many_occurrences_is_refused() -> None:
    s = spec(cron="*/15 * * * *", duration="5m")
    assert len(occurrences(s, SH, local(SH, 2025, 1, 1), local(SH, 2026, 1, 1))) == 365 * 96
    with pytest.raises(TooManyOccurrences):
        occurrences(s, SH, local(SH, 2025, 1, 1), local(SH, 2028, 1, 1))


# --------------------------------------------------------------------------------------
# scoping


def test_system_window_covers_its_checks_check_window_covers_that_check() -> None:
    by_system = spec(name="his-upgrade", systems=["HIS"], start="2025-05-01 22:00", end="2025-05-02 01:00")
    by_check = spec(
        name="backup-move", systems=[], checks=["db-backup"], start="2025-05-01 22:00", end="2025-05-02 01:00"
    )
    sched = MaintenanceSchedule([by_system, by_check], SH)
    t = local(SH, 2025, 5, 1, 23)
    assert sched.active(t, "HIS", "his-login").name == "his-upgrade"  # type: ignore[union-attr]
    assert sched.active(t, "EMR", "emr-login") is None
    assert sched.active(t, None, "his-login") is None  # a check outside any system
    assert sched.active(t, None, "db-backup").name == "backup-move"  # type: ignore[union-attr]
    assert sched.active(t, "EMR", "db-backup").name == "backup-move"  # type: ignore[union-attr]
    assert sched.active(t, "EMR", "db-backup-2") is None
    assert sched.covering(t - 2 * H, t + 5 * H, "EMR", "emr-login") == []
    assert sched.next_boundary(t, "EMR", "emr-login") is None


# --------------------------------------------------------------------------------------
# covering, windows, next_boundary


def test_covering_clips_and_merges_two_specs() -> None:
    a = spec(name="A", systems=["HIS"], start="2025-05-01 10:00", end="2025-05-01 12:00")
    b = spec(name="B", systems=[], checks=["his-login"], start="2025-05-01 11:00", end="2025-05-01 14:00")
    c = spec(name="C", systems=["HIS"], start="2025-05-01 16:00", end="2025-05-01 17:00")
    sched = MaintenanceSchedule([a, b, c], SH)
    t = lambda h, mi=0: local(SH, 2025, 5, 1, h, mi)  # noqa: E731
    spans = sched.covering(t(10, 30), t(16, 30), "HIS", "his-login")
    assert [(s, e, w.name) for s, e, w in spans] == [
        (t(10, 30), t(12), "A"),  # clipped at the range start; B's overlap counted once
        (t(12), t(14), "B"),
        (t(16), t(16, 30), "C"),  # clipped at the range end, not merged across the gap
    ]
    assert sum(e - s for s, e, _ in spans) == 4 * H
    # Another check of HIS is not named by B: only A and C.
    assert [w.name for _, _, w in sched.covering(t(0), t(23), "HIS", "his-db")] == ["A", "C"]
    # windows() lists every occurrence unmerged, for reports that justify each exclusion.
    assert [w.name for w in sched.windows(t(0), t(23), "HIS", "his-login")] == ["A", "B", "C"]
    assert [w.name for w in sched.windows(t(0), t(23))] == ["A", "B", "C"]
    assert [w.name for w in sched.windows(t(0), t(11))] == ["A"]  # same start, shorter range


def test_covering_window_inside_another_and_adjacent_occurrences() -> None:
    outer = spec(name="outer", start="2025-05-01 10:00", end="2025-05-01 18:00")
    inner = spec(name="inner", start="2025-05-01 11:00", end="2025-05-01 12:00")
    sched = MaintenanceSchedule([inner, outer], SH)
    t = lambda h: local(SH, 2025, 5, 1, h)  # noqa: E731
    assert [(s, e, w.name) for s, e, w in sched.covering(t(0), t(23), "HIS", "c")] == [
        (t(10), t(18), "outer")
    ]
    assert sched.active(t(11), "HIS", "c").name == "outer"  # type: ignore[union-attr]
    # Daily 24 h windows touch end to start: separate occurrences, no gap between them.
    daily = MaintenanceSchedule([spec(cron="0 0 * * *", duration="24h")], SH)
    spans = daily.covering(t(6), t(6) + 48 * H, "HIS", "c")
    assert [(e - s) // H for s, e, _ in spans] == [18, 24, 6]
    assert all(spans[i][1] == spans[i + 1][0] for i in range(2))


def test_next_boundary() -> None:
    a = spec(name="A", start="2025-05-01 10:00", end="2025-05-01 12:00")
    b = spec(name="B", start="2025-05-01 11:00", end="2025-05-01 14:00")
    sched = MaintenanceSchedule([a, b], SH)
    t = lambda h, mi=0: local(SH, 2025, 5, 1, h, mi)  # noqa: E731
    assert sched.next_boundary(t(8), "HIS", "c") == t(10)
    assert sched.next_boundary(t(10), "HIS", "c") == t(12)  # strictly after; B's start changes nothing
    assert sched.next_boundary(t(10, 30), "HIS", "c") == t(12)
    assert sched.next_boundary(t(12), "HIS", "c") == t(14)  # A hands over to B
    assert sched.next_boundary(t(14), "HIS", "c") is None
    weekly = MaintenanceSchedule([spec(weekly={"days": ["sun"], "at": "02:00", "duration": "2h"})], SH)
    # From a Monday the next boundary is six days away (beyond the first search horizon).
    assert weekly.next_boundary(local(SH, 2025, 6, 2, 12), "HIS", "c") == local(SH, 2025, 6, 8, 2)
    assert weekly.next_boundary(local(SH, 2025, 6, 8, 2), "HIS", "c") == local(SH, 2025, 6, 8, 4)
    # Cached answer is reused but never returned for an instant at or past it.
    assert weekly.next_boundary(local(SH, 2025, 6, 8, 4), "HIS", "c") == local(SH, 2025, 6, 15, 2)
    far = MaintenanceSchedule([spec(start="2027-01-01 00:00", end="2027-01-02 00:00")], SH)
    assert far.next_boundary(local(SH, 2025, 6, 1), "HIS", "c") == local(SH, 2027, 1, 1)


# --------------------------------------------------------------------------------------
# DST (Europe/Berlin: spring forward 2025-03-30 02:00 -> 03:00, fall back 2025-10-26 03:00 -> 02:00)


def test_dst_spring_forward_start_in_the_gap_starts_when_the_clock_jumps() -> None:
    s = spec(weekly={"days": ["sun"], "at": "02:30", "duration": "2h"})
    ws = occurrences(s, BERLIN, utc(2025, 3, 22), utc(2025, 4, 7))
    assert [(w.start_ms, w.end_ms) for w in ws] == [
        (utc(2025, 3, 23, 1, 30), utc(2025, 3, 23, 3, 30)),  # 02:30 CET
        (utc(2025, 3, 30, 1), utc(2025, 3, 30, 3)),  # 03:00 CEST, the jump; 2 h real time
        (utc(2025, 4, 6, 0, 30), utc(2025, 4, 6, 2, 30)),  # 02:30 CEST
    ]
    assert (ws[1].start_ms, ws[1].end_ms) == (1743296400000, 1743303600000)


def test_dst_duration_is_real_elapsed_time() -> None:
    s = spec(weekly={"days": ["sun"], "at": "01:00", "duration": "3h"})
    spring = occurrences(s, BERLIN, utc(2025, 3, 29), utc(2025, 3, 31))
    # 01:00 CET to 05:00 CEST on the wall clock: three real hours.
    assert [(w.start_ms, w.end_ms) for w in spring] == [(utc(2025, 3, 30, 0), utc(2025, 3, 30, 3))]
    assert datetime.fromtimestamp(spring[0].end_ms / 1000, BERLIN).hour == 5
    autumn = occurrences(s, BERLIN, utc(2025, 10, 25), utc(2025, 10, 27))
    # 01:00 CEST to 03:00 CET on the wall clock: three real hours.
    assert [(w.start_ms, w.end_ms) for w in autumn] == [(utc(2025, 10, 25, 23), utc(2025, 10, 26, 2))]
    sched = MaintenanceSchedule([s], BERLIN)
    assert (
        sum(e - st_ for st_, e, _ in sched.covering(utc(2025, 10, 25), utc(2025, 10, 27), "HIS", "c"))
        == 3 * H
    )


def test_dst_fall_back_repeated_hour_starts_once_on_the_first_pass() -> None:
    for s in (
        spec(cron="30 2 * * *", duration="1h"),  # APScheduler in the zone itself would fire twice
        spec(weekly={"days": ["sun"], "at": "02:30", "duration": "1h"}),
    ):
        ws = occurrences(s, BERLIN, utc(2025, 10, 25, 12), utc(2025, 10, 26, 12))
        assert [(w.start_ms, w.end_ms) for w in ws] == [(1761438600000, 1761442200000)]  # 00:30-01:30 UTC
        sched = MaintenanceSchedule([s], BERLIN)
        assert sched.active(utc(2025, 10, 26, 1, 29), "HIS", "c") is not None  # 02:29 CET (second pass)
        assert sched.active(utc(2025, 10, 26, 1, 30), "HIS", "c") is None  # 02:30 CET: no second window


def test_dst_cron_hourly_through_both_changes() -> None:
    s = spec(cron="0 * * * *", duration="30m")
    spring = occurrences(s, BERLIN, local(BERLIN, 2025, 3, 30), local(BERLIN, 2025, 3, 31))
    # 23 real hours that day; the missing 02:00 starts at the jump, which is also 03:00.
    assert len(spring) == 24 and len({w.start_ms for w in spring}) == 23
    autumn = occurrences(s, BERLIN, local(BERLIN, 2025, 10, 26), local(BERLIN, 2025, 10, 27))
    # 25 real hours; the repeated 02:00 starts once.
    assert len(autumn) == 24
    assert utc(2025, 10, 26, 0) in {w.start_ms for w in autumn}
    assert utc(2025, 10, 26, 1) not in {w.start_ms for w in autumn}


def test_dst_one_off_local_times() -> None:
    s = spec(start="2025-03-30 02:15", end="2025-03-30 04:00")
    assert [(w.start_ms, w.end_ms) for w in occurrences(s, BERLIN, 0, 2**42)] == [
        (utc(2025, 3, 30, 1), utc(2025, 3, 30, 2))
    ]
    # Both ends inside the gap: no time on the clock, no window.
    assert occurrences(spec(start="2025-03-30 02:10", end="2025-03-30 02:40"), BERLIN, 0, 2**42) == []


# --------------------------------------------------------------------------------------
# validation


def errors(**kw: Any) -> list[tuple[tuple[Any, ...], str]]:
    with pytest.raises(ValidationError) as ei:
        spec(**kw)
    return [(tuple(e["loc"]), e["msg"]) for e in ei.value.errors()]


@pytest.mark.parametrize(
    ("kw", "loc", "text"),
    [
        ({}, (), "give a schedule"),
        (
            {
                "weekly": {"days": ["sun"], "at": "02:00", "duration": "1h"},
                "cron": "0 0 * * *",
                "duration": "1h",
            },
            (),
            "exactly one schedule form, found weekly and cron",
        ),
        ({"start": "2025-01-01 10:00", "end": "2025-01-01 09:00", "weekly": None}, (), "must be after start"),
        ({"start": "2025-01-01 10:00", "end": "2025-01-01 10:00"}, (), "must be after start"),
        ({"start": "2025-01-01 10:00"}, (), "needs both start and end"),
        ({"start": "2025-01-01 10:00", "end": "2025-01-01T12:00+08:00"}, (), "the same way"),
        ({"start": "2025-01-01", "end": "2025-01-02 10:00"}, ("start",), "YYYY-MM-DD HH:MM"),
        ({"start": "tomorrow", "end": "2025-01-02 10:00"}, ("start",), "YYYY-MM-DD HH:MM"),
        (
            {"start": "2025-01-01 10:00", "end": "2025-01-02 10:00", "valid_from": "2025-01-01"},
            (),
            "recurring",
        ),
        ({"cron": "0 0 * * *", "duration": "1h", "reason": "  "}, ("reason",), "reason must not be empty"),
        (
            {"cron": "0 0 * * *", "duration": "1h", "approved_by": "张工"},
            (),
            "approved_by was replaced by approvals: {甲方: 姓名, 乙方: 姓名}",
        ),
        (
            {"cron": "0 0 * * *", "duration": "1h", "approvals": {"甲方": "王主任", "乙方": "王主任"}},
            ("approvals",),
            "two different people",
        ),
        (
            {"cron": "0 0 * * *", "duration": "1h", "approvals": {"丙方": "王主任"}},
            ("approvals", "丙方"),
            "Extra inputs",
        ),
        (
            {"cron": "0 0 * * *", "duration": "1h", "systems": [], "checks": []},
            (),
            "at least one system or check",
        ),
        ({"cron": "61 0 * * *", "duration": "1h"}, ("cron",), "invalid cron expression"),
        ({"cron": "0 0 * *", "duration": "1h"}, ("cron",), "5 fields"),
        ({"cron": "0 0 * * 8", "duration": "1h"}, ("cron",), "day-of-week"),
        ({"cron": "0 0 31 2 *", "duration": "1h"}, ("cron",), "never fires"),
        ({"cron": "0 0 1 * 1", "duration": "1h"}, ("cron",), "ambiguous"),
        ({"cron": "* * * * *", "duration": "1m"}, ("cron",), "at most every 15 minutes"),
        ({"cron": "0 0 * * *"}, (), "needs a duration"),
        (
            {"weekly": {"days": ["sun"], "at": "02:00", "duration": "1h"}, "duration": "1h"},
            (),
            "goes with cron",
        ),
        (
            {"weekly": {"days": ["sun"], "at": "24:00", "duration": "1h"}},
            ("weekly", "at"),
            "not a time of day",
        ),
        ({"weekly": {"days": [], "at": "02:00", "duration": "1h"}}, ("weekly", "days"), "at least 1"),
        ({"weekly": {"days": ["sunday"], "at": "02:00", "duration": "1h"}}, ("weekly", "days", 0), "'sun'"),
        ({"weekly": {"days": ["sun"], "at": "02:00", "duration": "40d"}}, ("weekly", "duration"), "31 days"),
        ({"monthly": {"day": 32, "at": "02:00", "duration": "1h"}}, ("monthly", "day"), "1..31 or 'last'"),
        (
            {"monthly": {"day": "first", "at": "02:00", "duration": "1h"}},
            ("monthly", "day"),
            "1..31 or 'last'",
        ),
        (
            {"cron": "0 0 * * *", "duration": "1h", "valid_from": "2025-02-01", "valid_until": "2025-01-01"},
            (),
            "is before valid_from",
        ),
        ({"cron": "0 0 * * *", "duration": "1h", "colour": "red"}, ("colour",), "Extra inputs"),
    ],
)
def test_validation_errors(kw: dict[str, Any], loc: tuple[Any, ...], text: str) -> None:
    errs = errors(**kw)
    assert any(e_loc == loc and text in msg for e_loc, msg in errs), errs


def test_missing_reason_is_required_approvals_live_in_the_ledger() -> None:
    with pytest.raises(ValidationError) as ei:
        WindowSpec.model_validate({"name": "w", "systems": ["HIS"], "cron": "0 0 * * *", "duration": "1h"})
    assert {e["loc"] for e in ei.value.errors() if e["type"] == "missing"} == {("reason",)}


def test_unquoted_yaml_time_gets_a_hint() -> None:
    raw = yaml.safe_load("weekly: {days: [sun], at: 22:00, duration: 2h}")
    assert raw["weekly"]["at"] == 1320  # YAML 1.1 base-60: the trap being guarded
    errs = errors(**raw)
    assert errs == [
        (
            ("weekly", "at"),
            "Value error, write the time in quotes, e.g. at: '22:00' (YAML read it as the number 1320)",
        )
    ]


def test_valid_spec_from_yaml() -> None:
    raw = yaml.safe_load(
        """
        name: 周日例行维护
        systems: [HIS, EMR]
        reason: 数据库例行维护
        approvals: {甲方: 信息科 王主任, 乙方: 张工}
        ticket: OA-2025-0193
        weekly: {days: [sun], at: "02:00", duration: 2h}
        valid_from: 2025-01-01
        """
    )
    s = spec(**raw)
    assert s.approvals is not None and s.approvals.by_party() == {"甲方": "信息科 王主任", "乙方": "张工"}
    assert s.valid_from == date(2025, 1, 1) and s.weekly is not None and s.weekly.duration == 7200.0
    assert s.recurring and not spec(start="2025-01-01 10:00", end="2025-01-01 11:00").recurring


# --------------------------------------------------------------------------------------
# properties


@st.composite
def one_off_specs(draw: st.DrawFn) -> list[WindowSpec]:
    base = utc(2025, 5, 1)
    out = []
    for i in range(draw(st.integers(1, 5))):
        a = base + draw(st.integers(0, 72 * 60)) * MIN
        b = a + draw(st.integers(1, 24 * 60)) * MIN
        systems = draw(st.lists(st.sampled_from(["HIS", "EMR"]), max_size=2, unique=True))
        checks = draw(st.lists(st.sampled_from(["c1", "c2"]), max_size=2, unique=True))
        if not systems and not checks:
            systems = ["HIS"]
        out.append(
            spec(
                name=f"w{i}",
                systems=systems,
                checks=checks,
                start=datetime.fromtimestamp(a / 1000, UTC),
                end=datetime.fromtimestamp(b / 1000, UTC),
            )
        )
    return out


def _assert_consistent(
    sched: MaintenanceSchedule, lo: int, hi: int, t: int, system: str | None, check: str
) -> None:
    spans = sched.covering(lo, hi, system, check)
    assert all(a < b for a, b, _ in spans) and all(
        spans[i][1] <= spans[i + 1][0] for i in range(len(spans) - 1)
    )
    inside = [w for a, b, w in spans if a <= t < b]
    w = sched.active(t, system, check)
    assert (w is not None) == bool(inside)
    if w is not None:
        assert inside == [w]
    nb = sched.next_boundary(t, system, check)
    if nb is not None:
        assert nb > t
        # Nothing changes before the boundary, something changes at it.
        for u in (t + 1, (t + nb) // 2, nb - 1):
            assert sched.active(u, system, check) == w
        assert sched.active(nb, system, check) != w


@settings(max_examples=300, deadline=None)
@given(
    specs=one_off_specs(),
    offset=st.integers(-2 * 24 * 60, 5 * 24 * 60),
    seconds=st.integers(0, 59),
    key=st.sampled_from([("HIS", "c1"), ("EMR", "c2"), (None, "c1"), ("EMR", "c3"), (None, "c3")]),
)
def test_property_one_off_active_iff_covered(
    specs: list[WindowSpec], offset: int, seconds: int, key: tuple[str | None, str]
) -> None:
    sched = MaintenanceSchedule(specs, SH)
    t = utc(2025, 5, 1) + offset * MIN + seconds * 1000
    lo, hi = utc(2025, 4, 28), utc(2025, 5, 8)
    _assert_consistent(sched, lo, hi, t, *key)
    # Lookups across days in any order give the same answers as a fresh schedule.
    fresh = MaintenanceSchedule(specs, SH)
    assert fresh.active(t, *key) == sched.active(t, *key)


@settings(max_examples=150, deadline=None)
@given(
    days=st.lists(
        st.sampled_from(["mon", "tue", "wed", "thu", "fri", "sat", "sun"]), min_size=1, unique=True
    ),
    at=st.tuples(st.integers(0, 23), st.sampled_from([0, 15, 30, 45])),
    dur_min=st.integers(1, 3 * 24 * 60),
    cron_hour=st.integers(0, 23),
    when=st.integers(0, 14 * 24 * 60 - 1),
    base=st.sampled_from([(2025, 3, 24), (2025, 10, 20), (2025, 6, 2)]),
)
def test_property_recurring_in_berlin_across_dst(
    days: list[str], at: tuple[int, int], dur_min: int, cron_hour: int, when: int, base: tuple[int, int, int]
) -> None:
    weekly = spec(
        name="weekly", weekly={"days": days, "at": f"{at[0]:02d}:{at[1]:02d}", "duration": dur_min * 60}
    )
    cron = spec(name="cron", systems=[], checks=["c1"], cron=f"30 {cron_hour} * * 1-5", duration="90m")
    sched = MaintenanceSchedule([weekly, cron], BERLIN)
    lo = utc(*base) - 7 * 24 * H
    hi = utc(*base) + 21 * 24 * H
    t = utc(*base) + when * MIN
    _assert_consistent(sched, lo, hi, t, "HIS", "c1")
    # Every occurrence starts on a listed day at the listed time, or at a DST jump.
    for w in occurrences(weekly, BERLIN, lo, hi):
        start = datetime.fromtimestamp(w.start_ms / 1000, BERLIN)
        assert w.end_ms - w.start_ms == dur_min * MIN
        assert m._WEEKDAYS[start.weekday()] in days
        wall = (start.hour, start.minute)
        jumped = datetime.fromtimestamp(w.start_ms / 1000 - 1, BERLIN).utcoffset() != start.utcoffset()
        assert wall == at or (jumped and wall == (3, 0) and at[0] == 2)
