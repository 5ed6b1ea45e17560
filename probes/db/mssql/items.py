"""SQL Server inspection items: read-only SELECTs and pure evaluators (2008 R2 and later).

Backup history is per instance (msdb): with Always On, backups taken on the preferred replica
look missing on the others, so a non-preferred replica raises no missing-backup finding.
Copy-only full backups do not start a differential base and only count as the full backup of
an availability-group database (where secondaries can take nothing else). Every age is
computed on the server (`DATEDIFF(..., GETDATE())`): backup_finish_date is the server's local
time, and the agent's clock may be off.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from fnmatch import fnmatchcase
from typing import Any

from probes.base import Metric, Status
from probes.db.items import (
    BACKUP_TYPE_ZH,
    BackupSeen,
    Finding,
    Item,
    ItemContext,
    ItemOutcome,
    Rows,
    SpaceEntry,
    blocking_outcome,
    fmt_duration,
    long_transactions_outcome,
    sessions_outcome,
    space_outcome,
    threshold_finding,
)
from probes.db.vendor_eval import finished_at, fnum, judge_freshness, restart_outcome
from probes.thresholds import Threshold

DAY_S = 86400.0
PAGE = 8192

# ---------------------------------------------------------------------------- SQL

SQL_VERSION = """
SELECT CAST(SERVERPROPERTY('ProductVersion') AS NVARCHAR(128)) AS product_version,
       CAST(SERVERPROPERTY('ProductLevel') AS NVARCHAR(128)) AS product_level,
       CAST(SERVERPROPERTY('Edition') AS NVARCHAR(128)) AS edition,
       CAST(SERVERPROPERTY('ServerName') AS NVARCHAR(128)) AS server_name,
       CONVERT(VARCHAR(19), i.sqlserver_start_time, 120) AS start_time,
       DATEDIFF(SECOND, i.sqlserver_start_time, GETDATE()) AS uptime_s
FROM sys.dm_os_sys_info AS i
"""

SQL_SERVER_NOW = "SELECT SYSUTCDATETIME() AS now_utc"

SQL_DATABASES = """
SELECT d.name, d.state_desc, d.is_read_only, d.user_access_desc, d.recovery_model_desc, d.is_in_standby,
       m.mirroring_role_desc
FROM sys.databases AS d
LEFT JOIN sys.database_mirroring AS m ON m.database_id = d.database_id
WHERE d.source_database_id IS NULL
"""

SQL_FILES = """
SELECT d.name AS database_name, mf.file_id, mf.name AS file_name, mf.type_desc, mf.physical_name,
       CAST(mf.size AS BIGINT) * 8192 AS size_bytes, mf.max_size, mf.growth,
       vs.volume_mount_point, vs.total_bytes AS volume_total_bytes,
       vs.available_bytes AS volume_available_bytes
FROM sys.master_files AS mf
JOIN sys.databases AS d ON d.database_id = mf.database_id
CROSS APPLY sys.dm_os_volume_stats(mf.database_id, mf.file_id) AS vs
WHERE d.state = 0 AND mf.type_desc IN ('ROWS', 'LOG')
"""

SQL_SESSIONS = """
SELECT (SELECT COUNT(*) FROM sys.dm_exec_sessions AS s WHERE s.is_user_process = 1) AS user_sessions,
       @@MAX_CONNECTIONS AS max_connections
"""

# Column names follow probes.db.items.blocking_outcome / long_transactions_outcome. A negative
# blocking_session_id (orphaned distributed transaction, latch) has no session to join.
SQL_BLOCKING = """
SELECT r.session_id AS waiting_pid, r.wait_time / 1000.0 AS wait_s, r.blocking_session_id AS blocking_pid,
       b.login_name AS blocking_user, b.host_name AS blocking_client, b.program_name AS blocking_app,
       b.status AS blocking_state, DB_NAME(r.database_id) AS datname, r.wait_type, r.command
FROM sys.dm_exec_requests AS r
LEFT JOIN sys.dm_exec_sessions AS b ON b.session_id = r.blocking_session_id
WHERE r.blocking_session_id <> 0
"""

# sys.dm_exec_sessions.database_id is 2012+: the transaction's database is left out for 2008 R2.
SQL_LONG_TX = """
SELECT st.session_id AS pid, s.login_name AS usename, s.status AS state, s.host_name AS client,
       s.program_name AS app, tat.name AS transaction_name,
       DATEDIFF(SECOND, tat.transaction_begin_time, GETDATE()) AS age_s
FROM sys.dm_tran_active_transactions AS tat
JOIN sys.dm_tran_session_transactions AS st ON st.transaction_id = tat.transaction_id
JOIN sys.dm_exec_sessions AS s ON s.session_id = st.session_id
WHERE s.is_user_process = 1
"""

# Databases that need backups, with their Always On position (2012+).
SQL_BACKUP_DATABASES = """
SELECT d.name, d.recovery_model_desc, d.state_desc, d.is_read_only,
       DATEDIFF(SECOND, d.create_date, GETDATE()) AS age_s,
       sys.fn_hadr_backup_is_preferred_replica(d.name) AS is_preferred_replica,
       CASE WHEN d.replica_id IS NULL THEN 0 ELSE 1 END AS in_ag,
       rs.role_desc AS ag_role
