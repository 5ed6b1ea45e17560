"""Availability from the store: gathers intervals, agent runs, maintenance windows and the
force-majeure ledger, and hands them to the pure engine in `agent.availability`.

Maintenance windows (configuration and CLI ledger) exclude time for the checks they cover;
force-majeure records exclude time for the systems they name (all systems when none).
Only availability-critical checks decide whether a business system is available.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo

from agent.availability import compute as av
from agent.clock.periods import parse_period
from agent.store import faults as stored_faults
from agent.store.db import Store
from agent.windows import exclusions as fm_ledger
from agent.windows.ledger import cli_specs
from agent.windows.maintenance import MaintenanceSchedule

if TYPE_CHECKING:
    from agent.config.schema import Config, System

Policy = Literal["unavailable", "excluded"]


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
    kind: Literal["maintenance", "force_majeure"]
    name: str
    start_ms: int
    end_ms: int
    reason: str
    approved_by: str
    ticket: str | None = None
    recorded_by: str | None = None


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
    """The contract year to date, judged against the target."""
    note: str = ""
    redundancy: tuple[tuple[tuple[str, ...], int], ...] = field(default=())

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
            "exclusions": [asdict(x) | {"duration_ms": x.end_ms - x.start_ms} for x in self.exclusions],
            "checks": list(self.checks),
            "redundancy": [{"checks": list(c), "need": k} for c, k in self.redundancy],
            "verdict": None if self.verdict is None else self.verdict.as_dict(),
            "note": self.note,
        }


class Sources:
    """What one computation needs from the store, read once."""

    def __init__(self, store: Store, config: Config, start_ms: int, end_ms: int, now_ms: int) -> None:
        self.store = store
        self.config = config
        self.tz: ZoneInfo = config.site.tz
        self.now_ms = now_ms
        self.gaps = store.agent_gaps(start_ms, min(end_ms, now_ms), now_ms)
        self.maintenance = MaintenanceSchedule(config.maintenance, self.tz, cli_specs(store))
        recorded = fm_ledger.list_all(store)
        # The daemon mirrors the configuration's records into the ledger when it starts; a
        # record added to the file since then already counts, marked as not yet recorded.
        names = {x.record.name for x in recorded}
        pending = [
            fm_ledger.unrecorded(rec, self.tz, now_ms)
            for rec in config.availability.force_majeure
            if rec.name not in names
        ]
        self.force_majeure = recorded + pending

    def exclusions_for(
        self, system: str | None, check: str, start_ms: int, end_ms: int
    ) -> list[av.Exclusion]:
        out = [
            av.Exclusion(s, e, "maintenance", w.name, w.approved_by, w.reason)
            for s, e, w in self.maintenance.covering(start_ms, end_ms, system, check)
        ]
        out += [
            av.Exclusion(
                max(x.start_ms, start_ms),
                min(x.end_ms, end_ms),
                "force_majeure",
                x.record.name,
                x.record.approved_by,
                x.record.reason,
            )
            for x in self.force_majeure
            if x.covers(system) and x.start_ms < end_ms and x.end_ms > start_ms
        ]
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
        for check in checks:
            for w in self.maintenance.windows(start_ms, end_ms, system, check):
                rows.setdefault(
                    ("maintenance", w.name, w.start_ms),
                    ExclusionRow(
                        "maintenance", w.name, w.start_ms, w.end_ms, w.reason, w.approved_by, w.ticket
                    ),
                )
        for x in self.force_majeure:
            if x.covers(system) and x.start_ms < end_ms and x.end_ms > start_ms:
                rows[("force_majeure", x.record.name, x.start_ms)] = ExclusionRow(
                    "force_majeure",
                    x.record.name,
                    x.start_ms,
                    x.end_ms,
                    x.record.reason,
                    x.record.approved_by,
                    None,
                    x.created_by,
                )
        return sorted(rows.values(), key=lambda r: (r.start_ms, r.name))

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


def critical_checks(config: Config, system: str) -> list[str]:
    return [c.name for c in config.checks if c.system == system and c.availability_critical and c.enabled]


def _system_timeline(
    src: Sources, system: System, checks: Sequence[str], start_ms: int, end_ms: int
) -> list[av.Segment]:
    timelines = {c: src.timeline(system.name, c, start_ms, end_ms) for c in checks}
    parts: list[list[av.Segment]] = []
    grouped: set[str] = set()
    for g in system.redundancy:
        members = [timelines[c] for c in g.checks if c in timelines]
        grouped.update(g.checks)
        if members:
            parts.append(av.compose(members, k=min(g.need, len(members))))
    parts += [tl for c, tl in timelines.items() if c not in grouped]
    return av.compose(parts)


def _year_verdict(
    src: Sources,
    system: System | None,
    target: float,
    policy: Policy,
    start_ms: int,
    timeline_of: Any,
) -> av.Verdict | None:
    tz = src.tz
    y0, y1 = _year_bounds(tz, start_ms)
    if src.now_ms <= y0:
        return None
    schedule = system.schedule if system is not None else "7x24"
    tl = timeline_of(y0, min(y1, src.now_ms))
    if not tl:
        return None
    fig = av.figures(tl, av.planned_spans(schedule, tz, y0, y1))
    year_planned = sum(e - s for s, e in av.planned_spans(schedule, tz, y0, y1))
    return av.verdict(fig, year_planned, y0, src.now_ms, tz, target, policy)


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
    src = Sources(store, config, min(start_ms, _year_start(config, start_ms)), end_ms, now_ms)
    out = []
    for system in config.systems:
        if systems is not None and system.name not in systems:
            continue
        checks = critical_checks(config, system.name)
        groups = tuple((g.checks, g.need) for g in system.redundancy)
        if not checks:
            out.append(
                SubjectFigures(
                    system.name,
                    "system",
                    system.availability_target,
                    policy,
                    start_ms,
                    end_ms,
                    None,
                    note="未配置可用性关键检查项（availability_critical），无法计算可用率",
                    redundancy=groups,
                )
            )
            continue
        tl = _system_timeline(src, system, checks, start_ms, end_ms)
        fig = av.figures(tl, av.planned_spans(system.schedule, src.tz, start_ms, end_ms)) if tl else None
        verdict = None
        if with_verdict:
            verdict = _year_verdict(
                src,
                system,
                system.availability_target,
                policy,
                start_ms,
                lambda a, b, s=system, c=checks: _system_timeline(src, s, c, a, b),
            )
        out.append(
            SubjectFigures(
                system.name,
                "system",
                system.availability_target,
                policy,
                start_ms,
                end_ms,
                fig,
                src.link_faults(fig.outages, system.name) if fig else (),
                tuple(src.exclusion_rows(system.name, checks, start_ms, end_ms)),
                tuple(checks),
                verdict,
                redundancy=groups,
            )
        )
    return out


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
    c = config.check_map[check]
    system = config.system(c.system)
    target = system.availability_target if system else 99.5
    src = Sources(store, config, min(start_ms, _year_start(config, start_ms)), end_ms, now_ms)
    sysname = system.name if system else None
    tl = src.timeline(sysname, check, start_ms, end_ms)
    schedule = system.schedule if system else "7x24"
    fig = av.figures(tl, av.planned_spans(schedule, src.tz, start_ms, end_ms)) if tl else None
    verdict = _year_verdict(
        src, system, target, policy, start_ms, lambda a, b: src.timeline(sysname, check, a, b)
    )
    return SubjectFigures(
        check,
        "check",
        target,
        policy,
        start_ms,
        end_ms,
        fig,
        src.link_faults(fig.outages, sysname) if fig else (),
        tuple(src.exclusion_rows(sysname, [check], start_ms, end_ms)),
        (check,),
        verdict,
    )


def _year_bounds(tz: ZoneInfo, start_ms: int) -> tuple[int, int]:
    """The contract (calendar) year containing `start_ms`, in the site's time zone."""
    year = parse_period(str(datetime.fromtimestamp(start_ms / 1000, tz).year), tz)
    return year.start_ms, year.end_ms


def _year_start(config: Config, start_ms: int) -> int:
    return _year_bounds(config.site.tz, start_ms)[0]
