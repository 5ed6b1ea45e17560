"""SQL Server probe without a server: statements checked against the documented catalog with
sqlglot (T-SQL), evaluations on recorded rows, the real pymssql/FreeTDS against a silent port."""

from __future__ import annotations

import time
from datetime import timedelta

import pymssql
import pytest

from probes.base import ProbeContext, Status
from probes.db.engine import run_engine
from probes.db.mssql import items as mi
from probes.db.mssql.probe import Probe, classify, describe_login_error, items_for
from probes.db.mssql.settings import Settings
from probes.thresholds import Threshold
from tests.helpers.dbvendor import NOW, Replay, evaluate, expect, texts
from tests.helpers.servers import silent_tcp_server
from tests.helpers.sql_catalogs import MSSQL, MSSQL_TVFS, CatalogError, check_statement

ITEM = {i.name: i for i in mi.ITEMS}
GIB = 2.0**30
DAY = 86400


def check(sql: str) -> None:
    check_statement(sql, "tsql", MSSQL, depth=3, default_catalog="master", tvfs=MSSQL_TVFS)


@pytest.mark.parametrize("name", sorted(mi.STATEMENTS))
def test_statement_is_read_only_and_resolves_against_the_catalog(name: str) -> None:
    check(mi.STATEMENTS[name])


def test_checker_catches_a_misspelled_column() -> None:
    with pytest.raises(CatalogError, match="is_copyonly"):
        check(mi.SQL_BACKUP_HISTORY.replace("b.is_copy_only,", "b.is_copyonly,", 1))
    with pytest.raises(CatalogError, match="vs.free_bytes"):
        check(mi.SQL_FILES.replace("vs.available_bytes", "vs.free_bytes"))


def test_checker_catches_a_misspelled_view() -> None:
    with pytest.raises(CatalogError, match="msdb.dbo.backupsets"):
        check(mi.SQL_BACKUP_HISTORY.replace("msdb.dbo.backupset ", "msdb.dbo.backupsets "))
    with pytest.raises(CatalogError, match="sys.dm_os_volume_stat$"):
        check(mi.SQL_FILES.replace("dm_os_volume_stats", "dm_os_volume_stat"))


def test_checker_rejects_writes() -> None:
    with pytest.raises(CatalogError):
        check("DELETE FROM msdb.dbo.backupset WHERE type = 'D'")
    with pytest.raises(CatalogError):
        check("SELECT name INTO dbo.x FROM sys.databases")


# ----------------------------------------------------------------------------- versions


def _run(version: tuple[int, ...]) -> tuple[Replay, list[str], dict[str, str]]:
    conn = Replay({sql: [] for sql in mi.STATEMENTS.values()}, version, pymssql.OperationalError)
    conn.answers[mi.SQL_VERSION.strip()] = [{"product_version": ".".join(map(str, version))}]
    report = run_engine(conn, items_for(conn), ProbeContext("m", 5.0), {}, classify, time.monotonic() + 5)
    assert not [f for f in report.findings if f.status is Status.UNKNOWN], report.findings
    return conn, report.ran, {s["item"]: s["reason"] for s in report.skipped}


def test_version_decides_checkdb_and_the_always_on_queries() -> None:
    conn, ran, skipped = _run((10, 50, 6000))  # 2008 R2
    assert skipped["checkdb"] == "needs version 13.0.5026" and skipped["always_on"] == "needs version 11"
    assert "backups" in ran and mi.SQL_BACKUP_DATABASES_LEGACY.strip() in conn.sent
    assert mi.SQL_BACKUP_DATABASES.strip() not in conn.sent
    _, _, skipped = _run((13, 0, 4001))  # 2016 SP1: no LastGoodCheckDbTime
    assert "checkdb" in skipped
    conn, ran, skipped = _run((15, 0, 4153))
    assert "checkdb" in ran and mi.SQL_BACKUP_DATABASES.strip() in conn.sent and not skipped