FROM sys.databases AS d
LEFT JOIN sys.dm_hadr_availability_replica_states AS rs ON rs.replica_id = d.replica_id AND rs.is_local = 1
WHERE d.database_id <> 2 AND d.source_database_id IS NULL
"""

# 2008 R2 has no availability groups.
SQL_BACKUP_DATABASES_LEGACY = """
SELECT d.name, d.recovery_model_desc, d.state_desc, d.is_read_only,
       DATEDIFF(SECOND, d.create_date, GETDATE()) AS age_s,
       1 AS is_preferred_replica, 0 AS in_ag, CAST(NULL AS NVARCHAR(60)) AS ag_role
FROM sys.databases AS d
WHERE d.database_id <> 2 AND d.source_database_id IS NULL
"""

# The newest backup per database, type and copy-only flag in 40 days.
SQL_BACKUP_HISTORY = """
WITH ranked AS (
  SELECT b.database_name, b.type, b.is_copy_only, b.has_backup_checksums, b.is_damaged, b.backup_size,
         CONVERT(VARCHAR(19), b.backup_finish_date, 120) AS finish_local,
         DATEDIFF(SECOND, b.backup_finish_date, GETDATE()) AS age_s,
         ROW_NUMBER() OVER (PARTITION BY b.database_name, b.type, b.is_copy_only
                            ORDER BY b.backup_finish_date DESC) AS rn
  FROM msdb.dbo.backupset AS b
  WHERE b.backup_finish_date > DATEADD(DAY, -40, GETDATE()) AND b.type IN ('D', 'I', 'L')
)
SELECT ranked.database_name, ranked.type, ranked.is_copy_only, ranked.has_backup_checksums, ranked.is_damaged,
       ranked.backup_size, ranked.finish_local, ranked.age_s
FROM ranked
WHERE ranked.rn = 1
"""

SQL_DATA_VOLUMES = """
SELECT d.name AS database_name, mf.physical_name, vs.volume_mount_point
FROM sys.master_files AS mf
JOIN sys.databases AS d ON d.database_id = mf.database_id
CROSS APPLY sys.dm_os_volume_stats(mf.database_id, mf.file_id) AS vs
WHERE d.state = 0 AND mf.type_desc IN ('ROWS', 'LOG')
"""

SQL_BACKUP_DEVICES = """
SELECT DISTINCT b.database_name, f.physical_device_name
FROM msdb.dbo.backupset AS b
JOIN msdb.dbo.backupmediafamily AS f ON f.media_set_id = b.media_set_id
WHERE b.backup_finish_date > DATEADD(DAY, -8, GETDATE()) AND f.device_type IN (2, 102)
"""

SQL_CHECKDB = """
SELECT d.name,
       CONVERT(VARCHAR(19), CAST(DATABASEPROPERTYEX(d.name, 'LastGoodCheckDbTime') AS DATETIME), 120)
         AS last_good,
       DATEDIFF(MINUTE, CAST(DATABASEPROPERTYEX(d.name, 'LastGoodCheckDbTime') AS DATETIME), GETDATE())
         AS age_min
FROM sys.databases AS d
WHERE d.state = 0 AND d.database_id <> 2 AND d.source_database_id IS NULL
"""

SQL_SUSPECT_PAGES = """
SELECT DB_NAME(p.database_id) AS database_name, p.file_id, p.page_id, p.event_type, p.error_count,
       CONVERT(VARCHAR(19), p.last_update_date, 120) AS last_update
FROM msdb.dbo.suspect_pages AS p
WHERE p.event_type IN (1, 2, 3)
"""

SQL_LOG_COUNTERS = """
SELECT RTRIM(pc.instance_name) AS database_name, RTRIM(pc.counter_name) AS counter_name, pc.cntr_value
FROM sys.dm_os_performance_counters AS pc
WHERE pc.object_name LIKE '%:Databases%'
  AND pc.counter_name IN ('Log File(s) Size (KB)', 'Log File(s) Used Size (KB)', 'Percent Log Used')
"""

SQL_LOG_REUSE = """
SELECT d.name, d.log_reuse_wait_desc, d.recovery_model_desc FROM sys.databases AS d
"""

# The latest outcome (step 0) of each enabled job in two days: it stays failed until it succeeds.
SQL_AGENT_JOBS = """
WITH latest AS (
  SELECT j.name AS job_name, h.instance_id, h.run_status, h.run_date, h.run_time, h.message,
         ROW_NUMBER() OVER (PARTITION BY h.job_id ORDER BY h.instance_id DESC) AS rn
  FROM msdb.dbo.sysjobhistory AS h
  JOIN msdb.dbo.sysjobs AS j ON j.job_id = h.job_id
  WHERE h.step_id = 0 AND j.enabled = 1
    AND h.run_date >= CAST(CONVERT(CHAR(8), DATEADD(DAY, -2, GETDATE()), 112) AS INT)
)
SELECT latest.job_name, latest.instance_id, latest.run_status, latest.run_date, latest.run_time,
       LEFT(latest.message, 300) AS message
