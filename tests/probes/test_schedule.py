"""Backup expectations: 'daily 04:00 + 2 h grace' judged in the site's time zone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from pydantic import BaseModel, ValidationError

from probes.schedule import Expectation
from probes.settings import Schedule

SH = ZoneInfo("Asia/Shanghai")
HOUR = 3600.0


def sh(*args: int) -> datetime:
    return datetime(*args, tzinfo=SH).astimezone(UTC)


def test_daily_backup_of_the_night_is_fine_until_the_deadline_passes() -> None:
    daily = Expectation.parse("daily 04:00")
    last_night = sh(2026, 11, 23, 2, 40)
    # 05:00 Shanghai: today's slot (04:00 + 2 h) is not yet judged; yesterday's is, and met.
    v = daily.judge(last_night, sh(2026, 11, 23, 5, 0), SH, 2 * HOUR)
    assert v.met
    assert v.due == sh(2026, 11, 22, 4, 0)
    # 06:01: today's slot is judged; the 02:40 backup is inside (22 04:00, 23 04:00].
    v = daily.judge(last_night, sh(2026, 11, 23, 6, 1), SH, 2 * HOUR)
    assert v.met and v.due == sh(2026, 11, 23, 4, 0) and v.deadline == sh(2026, 11, 23, 6, 0)
    assert v.window_start == sh(2026, 11, 22, 4, 0)


def test_yesterdays_backup_does_not_satisfy_todays_slot() -> None:
    daily = Expectation.parse("daily 04:00")
    v = daily.judge(sh(2026, 11, 22, 3, 0), sh(2026, 11, 23, 6, 1), SH, 2 * HOUR)
    assert not v.met
    assert v.age_s == pytest.approx((27 * 60 + 1) * 60)


def test_time_zone_matters_utc_midnight_is_08_00_in_shanghai() -> None:
    daily = Expectation.parse("daily 04:00")
    # Judged at 06:30 on the 24th (Shanghai) the window is (23 04:00, 24 04:00] Shanghai.
    # 20:30 UTC on the 22nd is 04:30 on the 23rd in Shanghai: inside. Read as UTC it would
    # look like the 22nd and be rejected.
    v = daily.judge(datetime(2026, 11, 22, 20, 30, tzinfo=UTC), sh(2026, 11, 24, 6, 30), SH, 2 * HOUR)
    assert v.met  # window (23 04:00, 24 04:00] Shanghai contains 23 04:30
    v = daily.judge(datetime(2026, 11, 22, 19, 30, tzinfo=UTC), sh(2026, 11, 24, 6, 30), SH, 2 * HOUR)
    assert not v.met  # 23 03:30 Shanghai belongs to the previous slot


def test_nothing_ever_is_missed() -> None:
    v = Expectation.parse("weekly sun 02:00").judge(None, sh(2026, 11, 23, 12, 0), SH, HOUR)
    assert not v.met and v.age_s is None
    assert v.due == sh(2026, 11, 22, 2, 0)  # 2026-11-22 is a Sunday


def test_weekly_in_chinese_and_monthly_clamped_to_short_months() -> None:
    assert Expectation.parse("weekly 周日 02:00") == Expectation.parse("weekly SUN 02:00")
    monthly = Expectation.parse("monthly 31 03:00")
    # In November (30 days) the slot falls on the 30th.
    v = monthly.judge(sh(2026, 11, 30, 2, 0), sh(2026, 12, 1, 0, 0), SH, HOUR)
    assert v.due == sh(2026, 11, 30, 3, 0) and v.met
    assert v.window_start == sh(2026, 10, 31, 3, 0)


def test_every_is_an_age_limit_plus_grace() -> None:
    every = Expectation.parse("every 15m")
    now = sh(2026, 11, 23, 10, 29)
    assert every.judge(now - timedelta(minutes=19), now, SH, 300).met
    assert not every.judge(now - timedelta(minutes=21), now, SH, 300).met


def test_schedule_type_validates_in_settings_with_a_clear_message() -> None:
    class S(BaseModel):
        schedule: Schedule

    assert str(S(schedule="daily 4:05").schedule) == "daily 04:05"
    with pytest.raises(ValidationError) as exc:
        S(schedule="nightly")
    assert "daily 04:00" in str(exc.value)
    with pytest.raises(ValidationError) as exc:
        S(schedule="weekly funday 02:00")
    assert "unknown weekday" in str(exc.value)
    assert S(schedule="every 1h").model_dump() == {"schedule": "every 3600s"}
    assert Expectation.parse("daily 04:00").describe_zh() == "每天 04:00 前"
