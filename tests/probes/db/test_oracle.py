"""Oracle probe without an Oracle server: every statement checked against the documented
catalog with sqlglot, every evaluation on recorded rows, the real driver against silent and
closed ports."""

from __future__ import annotations

import socket
import time
from datetime import timedelta

import oracledb
import pytest
from pydantic import ValidationError

from probes.base import ProbeContext, Status
from probes.db.engine import run_engine
from probes.db.oracle import items as oi
from probes.db.oracle.probe import Probe, classify, describe_login_error, items_for, parse_version
from probes.db.oracle.settings import Settings
from probes.thresholds import Threshold
from tests.helpers.dbvendor import NOW, Replay, evaluate, expect, texts
from tests.helpers.servers import silent_tcp_server
from tests.helpers.sql_catalogs import ORACLE, CatalogError, check_statement

ITEM = {i.name: i for i in oi.ITEMS}
GIB = 2.0**30

# ----------------------------------------------------------------------------- SQL


@pytest.mark.parametrize("name", sorted(oi.STATEMENTS))
def test_statement_is_read_only_and_resolves_against_the_catalog(name: str) -> None:
    check_statement(oi.STATEMENTS[name], "oracle", ORACLE)


def test_checker_catches_a_misspelled_column() -> None:
    bad = oi.SQL_FRA.replace("r.space_reclaimable", "r.space_reclaimable_bytes")
    with pytest.raises(CatalogError, match="SPACE_RECLAIMABLE_BYTES"):
        check_statement(bad, "oracle", ORACLE)
    inner = oi.SQL_SCHEDULER.replace("d.error#,", "d.error_number,")
    with pytest.raises(CatalogError, match="ERROR_NUMBER"):
        check_statement(inner, "oracle", ORACLE)


def test_checker_catches_a_misspelled_view() -> None:
    with pytest.raises(CatalogError, match=r"v\$archived_logs"):
        check_statement(
            oi.SQL_ARCHIVED_NOT_BACKED_UP.replace("v$archived_log", "v$archived_logs"), "oracle", ORACLE
        )
    # A view whose columns are all qualified by alias would slip through qualify alone.
    with pytest.raises(CatalogError, match="dba_user$"):
        check_statement("SELECT COUNT(*) AS n FROM dba_user u", "oracle", ORACLE)


@pytest.mark.parametrize(
    "sql", ["DELETE FROM v$session", "UPDATE dba_users SET profile = 'X'", "SELECT 1 FROM dual; DROP TABLE x"]
)
def test_checker_rejects_anything_but_one_select(sql: str) -> None:
    with pytest.raises(CatalogError):
        check_statement(sql, "oracle", ORACLE)


# ----------------------------------------------------------------------------- versions


def _replay(version: tuple[int, ...]) -> Replay:
    return Replay({sql: [] for sql in oi.STATEMENTS.values()}, version, oracledb.DatabaseError)


def test_11g_skips_the_alert_log_item_19c_runs_it() -> None:
    for version, skipped in (((11, 2, 0, 4), True), ((19, 18, 0, 0), False)):
        conn = _replay(version)
        report = run_engine(conn, oi.ITEMS, ProbeContext("o", 5.0), {}, classify, time.monotonic() + 5)
        reasons = {s["item"]: s["reason"] for s in report.skipped}
        assert ("alert_log" in reasons) is skipped
        if skipped:
            assert reasons["alert_log"] == "needs version 12.1"
            assert oi.SQL_ALERT_LOG.strip() not in conn.sent
        # Every other item evaluates empty result sets without an evaluation error.
        assert not [f for f in report.findings if f.status is Status.UNKNOWN], report.findings