FROM latest
WHERE latest.rn = 1 AND latest.run_status IN (0, 3)
"""

SQL_SERVICES = """
SELECT sv.servicename, sv.status_desc, sv.startup_type_desc FROM sys.dm_server_services AS sv
"""

SQL_AG_REPLICAS = """
SELECT ag.name AS ag_name, ar.replica_server_name, rs.role_desc, rs.connected_state_desc,
       rs.synchronization_health_desc, rs.is_local
FROM sys.dm_hadr_availability_replica_states AS rs
JOIN sys.availability_replicas AS ar ON ar.replica_id = rs.replica_id
JOIN sys.availability_groups AS ag ON ag.group_id = rs.group_id
"""

SQL_AG_DATABASES = """
SELECT DB_NAME(drs.database_id) AS database_name, drs.synchronization_state_desc,
       drs.synchronization_health_desc, drs.log_send_queue_size, drs.redo_queue_size, drs.is_suspended,
       drs.suspend_reason_desc
FROM sys.dm_hadr_database_replica_states AS drs
WHERE drs.is_local = 1
"""

SQL_LOG_SHIPPING = """
SELECT s.secondary_server, s.secondary_database, s.primary_server, s.primary_database, s.restore_threshold,
       DATEDIFF(MINUTE, s.last_restored_date, GETDATE()) AS restored_age_min,
       DATEDIFF(MINUTE, s.last_copied_date, GETDATE()) AS copied_age_min
FROM msdb.dbo.log_shipping_monitor_secondary AS s
"""

SQL_MIRRORING = """
SELECT DB_NAME(m.database_id) AS database_name, m.mirroring_state_desc, m.mirroring_role_desc,
       m.mirroring_partner_instance
FROM sys.database_mirroring AS m
WHERE m.mirroring_guid IS NOT NULL
"""

SQL_LOGINS = """
SELECT sl.name, sl.is_expiration_checked, sl.is_policy_checked,
       CAST(LOGINPROPERTY(sl.name, 'DaysUntilExpiration') AS INT) AS days_left,
       CAST(LOGINPROPERTY(sl.name, 'IsExpired') AS INT) AS is_expired,
       CAST(LOGINPROPERTY(sl.name, 'IsLocked') AS INT) AS is_locked,
       CASE WHEN sl.name = SUSER_SNAME() THEN 1 ELSE 0 END AS is_self
