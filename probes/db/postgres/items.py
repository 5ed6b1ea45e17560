"""PostgreSQL inspection items: read-only catalog queries and pure evaluations.

Written for PostgreSQL 10 and later (`backend_type`, `pg_read_all_stats`, `replay_lag`);
items that need more say so with `min_version`. Every statement is static text; anything
"since the last run" is worked out in the evaluation with the item's memory.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from probes.base import Metric, Status
from probes.db.items import (
    BackupSeen,
    Finding,
    Item,
    ItemContext,
    ItemOutcome,
    Rows,
    SpaceEntry,
    as_utc,
    blocking_outcome,
    fmt_duration,
    judge_backups,
    long_transactions_outcome,
    parse_size,
    sessions_outcome,
    space_outcome,
    threshold_finding,
)
from probes.db.items import (
    num as _num,
)
from probes.db.items import (
    one as _one,
)
from probes.thresholds import Threshold

DAY_S = 86400.0
XID_LIMIT = 2.0**31
"""Transaction IDs wrap around after 2^31; PostgreSQL stops accepting writes shortly before."""
DATA = "数据安全类"

MONITOR_GRANT = "GRANT pg_monitor TO <user>"

# ---------------------------------------------------------------------------- SQL

SQL_VERSION = """
SELECT current_setting('server_version') AS version, pg_postmaster_start_time() AS started_at,
       now() AS now, pg_is_in_recovery() AS in_recovery
"""

SQL_DATABASES = """
SELECT d.datname, d.datallowconn, d.datconnlimit, d.datistemplate,
       has_database_privilege(d.oid, 'CONNECT') AS can_connect,
       EXISTS (SELECT 1 FROM pg_db_role_setting s
               WHERE s.setdatabase = d.oid AND s.setrole = 0
                 AND 'default_transaction_read_only=on' = ANY (s.setconfig)) AS read_only,
       pg_is_in_recovery() AS in_recovery
FROM pg_database d
ORDER BY d.datname
"""

SQL_DATABASE_SIZE = """
SELECT datname, pg_database_size(oid)::float8 AS size_bytes
FROM pg_database
WHERE NOT datistemplate AND datconnlimit <> -2
ORDER BY datname
"""

SQL_TABLESPACE_SIZE = """
SELECT spcname, pg_tablespace_size(oid)::float8 AS size_bytes, pg_tablespace_location(oid) AS location
FROM pg_tablespace
ORDER BY spcname
"""

SQL_SEES_ALL = "SELECT pg_has_role(current_user, 'pg_read_all_stats', 'MEMBER') AS sees_all"

SQL_SESSIONS = """
SELECT count(*) FILTER (WHERE backend_type = 'client backend') AS sessions,
       count(*) FILTER (WHERE backend_type = 'client backend' AND state = 'active') AS active,
       count(*) FILTER (WHERE state LIKE 'idle in transaction%') AS idle_in_transaction,
       current_setting('max_connections')::int AS max_connections,
       current_setting('superuser_reserved_connections')::int AS reserved
FROM pg_stat_activity
"""

SQL_BLOCKING = """
SELECT w.pid AS waiting_pid, w.usename AS waiting_user, w.datname,
       EXTRACT(EPOCH FROM (clock_timestamp() - w.query_start))::float8 AS wait_s,
       b.pid AS blocking_pid, b.usename AS blocking_user, b.state AS blocking_state,
       host(b.client_addr) AS blocking_client, b.application_name AS blocking_app,
       EXTRACT(EPOCH FROM (clock_timestamp() - b.xact_start))::float8 AS blocking_xact_s
FROM pg_stat_activity w
CROSS JOIN LATERAL unnest(pg_blocking_pids(w.pid)) AS bp(pid)
LEFT JOIN pg_stat_activity b ON b.pid = bp.pid
ORDER BY wait_s DESC NULLS LAST
"""

SQL_LONG_TX = """
SELECT pid, usename, datname, state, application_name AS app, host(client_addr) AS client,
       EXTRACT(EPOCH FROM (clock_timestamp() - xact_start))::float8 AS age_s
