"""Service periods (服务期): the contract year an instant belongs to, and the --period forms
that name one. Boundaries are local midnights in the site's zone (Asia/Shanghai: 16:00 UTC
the day before)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from agent.clock.periods import (
    Period,
    PeriodError,
    contract_year,
    current_service_period,
    last_complete_service_period,
    parse_period,
    resolve_period,
)
from agent.config.contract import Contract, ServicePeriod

SH = ZoneInfo("Asia/Shanghai")
ONE = ServicePeriod(start=date(2026, 4, 14), end=date(2027, 4, 13), overdue_limits={1: 2, 2: 3}, target=99.9)
TWO = ServicePeriod(start=date(2027, 4, 14), end=date(2028, 4, 13), name="第二服务年")
CONTRACT = Contract(service_periods=(ONE,))
BOTH = Contract(service_periods=(ONE, TWO))
NONE = Contract()


def ms(y: int, m: int, d: int, hh: int = 0, mm: int = 0, ss: int = 0) -> int:
    return int(datetime(y, m, d, hh, mm, ss, tzinfo=SH).timestamp() * 1000)


def span(p: Period) -> tuple[datetime, datetime]:
    return p.start, p.end


START = ms(2026, 4, 14)
END = ms(2027, 4, 14)


def test_local_midnights_are_16_utc_the_day_before() -> None:
    p = contract_year(CONTRACT, SH, START)
    assert p.start_ms == int(datetime(2026, 4, 13, 16, tzinfo=UTC).timestamp() * 1000) == START
    assert p.end_ms == int(datetime(2027, 4, 13, 16, tzinfo=UTC).timestamp() * 1000) == END
    assert ONE.local_bounds(SH) == (datetime(2026, 4, 14, tzinfo=SH), datetime(2027, 4, 14, tzinfo=SH))


@pytest.mark.parametrize("at", [START, START + 1, ms(2026, 12, 31, 23, 59), ms(2027, 1, 1), END - 1])
def test_inside_the_service_period(at: int) -> None:
    p = contract_year(CONTRACT, SH, at)
    assert span(p) == (datetime(2026, 4, 14, tzinfo=SH), datetime(2027, 4, 14, tzinfo=SH))
    assert p.label == "服务期 2026-04-14 至 2027-04-13"
    assert p.service == ONE
    assert p.describe() == "2026-04-14 至 2027-04-13"
    # Its own limits and target; unset ones fall back to the configuration's defaults.
    assert p.limits_or({1: 5, 2: 10}) == {1: 2, 2: 3}
    assert p.target_or(99.5) == 99.9


def test_the_instant_before_the_start_is_outside() -> None:
    # 2026-04-13 23:59:59.999 local: the calendar year, cut where the service period begins.
    p = contract_year(CONTRACT, SH, START - 1)
    assert span(p) == (datetime(2026, 1, 1, tzinfo=SH), datetime(2026, 4, 14, tzinfo=SH))
    assert p.service is None and p.label == "2026-01-01..2026-04-13"
    assert p.limits_or({1: 5, 2: 10}) == {1: 5, 2: 10}
    assert p.target_or(99.5) == 99.5
    # The label is a period the CLI accepts, naming the same span.
    assert span(parse_period(p.label, SH)) == span(p)


def test_the_end_instant_belongs_to_what_follows() -> None:
    # 2027-04-14 00:00 local is the first instant after 2027-04-13 (end inclusive as a day).
    after = contract_year(CONTRACT, SH, END)
    assert span(after) == (datetime(2027, 4, 14, tzinfo=SH), datetime(2028, 1, 1, tzinfo=SH))
    assert after.service is None and after.label == "2027-04-14..2027-12-31"
    nxt = contract_year(BOTH, SH, END)
    assert nxt.service == TWO and nxt.label == "第二服务年"
    assert span(nxt) == (datetime(2027, 4, 14, tzinfo=SH), datetime(2028, 4, 14, tzinfo=SH))


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (ms(2025, 6, 1), (datetime(2025, 1, 1, tzinfo=SH), datetime(2026, 1, 1, tzinfo=SH))),
        (ms(2029, 2, 1), (datetime(2029, 1, 1, tzinfo=SH), datetime(2030, 1, 1, tzinfo=SH))),
    ],
)
def test_years_away_from_every_service_period_are_whole_calendar_years(
    at: int, expected: tuple[datetime, datetime]
) -> None:
    p = contract_year(BOTH, SH, at)
    assert span(p) == expected and p.label == str(expected[0].year) and p.service is None


def test_no_service_periods_is_the_calendar_year_as_before() -> None:
    for at in (START - 1, START, ms(2026, 12, 31, 23, 59, 59), ms(2027, 1, 1)):
        p = contract_year(NONE, SH, at)
        year = datetime.fromtimestamp(at / 1000, SH).year
        assert p == parse_period(str(year), SH) and p.label == str(year) and p.service is None


def test_contract_years_never_overlap_and_leave_no_hole() -> None:
    # Walk 2025..2029 a day (and a bit) at a time: each instant is in exactly the year found.
    at, seen = ms(2025, 1, 1), list[Period]()
    while at < ms(2030, 1, 1):
        p = contract_year(BOTH, SH, at)
        assert p.start_ms <= at < p.end_ms
        if not seen or seen[-1] != p:
            seen.append(p)
        at += 86_400_000 + 3_600_000
    assert all(a.end == b.start for a, b in zip(seen, seen[1:], strict=False))
    assert [p.label for p in seen] == [
        "2025", "2026-01-01..2026-04-13", "服务期 2026-04-14 至 2027-04-13", "第二服务年",
        "2028-04-14..2028-12-31", "2029",
    ]  # fmt: skip


def test_current_and_last_complete() -> None:
    assert current_service_period(BOTH, SH, START - 1) is None
    assert current_service_period(BOTH, SH, START) == contract_year(BOTH, SH, START)
    assert last_complete_service_period(BOTH, SH, END - 1) is None
    done = last_complete_service_period(BOTH, SH, END)
    assert done is not None and done.service == ONE
    later = last_complete_service_period(BOTH, SH, ms(2030, 1, 1))
    assert later is not None and later.service == TWO
    assert last_complete_service_period(NONE, SH, ms(2030, 1, 1)) is None


@pytest.mark.parametrize(
    ("text", "now", "expected"),
    [
        ("service", ms(2026, 12, 2, 12), ONE),
        ("service", END - 1, ONE),
        ("service", END, TWO),
        ("SERVICE", START, ONE),
        ("service:2026", ms(2030, 1, 1), ONE),
        ("service:2027", ms(2020, 1, 1), TWO),
        ("service:2026-04-14", ms(2020, 1, 1), ONE),
        (" service:2027-04-14 ", ms(2020, 1, 1), TWO),
    ],
)
def test_service_forms(text: str, now: int, expected: ServicePeriod) -> None:
    p = resolve_period(text, SH, BOTH, now)
    assert p.service == expected
    assert span(p) == expected.local_bounds(SH)


def test_the_other_forms_resolve_as_before() -> None:
    for text in ("2026", "2026-Q4", "2026-11", "2026-W48", "2026-11-23", "2026-11-01..2026-11-15"):
        assert resolve_period(text, SH, BOTH, START) == parse_period(text, SH)
    # A calendar year stays a calendar year, service periods or not.
    assert resolve_period("2026", SH, BOTH, START).service is None


@pytest.mark.parametrize(
    ("text", "contract", "now", "message"),
    [
        ("service", NONE, START, "contract.service_periods is empty"),
        ("service:2026", NONE, START, "contract.service_periods is empty"),
        ("service", BOTH, START - 1, r"no service period contains today \(2026-04-13\); configured: "
         r"2026-04-14..2027-04-13, 2027-04-14..2028-04-13"),
        ("service", BOTH, ms(2028, 4, 14), r"no service period contains today \(2028-04-14\)"),
        ("service:2025", BOTH, START, "no service period starts in 2025; configured: 2026-04-14..2027-04-13"),
        ("service:2026-04-15", BOTH, START, "no service period starts on 2026-04-15"),
        ("service:2026-02-30", BOTH, START, "invalid period 'service:2026-02-30'"),
        ("service:last", BOTH, START, "use service, service:YYYY or service:YYYY-MM-DD"),
        ("service:", BOTH, START, "use service, service:YYYY or service:YYYY-MM-DD"),
        ("services", BOTH, START, "invalid period 'services'"),
    ],
)  # fmt: skip
def test_service_form_errors_say_what_is_wrong(text: str, contract: Contract, now: int, message: str) -> None:
    with pytest.raises(PeriodError, match=message):
        resolve_period(text, SH, contract, now)


def test_two_periods_starting_in_one_year_need_the_day() -> None:
    short = Contract(
        service_periods=(
            ServicePeriod(start=date(2026, 1, 1), end=date(2026, 6, 30)),
            ServicePeriod(start=date(2026, 7, 1), end=date(2027, 6, 30)),
        )
    )
    with pytest.raises(
        PeriodError, match="2 service periods start in 2026: use service:2026-01-01, service:2026-07-01"
    ):
        resolve_period("service:2026", SH, short, START)
    assert resolve_period("service:2026-07-01", SH, short, START).start == datetime(2026, 7, 1, tzinfo=SH)


def test_contract_validation() -> None:
    with pytest.raises(ValidationError, match="not after"):
        Contract(service_periods=(TWO, ONE))
    with pytest.raises(ValidationError, match="is before start"):
        ServicePeriod(start=date(2026, 4, 14), end=date(2026, 4, 13))
    with pytest.raises(ValidationError, match="level 5 is not 1..4"):
        ServicePeriod(start=date(2026, 4, 14), end=date(2027, 4, 13), overdue_limits={5: 1})
    with pytest.raises(ValidationError, match="greater than or equal to 1"):
        ServicePeriod(start=date(2026, 4, 14), end=date(2027, 4, 13), overdue_limits={1: 0})
    # The contract's own words for levels are accepted.
    sp = ServicePeriod.model_validate(
        {"start": "2026-04-14", "end": "2027-04-13", "overdue_limits": {"一级": 2, "二级": 3}}
    )
    assert sp.overdue_limits == {1: 2, 2: 3}
    # A one-day service period is that whole local day.
    day = ServicePeriod(start=date(2026, 4, 14), end=date(2026, 4, 14))
    assert day.local_bounds(SH)[1] - day.local_bounds(SH)[0] == timedelta(days=1)