FROM sys.sql_logins AS sl
WHERE sl.is_disabled = 0 AND sl.name NOT LIKE '##%'
"""

# ---------------------------------------------------------------------------- helpers


def _s(v: Any) -> str:
    return "" if v is None else str(v).strip()


def _flag(v: Any) -> bool:
    return bool(int(v)) if v is not None and _s(v) != "" else False


def _excluded(name: str, ctx: ItemContext) -> bool:
    return any(fnmatchcase(name.lower(), p.lower()) for p in ctx.options.get("exclude", ()))


# ---------------------------------------------------------------------------- evaluators


def eval_version(data: Mapping[str, Rows], ctx: ItemContext) -> ItemOutcome:
    row = data["version"][0] if data["version"] else {}
    facts = {
        k: _s(row.get(k))
        for k in ("product_version", "product_level", "edition", "server_name", "start_time")
    }
    restart = restart_outcome(
        ctx, row.get("uptime_s"), f"SQL Server {facts['server_name']}", facts["start_time"]
    )
    metrics = list(restart.metrics)
    findings = list(restart.findings)
    return ItemOutcome(tuple(metrics), tuple(findings), facts)


_BAD_STATES = ("OFFLINE", "SUSPECT", "RECOVERY_PENDING", "EMERGENCY", "OFFLINE_SECONDARY")


def eval_database_state(data: Mapping[str, Rows], ctx: ItemContext) -> ItemOutcome:
    read_only_ok = [p.lower() for p in ctx.options.get("read_only", ())]
    findings: list[Finding] = []
    facts = []
    names = set()
    for r in data["databases"]:
        name = _s(r.get("name"))
        names.add(name.lower())
        state = _s(r.get("state_desc"))
        facts.append(
            {
                "database": name,
                "state": state,
                "read_only": _flag(r.get("is_read_only")),
                "recovery_model": _s(r.get("recovery_model_desc")),
            }
        )
        if _excluded(name, ctx):
            continue
        if state in _BAD_STATES:
            findings.append(Finding(Status.CRIT, f"数据库 {name} 状态 {state}", "数据安全类", name))
        elif state == "RESTORING" and _s(r.get("mirroring_role_desc")) != "MIRROR":
            findings.append(Finding(Status.WARN, f"数据库 {name} 处于 RESTORING 状态", "数据安全类", name))
        elif state == "ONLINE":
            standby = _flag(r.get("is_in_standby"))
            ro_expected = standby or any(fnmatchcase(name.lower(), p) for p in read_only_ok)
            if _flag(r.get("is_read_only")) and not ro_expected:
                findings.append(
                    Finding(Status.WARN, f"数据库 {name} 为只读（未在 read_only 中声明）", "数据安全类", name)
                )
            if _s(r.get("user_access_desc")) == "SINGLE_USER":
                findings.append(
                    Finding(Status.WARN, f"数据库 {name} 处于 SINGLE_USER 模式", "数据安全类", name)
                )
    for wanted in ctx.options.get("databases", ()):
        if wanted.lower() not in names:
            findings.append(Finding(Status.CRIT, f"数据库 {wanted} 不存在", "数据安全类", wanted))
    bad = sum(1 for f in findings if f.status is Status.CRIT)
    return ItemOutcome((Metric("databases.unavailable", bad),), tuple(findings), {"databases": facts})


def _volume(mount: str) -> str:
    return mount.rstrip("\\/") or mount


def eval_space(data: Mapping[str, Rows], ctx: ItemContext) -> ItemOutcome:
    """Per database: allocated data-file bytes against what the files may still grow to —
    their max_size, and for unlimited files the free space of their volume (counted once
    per volume). SQL Server shows the space used inside other databases' files only from
    within each database, so allocated size is what is measured."""
    alloc: dict[str, float] = {}
    headroom: dict[str, dict[str, float]] = {}
    volumes: dict[str, tuple[float, float]] = {}
    for r in data["files"]:
        mount = _volume(_s(r.get("volume_mount_point")))
        total = fnum(r.get("volume_total_bytes")) or 0.0
        free = fnum(r.get("volume_available_bytes")) or 0.0
        volumes[mount] = (total, free)
        if _s(r.get("type_desc")) != "ROWS":
            continue
        db = _s(r.get("database_name"))
        size = fnum(r.get("size_bytes")) or 0.0
        alloc[db] = alloc.get(db, 0.0) + size
        growth = fnum(r.get("growth")) or 0.0
        max_size = fnum(r.get("max_size"))
        if growth <= 0 or max_size == 0:
            room = 0.0
        elif max_size is None or max_size == -1:
            room = float("inf")
        else:
            room = max(max_size * PAGE - size, 0.0)
        per_volume = headroom.setdefault(db, {})
        per_volume[mount] = per_volume.get(mount, 0.0) + room
    entries = []
    for db, used in alloc.items():
        room = sum(min(r, volumes[m][1]) for m, r in headroom.get(db, {}).items())
        entries.append(SpaceEntry("database", db, used, used + room, "数据库"))
    entries += [
        SpaceEntry("volume", m, total - free, total, "磁盘卷")
        for m, (total, free) in volumes.items()
        if total
    ]
    return space_outcome(entries, ctx)


def eval_sessions(data: Mapping[str, Rows], ctx: ItemContext) -> ItemOutcome:
    row = data["sessions"][0] if data["sessions"] else {}
    # @@MAX_CONNECTIONS is 32767 unless an administrator lowered it: max_sessions sets the real one.
    limit = fnum(ctx.options.get("max_sessions")) or fnum(row.get("max_connections")) or 0.0
    return sessions_outcome(fnum(row.get("user_sessions")) or 0.0, limit, (), ctx)


def eval_blocking(data: Mapping[str, Rows], ctx: ItemContext) -> ItemOutcome:
    return blocking_outcome(data["blocked"], ctx, keep=("wait_type", "command"))


def eval_long_transactions(data: Mapping[str, Rows], ctx: ItemContext) -> ItemOutcome:
    return long_transactions_outcome(data["transactions"], ctx, keep=("transaction_name",))


_LOG_MODELS = ("FULL", "BULK_LOGGED")
_TYPES = {"D": "full", "I": "diff", "L": "log"}


def eval_backups(data: Mapping[str, Rows], ctx: ItemContext) -> ItemOutcome:
    required: dict[str, list[str]] = {}
    db_age: dict[str, float] = {}
    in_ag: set[str] = set()
    notes: list[Finding] = []
    skipped: set[str] = set()
    for r in data["databases"]:
        name = _s(r.get("name"))
        if _excluded(name, ctx):
            skipped.add(name)
            continue
        if _s(r.get("state_desc")) != "ONLINE":
            skipped.add(name)  # the database_state item reports it
            continue
        if _flag(r.get("in_ag")):
            in_ag.add(name)
            if not _flag(r.get("is_preferred_replica")) and r.get("is_preferred_replica") is not None:
                skipped.add(name)
                notes.append(
                    Finding(
                        Status.OK,
                        f"{name} 在本副本（{_s(r.get('ag_role'))}）不是首选备份副本，备份由首选副本执行",
                        "数据安全类",
                        name,
                    )
                )
                continue
        kinds = ["full", "diff"]
        # model is FULL recovery by default but nobody backs up its log; read-only data does not change.
        if (
            _s(r.get("recovery_model_desc")) in _LOG_MODELS
            and name.lower() != "model"
            and not _flag(r.get("is_read_only"))
        ):
            kinds.append("log")
        required[name] = kinds
        db_age[name] = fnum(r.get("age_s")) or 0.0
    seen: list[BackupSeen] = []
    findings: list[Finding] = []
    copy_only: list[dict[str, Any]] = []
    no_checksum: dict[str, list[str]] = {}
    for r in data["history"]:
        db = _s(r.get("database_name"))
        kind = _TYPES.get(_s(r.get("type")))
        if kind is None or db not in required:
            continue
        at = finished_at(ctx, r.get("age_s"))
        is_copy = _flag(r.get("is_copy_only"))
        if is_copy:
            copy_only.append({"database": db, "type": kind, "finished_local": _s(r.get("finish_local"))})
            # A copy-only full starts no differential base; on an AG secondary it is the only full there is.
            if not (kind == "full" and db in in_ag):
                continue
        seen.append(BackupSeen(db, kind, at))
        if kind == "full":
            seen.append(BackupSeen(db, "diff", at))  # a newer full serves where a differential is expected
        if _flag(r.get("is_damaged")):
            findings.append(
                Finding(
                    Status.CRIT,
                    f"{db} 最近的{BACKUP_TYPE_ZH[kind]}（{_s(r.get('finish_local'))}）已标记为损坏",
                    "数据安全类",
                    db,
                )
            )
        if not _flag(r.get("has_backup_checksums")):
            no_checksum.setdefault(db, []).append(BACKUP_TYPE_ZH[kind])
    if ctx.options.get("require_checksums", True):
        for db, kinds in sorted(no_checksum.items()):
            findings.append(
                Finding(
                    Status.WARN,
                    f"{db} 最近的{'、'.join(kinds)}未使用 CHECKSUM（无法发现损坏页）",
                    "数据安全类",
                    db,
                )
            )
    expectations = [
        e for e in ctx.options.get("backups", ()) if e.database == "*" or e.database not in skipped
    ]
    fresh = judge_freshness(
        seen, required, replace(ctx, options={**ctx.options, "backups": expectations}), db_age_s=db_age
    )
    facts = {**fresh.facts, "copy_only": copy_only, "not_judged": sorted(skipped)}
    return ItemOutcome(fresh.metrics, tuple(findings) + fresh.findings + tuple(notes), facts)


def _norm(path: str) -> str:
    return path.replace("/", "\\").lower()


def eval_backup_location(data: Mapping[str, Rows], ctx: ItemContext) -> ItemOutcome:
    """Backups written to a volume that holds the database's own files die with that disk."""
    mounts: set[str] = set()
    db_volumes: dict[str, set[str]] = {}
    for r in data["data"]:
        mount = _norm(_s(r.get("volume_mount_point")))
        mounts.add(mount)
        db_volumes.setdefault(_s(r.get("database_name")), set()).add(mount)
    findings = []
    same: list[dict[str, str]] = []
    for r in data["devices"]:
        db = _s(r.get("database_name"))
        path = _norm(_s(r.get("physical_device_name")))
        if path.startswith("\\\\") or "://" in path:
            continue  # a network share or URL is another machine
        holder = max((m for m in mounts if m and path.startswith(m)), key=len, default=None)
        if holder is not None and holder in db_volumes.get(db, set()):
            same.append({"database": db, "device": _s(r.get("physical_device_name")), "volume": holder})
    for db in sorted({s["database"] for s in same}):
        vol = next(s["volume"] for s in same if s["database"] == db)
        findings.append(
            Finding(Status.WARN, f"{db} 的备份与其数据文件在同一磁盘卷 {vol.upper()}", "数据安全类", db)
        )
    return ItemOutcome(
        (Metric("backups.same_volume", len(findings)),), tuple(findings), {"same_volume": same}
    )


