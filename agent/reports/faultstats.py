"""Fault figures for reports: counts by level, type, system and campus; response and recovery
timeliness; repeat faults; overdue counts against the contract's limits over the contract year
(the service period, or the calendar year where no service period is configured).

A deadline is overdue when the fault's flag says so (set by the daemon's tick) or when the
timestamps show it (response or recovery after the deadline, or still missing at report
time) — a report computed while the daemon was down must not miss an overdue fault. Faults
opened inside planned maintenance never count as overdue, as in `agent.faults.overdue_counts`.
"""

from __future__ import annotations

import sqlite3
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

from agent.clock.periods import Period, contract_year
from agent.config.schema import Config
from agent.faults.records import Fault, get_fault, list_faults
from agent.store import faults as stored
from agent.text.i18n import FAULT_TYPES, LEVEL_ZH


def _late(deadline: int | None, done: int | None, now_ms: int) -> bool:
    if deadline is None:
        return False
    return (done if done is not None else now_ms) > deadline


def response_overdue(f: Fault, now_ms: int) -> bool:
    if f.maintenance is not None:
        return False
    return f.response_overdue or _late(f.respond_deadline_ts, f.acked_ts, now_ms)


def restore_overdue(f: Fault, now_ms: int) -> bool:
    if f.maintenance is not None:
        return False
    return f.restore_overdue or _late(f.restore_deadline_ts, f.recovered_ts, now_ms)


def fault_row(f: Fault, config: Config, now_ms: int) -> dict[str, Any]:
    system = config.system(f.system)
    return {
        "number": f.number,
        "level": f.level,
        "type": f.type,
        "system": f.system,
        "campus": f.campus or (system.campus if system else None),
        "description": f.description,
        "impact": f.impact,
        "checks": list(f.checks),
        "start_ms": f.start_ts,
        "acked_ms": f.acked_ts,
        "acked_by": f.acked_by,
        "recovered_ms": f.recovered_ts,
        "closed_ms": f.closed_ts,
        "response_s": f.response_s,
        "recovery_s": f.recovery_s,
        "respond_deadline_ms": f.respond_deadline_ts,
        "restore_deadline_ms": f.restore_deadline_ts,
        "response_overdue": response_overdue(f, now_ms),
        "restore_overdue": restore_overdue(f, now_ms),
        "cause": f.cause,
        "measures": f.measures,
        "maintenance": f.maintenance,
    }


def _rate(on_time: int, overdue: int) -> float | None:
    n = on_time + overdue
    return None if n == 0 else on_time * 100.0 / n


def _timeliness(faults: Sequence[Fault], now_ms: int) -> dict[str, dict[str, Any]]:
    out = {}
    for which, deadline_of, done_of, late_of in (
        ("response", lambda f: f.respond_deadline_ts, lambda f: f.acked_ts, response_overdue),
        ("recovery", lambda f: f.restore_deadline_ts, lambda f: f.recovered_ts, restore_overdue),
    ):
        on_time = overdue = pending = 0
        for f in faults:
            if f.maintenance is not None or deadline_of(f) is None:
                continue
            if late_of(f, now_ms):
                overdue += 1
            elif done_of(f) is not None:
                on_time += 1
            else:
                pending += 1
        out[which] = {
            "on_time": on_time,
            "overdue": overdue,
            "pending": pending,
            "rate_pct": _rate(on_time, overdue),
        }
    return out


def _repeats(faults: Sequence[Fault]) -> list[dict[str, Any]]:
    by_check: dict[str, list[str]] = defaultdict(list)
    by_cause: dict[str, list[str]] = defaultdict(list)
    for f in faults:
        for c in f.checks:
            by_check[c].append(f.number)
        if f.cause and f.cause.strip():
            by_cause[" ".join(f.cause.split())].append(f.number)
    rows = [
        {"by": "check", "key": k, "count": len(v), "faults": v} for k, v in by_check.items() if len(v) > 1
    ]
    rows += [
        {"by": "cause", "key": k, "count": len(v), "faults": v} for k, v in by_cause.items() if len(v) > 1
    ]
    return sorted(rows, key=lambda r: (-r["count"], r["by"], r["key"]))