FROM pg_stat_activity
WHERE xact_start IS NOT NULL AND pid <> pg_backend_pid() AND backend_type = 'client backend'
ORDER BY xact_start
LIMIT 20
"""

SQL_REPLICAS = """
SELECT application_name, host(client_addr) AS client, state, sync_state,
       EXTRACT(EPOCH FROM replay_lag)::float8 AS replay_lag_s,
       CASE WHEN pg_is_in_recovery() THEN NULL
            ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::float8 END AS lag_bytes
FROM pg_stat_replication
ORDER BY application_name
"""

SQL_STANDBY = """
SELECT pg_is_in_recovery() AS in_recovery,
       pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn() AS caught_up,
       EXTRACT(EPOCH FROM (now() - pg_last_xact_replay_timestamp()))::float8 AS replay_age_s,
       (SELECT status FROM pg_stat_wal_receiver LIMIT 1) AS receiver_status
"""

SQL_WRAPAROUND = """
SELECT datname, age(datfrozenxid)::float8 AS xid_age, mxid_age(datminmxid)::float8 AS mxid_age
FROM pg_database
WHERE datallowconn
ORDER BY datname
"""

SQL_VACUUM = """
SELECT current_database() AS db, schemaname, relname,
       n_live_tup::float8 AS live, n_dead_tup::float8 AS dead,
       GREATEST(last_autovacuum, last_vacuum) AS last_vacuum,
       pg_total_relation_size(relid)::float8 AS size_bytes
FROM pg_stat_user_tables
ORDER BY pg_total_relation_size(relid) DESC
LIMIT 50
"""

SQL_ARCHIVER = """
SELECT current_setting('archive_mode') AS archive_mode,
       archived_count::float8 AS archived_count, last_archived_wal, last_archived_time,
       failed_count::float8 AS failed_count, last_failed_wal, last_failed_time, stats_reset
FROM pg_stat_archiver
"""

SQL_PG_CRON = """
SELECT j.jobid, j.jobname, j.database, j.username, d.status, d.start_time, d.end_time,
       left(d.return_message, 200) AS message
FROM cron.job j
CROSS JOIN LATERAL (SELECT r.status, r.start_time, r.end_time, r.return_message
                    FROM cron.job_run_details r WHERE r.jobid = j.jobid
                    ORDER BY r.runid DESC LIMIT 1) d
WHERE j.active
ORDER BY j.jobid
"""

# ---------------------------------------------------------------------------- helpers


def _visibility(rows: Rows, what: str) -> tuple[Finding, ...]:
    """Without pg_read_all_stats pg_stat_activity hides other users' sessions: say so."""
    if _one(rows).get("sees_all", True):
        return ()
    text = f"{what}只能看到监控账号自己的会话，需要 {MONITOR_GRANT}（或 pg_read_all_stats）"
    return (Finding(Status.WARN, text, "综合类", "pg_stat_activity"),)


def _limits(ictx: ItemContext) -> dict[str, float]:
    return {name: parse_size(v) for name, v in dict(ictx.options.get("limits") or {}).items()}


def _iso(v: datetime | None) -> str | None:
    t = as_utc(v)
    return t.isoformat() if t else None


# ---------------------------------------------------------------------------- evaluations


def eval_version(data: Mapping[str, Rows], ictx: ItemContext) -> ItemOutcome:
    r = _one(data["version"])
    started = as_utc(r.get("started_at"))
    now = as_utc(r.get("now")) or ictx.now
    facts = {
        "version": r.get("version"),
        "started_at": _iso(started),
        "in_recovery": bool(r.get("in_recovery")),
    }
    if started is None:
        return ItemOutcome(facts=facts)
    uptime = max((now - started).total_seconds(), 0.0)
    local = started.astimezone(ictx.tz)
    f = threshold_finding(
        ictx,
        "uptime_s",
        uptime,
        f"实例 {fmt_duration(uptime)}前重启过（启动于 {local:%Y-%m-%d %H:%M}）",
        category=DATA,
        obj="instance",
        unit=" 秒",
    )
    return ItemOutcome((Metric("uptime_s", round(uptime), "s"),), (f,) if f else (), facts)