def eval_checkdb(data: Mapping[str, Rows], ctx: ItemContext) -> ItemOutcome:
    findings = []
    facts = []
    for r in data["databases"]:
        name = _s(r.get("name"))
        if _excluded(name, ctx) or name.lower() == "tempdb":
            continue
        last = _s(r.get("last_good"))
        facts.append({"database": name, "last_good": last or None})
        if not last:
            continue  # the property is unknown on this build: nothing to judge
        if last.startswith("1900-01-01"):
            findings.append(Finding(Status.CRIT, f"{name} 从未成功执行 DBCC CHECKDB", "数据安全类", name))
            continue
        age = (fnum(r.get("age_min")) or 0.0) * 60.0
        f = threshold_finding(
            ctx,
            "age_s",
            age,
            f"{name} 最近一次成功的 CHECKDB 在 {fmt_duration(age)}前（{last}）",
            category="数据安全类",
            obj=name,
        )
        if f:
            findings.append(f)
    return ItemOutcome((), tuple(findings), {"checkdb": facts})


def eval_suspect_pages(data: Mapping[str, Rows], ctx: ItemContext) -> ItemOutcome:
    rows = data["pages"]
    by_db: dict[str, int] = {}
    for r in rows:
        db = _s(r.get("database_name"))
        by_db[db] = by_db.get(db, 0) + 1
    findings = tuple(
        Finding(
            Status.CRIT, f"{db} 有 {n} 个可疑页（msdb.dbo.suspect_pages），可能存在损坏", "数据安全类", db
        )
        for db, n in sorted(by_db.items())
    )
    facts = {
        "pages": [
            {
                "database": _s(r.get("database_name")),
                "file_id": r.get("file_id"),
                "page_id": r.get("page_id"),
                "event_type": r.get("event_type"),
                "last_update": _s(r.get("last_update")),
            }
            for r in rows[:100]
        ]
    }
    return ItemOutcome((Metric("suspect_pages", len(rows)),), findings, facts)


