"""Availability from the store: gathers intervals, agent runs, the configuration in force,
approved exclusions and the contract year, and hands them to the pure engine in
`agent.availability.compute`.

The rules the committee signs (DESIGN.md §3):
- a run is alive up to its last heartbeat plus `agent.grace_ms`; after that the time is unknown
  (agent down), even before the agent is restarted;
- maintenance windows and force-majeure records exclude time only once both 甲方 and 乙方 have
  approved them (agent.windows.excluded); late ones are marked 事后补录;
- which checks are critical, the planned schedule, redundancy and target at each instant come
  from the configuration recorded in force then (agent.availability.eras), never today's file;
- the year's verdict and budget run over the contract's service period;
- time before monitoring began is its own category (`availability.before_monitoring`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo

from agent.availability import compute as av
from agent.availability import eras as E
from agent.clock.periods import Period, contract_year
from agent.store import faults as stored_faults
from agent.store.db import Store
from agent.windows.excluded import ExcludedSpan, excluded_spans

if TYPE_CHECKING:
    from agent.config.schema import Config

Policy = Literal["unavailable", "excluded"]
UnknownCause = Literal["agent_down", "probe", "before_monitoring"]

CAUSE_ZH: dict[str, str] = {
    "agent_down": "监控代理未运行",
    "probe": "检查未能执行或无数据",
    "before_monitoring": "未监控：监控开始前",
}


@dataclass(frozen=True, slots=True)
class OutageRow:
    start_ms: int
    end_ms: int
    duration_ms: int
    checks: tuple[str, ...]
    fault: str | None = None
    cause: str | None = None


@dataclass(frozen=True, slots=True)
class ExclusionRow:
    """A maintenance occurrence or force-majeure record over the period, counted or not."""

    kind: Literal["maintenance", "force_majeure"]
    name: str
    start_ms: int
    end_ms: int
    reason: str
    approved_by: str
    """Both approvals in one line, e.g. '甲方 王主任；乙方 张工' (for tables and CSV)."""
    ticket: str | None = None
    recorded_by: str | None = None
    recorded_ms: int | None = None
    late: bool = False
    """Recorded after it began: 事后补录."""
    effective: bool = True
    """Both parties approved: the time is excluded. False: listed as pending, excludes nothing."""
    approvals: tuple[dict[str, Any], ...] = ()
    """[{party, approver, ts_ms, os_user}]"""


@dataclass(frozen=True, slots=True)
class UnknownSpan:
    """Planned time whose state is not known, with why."""

    start_ms: int
    end_ms: int
    duration_ms: int
    cause: UnknownCause


@dataclass(frozen=True, slots=True)
class VersionRow:
    """A configuration version in force during the period."""

    version_id: int | None
    hash: str | None
    start_ms: int
    end_ms: int


@dataclass(frozen=True, slots=True)
class SubjectFigures:
    """Availability of one business system or one check over one period."""

    subject: str
    kind: Literal["system", "check"]
    target_pct: float
    policy: Policy
    start_ms: int
    end_ms: int
    figures: av.Figures | None
    """None when the subject has nothing to measure (a system without critical checks)."""
    outages: tuple[OutageRow, ...] = ()
    exclusions: tuple[ExclusionRow, ...] = ()
    checks: tuple[str, ...] = ()
    verdict: av.Verdict | None = None
    """The contract year (service period) to date, judged against the target."""
    note: str = ""
    redundancy: tuple[tuple[tuple[str, ...], int], ...] = field(default=())
    unknown: tuple[UnknownSpan, ...] = ()
    before_monitoring: tuple[int, int] | None = None
    """[from, to) of the period before monitoring began, when the period reaches back that far."""
    before_policy: Literal["excluded", "unknown"] = "excluded"
    versions: tuple[VersionRow, ...] = ()
    year_label: str = ""
    """The contract year of the verdict: a service period's label, or the calendar year."""
    grace_ms: int = 0

    def availability(self) -> float | None:
        return None if self.figures is None else self.figures.availability(self.policy)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: the CLI's --json, the reports' data and the evidence export share it."""
        return {
            "subject": self.subject,
            "kind": self.kind,
            "target_pct": self.target_pct,
            "policy": self.policy,
            "availability_pct": self.availability(),
            "figures": None if self.figures is None else self.figures.as_dict(),
            "outages": [asdict(o) | {"checks": list(o.checks)} for o in self.outages],
            "exclusions": [
                asdict(x) | {"duration_ms": x.end_ms - x.start_ms, "approvals": list(x.approvals)}
                for x in self.exclusions
            ],
            "unknown": [asdict(u) | {"cause_zh": CAUSE_ZH[u.cause]} for u in self.unknown],
            "before_monitoring": None
            if self.before_monitoring is None
            else {"start_ms": self.before_monitoring[0], "end_ms": self.before_monitoring[1]},
            "before_monitoring_policy": self.before_policy,
            "config_versions": [asdict(v) for v in self.versions],
            "checks": list(self.checks),
            "redundancy": [{"checks": list(c), "need": k} for c, k in self.redundancy],
            "verdict": None if self.verdict is None else self.verdict.as_dict(),
            "year_label": self.year_label,
            "liveness_grace_ms": self.grace_ms,
            "note": self.note,
        }


def approvals_line(span: ExcludedSpan) -> str:
    parts = [f"{a.party} {a.approver}" for a in span.approvals]
    return "；".join(parts) if parts else "（未批准）"


class Sources:
    """What one computation needs from the store, read once."""

    def __init__(self, store: Store, config: Config, start_ms: int, end_ms: int, now_ms: int) -> None:
        self.store = store
        self.config = config
        self.tz: ZoneInfo = config.site.tz
        self.now_ms = now_ms
        self.grace_ms = config.agent.grace_ms
        self.gaps = store.agent_gaps(start_ms, min(end_ms, now_ms), now_ms, self.grace_ms)
        self.monitoring_start = store.monitoring_start()
        self.before_policy = config.availability.before_monitoring
        self.eras = E.eras(store.config_versions(), config)
        # Every occurrence, counted or not: pending and late ones are listed, not counted.
        self.spans = excluded_spans(store, self.tz, start_ms, end_ms, now_ms)
        self.effective = [s for s in self.spans if s.effective]

    # -------------------------------------------------------------- ranges

    def measured_from(self, start_ms: int) -> int:
        """Where measuring starts: under policy "excluded" not before monitoring began."""
        if self.before_policy != "excluded":
            return start_ms
        first = self.monitoring_start if self.monitoring_start is not None else self.now_ms
        return max(start_ms, first)

    def before_span(self, start_ms: int, end_ms: int) -> tuple[int, int] | None:
        first = self.monitoring_start if self.monitoring_start is not None else self.now_ms
        hi = min(end_ms, first, self.now_ms)
        return (start_ms, hi) if hi > start_ms else None

    # -------------------------------------------------------------- timelines

    def exclusions_for(
        self, system: str | None, check: str, start_ms: int, end_ms: int
    ) -> list[av.Exclusion]:
        out = []
        for x in self.effective:
            s, e = max(x.start_ms, start_ms), min(x.end_ms, end_ms)
            if s < e and x.covers(system, check):
                out.append(av.Exclusion(s, e, x.kind, x.name, approvals_line(x), x.reason))
        return out

    def timeline(self, system: str | None, check: str, start_ms: int, end_ms: int) -> list[av.Segment]:
        spans = av.spans_from_intervals(self.store.intervals(start_ms, end_ms, check))
        gaps = [(max(s, start_ms), min(e, end_ms)) for s, e in self.gaps if s < end_ms and e > start_ms]
        return av.check_timeline(
            spans,
            gaps,
            self.exclusions_for(system, check, start_ms, end_ms),
            start_ms,
            end_ms,
            self.now_ms,
            check,
        )

    def exclusion_rows(
        self, system: str | None, checks: Sequence[str], start_ms: int, end_ms: int
    ) -> list[ExclusionRow]:
        rows: dict[tuple[str, str, int], ExclusionRow] = {}
        for x in self.spans:
            if x.start_ms >= end_ms or x.end_ms <= start_ms:
                continue
            if not any(x.covers(system, c) for c in checks):
                continue
            rows.setdefault(
                (x.kind, x.name, x.start_ms),
                ExclusionRow(
                    x.kind,
                    x.name,
                    x.start_ms,
                    x.end_ms,
                    x.reason,
                    approvals_line(x),
                    x.ticket,
                    x.recorded_by,
                    x.recorded_ms,
                    x.late,
                    x.effective,
                    tuple(asdict(a) for a in x.approvals),
                ),
            )
        return sorted(rows.values(), key=lambda r: (r.start_ms, r.name))

    def unknown_spans(
        self, timeline: Sequence[av.Segment], planned: Sequence[tuple[int, int]]
    ) -> list[UnknownSpan]:
        """The unknown planned time of a timeline, cut where its cause changes."""
        cuts: list[tuple[int, int]] = []
        for seg in timeline:
            if seg.category != av.UNKNOWN:
                continue
            for ps, pe in planned:
                s, e = max(seg.start, ps), min(seg.end, pe)
                if s < e:
                    cuts.append((s, e))
        first = self.monitoring_start if self.monitoring_start is not None else self.now_ms
        out: list[UnknownSpan] = []
        for s, e in cuts:
            points = {s, e}
            for gs, ge in self.gaps:
                for p in (gs, ge):
                    if s < p < e:
                        points.add(p)
            if s < first < e:
                points.add(first)
            bounds = sorted(points)
            for a, b in zip(bounds, bounds[1:], strict=False):
                cause: UnknownCause
                if a < first:
                    cause = "before_monitoring"
                elif any(gs <= a < ge for gs, ge in self.gaps):
                    cause = "agent_down"
                else:
                    cause = "probe"
                if out and out[-1].end_ms == a and out[-1].cause == cause:
                    prev = out.pop()
                    out.append(UnknownSpan(prev.start_ms, b, b - prev.start_ms, cause))
                else:
                    out.append(UnknownSpan(a, b, b - a, cause))
        return out

    def link_faults(self, outages: Sequence[av.Outage], system: str | None) -> tuple[OutageRow, ...]:
        if not outages:
            return ()
        lo, hi = outages[0].start_ms, outages[-1].end_ms
        spans = stored_faults.spans_overlapping(self.store.db, lo, hi, self.now_ms)
        out = []
        for o in outages:
            best: tuple[int, str, str | None] | None = None
            for f in spans:
                if f.system != system and not f.checks & set(o.checks):
                    continue
                overlap = min(f.end_ts, o.end_ms) - max(f.start_ts, o.start_ms)
                if overlap > 0 and (best is None or overlap > best[0]):
                    best = (overlap, f.number, f.cause)
            out.append(
                OutageRow(
                    o.start_ms,
                    o.end_ms,
                    o.duration_ms,
                    o.checks,
                    best[1] if best else None,
                    best[2] if best else None,
                )
            )
        return tuple(out)


# ------------------------------------------------------------------------------ systems


def critical_checks(config: Config, system: str) -> list[str]:
    """Today's file's critical checks of a system (what `sentinel check`-style listings show);
    figures use the configuration in force (`eras`)."""
    return [c.name for c in config.checks if c.system == system and c.availability_critical and c.enabled]


def system_timeline(src: Sources, view: E.SystemView, start_ms: int, end_ms: int) -> list[av.Segment]:
    timelines = {c: src.timeline(view.name, c, start_ms, end_ms) for c in view.critical}
    parts: list[list[av.Segment]] = []
    grouped: set[str] = set()
    for checks, need in view.redundancy:
        members = [timelines[c] for c in checks if c in timelines]
        grouped.update(checks)
        if members:
            parts.append(av.compose(members, k=min(need, len(members))))
    parts += [tl for c, tl in timelines.items() if c not in grouped]
    return av.compose(parts)


@dataclass
class _Measured:
    """A subject measured over a range, era by era."""

    figures: av.Figures | None = None
    unknown: list[UnknownSpan] = field(default_factory=list)
    versions: list[VersionRow] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)
    view: E.SystemView | None = None
    """The system as configured in the last era of the range that has it."""


def _add(a: av.Figures | None, b: av.Figures | None) -> av.Figures | None:
    if a is None:
        return b
    if b is None:
        return a
    return a + b


def _before_figures(src: Sources, schedule_of: Any, start_ms: int, end_ms: int) -> av.Figures | None:
    """The planned time before monitoring began, as a Figures carrying only that amount."""
    span = src.before_span(start_ms, end_ms)
    if span is None:
        return None
    planned = 0
    for a, b, era in E.overlapping(src.eras, *span):
        schedule = schedule_of(era)
        if schedule is not None:
            planned += sum(e - s for s, e in av.planned_spans(schedule, src.tz, a, b))
    if not planned:
        return None
    return av.Figures(0, 0, 0, 0, 0, 0, (), planned)


def _system_schedule(name: str) -> Any:
    def schedule_of(era: E.Era) -> Any:
        v = era.systems.get(name)
        return None if v is None or not v.critical else v.schedule

    return schedule_of


def _check_schedule(check: str) -> Any:
    def schedule_of(era: E.Era) -> Any:
        if check not in era.check_system:
            return None
        system = era.check_system[check]
        v = era.systems.get(system) if system is not None else None
        return v.schedule if v is not None else "7x24"

    return schedule_of


def _measure_system(src: Sources, name: str, start_ms: int, end_ms: int) -> _Measured:
    m = _Measured()
    lo = src.measured_from(start_ms)
    for a, b, era in E.overlapping(src.eras, lo, min(end_ms, src.now_ms)):
        view = era.systems.get(name)
        if view is None:
            continue
        m.view = view
        m.versions.append(VersionRow(era.version_id, era.hash, a, b))
        m.checks += [c for c in view.critical if c not in m.checks]
        if not view.critical:
            continue
        tl = system_timeline(src, view, a, b)
        if not tl:
            continue
        planned = av.planned_spans(view.schedule, src.tz, a, b)
        m.figures = _add(m.figures, av.figures(tl, planned))
        m.unknown += src.unknown_spans(tl, planned)
    if m.figures is not None:
        before = _before_figures(src, _system_schedule(name), start_ms, end_ms)
        if before is not None:
            m.figures = (
                m.figures + before if src.before_policy == "excluded" else _with_before(m.figures, before)
            )
    return m


def _with_before(fig: av.Figures, before: av.Figures) -> av.Figures:
    """Policy "unknown": the time before monitoring is already in `unknown_ms`; only say how much."""
    return av.Figures(
        fig.planned_ms,
        fig.maintenance_ms,
        fig.force_majeure_ms,
        fig.available_ms,
        fig.unavailable_ms,
        fig.unknown_ms,
        fig.outages,
        fig.before_monitoring_ms + before.before_monitoring_ms,
    )


def _year(src: Sources, at_ms: int) -> tuple[Period, float | None]:
    """The contract year containing `at_ms` and its target override (service period's)."""
    period = contract_year(src.config.contract, src.tz, at_ms)
    return period, (period.service.target if period.service is not None else None)


def _verdict(
    src: Sources, name: str, target: float, policy: Policy, start_ms: int, measure: Any, schedule_of: Any
) -> tuple[av.Verdict | None, str]:
    year, _ = _year(src, start_ms)
    y0, y1 = year.start_ms, year.end_ms
    if src.now_ms <= y0:
        return None, year.label
    m: _Measured = measure(src, name, y0, min(y1, src.now_ms))
    if m.figures is None:
        return None, year.label
    # The whole year's planned time, from when measuring starts; the future by the configuration
    # in force now (the last era runs on).
    lo = src.measured_from(y0)
    year_planned = 0
    for a, b, era in E.overlapping(src.eras, lo, y1):
        schedule = schedule_of(era)
        if schedule is not None:
            year_planned += sum(e - s for s, e in av.planned_spans(schedule, src.tz, a, b))
    return av.verdict(m.figures, year_planned, lo, src.now_ms, src.tz, target, policy), year.label


def _target(src: Sources, view: E.SystemView | None, fallback: float, start_ms: int) -> float:
    _, override = _year(src, start_ms)
    if override is not None:
        return override
    return view.target if view is not None else fallback


def system_figures(
    store: Store,
    config: Config,
    start_ms: int,
    end_ms: int,
    now_ms: int,
    systems: Sequence[str] | None = None,
    policy: Policy | None = None,
    with_verdict: bool = True,
) -> list[SubjectFigures]:
    """Every (or the named) business system's availability over [start_ms, end_ms)."""
    policy = policy or config.availability.unknown_policy
    year_start = contract_year(config.contract, config.site.tz, start_ms).start_ms
    src = Sources(store, config, min(start_ms, year_start), end_ms, now_ms)
    names = list(
        dict.fromkeys([s.name for s in config.systems] + [n for e in src.eras for n in e.system_order])
    )
    out = []
    for name in names:
        if systems is not None and name not in systems:
            continue
        current = config.system(name)
        m = _measure_system(src, name, start_ms, end_ms)
        view = m.view
        if view is None and current is None:
            continue
        target = _target(src, view, current.availability_target if current else 99.5, start_ms)
        if view is not None:
            groups = view.redundancy
        else:
            assert current is not None  # both None was skipped above
            groups = tuple((g.checks, g.need) for g in current.redundancy)
        common: dict[str, Any] = {
            "before_monitoring": src.before_span(start_ms, end_ms),
            "before_policy": src.before_policy,
            "versions": tuple(m.versions),
            "grace_ms": src.grace_ms,
            "redundancy": groups,
        }
        if m.figures is None:
            note = (
                "未配置可用性关键检查项（availability_critical），无法计算可用率"
                if not m.checks
                else "期间内尚未开始监控（未监控：监控开始前）"
            )
            out.append(
                SubjectFigures(
                    name,
                    "system",
                    target,
                    policy,
                    start_ms,
                    end_ms,
                    None,
                    note=note,
                    year_label=_year(src, start_ms)[0].label,
                    **common,
                )  # fmt: skip
            )
            continue
        verdict, label = (
            _verdict(src, name, target, policy, start_ms, _measure_system, _system_schedule(name))
            if with_verdict
            else (None, _year(src, start_ms)[0].label)
        )
        out.append(
            SubjectFigures(
                name,
                "system",
                target,
                policy,
                start_ms,
                end_ms,
                m.figures,
                src.link_faults(m.figures.outages, name),
                tuple(src.exclusion_rows(name, m.checks, start_ms, end_ms)),
                tuple(m.checks),
                verdict,
                unknown=tuple(m.unknown),
                year_label=label,
                **common,
            )
        )
    return out


# ------------------------------------------------------------------------------- checks


def _measure_check(src: Sources, check: str, start_ms: int, end_ms: int) -> _Measured:
    m = _Measured(checks=[check])
    lo = src.measured_from(start_ms)
    for a, b, era in E.overlapping(src.eras, lo, min(end_ms, src.now_ms)):
        if check not in era.check_system:
            continue  # not configured (or disabled) then: nothing was measured
        system = era.check_system[check]
        view = era.systems.get(system) if system is not None else None
        m.view = view
        m.versions.append(VersionRow(era.version_id, era.hash, a, b))
        tl = src.timeline(system, check, a, b)
        if not tl:
            continue
        planned = av.planned_spans(view.schedule if view is not None else "7x24", src.tz, a, b)
        m.figures = _add(m.figures, av.figures(tl, planned))
        m.unknown += src.unknown_spans(tl, planned)
    if m.figures is not None:
        before = _before_figures(src, _check_schedule(check), start_ms, end_ms)
        if before is not None:
            m.figures = (
                m.figures + before if src.before_policy == "excluded" else _with_before(m.figures, before)
            )
    return m


def check_figures(
    store: Store,
    config: Config,
    check: str,
    start_ms: int,
    end_ms: int,
    now_ms: int,
    policy: Policy | None = None,
) -> SubjectFigures:
    """One check's own availability (OK/WARN up, CRIT down), on its system's planned hours."""
    policy = policy or config.availability.unknown_policy
    c = config.check_map.get(check)
    current = config.system(c.system) if c is not None else None
    year_start = contract_year(config.contract, config.site.tz, start_ms).start_ms
    src = Sources(store, config, min(start_ms, year_start), end_ms, now_ms)
    m = _measure_check(src, check, start_ms, end_ms)
    target = _target(src, m.view, current.availability_target if current else 99.5, start_ms)
    sysname = m.view.name if m.view is not None else (current.name if current else None)

    def measure(src_: Sources, name: str, a: int, b: int) -> _Measured:
        return _measure_check(src_, check, a, b)

    verdict, label = _verdict(src, check, target, policy, start_ms, measure, _check_schedule(check))
    return SubjectFigures(
        check,
        "check",
        target,
        policy,
        start_ms,
        end_ms,
        m.figures,
        src.link_faults(m.figures.outages, sysname) if m.figures else (),
        tuple(src.exclusion_rows(sysname, [check], start_ms, end_ms)),
        (check,),
        verdict,
        unknown=tuple(m.unknown),
        before_monitoring=src.before_span(start_ms, end_ms),
        before_policy=src.before_policy,
        versions=tuple(m.versions),
        year_label=label,
        grace_ms=src.grace_ms,
    )