def test_asm_item_only_where_a_datafile_is_in_a_disk_group() -> None:
    no_asm = Replay({oi.SQL_ASM_GATE: [{"asm_files": 0}]}, (19,), oracledb.DatabaseError)
    with_asm = Replay({oi.SQL_ASM_GATE: [{"asm_files": 12}]}, (19,), oracledb.DatabaseError)
    assert "asm" not in [i.name for i in items_for(no_asm)]
    assert "asm" in [i.name for i in items_for(with_asm)]


def test_version_text_to_tuple() -> None:
    assert parse_version("19.18.0.0.0") == (19, 18, 0, 0, 0)
    assert parse_version("11.2.0.4.0") < (12, 1)


# ----------------------------------------------------------------------------- evaluations


def test_restart_within_a_day_is_reported() -> None:
    row = {"instance_name": "orcl", "status": "OPEN", "startup_time": "2025-03-12 07:00:00", "uptime_s": 7200}
    out = evaluate(ITEM["version"], {"instance": [row]})
    assert out.findings[0].status is Status.WARN and "重启" in out.findings[0].text
    quiet = evaluate(ITEM["version"], {"instance": [{**row, "uptime_s": 30 * 86400}]})
    assert quiet.findings == ()


def test_read_only_primary_is_crit_but_a_read_only_standby_is_fine() -> None:
    row = {"name": "HIS", "open_mode": "READ ONLY", "database_role": "PRIMARY", "log_mode": "ARCHIVELOG"}
    out = evaluate(ITEM["open_mode"], {"database": [row]})
    assert [f.status for f in out.findings] == [Status.CRIT]
    assert "READ ONLY" in out.findings[0].text and out.findings[0].category == "数据安全类"
    standby = {**row, "open_mode": "READ ONLY WITH APPLY", "database_role": "PHYSICAL STANDBY"}
    assert [f.status for f in evaluate(ITEM["open_mode"], {"database": [standby]}).findings] == [Status.OK]
    promoted = evaluate(
        ITEM["open_mode"],
        {"database": [{**row, "open_mode": "READ WRITE"}]},
        options={"server_role": "standby"},
    )
    assert promoted.findings[0].status is Status.CRIT


def test_tablespace_percentage_uses_the_autoextend_maximum() -> None:
    files = [
        {
            "tablespace_name": "HIS_DATA",
            "alloc_bytes": 30 * GIB,
            "max_bytes": 100 * GIB,
            "autoextensible": "YES",
        },
        {"tablespace_name": "FIXED", "alloc_bytes": 10 * GIB, "max_bytes": 10 * GIB, "autoextensible": "NO"},
        {"tablespace_name": "UNDOTBS1", "alloc_bytes": 4 * GIB, "max_bytes": 4 * GIB, "autoextensible": "NO"},
    ]
    usage = [
        {
            "tablespace_name": "HIS_DATA",
            "contents": "PERMANENT",
            "used_bytes": 29 * GIB,
            "size_bytes": 100 * GIB,
        },
        {
            "tablespace_name": "FIXED",
            "contents": "PERMANENT",
            "used_bytes": 9.7 * GIB,
            "size_bytes": 10 * GIB,
        },
        {"tablespace_name": "UNDOTBS1", "contents": "UNDO", "used_bytes": 3.99 * GIB, "size_bytes": 4 * GIB},
    ]
    out = evaluate(ITEM["tablespace_space"], {"files": files, "usage": usage})
    pct = {m.name: m.value for m in out.metrics if m.name.endswith("used_pct")}
    # 29 of 30 GiB allocated would be 96.7 %: against the 100 GiB autoextend limit it is 29 %.
    assert pct["tablespace.HIS_DATA.used_pct"] == 29.0
    assert pct["tablespace.FIXED.used_pct"] == 97.0
    assert [(f.status, f.obj) for f in out.findings] == [(Status.CRIT, "FIXED")]  # a full UNDO is normal
    space = {f["name"]: f for f in out.facts["space"]}
    assert space["HIS_DATA"]["autoextend"] is True and space["UNDOTBS1"]["contents"] == "UNDO"


