"""MySQL / MariaDB inspection items: read-only statements and pure evaluations.

MySQL 5.7 / 8.0 and MariaDB 10.5+ differ in where lock waits, deadlock counters and replica
status live, so `items_for(flavour, version)` picks the right statement per item; the item
names (and so the configuration keys) are the same everywhere. `SHOW` statements are used
where they are the only portable read-only source (status counters, replica status).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from probes.base import Metric, Status
from probes.db.items import (
    Finding,
    Item,
    ItemContext,
    ItemOutcome,
    Row,
    Rows,
    SpaceEntry,
    blocking_outcome,
    fmt_duration,
    long_transactions_outcome,
    num,
    one,
    parse_size,
    sessions_outcome,
    space_outcome,
    threshold_finding,
)
from probes.thresholds import Threshold

DAY_S = 86400.0
DATA = "数据安全类"
SYSTEM_SCHEMAS = ("mysql", "information_schema", "performance_schema", "sys")

# ---------------------------------------------------------------------------- SQL

SQL_STATUS_UPTIME = "SHOW GLOBAL STATUS WHERE Variable_name IN ('Uptime')"
SQL_VERSION = "SELECT VERSION() AS version, @@version_comment AS comment"

SQL_SCHEMAS = "SELECT schema_name FROM information_schema.SCHEMATA ORDER BY schema_name"
SQL_READ_ONLY = "SELECT @@global.read_only AS read_only"
SQL_SHOW_DATABASES_PRIV = """
SELECT COUNT(*) AS n FROM information_schema.USER_PRIVILEGES WHERE PRIVILEGE_TYPE = 'SHOW DATABASES'
"""

SQL_SCHEMA_SIZE = """
SELECT table_schema AS schema_name,
       SUM(data_length + index_length) AS size_bytes,
       SUM(data_free) AS free_bytes,
       COUNT(*) AS tables
FROM information_schema.TABLES
WHERE table_type = 'BASE TABLE'
  AND table_schema NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys')
GROUP BY table_schema
ORDER BY table_schema
"""

SQL_SESSIONS = """
SHOW GLOBAL STATUS WHERE Variable_name IN ('Threads_connected', 'Threads_running', 'Max_used_connections')
"""
SQL_MAX_CONNECTIONS = "SELECT @@max_connections AS max_connections"

# Column names follow probes.db.items.blocking_outcome / long_transactions_outcome.
_BLOCKING_SELECT = """
SELECT r.trx_mysql_thread_id AS waiting_pid,
       TIMESTAMPDIFF(SECOND, r.trx_wait_started, NOW()) AS wait_s,
       b.trx_mysql_thread_id AS blocking_pid,
       p.USER AS blocking_user, p.HOST AS blocking_client, NULL AS blocking_app,
       CONCAT(p.COMMAND, ' / ', b.trx_state) AS blocking_state, p.DB AS datname
"""
SQL_BLOCKING_IS = (
    _BLOCKING_SELECT
    + """FROM information_schema.INNODB_LOCK_WAITS w
JOIN information_schema.INNODB_TRX r ON r.trx_id = w.requesting_trx_id
JOIN information_schema.INNODB_TRX b ON b.trx_id = w.blocking_trx_id
LEFT JOIN information_schema.PROCESSLIST p ON p.ID = b.trx_mysql_thread_id
ORDER BY wait_s DESC
"""
)
SQL_BLOCKING_PS = (
    _BLOCKING_SELECT
    + """FROM performance_schema.data_lock_waits w
JOIN information_schema.INNODB_TRX r ON r.trx_id = w.REQUESTING_ENGINE_TRANSACTION_ID
JOIN information_schema.INNODB_TRX b ON b.trx_id = w.BLOCKING_ENGINE_TRANSACTION_ID
LEFT JOIN information_schema.PROCESSLIST p ON p.ID = b.trx_mysql_thread_id
ORDER BY wait_s DESC
"""
)

SQL_LONG_TX = """
SELECT t.trx_mysql_thread_id AS pid, p.USER AS usename, p.DB AS datname,
       CONCAT(p.COMMAND, ' / ', t.trx_state) AS state, NULL AS application_name, p.HOST AS client,
       TIMESTAMPDIFF(SECOND, t.trx_started, NOW()) AS age_s
