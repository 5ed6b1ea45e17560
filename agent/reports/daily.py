"""Daily inspection report (日常巡检报告): one local calendar day of one site.

`build_daily` turns the store into plain data (times as UTC epoch ms, statuses as names such
as "CRIT", durations in seconds); `render_daily` turns that data into a self-contained HTML
page; `write_daily` writes both, atomically, next to each other.

Availability comes from `agent.availability_store` (the same engine as `sentinel
availability` and the acceptance report), under the configured unknown-time policy, with
the other policy's figure shown next to it. Unknown time — no interval, UNKNOWN intervals,
the agent not running — is shown separately and never counted as available. The day's own
timelines are kept only for each check's worst state of the day.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any, Protocol

from agent.clock.timeutil import day_bounds
from agent.config.schema import Config
from agent.reports import avail, common, dbsection, faultstats
from agent.store.db import AgentRun, CurrentState, Interval, Store, StoredResult
from agent.text.i18n import WEEKDAYS_ZH
from agent.text.render import render
from probes import registry
from probes.base import Metric, Status, worst
from probes.registry import Section

log = logging.getLogger("sentinel.reports")

DATA_VERSION = common.DATA_VERSION
NIGHT_UNTIL_MS = 12 * 3_600_000
"""Backups of the night: the last backup result up to noon after the day (or the report time)."""

DISK_DAYS_ATTENTION = 30.0
DISK_USED_ATTENTION = 85.0
DISK_DAYS_CRIT = 7.0
DISK_USED_CRIT = 95.0
CERT_DAYS_ATTENTION = 30.0
CERT_DAYS_CRIT = 7.0
MAX_CHANGE_ROWS = 300
"""The HTML lists at most this many state changes (the JSON keeps all): a flapping check
must not turn the morning e-mail into megabytes."""

_UP = (Status.OK, Status.WARN)
State = Status | None
"""A check's state over a span; None = no data (no interval, agent down, check silent)."""
Piece = tuple[int, int, State]


# --------------------------------------------------------------------------- time spans