def test_tablespace_days_until_full_from_history() -> None:
    files = [
        {"tablespace_name": "EMR", "alloc_bytes": 50 * GIB, "max_bytes": 100 * GIB, "autoextensible": "YES"}
    ]
    usage = [
        {"tablespace_name": "EMR", "contents": "PERMANENT", "used_bytes": 90 * GIB, "size_bytes": 100 * GIB}
    ]
    t = NOW.timestamp()
    history = {"tablespace.EMR.size_bytes": [(t - 10 * 86400, 80 * GIB), (t - 5 * 86400, 85 * GIB)]}
    out = evaluate(ITEM["tablespace_space"], {"files": files, "usage": usage}, history=history)
    days = next(m.value for m in out.metrics if m.name == "tablespace.EMR.days_to_full")
    assert days == pytest.approx(10.0, abs=0.1)  # 1 GiB/day, 10 GiB left
    assert any(f.status is Status.WARN and "天后写满" in f.text for f in out.findings)


def test_fra_usage_is_net_of_reclaimable_space() -> None:
    row = {"name": "/fra", "space_limit": 100 * GIB, "space_used": 95 * GIB, "space_reclaimable": 40 * GIB}
    out = evaluate(ITEM["fra"], {"fra": [row]})
    assert out.metrics[0].name == "fra.used_pct" and out.metrics[0].value == 55.0
    assert out.findings == ()
    full = evaluate(ITEM["fra"], {"fra": [{**row, "space_reclaimable": 2 * GIB}]})
    assert full.findings[0].status is Status.CRIT and "93.0%" in full.findings[0].text
    assert evaluate(ITEM["fra"], {"fra": []}).facts == {"configured": False}


def test_alert_log_reports_ora_errors_once_and_honours_the_ignore_list() -> None:
    rows = [
        {
            "ts_utc": "2025-03-12T00:10:00.000001",
            "message_text": "ORA-00060: deadlock detected while waiting",
        },
        {
            "ts_utc": "2025-03-12T00:20:00.000000",
            "message_text": "ORA-00600: internal error code, arguments: [kcbz]",
        },
        {"ts_utc": "2025-03-12T00:30:00.000000", "message_text": "ORA-01555: snapshot too old"},
    ]
    item = ITEM["alert_log"]
    out = evaluate(item, {"alert": rows}, options={"ignore": ["ORA-00060"]})
    assert [(f.status, f.obj) for f in out.findings] == [
        (Status.CRIT, "ORA-00600"),
        (Status.WARN, "ORA-01555"),
    ]
    assert out.memory == {"cursor": "2025-03-12T00:30:00.000000"}
    # The next run sees the same day of alert log again: nothing before the cursor repeats.
    later = [*rows, {"ts_utc": "2025-03-12T00:40:00.000000", "message_text": "ORA-01555: snapshot too old"}]
    again = evaluate(item, {"alert": later}, memory=out.memory)
    assert [f.obj for f in again.findings] == ["ORA-01555"] and "1 次" in again.findings[0].text


def test_invalid_objects_outside_the_baseline() -> None:
    rows = [
        {"owner": "HIS", "object_type": "PACKAGE BODY", "object_name": "PKG_OLD"},
        {"owner": "LEGACY", "object_type": "VIEW", "object_name": "V_A"},
        {"owner": "HIS", "object_type": "PROCEDURE", "object_name": "P_BILLING"},
    ]
    out = evaluate(
        ITEM["invalid_objects"], {"invalid": rows}, options={"baseline": ["HIS.PKG_OLD", "LEGACY.*"]}
    )
    assert [m.value for m in out.metrics] == [3, 1]
    assert (
        len(out.findings) == 1
        and "HIS.P_BILLING" in out.findings[0].text
        and "PKG_OLD" not in out.findings[0].text
    )
    assert (
        evaluate(
            ITEM["invalid_objects"], {"invalid": rows[:2]}, options={"baseline": ["HIS.PKG_OLD", "LEGACY.*"]}
        ).findings
        == ()
    )