FROM information_schema.INNODB_TRX t
LEFT JOIN information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id
WHERE t.trx_mysql_thread_id <> CONNECTION_ID()
ORDER BY t.trx_started
LIMIT 20
"""

SQL_REPLICAS_MARIADB = "SHOW ALL SLAVES STATUS"
SQL_REPLICAS_MYSQL = "SHOW REPLICA STATUS"
SQL_REPLICAS_MYSQL_OLD = "SHOW SLAVE STATUS"

SQL_DEADLOCKS_MARIADB = "SHOW GLOBAL STATUS WHERE Variable_name IN ('Innodb_deadlocks', 'Uptime')"
SQL_DEADLOCKS_MYSQL = (
    "SELECT `COUNT` AS deadlocks FROM information_schema.INNODB_METRICS WHERE NAME = 'lock_deadlocks'"
)

SQL_BINLOG = """
SHOW GLOBAL VARIABLES WHERE Variable_name IN
  ('log_bin', 'binlog_format', 'expire_logs_days', 'binlog_expire_logs_seconds', 'sync_binlog')
"""

SQL_EVENT_SCHEDULER = "SELECT @@global.event_scheduler AS scheduler"
SQL_EVENTS = """
SELECT event_schema, event_name, status, last_executed
FROM information_schema.EVENTS
ORDER BY event_schema, event_name
"""

# ---------------------------------------------------------------------------- helpers


def status_vars(rows: Rows) -> dict[str, str]:
    """SHOW STATUS / VARIABLES rows -> {lower-case name: value}."""
    return {str(r["variable_name"]).lower(): str(r["value"]) for r in rows}


def _float(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return 0.0


def _on(v: Any) -> bool:
    return str(v).strip().upper() in ("1", "ON", "YES", "TRUE")


# ---------------------------------------------------------------------------- evaluations


def eval_version(data: Mapping[str, Rows], ictx: ItemContext) -> ItemOutcome:
    uptime = _float(status_vars(data["status"]).get("uptime"))
    v = one(data["version"])
    facts = {"version": v.get("version"), "comment": v.get("comment"), "uptime_s": uptime}
    text = f"实例 {fmt_duration(uptime)}前重启过"
    f = threshold_finding(ictx, "uptime_s", uptime, text, category=DATA, obj="instance", unit=" 秒")
    return ItemOutcome((Metric("uptime_s", round(uptime), "s"),), (f,) if f else (), facts)


def eval_database_state(data: Mapping[str, Rows], ictx: ItemContext) -> ItemOutcome:
    schemas = {str(r["schema_name"]) for r in data["schemas"]}
    can_list = int(one(data["privilege"]).get("n") or 0) > 0
    expected = [str(d) for d in ictx.options.get("databases") or ()]
    role = ictx.options.get("server_role", "any")
    read_only = _on(one(data["read_only"]).get("read_only"))
    findings: list[Finding] = []
    for name in expected:
        if name in schemas:
            continue
        if can_list:
            findings.append(Finding(Status.CRIT, f"数据库 {name} 不存在", DATA, name))
        else:
            text = f"看不到数据库 {name}：不存在，或监控账号缺少 GRANT SHOW DATABASES ON *.* TO <user>"
            findings.append(Finding(Status.WARN, text, "综合类", name))
    if read_only and role == "primary":
        findings.append(
            Finding(Status.CRIT, "实例处于只读（read_only = ON），配置要求为主库", DATA, "instance")
        )
    elif not read_only and role == "standby":
        findings.append(Finding(Status.WARN, "实例可写（read_only = OFF），配置要求为从库", DATA, "instance"))
    user_schemas = sorted(s for s in schemas if s not in SYSTEM_SCHEMAS)
    facts = {"read_only": read_only, "databases": user_schemas}
    return ItemOutcome((Metric("databases.count", len(user_schemas)),), tuple(findings), facts)


def eval_schema_space(data: Mapping[str, Rows], ictx: ItemContext) -> ItemOutcome:
    limits = {name: parse_size(v) for name, v in dict(ictx.options.get("limits") or {}).items()}
    entries = [
        SpaceEntry(
            "database",
            str(r["schema_name"]),
            _float(r.get("size_bytes")),
            limits.get(str(r["schema_name"])),
            "数据库",
        )
        for r in data["sizes"]
    ]
    return space_outcome(entries, ictx)


def eval_sessions(data: Mapping[str, Rows], ictx: ItemContext) -> ItemOutcome:
    s = status_vars(data["status"])
    extra = [
        Metric("sessions.running", _float(s.get("threads_running"))),
        Metric("sessions.max_used", _float(s.get("max_used_connections"))),
    ]
    limit = _float(one(data["limit"]).get("max_connections"))
    return sessions_outcome(_float(s.get("threads_connected")), limit, extra, ictx)


def eval_blocking(data: Mapping[str, Rows], ictx: ItemContext) -> ItemOutcome:
    return blocking_outcome(data["blocked"], ictx)


def eval_long_transactions(data: Mapping[str, Rows], ictx: ItemContext) -> ItemOutcome:
    return long_transactions_outcome(data["transactions"], ictx)


def _pick(r: Row, *names: str) -> Any:
    for n in names:
        if n in r:
            return r[n]
    return None


def eval_replication(data: Mapping[str, Rows], ictx: ItemContext) -> ItemOutcome:
    metrics: list[Metric] = []
    findings: list[Finding] = []
    facts: list[dict[str, Any]] = []
    for r in data["replicas"]:
        source = _pick(r, "source_host", "master_host") or "?"
        name = str(_pick(r, "connection_name", "channel_name") or "") or str(source)
        io = str(_pick(r, "replica_io_running", "slave_io_running") or "")
        sql = str(_pick(r, "replica_sql_running", "slave_sql_running") or "")
        lag = num(_pick(r, "seconds_behind_source", "seconds_behind_master"))
        io_err = str(_pick(r, "last_io_error") or "").strip()
        sql_err = str(_pick(r, "last_sql_error") or "").strip()
        facts.append({"name": name, "source": source, "io_running": io, "sql_running": sql, "lag_s": lag})
        if io != "Yes":
            text = f"复制通道 {name}（主库 {source}）IO 线程状态 {io or '未知'}" + (
                f"：{io_err[:120]}" if io_err else ""
            )
            findings.append(Finding(Status.CRIT, text, DATA, name))
        if sql != "Yes":
            text = f"复制通道 {name}（主库 {source}）SQL 线程状态 {sql or '未知'}" + (
                f"：{sql_err[:120]}" if sql_err else ""
            )
            findings.append(Finding(Status.CRIT, text, DATA, name))
        if lag is None:
            if io == "Yes" and sql == "Yes":
                findings.append(
                    Finding(
                        Status.WARN, f"复制通道 {name} 延迟未知（Seconds_Behind_Master 为空）", DATA, name
                    )
                )
            continue
        metrics.append(Metric(f"replica.{name}.lag_s", lag, "s"))
        f = threshold_finding(
            ictx, "lag_s", lag, f"复制通道 {name} 落后主库 {lag:.0f} 秒", category=DATA, obj=name
        )
        if f:
            findings.append(f)
    return ItemOutcome(tuple(metrics), tuple(findings), {"channels": facts})


def eval_deadlocks(data: Mapping[str, Rows], ictx: ItemContext) -> ItemOutcome:
    s = status_vars(data.get("status", ()))
    total = (
        _float(s["innodb_deadlocks"])
        if "innodb_deadlocks" in s
        else _float(one(data.get("metrics", ())).get("deadlocks"))
    )
    uptime = (
        _float(s.get("uptime"))
        if "uptime" in s
        else _float(status_vars(data.get("uptime", ())).get("uptime"))
    )
    prev = ictx.memory
    metrics = [Metric("innodb.deadlocks_total", total)]
    findings: list[Finding] = []
    if prev and "count" in prev:
        restarted = uptime < _float(prev.get("uptime"))
        # A restart resets the counter: everything counted now happened since then.
        new = total if restarted or total < _float(prev["count"]) else total - _float(prev["count"])
        metrics.append(Metric("innodb.deadlocks_new", new))
        f = threshold_finding(
            ictx,
            "deadlocks",
            new,
            f"上次检查以来发生 {new:.0f} 次 InnoDB 死锁",
            category=DATA,
            obj="innodb",
            unit=" 次",
        )
        if f:
            findings.append(f)
    return ItemOutcome(tuple(metrics), tuple(findings), {"total": total}, {"count": total, "uptime": uptime})


def eval_binlog(data: Mapping[str, Rows], ictx: ItemContext) -> ItemOutcome:
    v = status_vars(data["variables"])
    log_bin = _on(v.get("log_bin"))
    seconds = _float(v.get("binlog_expire_logs_seconds"))
    days = _float(v.get("expire_logs_days"))
    retention = seconds if seconds > 0 else days * DAY_S
    facts = {
        "log_bin": log_bin,
        "binlog_format": v.get("binlog_format"),
        "retention_s": retention or None,
        "sync_binlog": v.get("sync_binlog"),
    }
    findings: list[Finding] = []
    if not log_bin:
        if ictx.options.get("require_binlog", True):
            text = "未开启二进制日志（log_bin = OFF），无法做时间点恢复，也不能搭建从库"
            findings.append(Finding(Status.WARN, text, DATA, "log_bin"))
        return ItemOutcome((), tuple(findings), facts)
    min_days = float(ictx.options.get("min_retention_days", 7))
    if 0 < retention < min_days * DAY_S:
        text = (
            f"二进制日志只保留 {retention / DAY_S:.1f} 天，少于要求的 {min_days:g} 天（两次全备之间需可恢复）"
        )
        findings.append(Finding(Status.WARN, text, DATA, "binlog_expire"))
    metrics = (Metric("binlog.retention_days", round(retention / DAY_S, 2), "d"),) if retention else ()
    return ItemOutcome(metrics, tuple(findings), facts)


def eval_events(data: Mapping[str, Rows], ictx: ItemContext) -> ItemOutcome:
    scheduler = str(one(data["scheduler"]).get("scheduler") or "").upper()
    enabled = [r for r in data["events"] if str(r.get("status")).upper() == "ENABLED"]
    findings: list[Finding] = []
    if enabled and scheduler != "ON":
        names = "、".join(f"{r.get('event_schema')}.{r.get('event_name')}" for r in enabled[:5])
        text = f"{len(enabled)} 个已启用的定时事件不会执行：event_scheduler = {scheduler}（{names}）"
        findings.append(Finding(Status.WARN, text, "综合类", "event_scheduler"))
    facts = {
        "scheduler": scheduler,
        "events": [
            {"event": f"{r.get('event_schema')}.{r.get('event_name')}", "status": r.get("status")}
            for r in data["events"]
        ],
    }
    return ItemOutcome((Metric("events.enabled", len(enabled)),), tuple(findings), facts)


# ---------------------------------------------------------------------------- the table


PROCESS = "GRANT PROCESS ON *.* TO <user>"

_BASE: tuple[Item, ...] = (
    Item(
        "version",
        "版本与运行时间",
        {"status": SQL_STATUS_UPTIME, "version": SQL_VERSION},
        eval_version,
        "无需额外授权",
        DATA,
        thresholds={"uptime_s": Threshold(DAY_S, below=True)},
    ),
    Item(
        "database_state",
        "数据库状态",
        {"schemas": SQL_SCHEMAS, "read_only": SQL_READ_ONLY, "privilege": SQL_SHOW_DATABASES_PRIV},
        eval_database_state,
        "GRANT SHOW DATABASES ON *.* TO <user>",
        DATA,
    ),
    Item(
        "schema_space",
        "数据库空间",
        {"sizes": SQL_SCHEMA_SIZE},
        eval_schema_space,
        "GRANT SHOW VIEW ON *.* TO <user>（information_schema 只列出有权限的表）",
        DATA,
        thresholds={
            "used_pct": Threshold(85, 95),
            "days_to_full": Threshold(30, 7, below=True),
            "size_bytes": Threshold(),
            "growth_bytes_per_day": Threshold(),
        },
    ),
    Item(
        "sessions",
        "连接数",
        {"status": SQL_SESSIONS, "limit": SQL_MAX_CONNECTIONS},
        eval_sessions,
        "无需额外授权",
        DATA,
        thresholds={"used_pct": Threshold(80, 90)},
    ),
    Item(
        "blocking",
        "锁等待（阻塞）",
        {"blocked": SQL_BLOCKING_IS},
        eval_blocking,
        PROCESS,
        DATA,
        thresholds={"wait_s": Threshold(30, 120)},
    ),
    Item(
        "long_transactions",
        "长事务",
        {"transactions": SQL_LONG_TX},
        eval_long_transactions,
        PROCESS,
        DATA,
        thresholds={"age_s": Threshold(1800, 7200)},
    ),
    Item(
        "replication",
        "主从复制",
        {"replicas": SQL_REPLICAS_MARIADB},
        eval_replication,
        "GRANT SLAVE MONITOR ON *.* TO <user>",
        DATA,
        optional=True,
        thresholds={"lag_s": Threshold(300, 1800)},
    ),
    Item(
        "deadlocks",
        "InnoDB 死锁",
        {"status": SQL_DEADLOCKS_MARIADB},
        eval_deadlocks,
        "无需额外授权",
        DATA,
        thresholds={"deadlocks": Threshold(1)},
    ),
    Item("binary_log", "二进制日志设置", {"variables": SQL_BINLOG}, eval_binlog, "无需额外授权", DATA),
    Item(
        "events",
        "定时事件",
        {"scheduler": SQL_EVENT_SCHEDULER, "events": SQL_EVENTS},
        eval_events,
        "information_schema.EVENTS 只列出账号有 EVENT 权限的库",
        "综合类",
        optional=True,
    ),
)

ITEMS: tuple[Item, ...] = _BASE
"""Every item name and threshold key (the MariaDB variants); for settings validation."""


def items_for(mariadb: bool, version: tuple[int, ...]) -> tuple[Item, ...]:
    """The item table for one server: same names, statements for its flavour and version."""
    if mariadb:
        return _BASE
    mysql8 = version >= (8, 0)
    replicas = SQL_REPLICAS_MYSQL if version >= (8, 0, 22) else SQL_REPLICAS_MYSQL_OLD
    changes: dict[str, dict[str, Any]] = {
        "replication": {
            "queries": {"replicas": replicas},
            "grant": "GRANT REPLICATION CLIENT ON *.* TO <user>",
        },
        # MySQL has no Innodb_deadlocks status variable; INNODB_METRICS counts them.
        "deadlocks": {
            "queries": {"metrics": SQL_DEADLOCKS_MYSQL, "uptime": SQL_STATUS_UPTIME},
            "grant": PROCESS,
        },
    }
    if mysql8:
        changes["blocking"] = {
            "queries": {"blocked": SQL_BLOCKING_PS},
            "grant": f"{PROCESS}; GRANT SELECT ON performance_schema.* TO <user>",
        }
    out = [replace(item, **changes[item.name]) if item.name in changes else item for item in _BASE]
    return tuple(out)