# ----------------------------------------------------------------------------- backups


def db(name: str, model: str = "FULL", **kw: object) -> dict[str, object]:
    return {
        "name": name,
        "recovery_model_desc": model,
        "state_desc": "ONLINE",
        "is_read_only": 0,
        "age_s": 400 * DAY,
        "is_preferred_replica": 1,
        "in_ag": 0,
        "ag_role": None,
        **kw,
    }


def bk(database: str, kind: str, age_h: float, **kw: object) -> dict[str, object]:
    return {
        "database_name": database,
        "type": kind,
        "is_copy_only": 0,
        "has_backup_checksums": 1,
        "is_damaged": 0,
        "finish_local": "2025-03-12 03:30:00",
        "age_s": age_h * 3600,
        **kw,
    }


def backups(dbs: list[dict[str, object]], history: list[dict[str, object]], **kw: object):  # type: ignore[no-untyped-def]
    return evaluate(ITEM["backups"], {"databases": dbs, "history": history}, server_now=NOW, **kw)


def test_healthy_full_recovery_database_has_no_findings() -> None:
    out = backups([db("HIS")], [bk("HIS", "D", 20), bk("HIS", "I", 5), bk("HIS", "L", 0.2)])
    assert out.findings == ()
    ages = {m.name: m.value for m in out.metrics}
    assert ages == {
        "backup.HIS.full_age_s": 72000,
        "backup.HIS.diff_age_s": 18000,
        "backup.HIS.log_age_s": 720,
    }


def test_no_backup_ever_is_crit_unless_the_database_is_new() -> None:
    out = backups([db("LIS", "SIMPLE"), db("NEWDB", "SIMPLE", age_s=3600)], [])
    assert sorted(texts(out)) == ["CRIT LIS 没有全量备份记录", "CRIT LIS 没有差异备份记录"]
    assert all(f.category == "数据安全类" for f in out.findings)


def test_simple_recovery_needs_no_log_backup_full_recovery_does() -> None:
    history = [bk("A", "D", 10), bk("B", "D", 10)]
    out = backups([db("A", "SIMPLE"), db("B", "FULL")], history)
    assert texts(out) == ["CRIT B 没有日志备份记录"]
    stale = backups([db("B", "BULK_LOGGED")], [bk("B", "D", 10), bk("B", "L", 3)])
    assert [f.status for f in stale.findings] == [Status.CRIT] and "日志备份" in stale.findings[0].text


def test_copy_only_full_is_not_a_full_backup_outside_an_availability_group() -> None:
    history = [bk("EMR", "D", 100 * 24), bk("EMR", "D", 2, is_copy_only=1), bk("EMR", "I", 3)]
    out = backups([db("EMR", "SIMPLE")], history)
    # The copy-only full of 2 h ago does not count: the last real full is 100 days old.
    assert texts(out) == ["CRIT EMR 最近一次全量备份在 100.0 天前（阈值 ≥604800 秒）"]
    assert {m.name: m.value for m in out.metrics}["backup.EMR.full_age_s"] == 100 * DAY
    assert out.facts["copy_only"] == [
        {"database": "EMR", "type": "full", "finished_local": "2025-03-12 03:30:00"}
    ]


def test_ag_secondary_that_is_not_the_preferred_replica_raises_no_missing_backup() -> None:
    dbs = [db("HIS", in_ag=1, is_preferred_replica=0, ag_role="SECONDARY")]
    exps = [expect("*", "full", "daily 04:00", "2h"), expect("HIS", "log", "every 15m", "5m")]
    out = backups(dbs, [], options={"backups": exps})
    assert [f.status for f in out.findings] == [Status.OK] and "不是首选备份副本" in out.findings[0].text
    assert out.facts["not_judged"] == ["HIS"] and out.facts["backups_expected"] == []