def test_dataguard_lag_and_null_lag() -> None:
    rows = [
        {"name": "transport lag", "value": "+00 00:00:05"},
        {"name": "apply lag", "value": "+00 00:40:00"},
    ]
    out = evaluate(ITEM["dataguard"], {"lag": rows})
    assert {m.name: m.value for m in out.metrics} == {
        "dataguard.transport_lag_s": 5.0,
        "dataguard.apply_lag_s": 2400.0,
    }
    assert [(f.status, f.obj) for f in out.findings] == [(Status.CRIT, "apply_lag")]
    null = evaluate(ITEM["dataguard"], {"lag": [{"name": "apply lag", "value": None}]})
    assert [f.status for f in null.findings] == [Status.WARN] and "无法计算" in null.findings[0].text
    assert evaluate(ITEM["dataguard"], {"lag": []}).facts == {"configured": False}
    assert oi.parse_ds_interval("+01 02:03:04.5") == 86400 + 7384.5


def test_archive_destination_in_error_and_unbacked_archive_logs() -> None:
    dests = [
        {"dest_id": 1, "dest_name": "LOG_ARCHIVE_DEST_1", "status": "VALID", "destination": "/arch"},
        {
            "dest_id": 2,
            "dest_name": "LOG_ARCHIVE_DEST_2",
            "status": "ERROR",
            "destination": "stby",
            "error": "ORA-12541: TNS:no listener",
        },
    ]
    out = evaluate(ITEM["archive_dest"], {"dests": dests})
    assert [(f.status, f.obj) for f in out.findings] == [(Status.CRIT, "LOG_ARCHIVE_DEST_2")]
    assert "ORA-12541" in out.findings[0].text
    logs = evaluate(
        ITEM["archivelog_backup"], {"pending": [{"logs": 40, "bytes": 20 * GIB, "oldest_age_s": 30 * 3600}]}
    )
    assert logs.findings[0].status is Status.WARN and "40 个归档日志" in logs.findings[0].text


def test_sessions_and_processes_against_their_limits_unlimited_is_not_judged() -> None:
    def limit(name: str, cur: int, top: int, value: str) -> dict[str, object]:
        return {
            "resource_name": name,
            "current_utilization": cur,
            "max_utilization": top,
            "limit_value": value,
        }

    rows = [limit("sessions", 460, 470, " 500"), limit("processes", 120, 130, "300")]
    out = evaluate(ITEM["sessions"], {"limits": rows})
    assert {m.name: m.value for m in out.metrics} == {
        "sessions.count": 460, "sessions.used_pct": 92.0, "processes.count": 120, "processes.used_pct": 40.0,
    }  # fmt: skip
    assert texts(out) == ["CRIT 会话数 460，已用会话上限 500 的 92.0%（阈值 ≥90%）"]
    assert out.facts["processes"] == {"current": 120.0, "max_seen": 130.0, "limit": 300.0}
    unlimited = evaluate(ITEM["sessions"], {"limits": [{**rows[0], "limit_value": "UNLIMITED"}]})
    assert [m.name for m in unlimited.metrics] == ["sessions.count"] and unlimited.findings == ()


