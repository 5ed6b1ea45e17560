"""Oracle inspection items: one read-only SELECT (or a few) per item and a pure evaluator.

Written for 11.2 and later. Items that need a newer server carry `min_version` (the alert
log through V$DIAG_ALERT_EXT needs 12.1). No Diagnostics Pack views (ASH/AWR) are used.

Queries are static text: anything "since the last run" is cut in the evaluator with the
item's memory, so every statement can be checked by a SQL parser offline. Ages are computed
on the server (`SYSDATE - x`), so the agent's own clock never enters a backup's age.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from probes.base import Metric, Status
from probes.db.items import (
    BACKUP_TYPE_ZH,
    BackupSeen,
    Finding,
    Item,
    ItemContext,
    ItemOutcome,
    Row,
    Rows,
    SpaceEntry,
    blocking_outcome,
    fmt_bytes,
    limit_outcome,
    long_transactions_outcome,
    space_outcome,
    threshold_finding,
)
from probes.db.vendor_eval import finished_at, fnum, judge_freshness, restart_outcome
from probes.thresholds import Threshold

DAY_S = 86400.0

# ---------------------------------------------------------------------------- SQL

SQL_INSTANCE = """
SELECT i.instance_name, i.host_name, i.version, i.status, i.database_status,
       TO_CHAR(i.startup_time, 'YYYY-MM-DD HH24:MI:SS') AS startup_time,
       (SYSDATE - i.startup_time) * 86400 AS uptime_s
FROM v$instance i
"""

SQL_DATABASE = """
SELECT d.name, d.db_unique_name, d.open_mode, d.database_role, d.log_mode
FROM v$database d
"""

SQL_TS_FILES = """
SELECT f.tablespace_name,
       SUM(f.bytes) AS alloc_bytes,
       SUM(CASE WHEN f.autoextensible = 'YES' THEN GREATEST(f.maxbytes, f.bytes) ELSE f.bytes END)
         AS max_bytes,
       MAX(f.autoextensible) AS autoextensible
FROM dba_data_files f
GROUP BY f.tablespace_name
UNION ALL
SELECT t.tablespace_name,
       SUM(t.bytes),
       SUM(CASE WHEN t.autoextensible = 'YES' THEN GREATEST(t.maxbytes, t.bytes) ELSE t.bytes END),
       MAX(t.autoextensible)
FROM dba_temp_files t
GROUP BY t.tablespace_name
"""

SQL_TS_USAGE = """
SELECT m.tablespace_name, ts.contents, m.used_space * ts.block_size AS used_bytes,
       m.tablespace_size * ts.block_size AS size_bytes
FROM dba_tablespace_usage_metrics m
JOIN dba_tablespaces ts ON ts.tablespace_name = m.tablespace_name
"""

SQL_RESOURCE_LIMIT = """
SELECT r.resource_name, r.current_utilization, r.max_utilization, TRIM(r.limit_value) AS limit_value
FROM v$resource_limit r
WHERE r.resource_name IN ('sessions', 'processes')
"""

# Column names follow probes.db.items.blocking_outcome / long_transactions_outcome.
SQL_BLOCKING = """
SELECT s.sid AS waiting_pid, s.seconds_in_wait AS wait_s, s.blocking_session AS blocking_pid,
       b.username AS blocking_user, b.machine AS blocking_client, b.program AS blocking_app,
       b.status AS blocking_state, SYS_CONTEXT('USERENV', 'DB_NAME') AS datname, s.event, s.sql_id
FROM v$session s
LEFT JOIN v$session b ON b.sid = s.blocking_session
WHERE s.blocking_session IS NOT NULL
"""

SQL_LONG_TX = """
SELECT s.sid AS pid, s.username AS usename, SYS_CONTEXT('USERENV', 'DB_NAME') AS datname, s.status AS state,
       s.machine AS client, s.program AS app, t.used_ublk AS undo_blocks,
       (SYSDATE - t.start_date) * 86400 AS age_s
FROM v$transaction t
JOIN v$session s ON s.taddr = t.addr
"""

# The latest run of each job in two days: a job stays failed until it runs successfully.
SQL_SCHEDULER = """
SELECT r.log_id, r.owner, r.job_name, r.status, r.error# AS error_code,
       TO_CHAR(r.log_date, 'YYYY-MM-DD HH24:MI:SS') AS log_date, r.additional_info
