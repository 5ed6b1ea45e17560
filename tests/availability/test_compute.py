"""Availability arithmetic: hand-computed timelines (to the second) and properties."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.availability.compute import (
    AVAILABLE,
    CATEGORIES,
    EXCLUDED,
    FORCE_MAJEURE,
    MAINTENANCE,
    UNAVAILABLE,
    UNKNOWN,
    Exclusion,
    Figures,
    Outage,
    Segment,
    Span,
    agent_gaps,
    apply_exclusions,
    check_timeline,
    compose,
    figures,
    planned_spans,
    spans_from_intervals,
    verdict,
)
from agent.config.schema import Schedule
from agent.store.db import Interval
from probes.base import Status

SH = ZoneInfo("Asia/Shanghai")
S = 1000  # ms per second
H = 3600 * S
DAY = 24 * H


def at(d: int, hh: int = 0, mm: int = 0, month: int = 1, tz: ZoneInfo = SH) -> int:
    """UTC ms of a local wall-clock time in January 2026 (2026-01-05 is a Monday)."""
    dt = datetime(2026, month, d, hh, mm, tzinfo=tz)
    return int(dt.timestamp()) * 1000


def iv(state: Status, start: int, end: int | None, check: str = "his-login") -> Span:
    return Span(check, state, start, end)


def day_figures(spans: list[Span], gaps=(), excl=(), d: int = 5, planned=None) -> Figures:
    start, end = at(d), at(d + 1)
    tl = check_timeline(spans, gaps, excl, start, end, now_ms=end)
    return figures(tl, planned if planned is not None else planned_spans("7x24", SH, start, end))


# --- hand-computed cases ------------------------------------------------------------------


def test_outage_straddling_period_start_is_clipped_to_the_period() -> None:
    spans = [
        iv(Status.OK, at(4, 0), at(4, 23)),
        iv(Status.CRIT, at(4, 23), at(5, 1, 30)),
        iv(Status.OK, at(5, 1, 30), None),
    ]
    f = day_figures(spans)
    assert f.planned_ms == 86_400 * S
    assert f.unavailable_ms == 5_400 * S  # 00:00-01:30 only; 23:00-24:00 belongs to the day before
    assert f.available_ms == 81_000 * S
    assert f.unknown_ms == 0 and f.excluded_ms == 0
    assert f.outages == (Outage(at(5), at(5, 1, 30), 5_400 * S, ("his-login",)),)
    assert f.availability_pct == pytest.approx(93.75)


def test_open_interval_ends_at_now_and_future_time_is_not_counted() -> None:
    spans = [iv(Status.OK, at(5), at(5, 10)), iv(Status.CRIT, at(5, 10), None)]
    start, end, now = at(5), at(6), at(5, 12)
    f = figures(check_timeline(spans, [], [], start, end, now), planned_spans("7x24", SH, start, end))
    assert f.planned_ms == 12 * H
    assert f.unavailable_ms == 2 * H
    assert f.outages == (Outage(at(5, 10), at(5, 12), 2 * H, ("his-login",)),)


def test_overlapping_maintenance_and_outage() -> None:
    spans = [
        iv(Status.OK, at(5), at(5, 10)),
        iv(Status.CRIT, at(5, 10), at(5, 12)),
        iv(Status.OK, at(5, 12), None),
    ]
    excl = [Exclusion(at(5, 11), at(5, 13), "maintenance", "升级", "王工", "v5.2 upgrade")]
    f = day_figures(spans, excl=excl)
    assert f.unavailable_ms == 3_600 * S  # 10:00-11:00; 11:00-12:00 falls inside maintenance
    assert f.maintenance_ms == 7_200 * S and f.force_majeure_ms == 0 and f.excluded_ms == 7_200 * S
    assert f.available_ms == 75_600 * S
    assert f.outages == (Outage(at(5, 10), at(5, 11), 3_600 * S, ("his-login",)),)
    assert f.availability_pct == pytest.approx(100 * 75_600 / 79_200)  # 95.4545...


def test_force_majeure_reported_separately_from_maintenance() -> None:
    spans = [iv(Status.CRIT, at(5), None)]
    excl = [
        Exclusion(at(5, 2), at(5, 4), "maintenance"),
        Exclusion(at(5, 3), at(5, 6), "force_majeure", "停电", "院办", "city power cut"),
    ]
    f = day_figures(spans, excl=excl)
    # Force majeure keeps the 03:00-04:00 overlap: 02-03 maintenance, 03-06 force majeure.
    assert f.maintenance_ms == 1 * H and f.force_majeure_ms == 3 * H
    assert f.unavailable_ms == 20 * H
    assert [(o.start_ms, o.end_ms) for o in f.outages] == [(at(5), at(5, 2)), (at(5, 6), at(6))]


def test_agent_gap_inside_outage_is_unknown_and_splits_it() -> None:
    spans = [
        iv(Status.OK, at(5), at(5, 10)),
        iv(Status.CRIT, at(5, 10), at(5, 12)),
        iv(Status.OK, at(5, 12), None),
    ]
    gaps = agent_gaps([(at(4), at(5, 10, 30)), (at(5, 11), at(6))], at(5), at(6))
    assert gaps == [(at(5, 10, 30), at(5, 11))]
    f = day_figures(spans, gaps=gaps)
    assert f.unavailable_ms == 5_400 * S
    assert f.unknown_ms == 1_800 * S
    assert f.available_ms == 79_200 * S
    assert f.outages == (
        Outage(at(5, 10), at(5, 10, 30), 1_800 * S, ("his-login",)),
        Outage(at(5, 11), at(5, 12), 3_600 * S, ("his-login",)),
    )
    # Unknown policy both ways: counted as unavailable, or left out of the denominator.
    assert f.availability("unavailable") == pytest.approx(100 * 79_200 / 86_400)  # 91.666...
    assert f.availability("excluded") == pytest.approx(100 * 79_200 / 84_600)  # 93.617...
    assert f.coverage_pct == pytest.approx(100 * 84_600 / 86_400)


def test_time_without_any_interval_is_unknown_never_available() -> None:
    spans = [iv(Status.OK, at(5, 6), None)]
    f = day_figures(spans)
    assert f.unknown_ms == 6 * H and f.available_ms == 18 * H and f.unavailable_ms == 0
    assert f.availability_pct == pytest.approx(75.0)
    assert f.availability_excluded_pct == pytest.approx(100.0)
    assert f.outages == ()  # unknown is not an outage


def test_unknown_state_and_warn() -> None:
    spans = [
        iv(Status.WARN, at(5), at(5, 12)),
        iv(Status.UNKNOWN, at(5, 12), at(5, 18)),
        iv(Status.OK, at(5, 18), None),
    ]
    f = day_figures(spans)
    assert f.available_ms == 18 * H and f.unknown_ms == 6 * H and f.unavailable_ms == 0


def test_flap_inside_maintenance_is_fully_excluded() -> None:
    spans = [
        iv(Status.OK, at(5), at(5, 14)),
        iv(Status.CRIT, at(5, 14), at(5, 14, 5)),
        iv(Status.OK, at(5, 14, 5), at(5, 14, 10)),
        iv(Status.CRIT, at(5, 14, 10), at(5, 14, 20)),
        iv(Status.OK, at(5, 14, 20), None),
    ]
    excl = [Exclusion(at(5, 13, 30), at(5, 15), "maintenance", "补丁")]
    f = day_figures(spans, excl=excl)
    assert f.unavailable_ms == 0 and f.outages == ()
    assert f.maintenance_ms == 5_400 * S
    assert f.available_ms == 81_000 * S
    assert f.availability_pct == pytest.approx(100.0)


WORKDAYS = Schedule(
    mon=("08:00-18:00",),
    tue=("08:00-18:00",),
    wed=("08:00-18:00",),
    thu=("08:00-18:00",),
    fri=("08:00-18:00",),
    sat=(),
    sun=(),
)


def test_planned_hours_not_7x24_outage_crossing_1800_and_weekend() -> None:
    # Friday 2026-01-09 .. end of Monday 2026-01-12, Asia/Shanghai.
    start, end = at(9), at(13)
    planned = planned_spans(WORKDAYS, SH, start, end)
    assert planned == [(at(9, 8), at(9, 18)), (at(12, 8), at(12, 18))]
    spans = [
        iv(Status.OK, at(9), at(9, 17)),
        iv(Status.CRIT, at(9, 17), at(12, 9)),
        iv(Status.OK, at(12, 9), None),
    ]
    f = figures(check_timeline(spans, [], [], start, end, end), planned)
    assert f.planned_ms == 72_000 * S
    assert f.unavailable_ms == 7_200 * S  # Fri 17-18 and Mon 08-09; the weekend is not planned
    assert f.available_ms == 64_800 * S
    assert f.outages == (
        Outage(at(9, 17), at(9, 18), 3_600 * S, ("his-login",)),
        Outage(at(12, 8), at(12, 9), 3_600 * S, ("his-login",)),
    )
    assert f.availability_pct == pytest.approx(90.0)


def test_planned_spans_follow_local_midnight_across_dst() -> None:
    ny = ZoneInfo("America/New_York")
    # 2026-03-08 is the Sunday when New York springs forward: the local day has 23 hours.
    start, end = at(8, month=3, tz=ny), at(9, month=3, tz=ny)
    assert planned_spans(Schedule(), ny, start, end) == [(start, end)]
    assert end - start == 23 * H
    sched = Schedule(sun=("08:00-18:00",))
    assert planned_spans(sched, ny, start, end) == [(at(8, 8, month=3, tz=ny), at(8, 18, month=3, tz=ny))]
    assert at(8, 18, month=3, tz=ny) - at(8, 8, month=3, tz=ny) == 10 * H


def nodes(down: dict[str, tuple[int, int]], names=("a", "b", "c")) -> list[list[Segment]]:
    start, end = at(5), at(6)
    out = []
    for n in names:
        spans = [iv(Status.OK, start, None, n)]
        if n in down:
            s, e = down[n]
            spans = [iv(Status.OK, start, s, n), iv(Status.CRIT, s, e, n), iv(Status.OK, e, None, n)]
        out.append(check_timeline(spans, [], [], start, end, end, check=n))
    return out


def test_k_of_n_one_node_down_is_still_available() -> None:
    tl = compose(nodes({"a": (at(5, 10), at(5, 11))}), k=2)
    f = figures(tl, [(at(5), at(6))])
    assert f.available_ms == 24 * H and f.unavailable_ms == 0 and f.outages == ()
    # The same failure with the default "all" rule is an outage.
    f_all = figures(compose(nodes({"a": (at(5, 10), at(5, 11))})), [(at(5), at(6))])
    assert f_all.unavailable_ms == 1 * H


def test_k_of_n_two_nodes_down_is_unavailable() -> None:
    tl = compose(nodes({"a": (at(5, 10), at(5, 11)), "b": (at(5, 10, 30), at(5, 12))}), k=2)
    f = figures(tl, [(at(5), at(6))])
    assert f.unavailable_ms == 1_800 * S
    assert f.outages == (Outage(at(5, 10, 30), at(5, 11), 1_800 * S, ("a", "b")),)
    assert f.available_ms == 86_400 * S - 1_800 * S


def test_k_of_n_unknown_only_when_the_unknowns_could_decide() -> None:
    start, end = at(5), at(6)
    a = check_timeline([iv(Status.CRIT, start, None, "a")], [], [], start, end, end)
    b = check_timeline([iv(Status.OK, start, None, "b")], [], [], start, end, end)
    c = check_timeline([iv(Status.UNKNOWN, start, None, "c")], [], [], start, end, end)
    assert [s.category for s in compose([a, b, c], k=2)] == [UNKNOWN]  # c could make it 2 of 3
    assert [s.category for s in compose([a, b, c], k=1)] == [AVAILABLE]
    assert [s.category for s in compose([a, a, c], k=2)] == [UNAVAILABLE]  # at most 1 of 3 whatever c was
    # "all": any unavailable wins over unknown; unknown wins over available.
    assert [s.category for s in compose([a, c])] == [UNAVAILABLE]
    assert [s.category for s in compose([b, c])] == [UNKNOWN]
    assert [s.category for s in compose([b, b])] == [AVAILABLE]


def test_check_maintenance_excuses_only_its_own_share() -> None:
    start, end = at(5), at(6)
    excl = [Exclusion(at(5, 2), at(5, 4))]
    db = check_timeline([iv(Status.CRIT, start, None, "db")], [], excl, start, end, end)
    web = check_timeline([iv(Status.OK, start, None, "web")], [], [], start, end, end)
    f = figures(compose([db, web]), [(start, end)])
    assert f.maintenance_ms == 2 * H and f.unavailable_ms == 22 * H
    assert f.outages == (
        Outage(start, at(5, 2), 2 * H, ("db",)),
        Outage(at(5, 4), end, 20 * H, ("db",)),
    )


def test_system_level_exclusion() -> None:
    tl = compose(nodes({"a": (at(5, 10), at(5, 11))}))
    tl = apply_exclusions(tl, [Exclusion(at(5, 10, 30), at(5, 12), "maintenance", "系统升级")])
    f = figures(tl, [(at(5), at(6))])
    assert f.unavailable_ms == 1_800 * S and f.maintenance_ms == 5_400 * S
    assert f.outages == (Outage(at(5, 10), at(5, 10, 30), 1_800 * S, ("a",)),)


def test_verdict_budget_and_run_out_date() -> None:
    year_start, year_end = at(1), int(datetime(2027, 1, 1, tzinfo=SH).timestamp()) * 1000
    year_planned = sum(e - s for s, e in planned_spans("7x24", SH, year_start, year_end))
    assert year_planned == 365 * DAY
    now = at(1, month=2)  # 31 days in
    spans = [
        iv(Status.OK, year_start, at(10)),
        iv(Status.CRIT, at(10), at(10) + 15_768 * S),
        iv(Status.OK, at(10) + 15_768 * S, None),
    ]
    f = figures(
        check_timeline(spans, [], [], year_start, year_end, now), planned_spans("7x24", SH, year_start, now)
    )
    v = verdict(f, year_planned, year_start, now, SH)
    assert v.allowed_ms == 157_680 * S  # 0.5 % of 365 days = 43.8 h
    assert v.used_ms == 15_768 * S and v.remaining_ms == 141_912 * S
    assert v.passed is False  # 1 - 15768/2678400 = 99.41 % < 99.5 %
    # 10 % of the budget used in 31 days: the remaining 90 % lasts 9 x 31 = 279 more days.
    assert v.exhaust_ms == now + 279 * DAY
    assert v.exhaust_date == date(2026, 11, 7)
    assert v.exhausted is False
    assert verdict(f, year_planned, year_start, now, SH, target_pct=99.0).passed is True

    clean = figures(
        check_timeline([iv(Status.OK, year_start, None)], [], [], year_start, now, now), [(year_start, now)]
    )
    v2 = verdict(clean, year_planned, year_start, now, SH)
    assert (
        v2.passed is True
        and v2.exhaust_ms is None
        and v2.exhaust_date is None
        and v2.remaining_ms == v2.allowed_ms
    )
    over = verdict(f, 30 * DAY, year_start, now, SH)
    assert over.exhausted is True and over.remaining_ms < 0 and over.exhaust_date is None


def test_figures_as_dict_has_every_number() -> None:
    f = day_figures([iv(Status.CRIT, at(5), at(5, 1)), iv(Status.OK, at(5, 1), None)])
    d = f.as_dict()
    assert d["planned_ms"] == 24 * H and d["unavailable_ms"] == 1 * H and d["excluded_ms"] == 0
    assert d["outages"] == [
        {"start_ms": at(5), "end_ms": at(5, 1), "duration_ms": H, "checks": ["his-login"]}
    ]
    assert d["availability_pct"] == pytest.approx(100 * 23 / 24)
    assert d["coverage_pct"] == pytest.approx(100.0)


# --- properties ---------------------------------------------------------------------------

T = 100_000  # period [0, T)


@st.composite
def check_tl(draw: st.DrawFn, name: str = "x", now: int = T, exclusions: bool = True) -> dict:
    cuts = sorted(set(draw(st.lists(st.integers(-10_000, T + 10_000), max_size=12))))
    spans = []
    for s, e in zip(cuts, cuts[1:], strict=False):
        st_ = draw(st.sampled_from([None, *Status]))
        if st_ is not None:
            spans.append(Span(name, st_, s, e))
    if cuts and draw(st.booleans()):
        spans.append(Span(name, draw(st.sampled_from(list(Status))), cuts[-1], None))
    gaps = [
        (s, s + d) for s, d in draw(st.lists(st.tuples(st.integers(0, T), st.integers(1, 5_000)), max_size=3))
    ]
    excl = []
    if exclusions:
        for s, d, kind in draw(
            st.lists(
                st.tuples(
                    st.integers(0, T),
                    st.integers(1, 20_000),
                    st.sampled_from(["maintenance", "force_majeure"]),
                ),
                max_size=2,
            )
        ):
            excl.append(Exclusion(s, s + d, kind))
    return {"spans": spans, "gaps": gaps, "excl": excl}


planned_st = st.lists(st.tuples(st.integers(0, T), st.integers(1, 30_000)), max_size=5).map(
    lambda xs: [(s, min(s + d, T)) for s, d in xs]
)


def tl_of(c: dict, start: int = 0, end: int = T, now: int = T, extra=()) -> list[Segment]:
    return check_timeline(c["spans"], c["gaps"], [*c["excl"], *extra], start, end, now, check="x")


def assert_invariant(f: Figures) -> None:
    assert f.planned_ms == f.available_ms + f.unavailable_ms + f.unknown_ms + f.excluded_ms
    assert f.unavailable_ms == sum(o.duration_ms for o in f.outages)


@settings(max_examples=300, deadline=None)
@given(check_tl(), planned_st, st.integers(1, 2 * T))
def test_invariant_and_policies_for_a_check(c: dict, planned: list, now: int) -> None:
    tl = check_timeline(c["spans"], c["gaps"], c["excl"], 0, T, now)
    if tl:
        assert tl[0].start == 0 and tl[-1].end == min(T, now)
        assert all(a.end == b.start for a, b in zip(tl, tl[1:], strict=False))
    f = figures(tl, planned)
    assert_invariant(f)
    if f.availability_pct is not None and f.availability_excluded_pct is not None:
        assert f.availability_excluded_pct >= f.availability_pct - 1e-9


@settings(max_examples=200, deadline=None)
@given(st.lists(check_tl(exclusions=True), min_size=1, max_size=4), planned_st, st.data())
def test_compose_matches_pointwise_rule(checks: list, planned: list, data: st.DataObject) -> None:
    tls = [
        check_timeline(c["spans"], c["gaps"], c["excl"], 0, T, T, check=f"n{i}") for i, c in enumerate(checks)
    ]
    k = data.draw(st.one_of(st.none(), st.integers(1, len(tls))))
    sys_tl = compose(tls, k)
    f = figures(sys_tl, planned)
    assert_invariant(f)
    need = len(tls) if k is None else k

    def cat_at(tl: list[Segment], t: int) -> Segment:
        return next(s for s in tl if s.start <= t < s.end)

    for t in data.draw(st.lists(st.integers(0, T - 1), min_size=1, max_size=20)):
        cats = [cat_at(tl, t).category for tl in tls]
        a = cats.count(AVAILABLE)
        m = cats.count(MAINTENANCE)
        x = m + cats.count(FORCE_MAJEURE)
        u = cats.count(UNKNOWN)
        # Maintenance is preferred as the reason; force majeure only when it is needed to reach k.
        want = (
            AVAILABLE
            if a >= need
            else MAINTENANCE
            if a + m >= need
            else FORCE_MAJEURE
            if a + x >= need
            else UNKNOWN
            if a + x + u >= need
            else UNAVAILABLE
        )
        got = cat_at(sys_tl, t)
        assert got.category == want
        if want == UNAVAILABLE:
            assert got.checks == {f"n{i}" for i, c in enumerate(cats) if c == UNAVAILABLE}


@settings(max_examples=300, deadline=None)
@given(
    st.lists(check_tl(), min_size=1, max_size=3),
    planned_st,
    st.integers(0, T),
    st.integers(1, T),
    st.sampled_from(["maintenance", "force_majeure"]),
    st.data(),
)
def test_adding_an_exclusion_never_adds_lost_time(checks, planned, s, d, kind, data) -> None:
    # Note: the *percentage* can drop when the window covers available time (excluding
    # good time shrinks both sides of the fraction); see the test below. Lost time cannot grow.
    which = data.draw(st.integers(0, len(checks) - 1))
    k = data.draw(st.one_of(st.none(), st.integers(1, len(checks))))
    w = Exclusion(s, s + d, kind)

    def fig(extra_for: int | None) -> Figures:
        tls = [tl_of(c, extra=[w] if i == extra_for else []) for i, c in enumerate(checks)]
        return figures(compose(tls, k), planned)

    before, after = fig(None), fig(which)
    assert_invariant(after)
    assert after.unavailable_ms <= before.unavailable_ms
    assert after.unavailable_ms + after.unknown_ms <= before.unavailable_ms + before.unknown_ms
    assert after.excluded_ms >= before.excluded_ms
    # Over time that was not available, a window can only raise availability, both policies.
    tl = tl_of(checks[0])
    bad = [(seg.start, seg.end) for seg in tl if seg.category in (UNAVAILABLE, UNKNOWN)]
    if bad:
        bs, be = bad[data.draw(st.integers(0, len(bad) - 1))]
        f0 = figures(tl, planned)
        f1 = figures(tl_of(checks[0], extra=[Exclusion(bs, be, kind)]), planned)
        for policy in ("unavailable", "excluded"):
            p0, p1 = f0.availability(policy), f1.availability(policy)
            if p0 is not None and p1 is not None:
                assert p1 >= p0 - 1e-9


def test_excluding_available_time_lowers_the_percentage() -> None:
    # Why the property above is stated on lost time: half up, half down is 50 %; excluding the
    # good half leaves 0 %. This is correct contract arithmetic, not a bug.
    spans = [iv(Status.OK, at(5), at(5, 12)), iv(Status.CRIT, at(5, 12), None)]
    assert day_figures(spans).availability_pct == pytest.approx(50.0)
    assert day_figures(spans, excl=[Exclusion(at(5), at(5, 12))]).availability_pct == pytest.approx(0.0)


@settings(max_examples=300, deadline=None)
@given(st.lists(check_tl(), min_size=1, max_size=3), planned_st, st.integers(1, T - 1), st.integers(1, 2 * T))
def test_period_is_the_sum_of_its_sub_periods(checks, planned, mid, now) -> None:
    def fig(start: int, end: int) -> Figures:
        tls = [tl_of(c, start, end, now) for c in checks]
        return figures(compose(tls), [(max(s, start), min(e, end)) for s, e in planned])

    whole, first, second = fig(0, T), fig(0, mid), fig(mid, T)
    joined = first + second
    assert joined == whole  # every ms figure and the outage list, joined at the seam


def test_categories_are_the_documented_ones() -> None:
    assert set(CATEGORIES) == {AVAILABLE, UNAVAILABLE, UNKNOWN, MAINTENANCE, FORCE_MAJEURE}
    assert frozenset({MAINTENANCE, FORCE_MAJEURE}) == EXCLUDED


def test_store_intervals_adapt_and_their_maintenance_mark_does_not_exclude() -> None:
    rows = [
        Interval("db", Status.CRIT, at(5), at(5, 2), "down", maintenance="muted"),
        Interval("db", Status.OK, at(5, 2), None, "up"),
    ]
    spans = spans_from_intervals(rows)
    assert spans == [Span("db", Status.CRIT, at(5), at(5, 2)), Span("db", Status.OK, at(5, 2), None)]
    f = day_figures(spans)
    assert f.unavailable_ms == 2 * H and f.excluded_ms == 0


def test_exclusion_rejects_unknown_kind_and_empty_span() -> None:
    with pytest.raises(ValueError):
        Exclusion(0, 10, "holiday")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Exclusion(10, 10)


def test_agent_gaps_complement_of_alive_spans() -> None:
    assert agent_gaps([], 0, 100) == [(0, 100)]
    assert agent_gaps([(10, 20), (15, 30), (50, 120)], 0, 100) == [(0, 10), (30, 50)]
    assert agent_gaps([(-5, 200)], 0, 100) == []


def test_compose_rejects_bad_k_and_misaligned_timelines() -> None:
    tls = nodes({})
    with pytest.raises(ValueError):
        compose(tls, k=4)
    with pytest.raises(ValueError):
        compose(tls, k=0)
    short = check_timeline([iv(Status.OK, at(5), None)], [], [], at(5), at(6), at(5, 12))
    with pytest.raises(ValueError):
        compose([*tls, short])


@settings(max_examples=200, deadline=None)
@given(
    check_tl(),
    st.lists(
        st.tuples(
            st.integers(0, T), st.integers(1, 20_000), st.sampled_from(["maintenance", "force_majeure"])
        ),
        max_size=3,
    ),
)
def test_system_exclusion_equals_check_exclusion_for_a_single_check(c: dict, ws: list) -> None:
    extra = [Exclusion(s, s + d, kind) for s, d, kind in ws]
    assert apply_exclusions(compose([tl_of(c)]), extra) == tl_of(c, extra=extra)