def eval_databases(data: Mapping[str, Rows], ictx: ItemContext) -> ItemOutcome:
    rows = data["databases"]
    expected = [str(d) for d in ictx.options.get("databases") or ()]
    read_only_ok = set(ictx.options.get("read_only_ok") or ())
    role = ictx.options.get("server_role", "any")
    by_name = {str(r["datname"]): r for r in rows}
    findings: list[Finding] = []
    for name in expected:
        if name not in by_name:
            findings.append(Finding(Status.CRIT, f"数据库 {name} 不存在", DATA, name))
    for name, r in by_name.items():
        if r.get("datistemplate"):
            continue
        wanted = name in expected
        if int(r.get("datconnlimit") or 0) == -2:
            findings.append(
                Finding(Status.CRIT, f"数据库 {name} 处于无效状态（DROP DATABASE 中途失败）", DATA, name)
            )
        elif not r.get("datallowconn"):
            findings.append(
                Finding(Status.CRIT, f"数据库 {name} 禁止连接（datallowconn = false）", DATA, name)
            )
        elif int(r.get("datconnlimit") or 0) == 0:
            findings.append(Finding(Status.CRIT, f"数据库 {name} 连接数上限为 0，无法连接", DATA, name))
        elif wanted and not r.get("can_connect"):
            text = f"监控账号无权连接数据库 {name}，需要 GRANT CONNECT ON DATABASE {name} TO <user>"
            findings.append(Finding(Status.WARN, text, "综合类", name))
        if r.get("read_only") and name not in read_only_ok:
            status = Status.CRIT if wanted else Status.WARN
            text = f"数据库 {name} 被设为只读（default_transaction_read_only = on）"
            findings.append(Finding(status, text, DATA, name))
    in_recovery = bool(_one(rows).get("in_recovery"))
    if role == "primary" and in_recovery:
        findings.append(
            Finding(Status.CRIT, "实例处于恢复（备库只读）状态，配置要求为主库", DATA, "instance")
        )
    elif role == "standby" and rows and not in_recovery:
        findings.append(
            Finding(Status.WARN, "实例可写（不在恢复状态），配置要求为备库：可能已发生切换", DATA, "instance")
        )
    facts = {
        "in_recovery": in_recovery,
        "databases": [
            {
                "name": n,
                "allow_connections": bool(r.get("datallowconn")),
                "read_only": bool(r.get("read_only")),
            }
            for n, r in by_name.items()
            if not r.get("datistemplate")
        ],
    }
    count = sum(1 for r in rows if not r.get("datistemplate"))
    return ItemOutcome((Metric("databases.count", count),), tuple(findings), facts)


def _space(kind: str, label: str, key: str, data: Rows, ictx: ItemContext) -> ItemOutcome:
    limits = _limits(ictx)
    entries = [
        SpaceEntry(kind, str(r[key]), float(r["size_bytes"] or 0), limits.get(str(r[key])), label)
        for r in data
        if r.get("size_bytes") is not None
    ]
    return space_outcome(entries, ictx)


def eval_database_space(data: Mapping[str, Rows], ictx: ItemContext) -> ItemOutcome:
    return _space("database", "数据库", "datname", data["sizes"], ictx)


def eval_tablespace_space(data: Mapping[str, Rows], ictx: ItemContext) -> ItemOutcome:
    return _space("tablespace", "表空间", "spcname", data["sizes"], ictx)


def eval_sessions(data: Mapping[str, Rows], ictx: ItemContext) -> ItemOutcome:
    r = _one(data["sessions"])
    sessions = float(r.get("sessions") or 0)
    limit = float(r.get("max_connections") or 0) - float(r.get("reserved") or 0)
    extra = [
        Metric("sessions.active", float(r.get("active") or 0)),
        Metric("sessions.idle_in_transaction", float(r.get("idle_in_transaction") or 0)),
    ]
    out = sessions_outcome(sessions, limit, extra, ictx)
    return replace(out, findings=_visibility(data["sees_all"], "会话统计") + out.findings)


def eval_blocking(data: Mapping[str, Rows], ictx: ItemContext) -> ItemOutcome:
    out = blocking_outcome(data["blocked"], ictx)
    return replace(out, findings=_visibility(data["sees_all"], "阻塞检查") + out.findings)


def eval_long_transactions(data: Mapping[str, Rows], ictx: ItemContext) -> ItemOutcome:
    out = long_transactions_outcome(data["transactions"], ictx)
    return replace(out, findings=_visibility(data["sees_all"], "长事务检查") + out.findings)