def test_blocking_names_each_blocker_with_the_shared_metric_names() -> None:
    base = {
        "blocking_user": "HIS",
        "blocking_client": "app01",
        "blocking_app": "JDBC Thin Client",
        "blocking_state": "INACTIVE",
        "datname": "HISDB",
        "event": "enq: TX - row lock contention",
    }
    rows = [
        {**base, "waiting_pid": 31, "wait_s": 400, "blocking_pid": 12, "sql_id": "a1"},
        {**base, "waiting_pid": 32, "wait_s": 90, "blocking_pid": 12, "sql_id": "a2"},
        {**base, "waiting_pid": 40, "wait_s": 20, "blocking_pid": 15, "sql_id": "b1"},
    ]
    out = evaluate(ITEM["blocking"], {"blocked": rows})
    assert {m.name: m.value for m in out.metrics} == {"blocked.count": 3, "blocked.max_wait_s": 400.0}
    assert texts(out) == [
        "CRIT 会话 12 阻塞了 2 个会话，最长等待 400 秒"
        "（库 HISDB，用户 HIS，客户端 app01，程序 JDBC Thin Client，状态 INACTIVE）（阈值 ≥300 秒）"
    ]
    assert out.facts["blocked"][0]["event"] == "enq: TX - row lock contention"
    assert [b["sql_id"] for b in out.facts["blocked"]] == ["a1", "a2", "b1"]


def test_long_transactions_oldest_first_with_undo_blocks_in_the_facts() -> None:
    base = {"datname": "HISDB", "app": None}
    rows = [
        {**base, "pid": 7, "usename": "HIS", "state": "INACTIVE", "client": "app01", "undo_blocks": 12},
        {**base, "pid": 9, "usename": "EMR", "state": "ACTIVE", "client": "app02", "undo_blocks": 9e4},
    ]
    rows[0]["age_s"], rows[1]["age_s"] = 2400, 9000
    out = evaluate(ITEM["long_transactions"], {"transactions": rows})
    assert {m.name: m.value for m in out.metrics} == {"transactions.open": 2, "transactions.oldest_s": 9000.0}
    assert [(f.status, f.obj) for f in out.findings] == [(Status.CRIT, "9"), (Status.WARN, "7")]
    first = "事务已运行 2.5 小时（会话 9，库 HISDB，用户 EMR，客户端 app02，状态 ACTIVE）"
    assert out.findings[0].text.startswith(first)
    assert [t["undo_blocks"] for t in out.facts["transactions"]] == [12, 9e4]


def test_account_expiry_of_schema_owners_and_the_monitoring_account() -> None:
    users = [
        {
            "username": "HIS",
            "account_status": "OPEN",
            "expiry_date": "2025-03-17 00:00:00",
            "days_left": 5.2,
            "is_self": 0,
        },
        {"username": "EMR", "account_status": "LOCKED(TIMED)", "days_left": None, "is_self": 0},
        {"username": "SENTINEL", "account_status": "EXPIRED(GRACE)", "days_left": -1, "is_self": 1},
        {"username": "SCOTT", "account_status": "EXPIRED & LOCKED", "days_left": -300, "is_self": 0},
    ]
    out = evaluate(ITEM["accounts"], {"users": users}, options={"databases": ["his", "emr", "lis"]})
    got = {(f.obj, f.status) for f in out.findings}
    assert got == {
        ("HIS", Status.CRIT),
        ("EMR", Status.CRIT),
        ("SENTINEL", Status.CRIT),
        ("LIS", Status.CRIT),
    }
    assert not any(f.obj == "SCOTT" for f in out.findings)  # not a configured owner


def test_failed_scheduler_job_stays_reported_until_it_succeeds() -> None:
    row = {
        "log_id": 900,
        "owner": "HIS",
        "job_name": "NIGHTLY_STATS",
        "status": "FAILED",
        "error_code": 1555,
        "log_date": "2025-03-12 02:00:00",
    }
    first = evaluate(ITEM["scheduler_jobs"], {"failed": [row]})
    assert "（新）" in first.findings[0].text and "ORA-01555" in first.findings[0].text
    second = evaluate(ITEM["scheduler_jobs"], {"failed": [row]}, memory=first.memory)
    assert len(second.findings) == 1 and "（新）" not in second.findings[0].text
    ignored = evaluate(ITEM["scheduler_jobs"], {"failed": [row]}, options={"ignore_jobs": ["^HIS\\.NIGHTLY"]})
    assert ignored.findings == ()


# ----------------------------------------------------------------------------- RMAN