FROM (
  SELECT d.log_id, d.owner, d.job_name, d.status, d.error#, d.log_date, d.additional_info,
         ROW_NUMBER() OVER (PARTITION BY d.owner, d.job_name ORDER BY d.log_id DESC) AS rn
  FROM dba_scheduler_job_run_details d
  WHERE d.log_date > SYSTIMESTAMP - INTERVAL '2' DAY
) r
WHERE r.rn = 1 AND r.status <> 'SUCCEEDED'
"""

SQL_RMAN_JOBS = """
SELECT j.session_key, j.input_type, j.status, j.output_device_type, j.output_bytes,
       TO_CHAR(j.end_time, 'YYYY-MM-DD HH24:MI:SS') AS end_time,
       (SYSDATE - j.end_time) * 86400 AS age_s,
       (SELECT MIN(b.incremental_level) FROM v$backup_set_details b
         WHERE b.session_key = j.session_key AND b.backup_type = 'I') AS incremental_level
FROM v$rman_backup_job_details j
WHERE j.start_time > SYSDATE - 40
ORDER BY j.session_key
"""

SQL_ARCHIVED_NOT_BACKED_UP = """
SELECT COUNT(*) AS logs, SUM(a.blocks * a.block_size) AS bytes,
       (SYSDATE - MIN(a.completion_time)) * 86400 AS oldest_age_s
FROM v$archived_log a
WHERE a.backup_count = 0 AND a.deleted = 'NO' AND a.archived = 'YES' AND a.standby_dest = 'NO'
"""

SQL_FRA = """
SELECT r.name, r.space_limit, r.space_used, r.space_reclaimable, r.number_of_files
FROM v$recovery_file_dest r
"""

SQL_ARCHIVE_DEST = """
SELECT a.dest_id, a.dest_name, a.status, a.target, a.destination, a.error
FROM v$archive_dest a
WHERE a.status <> 'INACTIVE'
"""

# ORA- lines of the last day; the evaluator keeps those after the memory cursor.
SQL_ALERT_LOG = """
SELECT TO_CHAR(SYS_EXTRACT_UTC(a.originating_timestamp), 'YYYY-MM-DD"T"HH24:MI:SS.FF6') AS ts_utc,
       a.message_text
FROM v$diag_alert_ext a
WHERE a.originating_timestamp > SYSTIMESTAMP - INTERVAL '1' DAY
  AND a.message_text LIKE '%ORA-%'
ORDER BY a.originating_timestamp
FETCH FIRST 1000 ROWS ONLY
"""

SQL_INVALID_OBJECTS = """
SELECT o.owner, o.object_type, o.object_name
FROM dba_objects o
WHERE o.status = 'INVALID' AND ROWNUM <= 5000
"""

SQL_DATAGUARD = """
SELECT s.name, s.value, s.time_computed
FROM v$dataguard_stats s
WHERE s.name IN ('transport lag', 'apply lag')
"""

SQL_ACCOUNTS = """
SELECT u.username, u.account_status, u.profile,
       TO_CHAR(u.expiry_date, 'YYYY-MM-DD HH24:MI:SS') AS expiry_date,
       (u.expiry_date - SYSDATE) AS days_left,
       CASE WHEN u.username = SYS_CONTEXT('USERENV', 'SESSION_USER') THEN 1 ELSE 0 END AS is_self