def test_ag_preferred_secondary_counts_its_copy_only_full() -> None:
    dbs = [db("HIS", in_ag=1, is_preferred_replica=1, ag_role="SECONDARY")]
    out = backups(dbs, [bk("HIS", "D", 3, is_copy_only=1), bk("HIS", "L", 0.1)])
    assert out.findings == ()


def test_damaged_backup_and_backup_without_checksum() -> None:
    history = [bk("HIS", "D", 10, is_damaged=1), bk("HIS", "L", 0.1, has_backup_checksums=0)]
    out = backups([db("HIS")], history)
    damaged = [f for f in out.findings if "已标记为损坏" in f.text]
    assert len(damaged) == 1 and damaged[0].status is Status.CRIT and "全量备份" in damaged[0].text
    checksum = [f for f in out.findings if "CHECKSUM" in f.text]
    assert len(checksum) == 1 and checksum[0].status is Status.WARN and "日志备份" in checksum[0].text
    assert not [
        f
        for f in backups([db("HIS")], history, options={"require_checksums": False}).findings
        if "CHECKSUM" in f.text
    ]


@pytest.mark.parametrize(("age_h", "met"), [(5.5, True), (30.0, False)])
def test_expectation_daily_0400_plus_2h_in_shanghai(age_h: float, met: bool) -> None:
    exps = [expect("*", "full", "daily 04:00", "2h")]
    out = backups([db("HIS", "SIMPLE")], [bk("HIS", "D", age_h)], options={"backups": exps})
    judged = out.facts["backups_expected"]
    assert [(j["database"], j["type"], j["met"]) for j in judged] == [("HIS", "full", met)]
    missed = [f for f in out.findings if "未按计划完成" in f.text]
    assert len(missed) == (0 if met else 1)
    if missed:
        assert missed[0].status is Status.CRIT and missed[0].category == "数据安全类"
    # The configured expectation replaces the 7-day default for full backups of HIS.
    assert not any("没有全量" in f.text or "最近一次全量" in f.text for f in out.findings)


def test_freshness_uses_the_server_clock() -> None:
    # backup_finish_date is the server's local time; its age comes from the server (GETDATE()).
    server_now = NOW - timedelta(hours=3, minutes=30)  # 05:30 Shanghai on the server
    exps = [expect("*", "full", "daily 04:00", "2h")]
    history = [bk("HIS", "D", 25 + 40 / 60)]  # yesterday 03:50 Shanghai
    for skew_h in (-5, 0, 3):
        out = evaluate(
            ITEM["backups"],
            {"databases": [db("HIS", "SIMPLE")], "history": history},
            now=server_now + timedelta(hours=skew_h),
            server_now=server_now,
            options={"backups": exps},
        )
        assert out.facts["backups_expected"][0]["met"] is True
        assert out.facts["backups_expected"][0]["last"] == "2025-03-10T19:50:00+00:00"


def test_backup_on_the_same_volume_as_the_data() -> None:
    data = [
        {"database_name": "HIS", "physical_name": r"D:\Data\his.mdf", "volume_mount_point": "D:\\"},
        {"database_name": "HIS", "physical_name": r"L:\Log\his.ldf", "volume_mount_point": "L:\\"},
        {"database_name": "EMR", "physical_name": r"E:\Data\emr.mdf", "volume_mount_point": "E:\\"},
        {
            "database_name": "PACS",
            "physical_name": r"D:\Mnt\Pacs\pacs.mdf",
            "volume_mount_point": "D:\\Mnt\\Pacs\\",
        },
    ]
    devices = [
        {"database_name": "HIS", "physical_device_name": r"d:\Backup\his_full.bak"},
        {"database_name": "EMR", "physical_device_name": r"D:\Backup\emr_full.bak"},
        {"database_name": "EMR", "physical_device_name": r"\\nas01\sql\emr_log.trn"},
        {"database_name": "PACS", "physical_device_name": r"D:\Backup\pacs.bak"},
    ]
    out = evaluate(ITEM["backup_location"], {"data": data, "devices": devices})
    assert [(f.obj, f.status) for f in out.findings] == [("HIS", Status.WARN)]
    assert "D:\\" in out.findings[0].text


