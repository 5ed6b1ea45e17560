"""Open findings (what is wrong now) and risks for the next period (what will go wrong).

Risks are data with a kind and its figures, not sentences: the template words them in the
report's language. Each carries the improvement-plan fields (measure, owner, due, progress)
that the quarterly review fills in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

from agent.config.schema import Config
from agent.reports import dbsection
from agent.reports.capacity import latest_metric
from agent.store.db import Store
from probes import registry
from probes.base import Status
from probes.registry import Section

RATING_ORDER = {"高": 0, "中": 1, "低": 2}

SUGGESTION = {
    "capacity": "扩容或清理历史数据，确认自动扩展上限",
    "capacity_hot": "扩容或清理历史数据",
    "cert": "提前申请并更换证书",
    "budget_exhausted": "逐条分析停机原因，加强变更管理与冗余",
    "budget_runs_out": "分析停机原因，评估冗余与应急预案",
    "below_target": "复盘本期停机，落实整改措施",
    "overdue_limit": "加强值守与升级机制，缩短响应与恢复时间",
    "repeat": "查找根本原因，制定根治措施",
    "backup_missed": "检查备份作业与存储，补做备份并验证可恢复性",
    "fault_open": "尽快处理并补充原因与措施后关闭",
}


def open_findings(
    config: Config, store: Store, now_ms: int, faults_open: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Checks not OK now, DB/backup findings of their latest result, and faults not closed."""
    rows: list[dict[str, Any]] = []
    cfg = config.check_map
    feeding = {*registry.kinds_feeding(Section.DATABASES), *registry.kinds_feeding(Section.BACKUPS)}
    for cur in store.current():
        c = cfg.get(cur.check)
        if c is None or not c.enabled or cur.hard is None or cur.hard is Status.OK:
            continue
        rows.append(
            {
                "source": "check",
                "status": cur.hard.name,
                "object": cur.check,
                "system": cur.system,
                "text": cur.last_summary or "",
                "since_ms": cur.since_ts,
            }
        )
        latest = store.latest_result(cur.check) if c.kind in feeding else None
        if latest is not None and (
            dbsection.is_database(latest.details) or dbsection.is_backup_files(latest.details)
        ):
            for f in dbsection.set_findings(latest.details or {}):
                rows.append(
                    {
                        "source": "finding",
                        "status": f["status"],
                        "object": f"{cur.check} {f['obj'] or ''}".strip(),
                        "system": cur.system,
                        "text": f["text"],
                        "since_ms": None,
                    }
                )
    for fault in faults_open:
        rows.append(
            {
                "source": "fault",
                "status": "CRIT" if fault["level"] <= 2 else "WARN",
                "object": fault["number"],
                "system": fault["system"],
                "text": fault["description"],
                "since_ms": fault["start_ms"],
            }
        )
    rank = {"CRIT": 0, "WARN": 1, "UNKNOWN": 2}
    rows.sort(key=lambda r: (rank.get(r["status"], 3), r["source"] != "fault", r["since_ms"] or 0))
    return rows


def _risk(rating: str, kind: str, obj: str, system: str | None, **figures: Any) -> dict[str, Any]:
    return {
        "rating": rating,
        "kind": kind,
        "object": obj,
        "system": system,
        "figures": figures,
        "suggestion": SUGGESTION[kind],
        "measure": "",
        "owner": "",
        "due": "",
        "progress": "",
    }


def risks(
    config: Config,
    store: Store,
    *,
    horizon_days: int,
    start_ms: int,
    end_ms: int,
    next_end: date,
    capacity: Sequence[Mapping[str, Any]],
    availability: Sequence[Mapping[str, Any]],
    overdue: Mapping[str, Any],
    repeats: Sequence[Mapping[str, Any]],
    completion: Mapping[str, Any],
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for c in capacity:
        days, pct = c["days_to_full"], c["last_pct"]
        label = f"{c['check']} {c['name']}"
        if days is not None and days <= 2 * horizon_days:
            out.append(
                _risk(
                    "高" if days <= horizon_days else "中", "capacity", label, c["system"], pct=pct, days=days
                )
            )
        elif pct is not None and pct >= 85:
            out.append(_risk("高" if pct >= 90 else "中", "capacity_hot", label, c["system"], pct=pct))
    # Certificates are an endpoint's (cert_days_left, from HTTPS checks).
    endpoint_kinds = registry.kinds_feeding(Section.INTERFACES)
    for chk in config.checks:
        if chk.enabled and chk.kind in endpoint_kinds:
            left = latest_metric(store, chk.name, "cert_days_left", start_ms, end_ms)
            if left is not None and left <= horizon_days + 30:
                out.append(
                    _risk("高" if left <= horizon_days else "中", "cert", chk.name, chk.system, days=left)
                )
    for a in availability:
        v = a.get("verdict")
        if v:
            if v["exhausted"]:
                out.append(_risk("高", "budget_exhausted", a["subject"], a["subject"]))
            elif v["exhaust_date"] is not None and date.fromisoformat(v["exhaust_date"]) <= next_end:
                out.append(_risk("高", "budget_runs_out", a["subject"], a["subject"], date=v["exhaust_date"]))
        if a["passed"] is False:
            out.append(
                _risk(
                    "中",
                    "below_target",
                    a["subject"],
                    a["subject"],
                    pct=a["availability_pct"],
                    target=a["target_pct"],
                )
            )
    for row in overdue["levels"]:
        limit = row["limit"]
        if limit is not None and row["overdue"] and row["overdue"] >= max(limit - 1, 1):
            out.append(
                _risk(
                    "高" if row["reached"] else "中",
                    "overdue_limit",
                    str(row["level"]),
                    None,
                    level=row["level"],
                    overdue=row["overdue"],
                    limit=limit,
                )
            )
    for r in repeats:
        out.append(_risk("中", "repeat", r["key"], None, by=r["by"], count=r["count"], faults=r["faults"]))
    for task in completion["tasks"]:
        if task["task"] == "备份任务" and task["missing"]:
            out.append(
                _risk(
                    "高",
                    "backup_missed",
                    "、".join(sorted({m["check"] for m in task["missing"]})),
                    None,
                    count=len(task["missing"]),
                )
            )
    out.sort(key=lambda r: RATING_ORDER[r["rating"]])
    return out