def overdue_vs_limits(db: sqlite3.Connection, config: Config, at_ms: int, now_ms: int) -> dict[str, Any]:
    """Overdue faults per level of the contract year containing `at_ms` (the service period, or
    the calendar year where none is configured), against that period's `overdue_limits` or
    else `faults.yearly_limits`. Faults count by the instant they started."""
    period = contract_year(config.contract, config.site.tz, at_ms)
    faults = list_faults(db, start_ms=period.start_ms, end_ms=period.end_ms)
    counts: Counter[int] = Counter(
        f.level for f in faults if response_overdue(f, now_ms) or restore_overdue(f, now_ms)
    )
    limits = period.limits_or(config.faults.yearly_limits)
    rows = []
    for level in sorted(LEVEL_ZH):
        limit = limits.get(level)
        n = counts.get(level, 0)
        rows.append(
            {"level": level, "overdue": n, "limit": limit, "reached": limit is not None and n >= limit}
        )
    return {
        "year": period.year,
        "service": period.service is not None,
        "period": contract_year_dict(period),
        "levels": rows,
    }


def contract_year_dict(period: Period) -> dict[str, Any]:
    """The contract year as reports carry it (`service`: a configured service period, whose
    wording is 服务期 instead of 年度)."""
    return {
        "label": period.label,
        "describe": period.describe(),
        "start_ms": period.start_ms,
        "end_ms": period.end_ms,
        "service": period.service is not None,
    }


def stats(db: sqlite3.Connection, config: Config, start_ms: int, end_ms: int, now_ms: int) -> dict[str, Any]:
    """Faults that started in [start_ms, end_ms), and what happened to them by `now_ms`."""
    faults = list_faults(db, start_ms=start_ms, end_ms=end_ms)
    rows = [fault_row(f, config, now_ms) for f in faults]
    by_level = Counter(f.level for f in faults)
    by_type = Counter(f.type for f in faults)
    by_system = Counter(r["system"] or "—" for r in rows)
    by_campus = Counter(r["campus"] or "—" for r in rows)
    types = list(FAULT_TYPES) + sorted(t for t in by_type if t not in FAULT_TYPES)
    return {
        "total": len(faults),
        "faults": rows,
        "by_level": [{"level": lv, "count": by_level.get(lv, 0)} for lv in sorted(LEVEL_ZH)],
        "by_type": [{"type": t, "count": by_type.get(t, 0)} for t in types],
        "by_system": [
            {"system": k, "count": v} for k, v in sorted(by_system.items(), key=lambda x: (-x[1], x[0]))
        ],
        "by_campus": [
            {"campus": k, "count": v} for k, v in sorted(by_campus.items(), key=lambda x: (-x[1], x[0]))
        ],
        "timeliness": _timeliness(faults, now_ms),
        "repeats": _repeats(faults),
        "closed_in_period": sum(1 for f in faults if f.closed_ts is not None and f.closed_ts < end_ms),
    }


def recovered_between(
    db: sqlite3.Connection, config: Config, start_ms: int, end_ms: int, now_ms: int
) -> list[dict[str, Any]]:
    """Faults (whenever they started) that recovered in [start_ms, end_ms)."""
    out = []
    for i in stored.recovered_between(db, start_ms, end_ms):
        f = get_fault(db, i)
        if f is not None:
            out.append(fault_row(f, config, now_ms))
    return out


def still_open(db: sqlite3.Connection, config: Config, now_ms: int) -> list[dict[str, Any]]:
    return [fault_row(f, config, now_ms) for f in list_faults(db, open_only=True) if f.start_ts <= now_ms]
