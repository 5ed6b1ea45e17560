"""Capacity trends over a period from the hourly roll-ups: disks (host probes) and database
space (databases, tablespaces, filegroups from the DB probes), with days until full.

Roll-ups, not raw results: a month of 1-minute samples for 200 checks is millions of rows,
its roll-ups a few hundred thousand, and raw results are pruned after a month anyway.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from agent.config.schema import Config
from agent.store.db import Store

# Metric families that describe space: (GLOB for the index range, kind).
_FAMILIES = (
    ("disk:*", "disk"),
    ("tablespace.*", "tablespace"),
    ("database.*", "database"),
    ("filegroup.*", "filegroup"),
)
_FIELDS = {"used_pct", "days_to_full", "used_bytes", "total_bytes", "size_bytes", "limit_bytes"}
DAY_MS = 86_400_000


def _split(metric: str, kind: str) -> tuple[str, str] | None:
    prefix, _, field = metric.rpartition(".")
    if field not in _FIELDS or not prefix:
        return None
    if kind == "disk":
        return prefix[len("disk:") :], field
    _, _, name = prefix.partition(".")
    return (name, field) if name else None


def _local_day(ms: int, tz: Any) -> str:
    return datetime.fromtimestamp(ms / 1000, tz).date().isoformat()


def trends(config: Config, store: Store, start_ms: int, end_ms: int) -> list[dict[str, Any]]:
    tz = config.site.tz
    known = set(store.check_names())
    rows: list[dict[str, Any]] = []
    for c in config.checks:
        if not c.enabled or c.name not in known:
            continue
        for pattern, kind in _FAMILIES:
            # (name) -> field -> [(hour_ts, value)]
            series: dict[str, dict[str, list[tuple[int, float]]]] = defaultdict(lambda: defaultdict(list))
            for hv in store.rollup_last_values(c.name, pattern, start_ms, end_ms):
                parts = _split(hv.metric, kind)
                if parts is not None:
                    series[parts[0]][parts[1]].append((hv.hour_ts, hv.value))
            for name, fields in series.items():
                pct = fields.get("used_pct", [])
                if not pct:
                    continue
                rows.append(_object(c, kind, name, fields, pct, tz))
    rows.sort(key=lambda r: (r["days_to_full"] is None, r["days_to_full"] or 0.0, -(r["last_pct"] or 0.0)))
    return rows


def _object(
    c: Any,
    kind: str,
    name: str,
    fields: dict[str, list[tuple[int, float]]],
    pct: Sequence[tuple[int, float]],
    tz: Any,
) -> dict[str, Any]:
    daily: dict[str, tuple[int, float]] = {}
    for hour, v in pct:
        daily[_local_day(hour, tz)] = (hour, v)  # the day's last hour wins
    first_ts, first = pct[0]
    last_ts, last = pct[-1]
    span_days = (last_ts - first_ts) / DAY_MS
    slope = (last - first) / span_days if span_days >= 1 else None
    probe_days = fields.get("days_to_full", [])
    days: float | None = None
    estimated = False
    if probe_days and probe_days[-1][0] == last_ts:
        days = probe_days[-1][1]
    elif slope is not None and slope > 0:
        days, estimated = round((100.0 - last) / slope, 1), True
    used = fields.get("used_bytes") or fields.get("size_bytes") or []
    total = fields.get("total_bytes") or fields.get("limit_bytes") or []
    return {
        "check": c.name,
        "system": c.system,
        "kind": kind,
        "name": name,
        "first_pct": first,
        "last_pct": last,
        "last_ms": last_ts,
        "used_bytes": used[-1][1] if used else None,
        "total_bytes": total[-1][1] if total else None,
        "growth_pct_per_day": None if slope is None else round(slope, 3),
        "days_to_full": days,
        "days_estimated": estimated,
        "series": [[d, v] for d, (_, v) in sorted(daily.items())],
    }


def latest_metric(store: Store, check: str, metric: str, start_ms: int, end_ms: int) -> float | None:
    """The last hourly value of one metric in the period (cert days left, for instance)."""
    if check not in store.check_names():
        return None
    return store.latest_rollup(check, metric, start_ms, end_ms)