def eval_log_space(data: Mapping[str, Rows], ctx: ItemContext) -> ItemOutcome:
    waits = {_s(r.get("name")): _s(r.get("log_reuse_wait_desc")) for r in data["databases"]}
    stats: dict[str, dict[str, float]] = {}
    for r in data["counters"]:
        db = _s(r.get("database_name"))
        if db not in waits:
            continue  # _Total, mssqlsystemresource
        stats.setdefault(db, {})[_s(r.get("counter_name"))] = fnum(r.get("cntr_value")) or 0.0
    metrics = []
    findings = []
    facts = []
    for db, c in sorted(stats.items()):
        pct = c.get("Percent Log Used", 0.0)
        size = c.get("Log File(s) Size (KB)", 0.0) * 1024
        wait = waits.get(db, "")
        metrics += [Metric(f"log.{db}.used_pct", pct, "%"), Metric(f"log.{db}.size_bytes", size, "B")]
        facts.append({"database": db, "used_pct": pct, "size_bytes": size, "log_reuse_wait": wait})
        if _excluded(db, ctx):
            continue
        reason = f"，日志等待 {wait}" if wait and wait != "NOTHING" else ""
        f = threshold_finding(
            ctx,
            "used_pct",
            pct,
            f"{db} 事务日志已用 {pct:.0f}%{reason}",
            category="数据安全类",
            obj=db,
            unit="%",
        )
        if f:
            findings.append(f)
    return ItemOutcome(tuple(metrics), tuple(findings), {"logs": facts})


def _job_time(run_date: Any, run_time: Any) -> str:
    d, t = f"{int(run_date or 0):08d}", f"{int(run_time or 0):06d}"
    return f"{d[:4]}-{d[4:6]}-{d[6:]} {t[:2]}:{t[2:4]}:{t[4:]}"


def eval_agent_jobs(data: Mapping[str, Rows], ctx: ItemContext) -> ItemOutcome:
    seen = int(ctx.memory.get("last_instance_id", 0) or 0)
    ignore = [re.compile(p) for p in ctx.options.get("ignore_jobs", ())]
    failed = [r for r in data["failed"] if not any(p.search(_s(r.get("job_name"))) for p in ignore)]
    findings = []
    for r in failed:
        new = "（新）" if int(r.get("instance_id") or 0) > seen else ""
        what = "失败" if int(r.get("run_status") or 0) == 0 else "被取消"
        at = _job_time(r.get("run_date"), r.get("run_time"))
        msg = _s(r.get("message"))[:120]
        findings.append(
            Finding(
                Status.WARN,
                f"SQL Agent 作业 {_s(r.get('job_name'))} 最近一次运行{what}{new}（{at}）：{msg}",
                "综合类",
                _s(r.get("job_name")),
            )
        )
    newest = max((int(r.get("instance_id") or 0) for r in data["failed"]), default=seen)
    facts = {
        "failed_jobs": [
            {
                "job": _s(r.get("job_name")),
                "at": _job_time(r.get("run_date"), r.get("run_time")),
                "new": int(r.get("instance_id") or 0) > seen,
            }
            for r in failed
        ]
    }
    return ItemOutcome(
        (Metric("jobs.failed", len(failed)),), tuple(findings), facts, {"last_instance_id": max(newest, seen)}
    )


def eval_agent_service(data: Mapping[str, Rows], ctx: ItemContext) -> ItemOutcome:
    agents = [r for r in data["services"] if _s(r.get("servicename")).lower().startswith("sql server agent")]
    facts = {
        "services": [
            {k: _s(r.get(k)) for k in ("servicename", "status_desc", "startup_type_desc")}
            for r in data["services"]
        ]
    }
    if not agents:
        return ItemOutcome(
            (),
            (
                Finding(
                    Status.OK,
                    "未发现 SQL Server Agent 服务（Express 版或 Linux 未启用）",
                    "数据安全类",
                    "agent",
                ),
            ),
            facts,
        )
    findings = []
    for r in agents:
        status = _s(r.get("status_desc"))
        if status != "Running":
            findings.append(
                Finding(
                    Status.CRIT,
                    f"{_s(r.get('servicename'))} 状态 {status}：计划作业和备份不会运行",
                    "数据安全类",
                    "agent",
                )
            )
    return ItemOutcome((), tuple(findings), facts)


_HEALTH = {"NOT_HEALTHY": Status.CRIT, "PARTIALLY_HEALTHY": Status.WARN}


def eval_always_on(data: Mapping[str, Rows], ctx: ItemContext) -> ItemOutcome:
    replicas, dbs = data["replicas"], data["databases"]
    if not replicas and not dbs:
        return ItemOutcome((), (), {"configured": False})
    findings = []
    for r in replicas:
        name = f"{_s(r.get('ag_name'))}/{_s(r.get('replica_server_name'))}"
        st = _HEALTH.get(_s(r.get("synchronization_health_desc")))
        if st is not None:
            findings.append(
                Finding(
                    st,
                    f"可用性组副本 {name}（{_s(r.get('role_desc'))}）同步健康状态 "
                    f"{_s(r.get('synchronization_health_desc'))}",
                    "数据安全类",
                    name,
                )
            )
        if _s(r.get("connected_state_desc")) == "DISCONNECTED":
            findings.append(Finding(Status.CRIT, f"可用性组副本 {name} 已断开连接", "数据安全类", name))
    metrics = []
    for r in dbs:
        db = _s(r.get("database_name"))
        metrics.append(
            Metric(f"ag.{db}.log_send_queue_bytes", (fnum(r.get("log_send_queue_size")) or 0.0) * 1024, "B")
        )
        metrics.append(
            Metric(f"ag.{db}.redo_queue_bytes", (fnum(r.get("redo_queue_size")) or 0.0) * 1024, "B")
        )
        if _flag(r.get("is_suspended")):
            findings.append(
                Finding(
                    Status.CRIT,
                    f"可用性组数据库 {db} 数据移动已挂起（{_s(r.get('suspend_reason_desc'))}）",
                    "数据安全类",
                    db,
                )
            )
        elif (st := _HEALTH.get(_s(r.get("synchronization_health_desc")))) is not None:
            findings.append(
                Finding(
                    st,
                    f"可用性组数据库 {db} 同步状态 {_s(r.get('synchronization_state_desc'))}",
                    "数据安全类",
                    db,
                )
            )
    facts = {"configured": True, "replicas": [{k: _s(v) for k, v in r.items()} for r in replicas]}
    return ItemOutcome(tuple(metrics), tuple(findings), facts)