def test_space_takes_max_size_and_volume_free_space_into_account() -> None:
    vol_d = {
        "volume_mount_point": "D:\\",
        "volume_total_bytes": 500 * GIB,
        "volume_available_bytes": 10 * GIB,
    }
    files = [
        # Capped at 50 GiB: 45 allocated -> 90 %.
        {
            "database_name": "HIS",
            "type_desc": "ROWS",
            "size_bytes": 45 * GIB,
            "max_size": 50 * GIB / 8192,
            "growth": 1024,
            **vol_d,
        },
        # Two unlimited files on one volume share its 10 GiB free space once: 40 / (40 + 10).
        {
            "database_name": "EMR",
            "type_desc": "ROWS",
            "size_bytes": 20 * GIB,
            "max_size": -1,
            "growth": 10,
            **vol_d,
        },
        {
            "database_name": "EMR",
            "type_desc": "ROWS",
            "size_bytes": 20 * GIB,
            "max_size": -1,
            "growth": 10,
            **vol_d,
        },
        # No autogrowth: full at its size.
        {
            "database_name": "LIS",
            "type_desc": "ROWS",
            "size_bytes": 5 * GIB,
            "max_size": -1,
            "growth": 0,
            **vol_d,
        },
        {
            "database_name": "LIS",
            "type_desc": "LOG",
            "size_bytes": 1 * GIB,
            "max_size": -1,
            "growth": 10,
            **vol_d,
        },
    ]
    out = evaluate(ITEM["database_space"], {"files": files})
    pct = {m.name: m.value for m in out.metrics if m.name.endswith("used_pct")}
    assert pct == {
        "database.HIS.used_pct": 90.0,
        "database.EMR.used_pct": 80.0,
        "database.LIS.used_pct": 100.0,
        "volume.D:.used_pct": 98.0,
    }
    assert {(f.obj, f.status) for f in out.findings} == {
        ("HIS", Status.WARN),
        ("LIS", Status.CRIT),
        ("D:", Status.CRIT),
    }


def test_database_state() -> None:
    rows = [
        {"name": "HIS", "state_desc": "ONLINE", "is_read_only": 0},
        {"name": "EMR", "state_desc": "SUSPECT"},
        {"name": "OLD", "state_desc": "OFFLINE"},
        {"name": "ARCHIVE2019", "state_desc": "ONLINE", "is_read_only": 1},
        {"name": "RPT", "state_desc": "ONLINE", "is_read_only": 1},
        {"name": "MIR", "state_desc": "RESTORING", "mirroring_role_desc": "MIRROR"},
    ]
    out = evaluate(
        ITEM["database_state"],
        {"databases": rows},
        options={"exclude": ["OLD"], "read_only": ["ARCHIVE*"], "databases": ["HIS", "PACS"]},
    )
    assert sorted((f.obj, f.status.name) for f in out.findings) == [
        ("EMR", "CRIT"),
        ("PACS", "CRIT"),
        ("RPT", "WARN"),
    ]


def test_checkdb_never_old_and_unknown() -> None:
    rows = [
        {"name": "HIS", "last_good": "2025-03-09 01:00:00", "age_min": 3 * 24 * 60},
        {"name": "EMR", "last_good": "2025-01-01 01:00:00", "age_min": 70 * 24 * 60},
        {"name": "LIS", "last_good": "1900-01-01 00:00:00", "age_min": 60_000_000},
        {"name": "PACS", "last_good": None, "age_min": None},
    ]
    out = evaluate(ITEM["checkdb"], {"databases": rows}, version=(15, 0))
    assert sorted((f.obj, f.status.name) for f in out.findings) == [("EMR", "CRIT"), ("LIS", "CRIT")]
    assert "从未" in next(f.text for f in out.findings if f.obj == "LIS")


