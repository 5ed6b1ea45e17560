"""Periods as contracts write them, bounded by local midnights in the site's zone."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from agent.clock.periods import PeriodError, parse_period

SH = ZoneInfo("Asia/Shanghai")


def local(*a: int) -> datetime:
    return datetime(*a, tzinfo=SH)


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [
        ("2026", local(2026, 1, 1), local(2027, 1, 1)),
        ("2026-11", local(2026, 11, 1), local(2026, 12, 1)),
        ("2026-12", local(2026, 12, 1), local(2027, 1, 1)),
        ("2026-Q4", local(2026, 10, 1), local(2027, 1, 1)),
        ("2026-q1", local(2026, 1, 1), local(2026, 4, 1)),
        ("2026-W48", local(2026, 11, 23), local(2026, 11, 30)),
        ("2026-11-23", local(2026, 11, 23), local(2026, 11, 24)),
        ("2026-11-01..2026-11-15", local(2026, 11, 1), local(2026, 11, 16)),
        ("2026-11-01 08:00..2026-11-01 18:30", local(2026, 11, 1, 8), local(2026, 11, 1, 18, 30)),
    ],
)
def test_forms(text: str, start: datetime, end: datetime) -> None:
    p = parse_period(text, SH)
    assert (p.start, p.end) == (start, end)
    # Shanghai midnight is 16:00 UTC the day before.
    assert p.start_ms == int(start.timestamp() * 1000)


def test_utc_offset_is_applied() -> None:
    assert parse_period("2026-11-23", SH).start_ms == int(
        datetime.fromisoformat("2026-11-22T16:00:00+00:00").timestamp() * 1000
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("2026-13", "month 13"),
        ("2026-Q5", "use 2026"),
        ("2026-11-31", "invalid period"),
        ("2026-11-15..2026-11-01", "after its start"),
        ("last week", "use 2026"),
    ],
)
def test_bad_periods_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(PeriodError, match=message):
        parse_period(text, SH)