def eval_log_shipping(data: Mapping[str, Rows], ctx: ItemContext) -> ItemOutcome:
    rows = data["secondaries"]
    if not rows:
        return ItemOutcome((), (), {"configured": False})
    findings = []
    for r in rows:
        db = _s(r.get("secondary_database"))
        age = fnum(r.get("restored_age_min"))
        limit = fnum(r.get("restore_threshold")) or 45.0
        if age is None:
            findings.append(Finding(Status.CRIT, f"日志传送辅助库 {db} 从未还原过日志备份", "数据安全类", db))
        elif age > limit:
            findings.append(
                Finding(
                    Status.CRIT,
                    f"日志传送辅助库 {db} 已 {age:.0f} 分钟未还原（阈值 {limit:.0f} 分钟）",
                    "数据安全类",
                    db,
                )
            )
    facts = {
        "configured": True,
        "secondaries": [
            {
                "database": _s(r.get("secondary_database")),
                "primary": _s(r.get("primary_server")),
                "restored_age_min": r.get("restored_age_min"),
            }
            for r in rows
        ],
    }
    return ItemOutcome((), tuple(findings), facts)


_MIRROR_STATE = {
    "SUSPENDED": Status.CRIT,
    "DISCONNECTED": Status.CRIT,
    "UNSYNCHRONIZED": Status.WARN,
    "PENDING_FAILOVER": Status.WARN,
}


def eval_mirroring(data: Mapping[str, Rows], ctx: ItemContext) -> ItemOutcome:
    rows = data["mirrors"]
    if not rows:
        return ItemOutcome((), (), {"configured": False})
    findings = []
    for r in rows:
        db = _s(r.get("database_name"))
        state = _s(r.get("mirroring_state_desc"))
        st = _MIRROR_STATE.get(state)
        if st is not None:
            findings.append(
                Finding(
                    st, f"数据库镜像 {db}（{_s(r.get('mirroring_role_desc'))}）状态 {state}", "数据安全类", db
                )
            )
    facts = {"configured": True, "mirrors": [{k: _s(v) for k, v in r.items()} for r in rows]}
    return ItemOutcome((), tuple(findings), facts)


def eval_logins(data: Mapping[str, Rows], ctx: ItemContext) -> ItemOutcome:
    findings = []
    facts = []
    for r in data["logins"]:
        name = _s(r.get("name"))
        days = fnum(r.get("days_left"))
        checked = _flag(r.get("is_expiration_checked"))
        facts.append(
            {
                "login": name,
                "days_left": days if checked else None,
                "locked": _flag(r.get("is_locked")),
                "expired": _flag(r.get("is_expired")),
            }
        )
        if _flag(r.get("is_expired")):
            findings.append(Finding(Status.CRIT, f"登录名 {name} 的密码已过期", "数据安全类", name))
        elif _flag(r.get("is_locked")):
            findings.append(Finding(Status.CRIT, f"登录名 {name} 已被锁定", "数据安全类", name))
        elif checked and days is not None:
            f = threshold_finding(
                ctx,
                "days_left",
                days,
                f"登录名 {name} 的密码将在 {days:.0f} 天后过期",
                category="数据安全类",
                obj=name,
                unit=" 天",
            )
            if f:
                findings.append(f)
    return ItemOutcome((), tuple(findings), {"logins": facts})


# ---------------------------------------------------------------------------- the table


VIEW_STATE = "GRANT VIEW SERVER STATE TO [<login>]"
MSDB = "USE msdb; CREATE USER [<login>] FOR LOGIN [<login>]; GRANT SELECT ON msdb.dbo.{} TO [<login>]"
DEFINITION = "GRANT VIEW ANY DEFINITION TO [<login>]"
BACKUP_THRESHOLDS = {
    "full_age_s": Threshold(crit=7 * DAY_S),
    "diff_age_s": Threshold(crit=26 * 3600),
    "log_age_s": Threshold(crit=2 * 3600),
}
SPACE_THRESHOLDS = {"used_pct": Threshold(85, 95), "days_to_full": Threshold(30, 7, below=True)}

BACKUPS = Item(
    name="backups",
    title="备份时效与完整性",
    queries={"databases": SQL_BACKUP_DATABASES, "history": SQL_BACKUP_HISTORY},
    evaluate=eval_backups,
    grant=f"{DEFINITION}; {MSDB.format('backupset')}",
    category="数据安全类",
    min_version=(11,),
    thresholds=BACKUP_THRESHOLDS,
)

