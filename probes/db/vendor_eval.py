"""Evaluations the Oracle and SQL Server items share: restarts, and backup freshness for
engines that keep their own backup history (RMAN, msdb) — configured expectations first,
age limits as the default for everything else.

Pure functions. Times are the server's: callers turn a server-computed age into an instant
on the server's clock (`ItemContext.clock()`), so a skewed agent clock changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from probes.base import Metric, Status
from probes.db.items import (
    BACKUP_TYPE_ZH,
    BackupSeen,
    Finding,
    ItemContext,
    ItemOutcome,
    as_utc,
    fmt_duration,
    judge_backups,
    threshold_finding,
)

__all__ = ["finished_at", "fnum", "judge_freshness", "restart_outcome"]


def fnum(value: Any) -> float | None:
    """A driver's number (int, float, Decimal, numeric text) as float; None stays None."""
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def restart_outcome(ictx: ItemContext, uptime_s: Any, who: str, started: str) -> ItemOutcome:
    """Uptime metric, and a finding when the server restarted recently (threshold uptime_s)."""
    uptime = fnum(uptime_s)
    if uptime is None:
        return ItemOutcome()
    text = f"{who} 于 {fmt_duration(uptime)}前重启（启动时间 {started}）"
    f = threshold_finding(ictx, "uptime_s", uptime, text, category="数据安全类", obj=who, unit=" 秒")
    return ItemOutcome((Metric("uptime_s", round(uptime), "s"),), (f,) if f else ())


def finished_at(ictx: ItemContext, age_s: Any) -> datetime | None:
    """The instant a backup finished, from its age as the server computed it."""
    age = fnum(age_s)
    return None if age is None else ictx.clock() - timedelta(seconds=age)


def _covered(expectations: Sequence[Any], database: str, kind: str) -> bool:
    return any(e.type == kind and e.database in ("*", database) for e in expectations)


def judge_freshness(
    seen: Sequence[BackupSeen],
    required: Mapping[str, Sequence[str]],
    ictx: ItemContext,
    *,
    db_age_s: Mapping[str, float] | None = None,
) -> ItemOutcome:
    """Judge the newest backups of each database.

    `required` maps each database to the backup types it needs (its recovery model decides);
    configured expectations (`ictx.options["backups"]`, "*" = every database in `required`)
    replace the default age limit `<type>_age_s` for the database and type they name.
    A database younger than a limit (`db_age_s`) is not yet late for it.
    """
    expectations = list(ictx.options.get("backups", ()))
    expected = judge_backups(expectations, seen, list(required), ictx)
    newest: dict[tuple[str, str], datetime] = {}
    for b in seen:
        t = as_utc(b.finished_at)
        key = (b.database, b.type)
        if t is not None and (key not in newest or t > newest[key]):
            newest[key] = t
    now = ictx.clock()
    metrics: list[Metric] = []
    findings: list[Finding] = list(expected.findings)
    facts: list[dict[str, Any]] = []
    for db, kinds in required.items():
        for kind in kinds:
            last = newest.get((db, kind))
            age = None if last is None else max((now - last).total_seconds(), 0.0)
            facts.append(
                {
                    "database": db,
                    "type": kind,
                    "finished_at": last.isoformat() if last else None,
                    "age_s": None if age is None else round(age),
                }
            )
            if age is not None:
                metrics.append(Metric(f"backup.{db}.{kind}_age_s", round(age), "s"))
            if _covered(expectations, db, kind):
                continue
            what = BACKUP_TYPE_ZH.get(kind, kind)
            rule_key = f"{kind}_age_s"
            if age is None:
                rule = ictx.thresholds.get(rule_key)
                limit = None if rule is None else (rule.crit if rule.crit is not None else rule.warn)
                young = db_age_s is not None and limit is not None and db_age_s.get(db, float("inf")) < limit
                if rule is not None and not young:
                    findings.append(Finding(Status.CRIT, f"{db} 没有{what}记录", "数据安全类", db))
                continue
            f = threshold_finding(
                ictx,
                rule_key,
                age,
                f"{db} 最近一次{what}在 {fmt_duration(age)}前",
                category="数据安全类",
                obj=db,
                unit=" 秒",
            )
            if f:
                findings.append(f)
    return ItemOutcome(tuple(metrics), tuple(findings), {"backups": facts, **expected.facts})