def eval_replication(data: Mapping[str, Rows], ictx: ItemContext) -> ItemOutcome:
    metrics: list[Metric] = []
    findings: list[Finding] = []
    replicas = data["replicas"]
    for r in replicas:
        name = str(r.get("application_name") or r.get("client") or "replica")
        state = r.get("state")
        # replay_lag is NULL once a replica has caught up on an idle primary: no lag then.
        lag = _num(r.get("replay_lag_s")) or 0.0
        metrics.append(Metric(f"replica.{name}.lag_s", round(lag, 1), "s"))
        if r.get("lag_bytes") is not None:
            metrics.append(Metric(f"replica.{name}.lag_bytes", float(r["lag_bytes"]), "B"))
        if state != "streaming":
            findings.append(
                Finding(Status.WARN, f"备库 {name} 复制状态为 {state}，不是 streaming", DATA, name)
            )
        f = threshold_finding(
            ictx, "lag_s", lag, f"备库 {name} 回放延迟 {lag:.0f} 秒", category=DATA, obj=name
        )
        if f:
            findings.append(f)
    streaming = sum(1 for r in replicas if r.get("state") == "streaming")
    expect = int(ictx.options.get("expect_replicas") or 0)
    if streaming < expect:
        findings.append(
            Finding(Status.CRIT, f"正在复制的备库 {streaming} 个，少于要求的 {expect} 个", DATA, "replicas")
        )
    s = _one(data["standby"])
    facts: dict[str, Any] = {
        "in_recovery": bool(s.get("in_recovery")),
        "replicas": [dict(r) for r in replicas],
    }
    if s.get("in_recovery"):
        lag = 0.0 if s.get("caught_up") else (_num(s.get("replay_age_s")) or 0.0)
        metrics.append(Metric("standby.lag_s", round(lag, 1), "s"))
        facts["receiver_status"] = s.get("receiver_status")
        if s.get("receiver_status") != "streaming":
            status_text = s.get("receiver_status") or "未运行"
            findings.append(
                Finding(Status.CRIT, f"本备库 WAL 接收进程状态为 {status_text}", DATA, "wal_receiver")
            )
        f = threshold_finding(
            ictx, "lag_s", lag, f"本备库回放落后 {lag:.0f} 秒", category=DATA, obj="standby"
        )
        if f:
            findings.append(f)
    return ItemOutcome(tuple(metrics), tuple(findings), facts)


def eval_wraparound(data: Mapping[str, Rows], ictx: ItemContext) -> ItemOutcome:
    metrics: list[Metric] = []
    findings: list[Finding] = []
    for r in data["ages"]:
        name = str(r["datname"])
        age = float(r.get("xid_age") or 0)
        pct = age / XID_LIMIT * 100.0
        metrics.append(Metric(f"database.{name}.xid_age", age))
        metrics.append(Metric(f"database.{name}.wraparound_pct", round(pct, 2), "%"))
        text = f"数据库 {name} 事务 ID 年龄 {age:,.0f}，已达回卷上限的 {pct:.1f}%"
        f = threshold_finding(ictx, "wraparound_pct", pct, text, category=DATA, obj=name, unit="%")
        if f:
            findings.append(f)
    return ItemOutcome(tuple(metrics), tuple(findings))