ITEMS: tuple[Item, ...] = (
    Item(
        "version",
        "版本与运行时间",
        {"version": SQL_VERSION},
        eval_version,
        VIEW_STATE,
        "数据安全类",
        thresholds={"uptime_s": Threshold(DAY_S, below=True)},
    ),
    Item(
        "database_state",
        "数据库状态",
        {"databases": SQL_DATABASES},
        eval_database_state,
        DEFINITION,
        "数据安全类",
    ),
    Item(
        "database_space",
        "数据文件与磁盘卷空间",
        {"files": SQL_FILES},
        eval_space,
        f"{VIEW_STATE}; {DEFINITION}",
        "数据安全类",
        thresholds=SPACE_THRESHOLDS,
    ),
    Item(
        "sessions",
        "会话数",
        {"sessions": SQL_SESSIONS},
        eval_sessions,
        VIEW_STATE,
        "数据安全类",
        thresholds={"used_pct": Threshold(80, 90)},
    ),
    Item(
        "blocking",
        "阻塞",
        {"blocked": SQL_BLOCKING},
        eval_blocking,
        VIEW_STATE,
        "数据安全类",
        thresholds={"wait_s": Threshold(60, 300)},
    ),
    Item(
        "long_transactions",
        "长事务",
        {"transactions": SQL_LONG_TX},
        eval_long_transactions,
        VIEW_STATE,
        "数据安全类",
        thresholds={"age_s": Threshold(1800, 7200)},
    ),
    BACKUPS,
    Item(
        "backup_location",
        "备份与数据同盘",
        {"data": SQL_DATA_VOLUMES, "devices": SQL_BACKUP_DEVICES},
        eval_backup_location,
        f"{VIEW_STATE}; {MSDB.format('backupset')}; GRANT SELECT ON msdb.dbo.backupmediafamily TO [<login>]",
        "数据安全类",
    ),
    Item(
        "checkdb",
        "最近一次成功 CHECKDB",
        {"databases": SQL_CHECKDB},
        eval_checkdb,
        DEFINITION,
        "数据安全类",
        min_version=(13, 0, 5026),
        thresholds={"age_s": Threshold(8 * DAY_S, 31 * DAY_S)},
    ),
    Item(
        "suspect_pages",
        "可疑页",
        {"pages": SQL_SUSPECT_PAGES},
        eval_suspect_pages,
        MSDB.format("suspect_pages"),
        "数据安全类",
    ),
    Item(
        "log_space",
        "事务日志空间",
        {"counters": SQL_LOG_COUNTERS, "databases": SQL_LOG_REUSE},
        eval_log_space,
        VIEW_STATE,
        "数据安全类",
        thresholds={"used_pct": Threshold(80, 90)},
    ),
    Item(
        "agent_jobs",
        "SQL Agent 作业失败",
        {"failed": SQL_AGENT_JOBS},
        eval_agent_jobs,
        f"{MSDB.format('sysjobs')}; GRANT SELECT ON msdb.dbo.sysjobhistory TO [<login>]",
    ),
    Item(
        "agent_service",
        "SQL Agent 服务",
        {"services": SQL_SERVICES},
        eval_agent_service,
        VIEW_STATE,
        "数据安全类",
    ),
    Item(
        "always_on",
        "Always On 可用性组",
        {"replicas": SQL_AG_REPLICAS, "databases": SQL_AG_DATABASES},
        eval_always_on,
        VIEW_STATE,
        "数据安全类",
        min_version=(11,),
        optional=True,
    ),
    Item(
        "log_shipping",
        "日志传送",
        {"secondaries": SQL_LOG_SHIPPING},
        eval_log_shipping,
        MSDB.format("log_shipping_monitor_secondary"),
        "数据安全类",
        optional=True,
    ),
    Item(
        "mirroring",
        "数据库镜像",
        {"mirrors": SQL_MIRRORING},
        eval_mirroring,
        VIEW_STATE,
        "数据安全类",
        optional=True,
    ),
    Item(
        "logins",
        "SQL 登录名过期",
        {"logins": SQL_LOGINS},
        eval_logins,
        DEFINITION,
        "数据安全类",
        thresholds={"days_left": Threshold(14, 3, below=True)},
    ),
)

BACKUPS_LEGACY = replace(
    BACKUPS, queries={"databases": SQL_BACKUP_DATABASES_LEGACY, "history": SQL_BACKUP_HISTORY}, min_version=()
)
"""The backups item for 2008 / 2008 R2 (no availability groups)."""


def items_for_version(version: tuple[int, ...]) -> tuple[Item, ...]:
    if version >= (11,):
        return ITEMS
    return tuple(BACKUPS_LEGACY if i.name == "backups" else i for i in ITEMS)


STATEMENTS: Mapping[str, str] = {
    **{f"{it.name}.{q}": sql for it in ITEMS for q, sql in it.queries.items()},
    "backups.databases_legacy": SQL_BACKUP_DATABASES_LEGACY,
    "server_now": SQL_SERVER_NOW,
}
"""Every statement the SQL Server probe can send, for the offline SQL checks."""

ALL_ITEMS: Sequence[Item] = (*ITEMS, BACKUPS_LEGACY)