def test_suspect_pages_log_space_agent() -> None:
    pages = evaluate(
        ITEM["suspect_pages"], {"pages": [{"database_name": "HIS", "page_id": 7, "event_type": 1}]}
    )
    assert pages.findings[0].status is Status.CRIT
    counters = [
        {"database_name": "HIS", "counter_name": "Percent Log Used", "cntr_value": 93},
        {"database_name": "HIS", "counter_name": "Log File(s) Size (KB)", "cntr_value": 1024},
        {"database_name": "_Total", "counter_name": "Percent Log Used", "cntr_value": 50},
    ]
    log = evaluate(
        ITEM["log_space"],
        {"counters": counters, "databases": [{"name": "HIS", "log_reuse_wait_desc": "LOG_BACKUP"}]},
    )
    assert log.findings[0].status is Status.CRIT and "LOG_BACKUP" in log.findings[0].text
    services = [
        {"servicename": "SQL Server (MSSQLSERVER)", "status_desc": "Running"},
        {"servicename": "SQL Server Agent (MSSQLSERVER)", "status_desc": "Stopped"},
    ]
    agent = evaluate(ITEM["agent_service"], {"services": services})
    assert [f.status for f in agent.findings] == [Status.CRIT]
    job = {
        "job_name": "DatabaseBackup - USER_DATABASES - FULL",
        "instance_id": 5000,
        "run_status": 0,
        "run_date": 20250312,
        "run_time": 23000,
        "message": "The job failed.",
    }
    jobs = evaluate(ITEM["agent_jobs"], {"failed": [job]}, memory={"last_instance_id": 4000})
    assert "（新）" in jobs.findings[0].text and "2025-03-12 02:30:00" in jobs.findings[0].text
    assert jobs.memory == {"last_instance_id": 5000}


def test_always_on_log_shipping_mirroring_logins() -> None:
    replicas = [
        {
            "ag_name": "AG1",
            "replica_server_name": "SQL02",
            "role_desc": "SECONDARY",
            "connected_state_desc": "CONNECTED",
            "synchronization_health_desc": "NOT_HEALTHY",
        }
    ]
    ag = evaluate(ITEM["always_on"], {"replicas": replicas, "databases": []})
    assert [f.status for f in ag.findings] == [Status.CRIT]
    assert evaluate(ITEM["always_on"], {"replicas": [], "databases": []}).facts == {"configured": False}
    ls = evaluate(
        ITEM["log_shipping"],
        {"secondaries": [{"secondary_database": "HIS", "restore_threshold": 45, "restored_age_min": 180}]},
    )
    assert ls.findings[0].status is Status.CRIT
    mirror = evaluate(
        ITEM["mirroring"], {"mirrors": [{"database_name": "HIS", "mirroring_state_desc": "SUSPENDED"}]}
    )
    assert mirror.findings[0].status is Status.CRIT
    logins = [
        {"name": "his_app", "is_expiration_checked": 1, "days_left": 5, "is_expired": 0, "is_locked": 0},
        {"name": "lis_app", "is_expiration_checked": 0, "days_left": None, "is_expired": 0, "is_locked": 1},
        {"name": "rpt", "is_expiration_checked": 1, "days_left": 200, "is_expired": 0, "is_locked": 0},
    ]
    out = evaluate(ITEM["logins"], {"logins": logins})
    assert sorted((f.obj, f.status.name) for f in out.findings) == [("his_app", "WARN"), ("lis_app", "CRIT")]


# ----------------------------------------------------------------------------- the driver