FROM dba_users u
"""

# Querying V$ASM_* where no ASM is used writes a trace file on every call: the probe runs this
# gate first and drops the ASM item when no datafile lives in a disk group.
SQL_ASM_GATE = """
SELECT COUNT(*) AS asm_files FROM v$datafile f WHERE f.name LIKE '+%'
"""

SQL_SERVER_NOW = """
SELECT SYS_EXTRACT_UTC(SYSTIMESTAMP) AS now_utc FROM dual
"""

SQL_ASM = """
SELECT g.name, g.state, g.type, g.total_mb, g.free_mb, g.usable_file_mb, g.offline_disks
FROM v$asm_diskgroup g
"""

# ---------------------------------------------------------------------------- grants


def _grant(*objects: str) -> str:
    return "; ".join(f"GRANT SELECT ON {o} TO <user>" for o in objects)


# ---------------------------------------------------------------------------- evaluators


def _one(rows: Rows) -> Row:
    return rows[0] if rows else {}


def _s(v: Any) -> str:
    return "" if v is None else str(v).strip()


def eval_version(data: Mapping[str, Rows], ctx: ItemContext) -> ItemOutcome:
    row = _one(data["instance"])
    facts = {
        "instance": _s(row.get("instance_name")),
        "host": _s(row.get("host_name")),
        "version": ".".join(str(p) for p in ctx.version) or _s(row.get("version")),
        "startup_time": _s(row.get("startup_time")),
        "status": _s(row.get("status")),
    }
    restart = restart_outcome(ctx, row.get("uptime_s"), f"实例 {facts['instance']}", facts["startup_time"])
    metrics = list(restart.metrics)
    findings = list(restart.findings)
    status = facts["status"]
    if status and status != "OPEN":
        findings.append(
            Finding(Status.CRIT, f"实例状态为 {status}，不是 OPEN", "数据安全类", facts["instance"])
        )
    return ItemOutcome(tuple(metrics), tuple(findings), facts)


_STANDBY_ROLES = ("PHYSICAL STANDBY", "LOGICAL STANDBY", "SNAPSHOT STANDBY", "FAR SYNC")


def eval_open_mode(data: Mapping[str, Rows], ctx: ItemContext) -> ItemOutcome:
    row = _one(data["database"])
    name, mode, role, log_mode = (_s(row.get(k)) for k in ("name", "open_mode", "database_role", "log_mode"))
    facts = {"name": name, "open_mode": mode, "database_role": role, "log_mode": log_mode}
    findings: list[Finding] = []
    standby = role in _STANDBY_ROLES
    if not standby and mode != "READ WRITE":
        findings.append(
            Finding(
                Status.CRIT,
                f"数据库 {name} 打开模式为 {mode}（角色 {role}），应为 READ WRITE",
                "数据安全类",
                name,
            )
        )
    elif standby and mode not in ("MOUNTED", "READ ONLY", "READ ONLY WITH APPLY"):
        findings.append(Finding(Status.WARN, f"备库 {name} 打开模式为 {mode}", "数据安全类", name))
    expected = ctx.options.get("server_role", "any")
    if expected == "primary" and standby:
        findings.append(Finding(Status.CRIT, f"数据库 {name} 应为主库，当前角色 {role}", "数据安全类", name))
    elif expected == "standby" and role == "PRIMARY":
        findings.append(
            Finding(
                Status.CRIT, f"数据库 {name} 应为备库，当前角色 PRIMARY（发生了切换？）", "数据安全类", name
            )
        )
    if log_mode and log_mode != "ARCHIVELOG" and ctx.options.get("require_archivelog", True):
        findings.append(
            Finding(
                Status.WARN, f"数据库 {name} 运行在 {log_mode} 模式，无法做时间点恢复", "数据安全类", name
            )
        )
    if not findings:
        findings.append(Finding(Status.OK, f"数据库 {name} {mode}，角色 {role}", "数据安全类", name))
    return ItemOutcome((), tuple(findings), facts)


def eval_tablespaces(data: Mapping[str, Rows], ctx: ItemContext) -> ItemOutcome:
    files = {_s(r.get("tablespace_name")): r for r in data["files"]}
    judged: list[SpaceEntry] = []
    undo: list[SpaceEntry] = []
    kinds: dict[str, dict[str, Any]] = {}
    for r in data["usage"]:
        name = _s(r.get("tablespace_name"))
        f = files.get(name, {})
        # dba_data_files knows each file's autoextend maximum; the metrics view is the fallback.
        cap = fnum(f.get("max_bytes")) or fnum(r.get("size_bytes"))
        entry = SpaceEntry("tablespace", name, fnum(r.get("used_bytes")) or 0.0, cap, "表空间")
        contents = _s(r.get("contents"))
        kinds[name] = {
            "contents": contents,
            "autoextend": _s(f.get("autoextensible")) == "YES",
            "alloc_bytes": fnum(f.get("alloc_bytes")),
        }
        # Expired undo counts as used until it is overwritten: a "full" UNDO tablespace is normal.
        (undo if contents == "UNDO" and not ctx.options.get("include_undo") else judged).append(entry)
    main = space_outcome(judged, ctx)
    quiet = space_outcome(undo, replace(ctx, thresholds={}))
    facts = [
        {**fact, **kinds.get(fact["name"], {})} for fact in [*main.facts["space"], *quiet.facts["space"]]
    ]
    return ItemOutcome(main.metrics + quiet.metrics, main.findings, {"space": facts})


def _resource(r: Row) -> tuple[float, float]:
    """(current, limit) of a V$RESOURCE_LIMIT row; limit 0 when UNLIMITED."""
    limit = fnum(_s(r.get("limit_value")).replace("UNLIMITED", "") or None)
    return fnum(r.get("current_utilization")) or 0.0, limit or 0.0


_RESOURCE_ZH = {"sessions": ("会话数", "会话上限"), "processes": ("进程数", "进程上限")}


def eval_sessions(data: Mapping[str, Rows], ctx: ItemContext) -> ItemOutcome:
    metrics: list[Metric] = []
    findings: list[Finding] = []
    facts: dict[str, Any] = {}
    for r in data["limits"]:
        res = _s(r.get("resource_name")).lower()
        cur, limit = _resource(r)
        noun, limit_noun = _RESOURCE_ZH.get(res, (res, f"{res} 上限"))
        out = limit_outcome(res, cur, limit, ctx, noun=noun, limit_noun=limit_noun, obj=res)
        metrics += out.metrics
        findings += out.findings
        facts[res] = {"current": cur, "max_seen": fnum(r.get("max_utilization")), "limit": limit or None}
    return ItemOutcome(tuple(metrics), tuple(findings), facts)


def eval_blocking(data: Mapping[str, Rows], ctx: ItemContext) -> ItemOutcome:
    return blocking_outcome(data["blocked"], ctx, keep=("event", "sql_id"))


def eval_long_transactions(data: Mapping[str, Rows], ctx: ItemContext) -> ItemOutcome:
    return long_transactions_outcome(data["transactions"], ctx, keep=("undo_blocks",))


def eval_scheduler_jobs(data: Mapping[str, Rows], ctx: ItemContext) -> ItemOutcome:
    seen = int(ctx.memory.get("last_log_id", 0) or 0)
    ignore = [re.compile(p) for p in ctx.options.get("ignore_jobs", ())]
    failed = []
    for r in data["failed"]:
        job = f"{_s(r.get('owner'))}.{_s(r.get('job_name'))}"
        if any(p.search(job) for p in ignore):
            continue
        failed.append((job, r))
    newest = max((int(r.get("log_id") or 0) for _, r in failed), default=seen)
    findings = tuple(
        Finding(
            Status.WARN,
            f"调度作业 {job} 最近一次运行{'（新）' if int(r.get('log_id') or 0) > seen else ''}"
            f"状态 {_s(r.get('status'))}，ORA-{int(r.get('error_code') or 0):05d}，"
            f"时间 {_s(r.get('log_date'))}",
            "综合类",
            job,
        )
        for job, r in failed
    )
    facts = {
        "failed_jobs": [
            {
                "job": job,
                "status": _s(r.get("status")),
                "error": r.get("error_code"),
                "at": _s(r.get("log_date")),
                "new": int(r.get("log_id") or 0) > seen,
            }
            for job, r in failed
        ]
    }
    return ItemOutcome(
        (Metric("jobs.failed", len(failed)),), findings, facts, {"last_log_id": max(newest, seen)}
    )


_OK_RMAN = ("COMPLETED", "COMPLETED WITH WARNINGS")
_FAILED_RMAN = ("FAILED", "COMPLETED WITH ERRORS")


def rman_type(input_type: str, level: Any) -> str | None:
    """RMAN input type (+ incremental level) -> backup type of the expectations."""
    if input_type == "DB FULL":
        return "full"
    if input_type == "DB INCR":
        # An incremental level 0 is a full backup that can be the base of level 1s.
        return "full" if level is not None and int(level) == 0 else "incremental"
    if input_type == "ARCHIVELOG":
        return "archivelog"
    return None


def eval_rman(data: Mapping[str, Rows], ctx: ItemContext) -> ItemOutcome:
    seen_key = int(ctx.memory.get("last_session_key", 0) or 0)
    newest_ok: dict[str, float] = {}
    latest: dict[str, Row] = {}
    superseded: list[tuple[str, Row]] = []
    jobs = []
    for r in data["jobs"]:
        kind = rman_type(_s(r.get("input_type")), r.get("incremental_level"))
        label = kind or _s(r.get("input_type"))
        status = _s(r.get("status"))
        jobs.append(
            {
                "type": label,
                "status": status,
                "end_time": _s(r.get("end_time")),
                "output_bytes": fnum(r.get("output_bytes")),
                "device": _s(r.get("output_device_type")),
            }
        )
        if status.startswith("RUNNING"):
            continue
        fresh = int(r.get("session_key") or 0) > seen_key
        if status in _FAILED_RMAN and fresh:
            superseded.append((label, r))
        latest[label] = r  # rows come in session order: the last one is the newest
        age = fnum(r.get("age_s"))
        if kind is not None and status in _OK_RMAN and age is not None:
            newest_ok[kind] = min(age, newest_ok.get(kind, age))
    findings: list[Finding] = []
    for label, r in latest.items():
        if _s(r.get("status")) in _FAILED_RMAN:
            findings.append(
                Finding(
                    Status.CRIT,
                    f"最近一次 RMAN {_zh(label)}状态 {_s(r.get('status'))}（结束于 {_s(r.get('end_time'))}）",
                    "数据安全类",
                    label,
                )
            )
    newest_rows = [id(r) for r in latest.values()]
    for label, r in superseded:
        if id(r) not in newest_rows:
            findings.append(
                Finding(
                    Status.WARN,
                    f"RMAN {_zh(label)}曾失败（{_s(r.get('status'))}，结束于 {_s(r.get('end_time'))}），"
                    "之后已成功",
                    "数据安全类",
                    label,
                )
            )
    # A level 0 (or full) backup also serves where an incremental is expected.
    if "full" in newest_ok:
        newest_ok["incremental"] = min(newest_ok["full"], newest_ok.get("incremental", newest_ok["full"]))
    db = _one(data["database"])
    database = _s(db.get("name")) or "database"
    seen = [BackupSeen(database, kind, finished_at(ctx, age)) for kind, age in newest_ok.items()]
    wanted = ["full", "incremental"]
    if _s(db.get("log_mode")) == "ARCHIVELOG":
        wanted.append("archivelog")
    if _s(db.get("database_role")) in _STANDBY_ROLES and not ctx.options.get("backups_on_standby", False):
        # Backups of a Data Guard pair usually run on the primary, recorded in its control file.
        wanted = []
        findings.append(Finding(Status.OK, f"{database} 为备库，备份时效在主库检查", "数据安全类", database))
    fresh_out = judge_freshness(seen, {database: wanted}, ctx)
    max_key = max((int(r.get("session_key") or 0) for r in data["jobs"]), default=seen_key)
    return ItemOutcome(
        fresh_out.metrics,
        tuple(findings) + fresh_out.findings,
        {**fresh_out.facts, "jobs": jobs[-60:]},
        {"last_session_key": max(max_key, seen_key)},
    )


def _zh(kind: str) -> str:
    return BACKUP_TYPE_ZH.get(kind, f"{kind} 备份")


def eval_archived_logs(data: Mapping[str, Rows], ctx: ItemContext) -> ItemOutcome:
    row = _one(data["pending"])
    n = int(fnum(row.get("logs")) or 0)
    age = fnum(row.get("oldest_age_s")) or 0.0
    metrics = (
        Metric("archivelog.not_backed_up", n),
        Metric("archivelog.oldest_unbacked_s", round(age), "s"),
        Metric("archivelog.not_backed_up_bytes", fnum(row.get("bytes")) or 0.0, "B"),
    )
    findings: list[Finding] = []
    if n:
        f = threshold_finding(
            ctx,
            "oldest_age_s",
            age,
            f"{n} 个归档日志尚未备份，最早的已 {age / 3600:.1f} 小时",
            category="数据安全类",
            obj="archivelog",
        )
        if f:
            findings.append(f)
    return ItemOutcome(metrics, tuple(findings), {"logs": n, "oldest_age_s": age})


def eval_fra(data: Mapping[str, Rows], ctx: ItemContext) -> ItemOutcome:
    row = _one(data["fra"])
    limit = fnum(row.get("space_limit")) or 0.0
    if not limit:
        return ItemOutcome((), (), {"configured": False})
    used = fnum(row.get("space_used")) or 0.0
    reclaimable = fnum(row.get("space_reclaimable")) or 0.0
    net = max(used - reclaimable, 0.0)
    pct = net / limit * 100.0
    metrics = (
        Metric("fra.used_pct", round(pct, 2), "%"),
        Metric("fra.net_used_bytes", net, "B"),
        Metric("fra.limit_bytes", limit, "B"),
    )
    facts = {
        "configured": True,
        "name": _s(row.get("name")),
        "limit": limit,
        "used": used,
        "reclaimable": reclaimable,
    }
    text = f"快速恢复区已用 {pct:.1f}%（扣除可回收 {fmt_bytes(reclaimable)} 后，上限 {fmt_bytes(limit)}）"
    f = threshold_finding(ctx, "used_pct", pct, text, category="数据安全类", obj="FRA")
    return ItemOutcome(metrics, (f,) if f else (), facts)


_DEST_BAD = {
    "ERROR": Status.CRIT,
    "BAD PARAM": Status.CRIT,
    "FULL": Status.CRIT,
    "DEFERRED": Status.WARN,
    "DISABLED": Status.WARN,
}


def eval_archive_dest(data: Mapping[str, Rows], ctx: ItemContext) -> ItemOutcome:
    findings = []
    facts = []
    for r in data["dests"]:
        status = _s(r.get("status"))
        name = _s(r.get("dest_name")) or f"LOG_ARCHIVE_DEST_{r.get('dest_id')}"
        facts.append(
            {
                "dest": name,
                "status": status,
                "destination": _s(r.get("destination")),
                "error": _s(r.get("error")),
            }
        )
        st = _DEST_BAD.get(status)
        if st is not None:
            err = _s(r.get("error"))
            findings.append(
                Finding(
                    st,
                    f"归档目的地 {name}（{_s(r.get('destination'))}）状态 {status}"
                    + (f"：{err}" if err else ""),
                    "数据安全类",
                    name,
                )
            )
    bad = sum(1 for f in findings if f.status is Status.CRIT)
    return ItemOutcome((Metric("archive_dest.in_error", bad),), tuple(findings), {"destinations": facts})


_ORA = re.compile(r"ORA-(\d{5})")
CRIT_ORA = ("00600", "07445", "04031", "01578", "00257", "16038", "19809", "19815", "01110", "27102")
"""Internal errors, memory exhaustion, block corruption, archiver stuck, FRA full."""


def eval_alert_log(data: Mapping[str, Rows], ctx: ItemContext) -> ItemOutcome:
    cursor = _s(ctx.memory.get("cursor"))
    ignore = [re.compile(p) for p in ctx.options.get("ignore", ())]
    crit_codes = set(ctx.options.get("crit_codes", CRIT_ORA))
    counts: dict[str, int] = {}
    samples: dict[str, str] = {}
    newest = cursor
    for r in data["alert"]:
        ts = _s(r.get("ts_utc"))
        if cursor and ts <= cursor:
            continue
        newest = max(newest, ts)
        text = _s(r.get("message_text"))
        if any(p.search(text) for p in ignore):
            continue
        for code in dict.fromkeys(_ORA.findall(text)):
            counts[code] = counts.get(code, 0) + 1
            samples.setdefault(code, text.splitlines()[0][:160] if text else "")
    findings = tuple(
        Finding(
            Status.CRIT if code in crit_codes else Status.WARN,
            f"告警日志出现 ORA-{code} {n} 次：{samples[code]}",
            "数据安全类",
            f"ORA-{code}",
        )
        for code, n in sorted(counts.items())
    )
    return ItemOutcome(
        (Metric("alert_log.ora_errors", sum(counts.values())),),
        findings,
        {
            "errors": [
                {"code": f"ORA-{c}", "count": n, "sample": samples[c]} for c, n in sorted(counts.items())
            ]
        },
        {"cursor": newest},
    )


def _matches(name: str, patterns: Sequence[str]) -> bool:
    from fnmatch import fnmatchcase

    up = name.upper()
    return any(fnmatchcase(up, p.upper()) for p in patterns)


def eval_invalid_objects(data: Mapping[str, Rows], ctx: ItemContext) -> ItemOutcome:
    baseline = list(ctx.options.get("baseline", ()))
    owners = [o.upper() for o in ctx.options.get("owners", ())]
    invalid = []
    for r in data["invalid"]:
        owner = _s(r.get("owner"))
        if owners and owner.upper() not in owners:
            continue
        invalid.append(f"{owner}.{_s(r.get('object_name'))}（{_s(r.get('object_type'))}）")
    fresh = [o for o in invalid if not _matches(o.split("（")[0], baseline)]
    metrics = (Metric("invalid_objects", len(invalid)), Metric("invalid_objects.new", len(fresh)))
    findings: tuple[Finding, ...] = ()
    if fresh:
        shown = "、".join(fresh[:5]) + ("等" if len(fresh) > 5 else "")
        f = threshold_finding(
            ctx,
            "count",
            float(len(fresh)),
            f"{len(fresh)} 个失效对象不在基线内：{shown}",
            category="综合类",
            obj="invalid_objects",
        )
        findings = (f,) if f else ()
    return ItemOutcome(metrics, findings, {"invalid": invalid[:200], "outside_baseline": fresh[:200]})


_INTERVAL = re.compile(r"^\+?(\d+)\s+(\d+):(\d+):(\d+(?:\.\d+)?)$")


def parse_ds_interval(value: Any) -> float | None:
    """'+00 00:01:05' (INTERVAL DAY TO SECOND text in V$DATAGUARD_STATS) -> seconds."""
    m = _INTERVAL.match(_s(value))
    if not m:
        return None
    return int(m[1]) * DAY_S + int(m[2]) * 3600 + int(m[3]) * 60 + float(m[4])


def eval_dataguard(data: Mapping[str, Rows], ctx: ItemContext) -> ItemOutcome:
    rows = data["lag"]
    if not rows:
        return ItemOutcome((), (), {"configured": False})
    metrics = []
    findings = []
    facts: dict[str, Any] = {"configured": True}
    for r in rows:
        name = _s(r.get("name"))
        key = name.replace(" ", "_")
        lag = parse_ds_interval(r.get("value"))
        facts[key] = lag
        if lag is None:
            # NULL: the standby has not computed the lag (apply stopped or no redo received).
            findings.append(
                Finding(
                    Status.WARN,
                    f"Data Guard {name} 无法计算（值为空，可能未接收或未应用日志）",
                    "数据安全类",
                    key,
                )
            )
            continue
        metrics.append(Metric(f"dataguard.{key}_s", lag, "s"))
        f = threshold_finding(
            ctx, "lag_s", lag, f"Data Guard {name} {lag:.0f} 秒", category="数据安全类", obj=key
        )
        if f:
            findings.append(f)
    return ItemOutcome(tuple(metrics), tuple(findings), facts)


def eval_accounts(data: Mapping[str, Rows], ctx: ItemContext) -> ItemOutcome:
    # The check's `databases` are the schema owners of the HIS/EMR applications on Oracle.
    owners = {o.upper() for o in (*ctx.options.get("databases", ()), *ctx.options.get("schema_owners", ()))}
    findings = []
    facts: list[dict[str, Any]] = []
    for r in data["users"]:
        user = _s(r.get("username"))
        if not (int(r.get("is_self") or 0) or user.upper() in owners):
            continue
        status = _s(r.get("account_status"))
        days = fnum(r.get("days_left"))
        facts.append({"user": user, "status": status, "expiry": _s(r.get("expiry_date")), "days_left": days})
        if status != "OPEN" and not status.startswith("EXPIRED(GRACE)"):
            findings.append(Finding(Status.CRIT, f"账户 {user} 状态 {status}", "数据安全类", user))
        elif days is not None:
            text = f"账户 {user} 密码将在 {days:.0f} 天后过期（{_s(r.get('expiry_date'))}）"
            if status.startswith("EXPIRED(GRACE)"):
                text = f"账户 {user} 密码已过期，处于宽限期（{_s(r.get('expiry_date'))}）"
            f = threshold_finding(ctx, "days_left", days, text, category="数据安全类", obj=user)
            if f:
                findings.append(f)
    missing = sorted(owners - {f["user"].upper() for f in facts})
    findings += [Finding(Status.CRIT, f"配置的账户 {u} 在数据库中不存在", "数据安全类", u) for u in missing]
    return ItemOutcome((), tuple(findings), {"accounts": facts})


def eval_asm(data: Mapping[str, Rows], ctx: ItemContext) -> ItemOutcome:
    spaces = []
    findings = []
    for r in data["diskgroups"]:
        name = _s(r.get("name"))
        total = (fnum(r.get("total_mb")) or 0.0) * 2**20
        free = (fnum(r.get("free_mb")) or 0.0) * 2**20
        spaces.append(SpaceEntry("asm", name, total - free, total, "ASM 磁盘组"))
        if int(r.get("offline_disks") or 0):
            findings.append(
                Finding(
                    Status.CRIT,
                    f"ASM 磁盘组 {name} 有 {r.get('offline_disks')} 块磁盘离线",
                    "硬件网络类",
                    name,
                )
            )
        if _s(r.get("state")) not in ("MOUNTED", "CONNECTED"):
            findings.append(
                Finding(Status.CRIT, f"ASM 磁盘组 {name} 状态 {_s(r.get('state'))}", "硬件网络类", name)
            )
    out = space_outcome(spaces, ctx)
    return ItemOutcome(out.metrics, out.findings + tuple(findings), out.facts)


# ---------------------------------------------------------------------------- the table


_V = "sys.v_$"

ITEMS: tuple[Item, ...] = (
    Item(
        "version",
        "版本与运行时间",
        {"instance": SQL_INSTANCE},
        eval_version,
        _grant(f"{_V}instance"),
        "数据安全类",
        thresholds={"uptime_s": Threshold(DAY_S, below=True)},
    ),
    Item(
        "open_mode",
        "打开模式与数据库角色",
        {"database": SQL_DATABASE},
        eval_open_mode,
        _grant(f"{_V}database"),
        "数据安全类",
    ),
    Item(
        "tablespace_space",
        "表空间使用率",
        {"files": SQL_TS_FILES, "usage": SQL_TS_USAGE},
        eval_tablespaces,
        _grant(
            "sys.dba_data_files",
            "sys.dba_temp_files",
            "sys.dba_tablespace_usage_metrics",
            "sys.dba_tablespaces",
        ),
        "数据安全类",
        thresholds={"used_pct": Threshold(85, 95), "days_to_full": Threshold(30, 7, below=True)},
    ),
    Item(
        "sessions",
        "会话数与进程数",
        {"limits": SQL_RESOURCE_LIMIT},
        eval_sessions,
        _grant(f"{_V}resource_limit"),
        "数据安全类",
        thresholds={"used_pct": Threshold(80, 90)},
    ),
    Item(
        "blocking",
        "阻塞会话",
        {"blocked": SQL_BLOCKING},
        eval_blocking,
        _grant(f"{_V}session"),
        "数据安全类",
        thresholds={"wait_s": Threshold(60, 300)},
    ),
    Item(
        "long_transactions",
        "长事务",
        {"transactions": SQL_LONG_TX},
        eval_long_transactions,
        _grant(f"{_V}transaction", f"{_V}session"),
        "数据安全类",
        thresholds={"age_s": Threshold(1800, 7200)},
    ),
    Item(
        "scheduler_jobs",
        "调度作业失败",
        {"failed": SQL_SCHEDULER},
        eval_scheduler_jobs,
        _grant("sys.dba_scheduler_job_run_details"),
    ),
    Item(
        "rman_backups",
        "RMAN 备份",
        {"database": SQL_DATABASE, "jobs": SQL_RMAN_JOBS},
        eval_rman,
        _grant(f"{_V}database", f"{_V}rman_backup_job_details", f"{_V}backup_set_details"),
        "数据安全类",
        thresholds={
            "full_age_s": Threshold(crit=7 * DAY_S),
            "incremental_age_s": Threshold(crit=26 * 3600),
            "archivelog_age_s": Threshold(crit=26 * 3600),
        },
    ),
    Item(
        "archivelog_backup",
        "未备份归档日志",
        {"pending": SQL_ARCHIVED_NOT_BACKED_UP},
        eval_archived_logs,
        _grant(f"{_V}archived_log"),
        "数据安全类",
        thresholds={"oldest_age_s": Threshold(26 * 3600, 48 * 3600)},
    ),
    Item(
        "fra",
        "快速恢复区",
        {"fra": SQL_FRA},
        eval_fra,
        _grant(f"{_V}recovery_file_dest"),
        "数据安全类",
        thresholds={"used_pct": Threshold(80, 90)},
    ),
    Item(
        "archive_dest",
        "归档目的地",
        {"dests": SQL_ARCHIVE_DEST},
        eval_archive_dest,
        _grant(f"{_V}archive_dest"),
        "数据安全类",
    ),
    Item(
        "alert_log",
        "告警日志 ORA- 错误",
        {"alert": SQL_ALERT_LOG},
        eval_alert_log,
        _grant(f"{_V}diag_alert_ext"),
        "数据安全类",
        min_version=(12, 1),
    ),
    Item(
        "invalid_objects",
        "失效对象",
        {"invalid": SQL_INVALID_OBJECTS},
        eval_invalid_objects,
        _grant("sys.dba_objects"),
        thresholds={"count": Threshold(1)},
    ),
    Item(
        "dataguard",
        "Data Guard 延迟",
        {"lag": SQL_DATAGUARD},
        eval_dataguard,
        _grant(f"{_V}dataguard_stats"),
        "数据安全类",
        optional=True,
        thresholds={"lag_s": Threshold(300, 1800)},
    ),
    Item(
        "accounts",
        "账户过期",
        {"users": SQL_ACCOUNTS},
        eval_accounts,
        _grant("sys.dba_users"),
        "数据安全类",
        thresholds={"days_left": Threshold(30, 7, below=True)},
    ),
    Item(
        "asm",
        "ASM 磁盘组",
        {"diskgroups": SQL_ASM},
        eval_asm,
        _grant(f"{_V}asm_diskgroup", f"{_V}datafile"),
        "硬件网络类",
        optional=True,
        thresholds={"used_pct": Threshold(85, 95), "days_to_full": Threshold(30, 7, below=True)},
    ),
)

STATEMENTS: Mapping[str, str] = {
    **{f"{it.name}.{q}": sql for it in ITEMS for q, sql in it.queries.items()},
    "asm_gate": SQL_ASM_GATE,
    "server_now": SQL_SERVER_NOW,
}
"""Every statement the Oracle probe can send, for the offline SQL checks."""


def skew_note(server_now: datetime | None, agent_now: datetime) -> str | None:
    if server_now is None:
        return None
    skew = (agent_now - server_now) / timedelta(seconds=1)
    return f"代理与数据库时钟相差 {skew:+.0f} 秒" if abs(skew) >= 60 else None