DB = {"name": "HIS", "log_mode": "ARCHIVELOG", "database_role": "PRIMARY", "open_mode": "READ WRITE"}


def job(key: int, input_type: str, status: str, age_h: float, level: int | None = None) -> dict[str, object]:
    return {
        "session_key": key,
        "input_type": input_type,
        "status": status,
        "age_s": age_h * 3600,
        "end_time": "x",
        "incremental_level": level,
        "output_bytes": GIB,
    }


def test_level_0_counts_as_full_and_a_failed_latest_job_is_crit() -> None:
    jobs = [
        job(1, "DB INCR", "COMPLETED", 50, level=0),
        job(2, "ARCHIVELOG", "COMPLETED", 2),
        job(3, "DB INCR", "FAILED", 1, level=1),
    ]
    out = evaluate(ITEM["rman_backups"], {"database": [DB], "jobs": jobs}, server_now=NOW)
    crit = [f for f in out.findings if f.status is Status.CRIT]
    # The failed level 1 is the newest incremental; the level 0 of 50 h ago still serves as full
    # and (over 26 h) not as the daily incremental.
    assert any("增量" in f.text and "FAILED" in f.text for f in crit)
    assert any(f.text.startswith("HIS 最近一次增量备份在 2.1 天前") for f in crit)
    assert not any("全量备份" in f.text for f in out.findings)
    backups = {b["type"]: b for b in out.facts["backups"]}
    assert backups["full"]["age_s"] == 50 * 3600
    assert out.memory == {"last_session_key": 3}


def test_rman_no_backup_ever_and_noarchivelog() -> None:
    out = evaluate(ITEM["rman_backups"], {"database": [{**DB, "log_mode": "NOARCHIVELOG"}], "jobs": []})
    assert sorted(texts(out)) == ["CRIT HIS 没有全量备份记录", "CRIT HIS 没有增量备份记录"]


def test_rman_standby_leaves_freshness_to_the_primary() -> None:
    standby = {**DB, "database_role": "PHYSICAL STANDBY"}
    out = evaluate(ITEM["rman_backups"], {"database": [standby], "jobs": []})
    assert [f.status for f in out.findings] == [Status.OK]


@pytest.mark.parametrize(("age_h", "met"), [(5.5, True), (30.0, False)])
def test_expectation_daily_0400_plus_2h_in_shanghai(age_h: float, met: bool) -> None:
    # Server clock 09:00 Shanghai: the 04:00 slot's deadline (06:00) has passed.
    jobs = [job(1, "DB FULL", "COMPLETED", age_h), job(2, "ARCHIVELOG", "COMPLETED", 0.5)]
    exps = [expect("HIS", "full", "daily 04:00", "2h")]
    out = evaluate(
        ITEM["rman_backups"], {"database": [DB], "jobs": jobs}, server_now=NOW, options={"backups": exps}
    )
    judged = out.facts["backups_expected"]
    assert [(j["database"], j["type"], j["met"]) for j in judged] == [("HIS", "full", met)]
    assert judged[0]["due"] == "2025-03-11T20:00:00+00:00"  # 04:00 Shanghai
    missed = [f for f in out.findings if "未按计划完成" in f.text]
    assert bool(missed) is not met
    if missed:
        assert missed[0].status is Status.CRIT and missed[0].category == "数据安全类"
        assert "每天 04:00 前" in missed[0].text and "2025-03-11 03:00" in missed[0].text


