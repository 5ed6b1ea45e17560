"""Availability arithmetic: pure functions over plain data (no store, no clock, no I/O).

Everything is UTC epoch milliseconds and integer arithmetic, so the contract invariant
planned = available + unavailable + unknown + excluded holds exactly, to the millisecond.

Pipeline: ``check_timeline`` per check -> ``compose`` per business system (optionally
``apply_exclusions`` for a system-level maintenance) -> ``figures`` against ``planned_spans``
-> ``verdict`` against the contract target.

A timeline is a list of ``Segment`` that tiles a range without gaps or overlaps, sorted, with
adjacent equal segments merged. Categories: "available", "unavailable", "unknown",
"maintenance", "force_majeure" (the last two together are "excluded").
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction
from typing import Any, Literal, NamedTuple, Protocol
from zoneinfo import ZoneInfo

from probes.base import Status

AVAILABLE = "available"
UNAVAILABLE = "unavailable"
UNKNOWN = "unknown"
MAINTENANCE = "maintenance"
FORCE_MAJEURE = "force_majeure"
EXCLUDED = frozenset({MAINTENANCE, FORCE_MAJEURE})
CATEGORIES = (AVAILABLE, UNAVAILABLE, UNKNOWN, MAINTENANCE, FORCE_MAJEURE)

_STATE_CATEGORY = {
    Status.OK: AVAILABLE,
    Status.WARN: AVAILABLE,
    Status.CRIT: UNAVAILABLE,
    Status.UNKNOWN: UNKNOWN,
}

_NO_CHECKS: frozenset[str] = frozenset()


class _Schedule(Protocol):
    def minutes(self, weekday: int) -> list[tuple[int, int]]: ...


@dataclass(frozen=True, slots=True)
class Span:
    """A hard state of one check; ``end_ms`` None means still open (ends at ``now_ms``)."""

    check: str
    state: Status
    start_ms: int
    end_ms: int | None


@dataclass(frozen=True, slots=True)
class Exclusion:
    """Approved maintenance or agreed force majeure; the committee needs who and why."""

    start_ms: int
    end_ms: int
    kind: Literal["maintenance", "force_majeure"] = "maintenance"
    name: str = ""
    approved_by: str = ""
    reason: str = ""

    def __post_init__(self) -> None:
        # A typo here would silently become a category of its own and break the invariant.
        if self.kind not in EXCLUDED:
            raise ValueError(f"exclusion kind must be maintenance or force_majeure, not {self.kind!r}")
        if self.end_ms <= self.start_ms:
            raise ValueError("exclusion must end after it starts")


class Segment(NamedTuple):
    start: int
    end: int
    category: str
    # Checks that are unavailable during the segment, so an outage can name its cause.
    checks: frozenset[str] = _NO_CHECKS


@dataclass(frozen=True, slots=True)
class Outage:
    start_ms: int
    end_ms: int
    duration_ms: int
    checks: tuple[str, ...]


def _pct(num: int, den: int) -> float | None:
    return None if den <= 0 else num * 100 / den


@dataclass(frozen=True, slots=True)
class Figures:
    planned_ms: int
    maintenance_ms: int
    force_majeure_ms: int
    available_ms: int
    unavailable_ms: int
    unknown_ms: int
    outages: tuple[Outage, ...] = field(default=())
    before_monitoring_ms: int = 0
    """Planned time of the range before monitoring began. Under the default policy it is not
    in `planned_ms` (shown beside it); under policy "unknown" it is part of `unknown_ms`."""

    @property
    def excluded_ms(self) -> int:
        return self.maintenance_ms + self.force_majeure_ms

    @property
    def accountable_ms(self) -> int:
        """Planned time the vendor answers for: planned minus agreed exclusions."""
        return self.planned_ms - self.excluded_ms

    @property
    def availability_pct(self) -> float | None:
        """Policy "unavailable" (the default): unknown time counts against the vendor."""
        return _pct(self.available_ms, self.accountable_ms)

    @property
    def availability_excluded_pct(self) -> float | None:
        """Policy "excluded": unknown time is left out of the denominator."""
        return _pct(self.available_ms, self.accountable_ms - self.unknown_ms)

    @property
    def coverage_pct(self) -> float | None:
        return _pct(self.accountable_ms - self.unknown_ms, self.accountable_ms)

    def availability(self, policy: Literal["unavailable", "excluded"] = "unavailable") -> float | None:
        if policy == "unavailable":
            return self.availability_pct
        if policy == "excluded":
            return self.availability_excluded_pct
        raise ValueError(f"unknown policy {policy!r}")

    def __add__(self, other: Figures) -> Figures:
        """Figures of two disjoint periods; outages touching at the seam are joined."""
        outages = list(self.outages)
        for o in other.outages:
            if outages and outages[-1].end_ms == o.start_ms:
                prev = outages.pop()
                checks = tuple(sorted({*prev.checks, *o.checks}))
                outages.append(Outage(prev.start_ms, o.end_ms, o.end_ms - prev.start_ms, checks))
            else:
                outages.append(o)
        return Figures(
            self.planned_ms + other.planned_ms,
            self.maintenance_ms + other.maintenance_ms,
            self.force_majeure_ms + other.force_majeure_ms,
            self.available_ms + other.available_ms,
            self.unavailable_ms + other.unavailable_ms,
            self.unknown_ms + other.unknown_ms,
            tuple(outages),
            self.before_monitoring_ms + other.before_monitoring_ms,
        )

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["outages"] = [asdict(o) | {"checks": list(o.checks)} for o in self.outages]
        d["excluded_ms"] = self.excluded_ms
        d["accountable_ms"] = self.accountable_ms
        d["availability_pct"] = self.availability_pct
        d["availability_excluded_pct"] = self.availability_excluded_pct
        d["coverage_pct"] = self.coverage_pct
        return d


# --- planned operating hours ---------------------------------------------------------------


def _merge(spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for s, e in sorted(spans):
        if e <= s:
            continue
        if out and s <= out[-1][1]:
            if e > out[-1][1]:
                out[-1] = (out[-1][0], e)
        else:
            out.append((s, e))
    return out


def _ms(dt: datetime) -> int:
    # Integer arithmetic from the epoch: float timestamps would lose exactness over years.
    delta = dt - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86400 + delta.seconds) * 1000 + delta.microseconds // 1000


def planned_spans(
    schedule: _Schedule | Literal["7x24"], tz: ZoneInfo, start_ms: int, end_ms: int
) -> list[tuple[int, int]]:
    """Planned [start, end) spans in UTC ms within [start_ms, end_ms), sorted and merged.

    Each local day is built from its own wall-clock midnight so a DST change shifts the UTC
    span instead of adding or losing an hour of planned time at the wrong place.
    """
    if end_ms <= start_ms:
        return []
    if schedule == "7x24":
        return [(start_ms, end_ms)]
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    first = (epoch + timedelta(milliseconds=start_ms)).astimezone(tz).date() - timedelta(days=1)
    last = (epoch + timedelta(milliseconds=end_ms)).astimezone(tz).date() + timedelta(days=1)
    spans: list[tuple[int, int]] = []
    day = first
    while day <= last:
        for m1, m2 in schedule.minutes(day.weekday()):
            s = _local_minute(day, m1, tz)
            e = _local_minute(day, m2, tz)
            s, e = max(s, start_ms), min(e, end_ms)
            if s < e:
                spans.append((s, e))
        day += timedelta(days=1)
    return _merge(spans)


def _local_minute(day: date, minute: int, tz: ZoneInfo) -> int:
    # 24:00 is the next day's local midnight, not 24 h after this midnight (DST days).
    d = day + timedelta(days=minute // 1440)
    minute %= 1440
    return _ms(datetime(d.year, d.month, d.day, minute // 60, minute % 60, tzinfo=tz))


def spans_from_intervals(intervals: Iterable[Any]) -> list[Span]:
    """Adapt store ``Interval`` rows (start_ts/end_ts, UTC ms) to ``Span``.

    The row's own ``maintenance`` mark is deliberately ignored: only approved ``Exclusion``
    records exclude time, so muting alerts never silently changes the contract figure.
    """
    return [Span(i.check, Status(i.state), i.start_ts, i.end_ts) for i in intervals]


def agent_gaps(alive: Iterable[tuple[int, int]], start_ms: int, end_ms: int) -> list[tuple[int, int]]:
    """Agent-down gaps in [start_ms, end_ms): the complement of the runs' alive spans.

    For the run still going, pass (started, now) as its span: its last heartbeat is a little
    in the past and would otherwise leave a false gap at the end.
    """
    gaps: list[tuple[int, int]] = []
    cursor = start_ms
    for s, e in _merge(alive):
        if e <= cursor:
            continue
        if s >= end_ms:
            break
        if s > cursor:
            gaps.append((cursor, s))
        cursor = max(cursor, e)
    if cursor < end_ms:
        gaps.append((cursor, end_ms))
    return gaps


# --- timelines -----------------------------------------------------------------------------


def _normalise(segs: Iterable[Segment]) -> list[Segment]:
    out: list[Segment] = []
    for seg in segs:
        if seg.end <= seg.start:
            continue
        last = out[-1] if out else None
        if last and last.end == seg.start and last.category == seg.category and last.checks == seg.checks:
            out[-1] = out[-1]._replace(end=seg.end)
        else:
            out.append(seg)
    return out


def _paint(
    start_ms: int, end_ms: int, base: str, layers: Sequence[Sequence[tuple[int, int, str]]]
) -> list[tuple[int, int, str]]:
    """Paint layers over a base category; later layers win, so order encodes precedence."""
    points = {start_ms, end_ms}
    for layer in layers:
        for s, e, _ in layer:
            if s < end_ms and e > start_ms:
                points.add(max(s, start_ms))
                points.add(min(e, end_ms))
    bounds = sorted(points)
    cats = [base] * (len(bounds) - 1)
    for layer in layers:
        for s0, e0, cat in layer:
            s, e = max(s0, start_ms), min(e0, end_ms)
            if s >= e:
                continue
            i, j = bisect_left(bounds, s), bisect_left(bounds, e)
            cats[i:j] = [cat] * (j - i)
    return [(bounds[i], bounds[i + 1], cats[i]) for i in range(len(cats))]


def check_timeline(
    intervals: Iterable[Span],
    gaps: Iterable[tuple[int, int]],
    exclusions: Iterable[Exclusion],
    start_ms: int,
    end_ms: int,
    now_ms: int,
    check: str | None = None,
) -> list[Segment]:
    """Timeline of one check over [start_ms, min(end_ms, now_ms)).

    Precedence, lowest first: no interval = unknown < interval state < agent-down gap (the
    monitor's own downtime is never up) < exclusion (maintenance wins inside its span).
    Time after ``now_ms`` has not happened and is left out rather than guessed.
    """
    end = min(end_ms, now_ms)
    if end <= start_ms:
        return []
    intervals = list(intervals)
    name = check if check is not None else (intervals[0].check if intervals else "")
    states = sorted(
        (iv.start_ms, now_ms if iv.end_ms is None else iv.end_ms, _STATE_CATEGORY[Status(iv.state)])
        for iv in intervals
    )
    gap_layer = [(s, e, UNKNOWN) for s, e in gaps]
    # Force majeure painted last: where it overlaps maintenance the stronger reason is kept.
    excl = sorted(exclusions, key=lambda x: (x.kind == FORCE_MAJEURE, x.start_ms))
    excl_layer = [(x.start_ms, x.end_ms, x.kind) for x in excl]
    painted = _paint(start_ms, end, UNKNOWN, [states, gap_layer, excl_layer])
    who = frozenset({name})
    return _normalise(Segment(s, e, c, who if c == UNAVAILABLE else _NO_CHECKS) for s, e, c in painted)


def apply_exclusions(timeline: Sequence[Segment], exclusions: Iterable[Exclusion]) -> list[Segment]:
    """Overlay exclusions (e.g. maintenance of a whole business system) on a timeline."""
    if not timeline:
        return []
    excl = [
        (x.start_ms, x.end_ms, x.kind)
        for x in sorted(exclusions, key=lambda x: (x.kind == FORCE_MAJEURE, x.start_ms))
    ]
    out: list[Segment] = []
    for seg in timeline:
        hits = [x for x in excl if x[0] < seg.end and x[1] > seg.start]
        # Same precedence as on a check: nothing overrides force majeure.
        if not hits or seg.category == FORCE_MAJEURE:
            out.append(seg)
            continue
        for s, e, c in _paint(seg.start, seg.end, seg.category, [hits]):
            out.append(Segment(s, e, c, seg.checks if c == UNAVAILABLE else _NO_CHECKS))
    return _normalise(out)


def _system_category(counts: dict[str, int], k: int) -> str:
    avail = counts[AVAILABLE]
    excused = avail + counts[MAINTENANCE] + counts[FORCE_MAJEURE]
    if avail >= k:
        return AVAILABLE
    # A check under maintenance excuses only its own share: if it alone stands between the
    # system and "available", the time is excluded; a failure elsewhere still counts.
    if excused >= k:
        return FORCE_MAJEURE if counts[FORCE_MAJEURE] and avail + counts[MAINTENANCE] < k else MAINTENANCE
    if excused + counts[UNKNOWN] >= k:
        return UNKNOWN
    return UNAVAILABLE


def compose(timelines: Sequence[Sequence[Segment]], k: int | None = None) -> list[Segment]:
    """Timeline of a business system from its availability-critical checks' timelines.

    ``k`` None means all must be available; otherwise at least k of n. Unavailable only when
    the system cannot be available whatever the unknown checks were, else unknown.
    All timelines must cover the same range (same period and ``now_ms``).
    """
    timelines = [t for t in timelines if t]
    if not timelines:
        return []
    n = len(timelines)
    need = n if k is None else k
    if not 1 <= need <= n:
        raise ValueError(f"k={k} must be between 1 and the number of critical checks ({n})")
    start, end = timelines[0][0].start, timelines[0][-1].end
    if any(t[0].start != start or t[-1].end != end for t in timelines):
        raise ValueError("timelines to compose must cover the same range")
    counts = dict.fromkeys(CATEGORIES, 0)
    down: dict[str, int] = {}
    # Events: (time, timeline index, segment). Each segment start replaces the previous
    # segment of the same timeline, so only changes are processed: O(S log n) for S segments.
    current: list[Segment | None] = [None] * n
    events = heapq.merge(*[[(seg.start, i, seg) for seg in t] for i, t in enumerate(timelines)])
    out: list[Segment] = []
    pending_t: int | None = None

    def emit(until: int) -> None:
        assert pending_t is not None
        cat = _system_category(counts, need)
        checks = frozenset(c for c, m in down.items() if m) if cat == UNAVAILABLE else _NO_CHECKS
        seg = Segment(pending_t, until, cat, checks)
        if out and out[-1].end == seg.start and out[-1].category == cat and out[-1].checks == checks:
            out[-1] = out[-1]._replace(end=until)
        else:
            out.append(seg)

    for t, i, seg in events:
        if pending_t is not None and t != pending_t:
            emit(t)
        pending_t = t
        old = current[i]
        if old is not None:
            counts[old.category] -= 1
            for c in old.checks:
                down[c] -= 1
        counts[seg.category] += 1
        for c in seg.checks:
            down[c] = down.get(c, 0) + 1
        current[i] = seg
    emit(end)
    return out


# --- figures and verdict -------------------------------------------------------------------


def figures(timeline: Sequence[Segment], planned: Sequence[tuple[int, int]]) -> Figures:
    """Sum a timeline over the planned spans and list the outages inside them."""
    totals = dict.fromkeys(CATEGORIES, 0)
    outages: list[list[Any]] = []
    starts = [seg.start for seg in timeline]
    for ps, pe in _merge(planned):
        # Only segments that can overlap this planned span: keeps a year of spans linear.
        i = max(bisect_right(starts, ps) - 1, 0)
        while i < len(timeline) and timeline[i].start < pe:
            seg = timeline[i]
            s, e = max(seg.start, ps), min(seg.end, pe)
            i += 1
            if s >= e:
                continue
            totals[seg.category] += e - s
            if seg.category == UNAVAILABLE:
                if outages and outages[-1][1] == s:
                    outages[-1][1] = e
                    outages[-1][2] |= seg.checks
                else:
                    outages.append([s, e, set(seg.checks)])
    planned_ms = sum(
        min(pe, timeline[-1].end) - max(ps, timeline[0].start)
        for ps, pe in _merge(planned)
        if timeline and min(pe, timeline[-1].end) > max(ps, timeline[0].start)
    )
    if planned_ms != sum(totals.values()):
        raise ValueError("timeline has holes or overlaps inside planned time")
    return Figures(
        planned_ms=planned_ms,
        maintenance_ms=totals[MAINTENANCE],
        force_majeure_ms=totals[FORCE_MAJEURE],
        available_ms=totals[AVAILABLE],
        unavailable_ms=totals[UNAVAILABLE],
        unknown_ms=totals[UNKNOWN],
        outages=tuple(Outage(s, e, e - s, tuple(sorted(c))) for s, e, c in outages),
    )


@dataclass(frozen=True, slots=True)
class Verdict:
    target_pct: float
    availability_pct: float | None
    passed: bool | None
    allowed_ms: int  # downtime the whole year may have under the target
    used_ms: int  # unavailable (+ unknown under policy "unavailable") so far
    remaining_ms: int  # negative once the budget is overrun
    exhausted: bool
    exhaust_ms: int | None  # when the budget runs out at the current rate
    exhaust_date: date | None

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["exhaust_date"] = self.exhaust_date.isoformat() if self.exhaust_date else None
        return d


def verdict(
    fig: Figures,
    year_planned_ms: int,
    period_start_ms: int,
    now_ms: int,
    tz: ZoneInfo,
    target_pct: float = 99.5,
    policy: Literal["unavailable", "excluded"] = "unavailable",
) -> Verdict:
    """Contract verdict for the year so far (``fig`` = year start .. now).

    ``year_planned_ms`` is the whole year's planned time; the exclusions known so far are
    taken off it (future maintenance is not known yet). The run-out date extrapolates the
    downtime rate per wall-clock time elapsed since ``period_start_ms``.
    """
    target = Fraction(str(target_pct))
    pct = fig.availability(policy)
    # Under policy "excluded" unknown time leaves both the figure and the year's budget base.
    unknown_used = fig.unknown_ms if policy == "unavailable" else 0
    base = fig.accountable_ms - (fig.unknown_ms - unknown_used)
    passed = None if pct is None else fig.available_ms * 100 >= target * base
    off = fig.excluded_ms + fig.unknown_ms - unknown_used
    allowed = int((100 - target) * max(year_planned_ms - off, 0) / 100)
    used = fig.unavailable_ms + unknown_used
    remaining = allowed - used
    exhausted = remaining <= 0 and used > 0
    exhaust_ms: int | None = None
    if used > 0 and not exhausted and now_ms > period_start_ms:
        exhaust_ms = now_ms + remaining * (now_ms - period_start_ms) // used
    exhaust_date = (
        (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=exhaust_ms)).astimezone(tz).date()
        if exhaust_ms is not None
        else None
    )
    return Verdict(
        target_pct=target_pct,
        availability_pct=pct,
        passed=passed,
        allowed_ms=allowed,
        used_ms=used,
        remaining_ms=remaining,
        exhausted=exhausted,
        exhaust_ms=exhaust_ms,
        exhaust_date=exhaust_date,
    )