def eval_autovacuum(data: Mapping[str, Rows], ictx: ItemContext) -> ItemOutcome:
    min_size = parse_size(ictx.options.get("min_table_size", "1G"))
    min_dead = float(ictx.options.get("min_dead_pct", 10.0))
    now = ictx.clock()
    findings: list[Finding] = []
    big: list[dict[str, Any]] = []
    worst_dead = 0.0
    for r in data["tables"]:
        if float(r.get("size_bytes") or 0) < min_size:
            continue
        live, dead = float(r.get("live") or 0), float(r.get("dead") or 0)
        dead_pct = dead / (live + dead) * 100.0 if live + dead > 0 else 0.0
        worst_dead = max(worst_dead, dead_pct)
        last = as_utc(r.get("last_vacuum"))
        age_days = None if last is None else (now - last).total_seconds() / DAY_S
        name = f"{r.get('db')}.{r.get('schemaname')}.{r.get('relname')}"
        big.append(
            {
                "table": name,
                "size_bytes": float(r["size_bytes"]),
                "dead_pct": round(dead_pct, 1),
                "last_vacuum": last.isoformat() if last else None,
            }
        )
        when = "从未清理" if age_days is None else f"最近清理于 {age_days:.0f} 天前"
        f = threshold_finding(
            ictx, "dead_pct", dead_pct, f"大表 {name} 死元组占 {dead_pct:.0f}%（{when}）", obj=name, unit="%"
        )
        if f is None and dead_pct >= min_dead:
            # Only a table with garbage to clean up is late: a big static table needs no vacuum.
            f = threshold_finding(
                ictx,
                "vacuum_age_days",
                float("inf") if age_days is None else age_days,
                f"大表 {name} 死元组占 {dead_pct:.0f}%，{when}",
                obj=name,
                unit=" 天",
            )
        if f:
            findings.append(f)
    metrics = (
        Metric("autovacuum.big_tables", len(big)),
        Metric("autovacuum.max_dead_pct", round(worst_dead, 1), "%"),
    )
    return ItemOutcome(metrics, tuple(findings), {"big_tables": big})


def eval_archiver(data: Mapping[str, Rows], ictx: ItemContext) -> ItemOutcome:
    r = _one(data["archiver"])
    mode = str(r.get("archive_mode") or "off")
    last_ok = as_utc(r.get("last_archived_time"))
    last_bad = as_utc(r.get("last_failed_time"))
    failed = float(r.get("failed_count") or 0)
    reset = _iso(r.get("stats_reset"))
    facts: dict[str, Any] = {
        "archive_mode": mode,
        "last_archived_wal": r.get("last_archived_wal"),
        "last_archived_time": _iso(last_ok),
        "last_failed_wal": r.get("last_failed_wal"),
        "last_failed_time": _iso(last_bad),
    }
    memory = {"failed_count": failed, "stats_reset": reset}
    metrics = [Metric("archiver.failed_count", failed)]
    findings: list[Finding] = []
    if last_ok is not None:
        metrics.append(
            Metric("archiver.last_archived_age_s", round((ictx.clock() - last_ok).total_seconds()), "s")
        )
    if mode == "off":
        if ictx.options.get("require_archiving"):
            findings.append(
                Finding(Status.CRIT, "未启用 WAL 归档（archive_mode = off），无法做时间点恢复", DATA, "wal")
            )
    elif last_bad is not None and (last_ok is None or last_bad > last_ok):
        local = last_bad.astimezone(ictx.tz)
        wal = r.get("last_failed_wal")
        text = f"WAL 归档失败：{wal} 于 {local:%Y-%m-%d %H:%M:%S} 归档失败，之后没有成功的归档"
        findings.append(Finding(Status.CRIT, text, DATA, "wal"))
    else:
        prev = ictx.memory
        if prev and prev.get("stats_reset") == reset and failed > float(prev.get("failed_count") or 0):
            n = failed - float(prev.get("failed_count") or 0)
            findings.append(
                Finding(Status.WARN, f"上次检查以来 WAL 归档失败 {n:.0f} 次，现已恢复", DATA, "wal")
            )
    expectations = list(ictx.options.get("backups") or ())
    if expectations:
        # WAL archiving is cluster-wide: every expectation is judged against the one archiver.
        cluster = [e.model_copy(update={"database": "*"}) for e in expectations]
        seen = [BackupSeen("WAL", e.type, last_ok) for e in expectations]
        judged = judge_backups(cluster, seen, ["WAL"], ictx)
        findings.extend(judged.findings)
        facts.update(judged.facts)
    return ItemOutcome(tuple(metrics), tuple(findings), facts, memory)


def eval_pg_cron(data: Mapping[str, Rows], ictx: ItemContext) -> ItemOutcome:
    findings: list[Finding] = []
    jobs: list[dict[str, Any]] = []
    for r in data["jobs"]:
        name = str(r.get("jobname") or f"job {r.get('jobid')}")
        ended = as_utc(r.get("end_time") or r.get("start_time"))
        jobs.append({"job": name, "status": r.get("status"), "at": ended.isoformat() if ended else None})
        if r.get("status") == "failed":
            when = f"{ended.astimezone(ictx.tz):%Y-%m-%d %H:%M}" if ended else "时间未知"
            message = str(r.get("message") or "").strip().splitlines()
            text = f"定时任务 {name} 最近一次运行失败（{when}）" + (
                f"：{message[0][:100]}" if message else ""
            )
            findings.append(Finding(Status.WARN, text, "综合类", name))
    return ItemOutcome((Metric("jobs.failed", len(findings)),), tuple(findings), {"jobs": jobs})