def test_freshness_uses_the_server_clock_not_the_agent_clock() -> None:
    # Server: 05:30 Shanghai, before today's 06:00 deadline; the agent's clock runs 1 h ahead.
    server_now = NOW - timedelta(hours=3, minutes=30)
    jobs = [job(1, "DB FULL", "COMPLETED", 25 + 40 / 60), job(2, "ARCHIVELOG", "COMPLETED", 0.5)]
    exps = [expect("*", "full", "daily 04:00", "2h")]
    data = {"database": [DB], "jobs": jobs}
    right = evaluate(
        ITEM["rman_backups"],
        data,
        now=server_now + timedelta(hours=1),
        server_now=server_now,
        options={"backups": exps},
    )
    assert right.facts["backups_expected"][0]["met"] is True
    assert right.facts["backups_expected"][0]["last"] == "2025-03-10T19:50:00+00:00"  # 03:50 Shanghai
    # Whatever the agent's clock says, only the server's decides ...
    for agent_skew_h in (-5, 0, 3):
        again = evaluate(
            ITEM["rman_backups"],
            data,
            now=server_now + timedelta(hours=agent_skew_h),
            server_now=server_now,
            options={"backups": exps},
        )
        assert again.facts["backups_expected"][0]["met"] is True
    # ... and once the server's own clock passes 06:00 the 03:50 backup is too old for today's slot.
    late = evaluate(
        ITEM["rman_backups"],
        {"database": [DB], "jobs": [job(1, "DB FULL", "COMPLETED", 26 + 40 / 60)]},
        now=server_now,
        server_now=server_now + timedelta(hours=1),
        options={"backups": exps},
    )
    assert late.facts["backups_expected"][0]["met"] is False


# ----------------------------------------------------------------------------- the driver


def _settings(port: int, **kw: object) -> Settings:
    """What the daemon hands the probe: validated settings."""
    return Settings.model_validate(
        {
            "host": "127.0.0.1",
            "port": port,
            "user": "sentinel",
            "password": "${SENTINEL_TEST_ORA_PW}",
            "service_name": "HISDB",
            **kw,
        }
    )


def test_silent_server_returns_within_the_login_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENTINEL_TEST_ORA_PW", "Wr0ng-Secret!")
    with silent_tcp_server() as port:
        t0 = time.monotonic()
        result = Probe(_settings(port, login_timeout=1.0)).run(ProbeContext("ora", 4.0))
        elapsed = time.monotonic() - t0
    assert elapsed < 2.0
    assert result.status is Status.CRIT and "登录超时" in result.summary
    assert "Wr0ng-Secret!" not in repr(result)


def test_closed_port_is_crit_connection_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENTINEL_TEST_ORA_PW", "Wr0ng-Secret!")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = Probe(_settings(port)).run(ProbeContext("ora", 3.0))
    assert result.status is Status.CRIT and "连接被拒绝" in result.summary


def test_settings_need_exactly_one_of_service_name_and_sid() -> None:
    with pytest.raises(ValidationError, match="exactly one"):
        Settings.model_validate({"host": "db", "user": "u", "service_name": "A", "sid": "B"})
    with pytest.raises(ValidationError, match="exactly one"):
        Settings.model_validate({"host": "db", "user": "u"})
    with pytest.raises(ValidationError, match="unknown item"):
        Settings.model_validate({"host": "db", "user": "u", "sid": "ORCL", "items": {"tablespaces": {}}})
    s = Settings.model_validate(
        {
            "host": "db",
            "user": "u",
            "sid": "ORCL",
            "items": {"fra": {"thresholds": {"used_pct": {"warn": 70}}}},
        }
    )
    assert s.items["fra"].thresholds["used_pct"].over(ITEM["fra"].thresholds["used_pct"]) == Threshold(70, 90)


def test_error_classification() -> None:
    assert classify(oracledb.DatabaseError("ORA-00942: table or view does not exist")) == "permission"
    assert classify(oracledb.DatabaseError('ORA-00904: "X": invalid identifier')) == "missing"
    assert classify(TimeoutError()) == "timeout"
    assert "密码错误" in describe_login_error(oracledb.DatabaseError("ORA-01017: invalid username/password"))
    assert "thick" in describe_login_error(
        oracledb.NotSupportedError("DPY-3010: connections to this database server version are not supported")
    )
