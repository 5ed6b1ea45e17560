"""Holiday / major-event inspection (节假日/重大活动保障巡检): the current state of every check
from a fresh run (`sentinel inspect --reason …` runs them and hands the results here), with
findings, hosts, databases and backups, faults not closed, the year's availability so far
and the risks for the days ahead.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from agent.clock.periods import contract_year
from agent.config.schema import Config
from agent.reports import avail, capacity, common, completion, dbsection, faultstats, risks
from agent.reports.daily import disk_rows, metric_value
from agent.store.db import Store
from probes import registry
from probes.base import CheckResult
from probes.registry import Section

HORIZON_DAYS = 14
"""Risks looked for over the next two weeks: a holiday (the Spring Festival, National Day) is
at most eight or nine days, and the engineers return a few days later."""
TREND_DAYS = 30


def _ts(result: CheckResult, fallback: int) -> int:
    started = getattr(result, "started_at", None)
    return int(started.timestamp() * 1000) if isinstance(started, datetime) else fallback


def build_inspection(
    config: Config,
    store: Store,
    results: Sequence[tuple[Any, CheckResult]],
    reason: str,
    now_ms: int,
) -> dict[str, Any]:
    """`results`: (check — its configuration or its name —, fresh CheckResult) pairs."""
    tz = config.site.tz
    cfg = config.check_map
    local = datetime.fromtimestamp(now_ms / 1000, tz)
    # Each inspection is its own report: two on one day (before a holiday, and again after a
    # change) must not overwrite each other's archive.
    label = local.strftime("%Y-%m-%d-%H%M%S")
    data = common.header(
        config, store, "inspection", label, now_ms, now_ms, now_ms, describe=local.strftime("%Y-%m-%d %H:%M")
    )
    checks: list[dict[str, Any]] = []
    findings: list[dict[str, Any]] = []
    hosts: list[dict[str, Any]] = []
    databases: list[dict[str, Any]] = []
    sets: list[dict[str, Any]] = []
    host_kinds = registry.kinds_feeding(Section.HOSTS)
    database_kinds = registry.kinds_feeding(Section.DATABASES)
    backup_kinds = registry.kinds_feeding(Section.BACKUPS)
    for check, res in results:
        c = cfg.get(getattr(check, "name", check)) if not hasattr(check, "kind") else check
        if c is None:
            continue
        ts = _ts(res, now_ms)
        st = res.status.name
        checks.append(
            {
                "name": c.name,
                "kind": c.kind,
                "system": c.system,
                "status": st,
                "summary": res.summary,
                "duration_s": getattr(res, "duration_s", None),
            }
        )
        details = dict(res.details) if res.details else {}
        if st != "OK":
            findings.append(
                {
                    "source": "check",
                    "status": st,
                    "object": c.name,
                    "system": c.system,
                    "text": res.summary,
                    "since_ms": None,
                }
            )
        if c.kind in database_kinds and dbsection.is_database(details):
            databases.append(dbsection.database_entry(c, ts, st, res.summary, details))
        elif c.kind in backup_kinds and dbsection.is_backup_files(details):
            sets += dbsection.backup_set_entries(c, ts, st, details)
        for f in dbsection.set_findings(details):
            findings.append(
                {
                    "source": "finding",
                    "status": f["status"],
                    "object": f"{c.name} {f['obj'] or ''}".strip(),
                    "system": c.system,
                    "text": f["text"],
                    "since_ms": None,
                }
            )
        if c.kind in host_kinds and res.metrics:
            hosts.append(
                {
                    "check": c.name,
                    "system": c.system,
                    "status": st,
                    "sample_ts": ts,
                    "cpu_pct": metric_value(res, "cpu.pct"),
                    "load_per_core": metric_value(res, "load5.per_core"),
                    "mem_pct": metric_value(res, "mem.pct"),
                    "swap_pct": metric_value(res, "swap.pct"),
                    "uptime_s": metric_value(res, "uptime.s"),
                    "disks": disk_rows(res, None),
                }
            )
    rank = {"CRIT": 0, "WARN": 1, "UNKNOWN": 2}
    findings.sort(key=lambda f: rank.get(f["status"], 3))
    # The contract year so far: the service period containing now, else the calendar year.
    year = contract_year(config.contract, tz, now_ms)
    systems = avail.systems(config, store, year.start_ms, year.end_ms, now_ms)
    open_faults = faultstats.still_open(store.db, config, now_ms)
    overdue = faultstats.overdue_vs_limits(store.db, config, now_ms, now_ms)
    trend_start = now_ms - TREND_DAYS * 86_400_000
    cap = capacity.trends(config, store, trend_start, now_ms + 1)
    counts = {s: sum(1 for c in checks if c["status"] == s) for s in ("OK", "WARN", "CRIT", "UNKNOWN")}
    data.update(
        reason=reason,
        summary={"current": counts, "checks": len(checks)},
        checks=checks,
        findings=findings,
        hosts=hosts,
        databases=databases,
        backup_sets=sets,
        open_faults=open_faults,
        availability=systems,
        overdue=overdue,
        capacity=cap,
        risks=risks.risks(
            config,
            store,
            horizon_days=HORIZON_DAYS,
            start_ms=trend_start,
            end_ms=now_ms + 1,
            next_end=datetime.fromtimestamp(now_ms / 1000, tz).date() + timedelta(days=HORIZON_DAYS),
            capacity=cap,
            availability=systems,
            overdue=overdue,
            repeats=[],
            completion=completion.completion(config, store, trend_start, now_ms + 1, now_ms),
        ),
    )
    return data