# ---------------------------------------------------------------------------- the table


_SPACE_RULES = {
    "used_pct": Threshold(85, 95),
    "days_to_full": Threshold(30, 7, below=True),
    "size_bytes": Threshold(),
    "growth_bytes_per_day": Threshold(),
}

ITEMS: tuple[Item, ...] = (
    Item(
        "version",
        "版本与运行时间",
        {"version": SQL_VERSION},
        eval_version,
        "无需额外授权",
        DATA,
        thresholds={"uptime_s": Threshold(DAY_S, below=True)},
    ),
    Item(
        "database_state",
        "数据库状态",
        {"databases": SQL_DATABASES},
        eval_databases,
        "无需额外授权（pg_database 对所有用户可读）",
        DATA,
    ),
    Item(
        "database_space",
        "数据库空间",
        {"sizes": SQL_DATABASE_SIZE},
        eval_database_space,
        f"{MONITOR_GRANT}（pg_read_all_stats，或对每个库 GRANT CONNECT）",
        DATA,
        thresholds=_SPACE_RULES,
    ),
    Item(
        "tablespace_space",
        "表空间空间",
        {"sizes": SQL_TABLESPACE_SIZE},
        eval_tablespace_space,
        f"{MONITOR_GRANT}（pg_read_all_stats）",
        DATA,
        thresholds=_SPACE_RULES,
    ),
    Item(
        "sessions",
        "会话数",
        {"sessions": SQL_SESSIONS, "sees_all": SQL_SEES_ALL},
        eval_sessions,
        MONITOR_GRANT,
        DATA,
        min_version=(10,),
        thresholds={"used_pct": Threshold(80, 90)},
    ),
    Item(
        "blocking",
        "阻塞会话",
        {"blocked": SQL_BLOCKING, "sees_all": SQL_SEES_ALL},
        eval_blocking,
        MONITOR_GRANT,
        DATA,
        min_version=(10,),
        thresholds={"wait_s": Threshold(60, 300)},
    ),
    Item(
        "long_transactions",
        "长事务",
        {"transactions": SQL_LONG_TX, "sees_all": SQL_SEES_ALL},
        eval_long_transactions,
        MONITOR_GRANT,
        DATA,
        min_version=(10,),
        thresholds={"age_s": Threshold(1800, 7200)},
    ),
    Item(
        "replication",
        "流复制",
        {"replicas": SQL_REPLICAS, "standby": SQL_STANDBY},
        eval_replication,
        MONITOR_GRANT,
        DATA,
        min_version=(10,),
        optional=True,
        thresholds={"lag_s": Threshold(300, 1800)},
    ),
    Item(
        "wraparound",
        "事务 ID 回卷",
        {"ages": SQL_WRAPAROUND},
        eval_wraparound,
        "无需额外授权",
        DATA,
        thresholds={"wraparound_pct": Threshold(50, 75)},
    ),
    Item(
        "autovacuum",
        "大表自动清理",
        {"tables": SQL_VACUUM},
        eval_autovacuum,
        "无需额外授权（仅检查所连接的库）",
        "综合类",
        thresholds={"dead_pct": Threshold(30, None), "vacuum_age_days": Threshold(7, None)},
    ),
    Item("wal_archiving", "WAL 归档", {"archiver": SQL_ARCHIVER}, eval_archiver, "无需额外授权", DATA),
    Item(
        "pg_cron",
        "pg_cron 定时任务",
        {"jobs": SQL_PG_CRON},
        eval_pg_cron,
        "GRANT USAGE ON SCHEMA cron TO <user>; GRANT SELECT ON cron.job, cron.job_run_details TO <user>; "
        "ALTER ROLE <user> BYPASSRLS（cron.job 按行隔离，否则只能看到本账号的任务）",
        "综合类",
        optional=True,
    ),
)