def test_sessions_blocking_and_long_transactions_share_the_other_engines_evaluation() -> None:
    counts = {"sessions": [{"user_sessions": 170, "max_connections": 32767}]}
    sessions = evaluate(ITEM["sessions"], counts, options={"max_sessions": 200})
    assert {m.name: m.value for m in sessions.metrics} == {"sessions.count": 170, "sessions.used_pct": 85.0}
    assert texts(sessions) == ["WARN 会话数 170，已用连接上限 200 的 85.0%（阈值 ≥80%）"]
    # A negative blocker (orphaned distributed transaction) has no session behind it.
    holder = {
        "blocking_user": "his",
        "blocking_client": "WS-07",
        "blocking_app": "HIS.exe",
        "blocking_state": "sleeping",
        "datname": "HISDB",
    }
    blocked = [
        {"waiting_pid": 61, "wait_s": 75.5, "blocking_pid": 58, **holder,
         "wait_type": "LCK_M_X", "command": "UPDATE"},
        {"waiting_pid": 70, "wait_s": 5.0, "blocking_pid": -2, **dict.fromkeys(holder),
         "wait_type": "LCK_M_S", "command": "SELECT"},
    ]  # fmt: skip
    out = evaluate(ITEM["blocking"], {"blocked": blocked}, thresholds={"wait_s": Threshold(warn=1)})
    assert {m.name: m.value for m in out.metrics} == {"blocked.count": 2, "blocked.max_wait_s": 75.5}
    assert texts(out) == [
        "WARN 会话 58 阻塞了 1 个会话，最长等待 76 秒"
        "（库 HISDB，用户 his，客户端 WS-07，程序 HIS.exe，状态 sleeping）（阈值 ≥1 秒）",
        "WARN 会话 -2 阻塞了 1 个会话，最长等待 5 秒（阈值 ≥1 秒）",
    ]
    kept = [(b["wait_type"], b["command"]) for b in out.facts["blocked"]]
    assert kept == [("LCK_M_X", "UPDATE"), ("LCK_M_S", "SELECT")]
    # 2008 R2 cannot name a transaction's database: the text leaves it out rather than "库 None".
    tx = [
        {
            "pid": 58,
            "usename": "his",
            "state": "sleeping",
            "client": "WS-07",
            "app": "HIS.exe",
            "transaction_name": "user_transaction",
            "age_s": 7300,
        }
    ]
    long = evaluate(ITEM["long_transactions"], {"transactions": tx})
    assert {m.name: m.value for m in long.metrics} == {
        "transactions.open": 1,
        "transactions.oldest_s": 7300.0,
    }
    assert texts(long) == [
        "CRIT 事务已运行 2.0 小时（会话 58，用户 his，客户端 WS-07，程序 HIS.exe，状态 sleeping）"
        "（阈值 ≥7200 秒）"
    ]
    assert long.facts["transactions"][0]["transaction_name"] == "user_transaction"


def test_silent_server_returns_within_the_login_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENTINEL_TEST_MSSQL_PW", "Wr0ng-Secret!")
    with silent_tcp_server() as port:
        settings = Settings.model_validate(
            {
                "host": "127.0.0.1",
                "port": port,
                "user": "sentinel",
                "password": "${SENTINEL_TEST_MSSQL_PW}",
                "login_timeout": 1,
            }
        )
        t0 = time.monotonic()
        result = Probe(settings).run(ProbeContext("mssql", 4.0))
        elapsed = time.monotonic() - t0
    assert elapsed < 2.5
    assert result.status is Status.CRIT and "登录超时" in result.summary
    assert "Wr0ng-Secret!" not in repr(result)


def test_error_classification() -> None:
    denied = pymssql.OperationalError(229, b"The SELECT permission was denied on the object 'backupset'")
    assert classify(denied) == "permission"
    assert classify(pymssql.ProgrammingError(208, b"Invalid object name 'sys.dm_hadr_x'.")) == "missing"
    assert "密码错误" in describe_login_error(pymssql.OperationalError(18456, b"Login failed for user 'x'."))