def _merge(spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for s, e in sorted(spans):
        if e <= s:
            continue
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def _timeline(
    spans: Sequence[tuple[int, int, Status]], blanks: Sequence[tuple[int, int]], start: int, end: int
) -> list[Piece]:
    """Cover [start, end) completely: interval states, None where nothing is known.

    `blanks` (agent gaps, merged) override whatever an interval claims for that time: an
    interval that was still open when the agent died says nothing about the time after.
    """
    pieces: list[Piece] = []
    cursor = start
    for span_start, span_end, st in sorted(spans, key=lambda x: x[0]):
        s, e = max(span_start, start, cursor), min(span_end, end)
        if e <= s:
            continue
        if s > cursor:
            pieces.append((cursor, s, None))
        pieces.append((s, e, st))
        cursor = e
    if cursor < end:
        pieces.append((cursor, end, None))
    out: list[Piece] = []
    for s, e, state in pieces:
        cur = s
        for gs, ge in blanks:
            if ge <= cur or gs >= e:
                continue
            if gs > cur:
                out.append((cur, gs, state))
            out.append((max(gs, cur), min(ge, e), None))
            cur = min(ge, e)
        if cur < e:
            out.append((cur, e, state))
    merged: list[Piece] = []
    for p in out:
        if merged and merged[-1][2] == p[2] and merged[-1][1] == p[0]:
            merged[-1] = (merged[-1][0], p[1], p[2])
        else:
            merged.append(p)
    return merged


# --------------------------------------------------------------------------- figures


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile: the smallest sample with at least p % of samples at or below it.

    Nearest rank always reports a latency that was actually measured, which is what an
    engineer can look up in the raw results; interpolation would invent one.
    """
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100.0 * len(ordered)))
    return ordered[rank - 1]


def _latency_ms(r: StoredResult) -> float | None:
    """An endpoint's latency as its probe judges it: a request's `latency_ms` (HTTP), or connect
    plus exchange (`connect_ms` + `response_ms`, TCP); None when the result has neither."""
    m = {x.name: x.value for x in r.metrics}
    if "latency_ms" in m:
        return m["latency_ms"]
    if "connect_ms" in m:
        return m["connect_ms"] + m.get("response_ms", 0.0)
    return None


class WithMetrics(Protocol):
    """A stored result or a result just taken (`sentinel inspect`): both carry metrics."""

    @property
    def metrics(self) -> Sequence[Metric]: ...


def metric_value(r: WithMetrics | None, name: str) -> float | None:
    if r is None:
        return None
    for m in r.metrics:
        if m.name == name:
            return m.value
    return None


def disk_rows(latest: WithMetrics, first: WithMetrics | None) -> list[dict[str, Any]]:
    mounts: dict[str, dict[str, float]] = defaultdict(dict)
    for m in latest.metrics:
        if m.name.startswith("disk:") and "." in m.name:
            # Mount points may contain dots themselves; the field is after the last one.
            mount, field = m.name[5:].rsplit(".", 1)
            mounts[mount][field] = m.value
    rows = []
    for mount in sorted(mounts):
        f = mounts[mount]
        first_used = metric_value(first, f"disk:{mount}.used_bytes")
        used = f.get("used_bytes")
        rows.append(
            {
                "mount": mount,
                "used_pct": f.get("used_pct"),
                "inode_pct": f.get("inode_pct"),
                "days_to_full": f.get("days_to_full"),
                "used_bytes": used,
                "total_bytes": f.get("total_bytes"),
                "growth_bytes": (used - first_used) if used is not None and first_used is not None else None,
            }
        )
    return rows


def _stale_after_ms(cfg: Any) -> int:
    # Two missed runs plus the probe's own timeout and a minute of scheduling slack.
    return int((2 * float(cfg.interval) + float(cfg.timeout)) * 1000) + 60_000


def _agent_gaps(
    config: Config, store: Store, runs: Sequence[AgentRun], *, start: int, end: int, now: int
) -> list[tuple[int, int]]:
    # The one liveness rule (heartbeat + agent.grace_ms), the same as availability and status.
    gaps = store.agent_gaps(start, end, now, config.agent.grace_ms)
    return _merge((max(s, start), min(e, end)) for s, e in gaps)


def _databases(
    store: Store,
    checks: Sequence[Any],
    day_results: Mapping[str, list[StoredResult]],
    day_end: int,
    night_end: int,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Each DB check's space and findings (its last result of the day) with the night's
    backups (its last result up to `night_end`), and each backup-file set of the night."""
    databases: list[dict[str, Any]] = []
    sets: list[dict[str, Any]] = []
    feeding = {*registry.kinds_feeding(Section.DATABASES), *registry.kinds_feeding(Section.BACKUPS)}
    for c in checks:
        if c.kind not in feeding:
            continue
        day = [r for r in day_results.get(c.name, []) if r.details]
        if not day or not (
            dbsection.is_database(day[-1].details) or dbsection.is_backup_files(day[-1].details)
        ):
            continue
        last_day = day[-1]
        night = [r for r in store.results(c.name, day_end, night_end) if r.details]
        last_night = night[-1] if night else last_day
        if dbsection.is_database(last_day.details):
            entry = dbsection.database_entry(c, last_day.ts, last_day.status.name, last_day.summary,
                                             last_day.details or {})  # fmt: skip
            entry["backups_sample_ms"] = last_night.ts
            if last_night is not last_day and dbsection.is_database(last_night.details):
                entry["backups"] = dbsection.database_entry(
                    c, last_night.ts, last_night.status.name, last_night.summary, last_night.details or {}
                )["backups"]
            databases.append(entry)
        elif dbsection.is_backup_files(last_night.details):
            sets += dbsection.backup_set_entries(
                c, last_night.ts, last_night.status.name, last_night.details or {}
            )
    return databases, sets


def build_daily(
    config: Config, store: Store, day: date, now_ms: int | None = None, *, late: bool = False
) -> dict[str, Any]:
    """All figures of the daily report for `day` (local calendar day of the site)."""
    tz = config.site.tz
    now = int(time.time() * 1000) if now_ms is None else int(now_ms)
    start, end = day_bounds(day, tz)
    # A report on today covers the day so far; the future is neither up nor down.
    period_end = max(start, min(end, now))

    checks_cfg = [c for c in config.checks if getattr(c, "enabled", True)]
    cfg_by_name: Mapping[str, Any] = {c.name: c for c in config.checks}
    current: dict[str, CurrentState] = {c.check: c for c in store.current()}

    runs = store.runs()
    gaps = _agent_gaps(config, store, runs, start=start, end=period_end, now=now)
    first_run = runs[0].started_ts if runs else None
    unmonitored = list(gaps)
    monitoring_started: int | None = None
    if first_run is None:
        unmonitored = [(start, period_end)] if period_end > start else []
    elif first_run > start:
        monitoring_started = first_run if first_run < period_end else None
        unmonitored.append((start, min(first_run, period_end)))
    unmonitored = _merge(unmonitored)
    unmonitored_ms = sum(e - s for s, e in unmonitored)
    period_ms = period_end - start

    # One query each for the whole day; grouped in memory.
    all_intervals = store.intervals(start - 1, end)
    by_check_iv: dict[str, list[Interval]] = defaultdict(list)
    for iv in all_intervals:
        by_check_iv[iv.check].append(iv)
    results_by_check: dict[str, list[StoredResult]] = defaultdict(list)
    for r in store.results(None, start, end):
        results_by_check[r.check].append(r)

    timelines: dict[str, list[Piece]] = {}
    checks_out: list[dict[str, Any]] = []
    for c in checks_cfg:
        cur = current.get(c.name)
        last_ts = cur.last_ts if cur else None
        spans = []
        for iv in by_check_iv.get(c.name, []):
            iv_end = iv.end_ts
            if iv_end is None:
                # An open interval is only as good as the check's last result.
                iv_end = period_end if last_ts is None else min(period_end, last_ts + _stale_after_ms(c))
            spans.append((iv.start_ts, iv_end, iv.state))
        tl = _timeline(spans, unmonitored, start, period_end)
        timelines[c.name] = tl

        stale = False
        if cur is None or cur.hard is None or last_ts is None:
            now_status: Status = Status.UNKNOWN
            now_summary = "无数据"
            since = None
        else:
            now_status = cur.hard
            now_summary = cur.last_summary or ""
            since = cur.since_ts
            if now - last_ts > _stale_after_ms(c):
                stale = True
                now_status = Status.UNKNOWN
        # Worst confirmed state the check was in; time without data is reported separately
        # (coverage, unknown time), or a five-second restart would mark every check 未知.
        day_states = [p[2] for p in tl if p[2] is not None]
        checks_out.append(
            {
                "name": c.name,
                "kind": c.kind,
                "system": c.system,
                "availability_critical": bool(c.availability_critical),
                "status": now_status.name,
                "since_ms": since,
                "summary": now_summary,
                "last_ts": last_ts,
                "stale": stale,
                "worst": worst(*day_states).name if day_states else None,
                "results": len(results_by_check.get(c.name, [])),
            }
        )
    check_rows = {c["name"]: c for c in checks_out}
    figures = {e["subject"]: e for e in avail.systems(config, store, start, end, now, with_verdict=False)}

    # ------------------------------------------------------------ systems
    systems_out = []
    for sysm in config.systems:
        members = [c for c in checks_cfg if c.system == sysm.name]
        critical = [c.name for c in members if c.availability_critical]
        statuses = [Status[check_rows[c.name]["status"]] for c in members]
        entry: dict[str, Any] = {
            "name": sysm.name,
            "campus": sysm.campus,
            "target_pct": sysm.availability_target,
            "checks": [c.name for c in members],
            "critical_checks": critical,
            "status": worst(*statuses).name if statuses else None,
            "availability": None,
        }
        if critical:
            entry["availability"] = figures[sysm.name]
        systems_out.append(entry)

    # ------------------------------------------------------------ hosts and endpoints
    hosts_out = []
    endpoints_out = []
    cert_rows = []
    host_kinds = registry.kinds_feeding(Section.HOSTS)
    endpoint_kinds = registry.kinds_feeding(Section.INTERFACES)
    endpoint_names = [c.name for c in checks_cfg if c.kind in endpoint_kinds]
    endpoint_figures = avail.checks(config, store, endpoint_names, start, end, now)
    for c in checks_cfg:
        rs = results_by_check.get(c.name, [])
        row = check_rows[c.name]
        if c.kind in host_kinds:
            with_metrics = [r for r in rs if r.metrics]
            latest = with_metrics[-1] if with_metrics else None
            hosts_out.append(
                {
                    "check": c.name,
                    "system": c.system,
                    "status": row["status"],
                    "sample_ts": latest.ts if latest else None,
                    "cpu_pct": metric_value(latest, "cpu.pct"),
                    "load_per_core": metric_value(latest, "load5.per_core"),
                    "mem_pct": metric_value(latest, "mem.pct"),
                    "swap_pct": metric_value(latest, "swap.pct"),
                    "uptime_s": metric_value(latest, "uptime.s"),
                    "disks": disk_rows(latest, with_metrics[0] if with_metrics else None) if latest else [],
                }
            )
        elif c.kind in endpoint_kinds:
            lat = [v for r in rs if r.status is not Status.UNKNOWN and (v := _latency_ms(r)) is not None]
            endpoints_out.append(
                {
                    "check": c.name,
                    "kind": c.kind,
                    "system": c.system,
                    "status": row["status"],
                    "availability_critical": row["availability_critical"],
                    "p50_ms": percentile(lat, 50),
                    "p95_ms": percentile(lat, 95),
                    "results": len(rs),
                    "failures": sum(1 for r in rs if r.status in (Status.CRIT, Status.UNKNOWN)),
                    "availability": endpoint_figures[c.name],
                }
            )
            cert = [r for r in rs if metric_value(r, "cert_days_left") is not None]
            if cert:
                cert_rows.append((c, metric_value(cert[-1], "cert_days_left")))

    # ------------------------------------------------------------ state changes
    changes_out = []
    for name, ivs in by_check_iv.items():
        cfg = cfg_by_name.get(name)
        cur = current.get(name)
        system = cfg.system if cfg is not None else (cur.system if cur else None)
        prev: Interval | None = None
        for iv in ivs:
            if start <= iv.start_ts < end:
                contiguous = prev is not None and prev.end_ts == iv.start_ts
                changes_out.append(
                    {
                        "check": name,
                        "system": system,
                        "from": prev.state.name if contiguous and prev is not None else None,
                        "to": iv.state.name,
                        "start_ms": iv.start_ts,
                        "end_ms": iv.end_ts,
                        "ongoing": iv.end_ts is None,
                        "duration_s": (
                            (iv.end_ts if iv.end_ts is not None else max(now, iv.start_ts)) - iv.start_ts
                        )
                        / 1000.0,
                        "summary": iv.summary,
                    }
                )
            prev = iv
    changes_out.sort(key=lambda x: (x["start_ms"], x["check"]))

    # ------------------------------------------------------------ attention
    attention: list[dict[str, Any]] = []
    for row in checks_out:
        if row["status"] != "OK":
            attention.append(
                {
                    "type": "check",
                    "level": row["status"],
                    "check": row["name"],
                    "system": row["system"],
                    "since_ms": row["since_ms"],
                    "summary": row["summary"],
                    "stale": row["stale"],
                    "last_ts": row["last_ts"],
                }
            )
    for h in hosts_out:
        for d in h["disks"]:
            used, days = d["used_pct"], d["days_to_full"]
            hot = used is not None and used >= DISK_USED_ATTENTION
            filling = days is not None and days < DISK_DAYS_ATTENTION
            if hot or filling:
                crit = (used is not None and used >= DISK_USED_CRIT) or (
                    days is not None and days < DISK_DAYS_CRIT
                )
                attention.append(
                    {
                        "type": "disk",
                        "level": "CRIT" if crit else "WARN",
                        "check": h["check"],
                        "system": h["system"],
                        "mount": d["mount"],
                        "used_pct": used,
                        "days_to_full": days,
                    }
                )
    for c, days_left in cert_rows:
        if days_left is not None and days_left < CERT_DAYS_ATTENTION:
            attention.append(
                {
                    "type": "cert",
                    "level": "CRIT" if days_left < CERT_DAYS_CRIT else "WARN",
                    "check": c.name,
                    "system": c.system,
                    "days_left": days_left,
                }
            )
    databases, backup_sets = _databases(
        store, checks_cfg, results_by_check, end, max(end, min(now + 1, end + NIGHT_UNTIL_MS))
    )
    for db in databases:
        for b in db["backups"]:
            if b["met"] is False:
                attention.append(
                    {
                        "type": "backup",
                        "level": "CRIT",
                        "check": db["check"],
                        "system": db["system"],
                        "target": b["database"],
                        "type_name": b["type"],
                        "schedule": b["schedule"],
                    }
                )
    for bs in backup_sets:
        if bs["met"] is False:
            attention.append(
                {
                    "type": "backup",
                    "level": "CRIT",
                    "check": bs["check"],
                    "system": bs["system"],
                    "target": bs["set"],
                    "type_name": "",
                    "schedule": bs["schedule"],
                }
            )
    for s, e in gaps:
        attention.append(
            {"type": "gap", "level": "UNKNOWN", "start_ms": s, "end_ms": e, "duration_s": (e - s) / 1000.0}
        )
    rank = {"CRIT": 0, "WARN": 1, "UNKNOWN": 2}
    attention.sort(key=lambda a: rank.get(a["level"], 3))  # stable: type order kept within a level

    def _count(key: str) -> dict[str, int]:
        counts = {s.name: 0 for s in Status}
        for row in checks_out:
            if row[key] is not None:
                counts[row[key]] += 1
        return counts

    runs_today = [r for r in runs if r.started_ts < period_end and r.end_ts >= start]
    opened = faultstats.stats(store.db, config, start, end, now)["faults"]
    recovered = faultstats.recovered_between(store.db, config, start, end, now)
    seen = {f["number"] for f in opened}
    head = common.header(config, store, "daily", day.isoformat(), start, end, now,
                         describe=day.isoformat(), late=late)  # fmt: skip
    return head | {
        "day": day.isoformat(),
        "start_ms": start,
        "end_ms": end,
        "summary": {"current": _count("status"), "worst": _count("worst"), "checks": len(checks_out)},
        "coverage": {
            "period_s": period_ms / 1000.0,
            "unmonitored_s": unmonitored_ms / 1000.0,
            "monitored_pct": (period_ms - unmonitored_ms) / period_ms * 100.0 if period_ms > 0 else None,
            "monitoring_started_ms": monitoring_started,
            "never_ran": first_run is None,
            "gaps": [{"start_ms": s, "end_ms": e, "duration_s": (e - s) / 1000.0} for s, e in gaps],
            "runs": [
                {"started_ms": r.started_ts, "ended_ms": r.stopped_ts, "clean": r.clean, "version": r.version}
                for r in runs_today
            ],
        },
        "systems": systems_out,
        "outages": avail.all_outages([s["availability"] for s in systems_out if s["availability"]]),
        "faults": {
            "opened": opened,
            "recovered": recovered,
            "changed": sorted(
                opened + [f for f in recovered if f["number"] not in seen], key=lambda f: f["start_ms"]
            ),
        },
        "databases": databases,
        "backup_sets": backup_sets,
        "checks": checks_out,
        "hosts": hosts_out,
        "endpoints": endpoints_out,
        "changes": changes_out,
        "attention": attention,
    }


# --------------------------------------------------------------------------- output


def utc_offset(tz: Any, ms: int) -> str:
    off = datetime.fromtimestamp(ms / 1000, tz).strftime("%z")
    return f"UTC{off[:3]}:{off[3:]}" if off else "UTC"


def render_daily(config: Config, data: Mapping[str, Any], lang: str = "zh", **extra: Any) -> str:
    """HTML of the report in `lang` ("zh" or "en"); labels come from agent.text.i18n."""
    tz = config.site.tz
    return render(
        "daily.html",
        d=data,
        lang=lang,
        site_tz=tz,
        tz_name=data["site"]["timezone"],
        tz_offset=utc_offset(tz, data["start_ms"]),
        weekday=WEEKDAYS_ZH[date.fromisoformat(data["day"]).weekday()],
        max_changes=MAX_CHANGE_ROWS,
        **extra,
    )


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the report from the mail/web user
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_daily(
    config: Config, store: Store, day: date, out: Path | None = None, now_ms: int | None = None
) -> Path:
    """Write daily-<day>.html and its data daily-<day>.json; returns the HTML path."""
    data = build_daily(config, store, day, now_ms)
    html = render_daily(config, data, getattr(config.reports, "lang", "zh"))
    path = Path(out) if out is not None else Path(config.reports.output_dir) / f"daily-{day.isoformat()}.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    json_path = path.with_suffix(".json")
    _atomic_write(json_path, json.dumps(data, ensure_ascii=False, indent=1, sort_keys=True) + "\n")
    _atomic_write(path, html)
    return path
