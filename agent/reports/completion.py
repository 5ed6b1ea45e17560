"""Inspection task completion rate (巡检任务完成率) = tasks that ran ÷ tasks planned.

Planned tasks: one daily inspection report per local day (from the first day the agent ran,
due at `reports.daily_time` the next morning), and every backup slot the backup checks
judged (DB probes' and the backup-file probe's `backups_expected`). A slot counts as done
when the last judgement of it says it was met (a backup that arrived late still ran).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from agent.clock.timeutil import to_ms
from agent.config.schema import Config
from agent.reports import dbsection
from agent.store.db import Store

DAY_MS = 86_400_000


def _daily_reports(config: Config, store: Store, start_ms: int, end_ms: int, now_ms: int) -> dict[str, Any]:
    tz = config.site.tz
    runs = store.runs()
    planned: list[str] = []
    missing: list[str] = []
    if runs:
        first = datetime.fromtimestamp(runs[0].started_ts / 1000, tz).date()
        day = max(datetime.fromtimestamp(start_ms / 1000, tz).date(), first)
        last = datetime.fromtimestamp((end_ms - 1) / 1000, tz).date()
        while day <= last:
            due = datetime.combine(day + timedelta(days=1), config.reports.daily_at, tzinfo=tz)
            if to_ms(due) > now_ms:
                break
            planned.append(day.isoformat())
            if not store.report_done("daily", day.isoformat()):
                missing.append(day.isoformat())
            day += timedelta(days=1)
    return {
        "task": "日常巡检报告（每日）",
        "planned": len(planned),
        "done": len(planned) - len(missing),
        "missing": missing,
    }


def _backups(config: Config, store: Store, start_ms: int, end_ms: int, now_ms: int) -> dict[str, Any]:
    known = set(store.check_names())
    # A judgement made up to a day after the period still speaks about a slot due inside it.
    until = min(now_ms + 1, end_ms + DAY_MS)
    slots: dict[tuple[str, ...], tuple[int, int, bool]] = {}
    for c in config.checks:
        if not c.enabled or c.name not in known:
            continue
        latest = store.latest_result(c.name)
        if latest is None or not (
            dbsection.is_database(latest.details) or dbsection.is_backup_files(latest.details)
        ):
            continue
        # The details JSON as stored: no metric parsing, and a result whose details repeat the previous
        # one's (the same judgement every few minutes) is not parsed again.
        prev_text, details = None, None
        for ts, text in store.result_details(c.name, start_ms, until):
            if text != prev_text:
                prev_text, details = text, json.loads(text)
            for key, due, met in dbsection.expected_slots(c.name, ts, details):
                if start_ms <= due < end_ms:
                    slot = (*key, str(due))
                    prev = slots.get(slot)
                    if prev is None or ts >= prev[0]:
                        slots[slot] = (ts, due, met)
    missing = [
        {"check": k[0], "target": k[2], "type": k[3], "schedule": k[4], "due_ms": due}
        for k, (_, due, met) in sorted(slots.items(), key=lambda x: (x[1][1], x[0]))
        if not met
    ]
    return {"task": "备份任务", "planned": len(slots), "done": len(slots) - len(missing), "missing": missing}


def completion(config: Config, store: Store, start_ms: int, end_ms: int, now_ms: int) -> dict[str, Any]:
    tasks = [
        _daily_reports(config, store, start_ms, end_ms, now_ms),
        _backups(config, store, start_ms, end_ms, now_ms),
    ]
    planned = sum(t["planned"] for t in tasks)
    done = sum(t["done"] for t in tasks)
    return {
        "tasks": tasks,
        "planned": planned,
        "done": done,
        "rate_pct": None if planned == 0 else done * 100.0 / planned,
    }
