"""probes.db.mysql against the real MariaDB on 127.0.0.1:3306 (root, no password).

Each test builds its situation in throwaway schemas / users (random names) and drops them
afterwards: a blocking transaction, a schema over its limit, a dropped schema, a deadlock
between two sessions, a monitoring user without PROCESS, the documented monitoring account.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from probes.base import CheckResult, ProbeContext, Status
from probes.db.items import ItemContext
from probes.db.mysql.items import ITEMS, eval_binlog, eval_replication, items_for
from probes.db.mysql.probe import Probe, connect
from probes.db.mysql.settings import Settings
from tests.conftest import need, wait_until
from tests.helpers.dbfixtures import (
    DOC_PASSWORD,
    DOC_USER,
    doc_sql,
    finding_items,
    permission_findings,
    port_open,
    unique,
)
from tests.helpers.servers import silent_tcp_server

PORT = 3306
PASSWORD_ENV = "SENTINEL_T_MY_PW"
PASSWORD_REF = "${" + PASSWORD_ENV + "}"


def admin_conn(database: str | None = None) -> Any:
    import pymysql

    return pymysql.connect(
        host="127.0.0.1",
        port=PORT,
        user="root",
        password="",
        database=database,
        autocommit=True,
        connect_timeout=5,
        read_timeout=30,
    )


def sql(conn: Any, statement: str, args: Any = None) -> list[tuple[Any, ...]]:
    with conn.cursor() as cur:
        cur.execute(statement, args)
        return list(cur.fetchall())


@pytest.fixture(scope="module")
def admin() -> Iterator[Any]:
    need(port_open(PORT), "MariaDB on 127.0.0.1:3306 (.ci/run starts it)")
    conn = admin_conn()
    yield conn
    conn.close()


@pytest.fixture
def schema(admin: Any) -> Iterator[str]:
    name = unique("sentinel_t")
    sql(admin, f"CREATE DATABASE {name}")
    sql(admin, f"CREATE TABLE {name}.beds (id INT PRIMARY KEY, patient VARCHAR(20)) ENGINE=InnoDB")
    sql(admin, f"INSERT INTO {name}.beds VALUES (1, NULL), (2, NULL)")
    yield name
    sql(admin, f"DROP DATABASE IF EXISTS {name}")


@pytest.fixture
def account(admin: Any) -> Iterator[Callable[[str], str]]:
    """Creates users '<name>'@'%' with a password from $SENTINEL_T_MY_PW; drops them after."""
    made: list[str] = []

    def create(grants: str) -> str:
        name = unique("sntl")
        sql(admin, f"CREATE USER '{name}'@'%%' IDENTIFIED BY %s", ("Right-Pass-123",))
        if grants:
            sql(admin, f"GRANT {grants} ON *.* TO '{name}'@'%'")
        made.append(name)
        return name

    yield create
    for name in made:
        sql(admin, f"DROP USER IF EXISTS '{name}'@'%'")


@pytest.fixture(autouse=True)
def _password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSWORD_ENV, "Right-Pass-123")


def run(timeout: float = 8.0, memory: Any = None, **settings: Any) -> CheckResult:
    # The local test server has no TLS: the probe's default (verify_identity) must be opted out of.
    base: dict[str, Any] = {"host": "127.0.0.1", "port": PORT, "user": "root", "ssl_mode": "disabled"}
    base.update(settings)
    probe = Probe(Settings.model_validate(base))
    return probe.run(ProbeContext("my", timeout, memory=memory or {}))


# ------------------------------------------------------------------ healthy server


def test_healthy_server_runs_every_item(admin: Any, schema: str) -> None:
    result = run(databases=[schema])
    assert permission_findings(result) == []
    # log_bin is OFF on the test server and it may have restarted lately; nothing else
    assert {f["item"] for f in result.details["findings"]} <= {"version", "binary_log"}
    assert result.summary.split(" | ")[-1].startswith("MariaDB 10.")
    names = {m.name for m in result.metrics}
    for metric in ("login_ms", "uptime_s", "sessions.used_pct", f"database.{schema}.size_bytes",
                   "blocked.count", "transactions.oldest_s", "innodb.deadlocks_total"):  # fmt: skip
        assert metric in names, metric
    assert result.memory and "count" in result.memory["deadlocks"]
    assert result.details["skipped"] == []


def test_session_is_read_only_with_a_statement_time_limit(admin: Any, schema: str) -> None:
    settings = Settings(host="127.0.0.1", user="root", ssl_mode="disabled")
    conn = connect(settings, None, 5, time.monotonic() + 10)
    try:
        with pytest.raises(Exception, match="READ ONLY"):
            conn.query(f"INSERT INTO {schema}.beds VALUES (3, 'x')", 5)
        t0 = time.monotonic()
        with pytest.raises(TimeoutError, match="max_statement_time"):
            conn.query("SELECT SLEEP(5) AS s", 0.3)
        assert time.monotonic() - t0 < 2
        assert conn.query("SELECT 1 AS One", 5) == [{"one": 1}]
    finally:
        conn.close()
    assert sql(admin, f"SELECT COUNT(*) FROM {schema}.beds") == [(2,)]


# ------------------------------------------------------------------ acceptance situations


def test_long_open_transaction_blocking_another_session(admin: Any, schema: str) -> None:
    import pymysql

    holder = admin_conn(schema)
    sql(holder, "BEGIN")
    sql(holder, "UPDATE beds SET patient = 'A' WHERE id = 1")
    holder_id = holder.thread_id()
    waiter = admin_conn(schema)
    sql(waiter, "SET SESSION innodb_lock_wait_timeout = 20")
    errors: list[BaseException] = []

    def blocked_update() -> None:
        try:
            sql(waiter, "UPDATE beds SET patient = 'B' WHERE id = 1")
        except pymysql.Error as exc:
            errors.append(exc)

    t = threading.Thread(target=blocked_update, daemon=True)
    t.start()
    try:
        wait_until(
            lambda: sql(admin, "SELECT COUNT(*) FROM information_schema.INNODB_LOCK_WAITS")[0][0],
            5,
            "the second UPDATE to wait on the first",
        )
        result = run(
            items={
                "blocking": {"thresholds": {"wait_s": {"warn": 0}}},
                "long_transactions": {"thresholds": {"age_s": {"warn": 0}}},
            }
        )
        by_item = finding_items(result)
        [blocking] = [f for f in by_item["blocking"] if f["obj"] == str(holder_id)]
        assert blocking["status"] == "WARN"
        assert blocking["text"].startswith(f"会话 {holder_id} 阻塞了 1 个会话，最长等待 ")
        assert f"库 {schema}" in blocking["text"] and "用户 root" in blocking["text"]
        assert "UPDATE" not in blocking["text"] and "'A'" not in result.summary
        assert any(f["obj"] == str(holder_id) for f in by_item["long_transactions"])
        assert result.status is Status.WARN
        default = finding_items(run())  # 30 s default: a fresh wait is no finding
        assert not any(f["obj"] == str(holder_id) for f in default.get("blocking", []))
    finally:
        holder.rollback()
        t.join(25)
        holder.close()
        waiter.close()
    assert errors == []


def test_schema_over_its_limit_and_size_threshold(admin: Any, schema: str) -> None:
    result = run(
        items={
            "schema_space": {"options": {"limits": {schema: 1024}}, "thresholds": {"size_bytes": {"warn": 1}}}
        }
    )
    mine = [f for f in finding_items(result)["schema_space"] if f["obj"] == schema]
    statuses = {f["text"].split(" ")[2][:2]: f["status"] for f in mine}
    assert statuses == {"大小": "WARN", "已用": "CRIT", "预计": "CRIT"}  # already full: 0 days left
    pct = result.metric(f"database.{schema}.used_pct")
    assert pct is not None and pct.value > 100
    assert result.status is Status.CRIT


def test_dropped_schema_is_crit(admin: Any, schema: str) -> None:
    gone = unique("sentinel_t")
    sql(admin, f"CREATE DATABASE {gone}")
    sql(admin, f"DROP DATABASE {gone}")
    result = run(databases=[schema, gone])
    [f] = finding_items(result)["database_state"]
    assert (f["status"], f["text"], f["category"]) == ("CRIT", f"数据库 {gone} 不存在", "数据安全类")
    assert result.status is Status.CRIT and result.summary.startswith("严重：")


def test_deadlocks_since_the_last_run(admin: Any, schema: str) -> None:
    import pymysql

    first = run()
    a, b = admin_conn(schema), admin_conn(schema)
    errors: list[int] = []
    try:
        sql(a, "BEGIN")
        sql(b, "BEGIN")
        sql(a, "UPDATE beds SET patient = 'A' WHERE id = 1")
        sql(b, "UPDATE beds SET patient = 'B' WHERE id = 2")

        def a_wants_2() -> None:
            try:
                sql(a, "UPDATE beds SET patient = 'A' WHERE id = 2")
            except pymysql.Error as exc:
                errors.append(exc.args[0])

        t = threading.Thread(target=a_wants_2, daemon=True)
        t.start()
        wait_until(
            lambda: sql(admin, "SELECT COUNT(*) FROM information_schema.INNODB_LOCK_WAITS")[0][0],
            5,
            "session A to wait for row 2",
        )
        try:
            sql(b, "UPDATE beds SET patient = 'B' WHERE id = 1")
        except pymysql.Error as exc:
            errors.append(exc.args[0])
        b.rollback()
        t.join(10)
        a.rollback()
    finally:
        a.close()
        b.close()
    assert 1213 in errors  # ER_LOCK_DEADLOCK: InnoDB picked a victim
    second = run(memory=first.memory)
    [f] = finding_items(second)["deadlocks"]
    assert f["status"] == "WARN" and f["text"].startswith("上次检查以来发生 ")
    new = second.metric("innodb.deadlocks_new")
    assert new is not None and new.value >= 1


def test_account_without_process_gets_grant_findings_and_other_items_run(
    admin: Any, schema: str, account: Callable[[str], str]
) -> None:
    user = account("")
    result = run(user=user, password=PASSWORD_REF, databases=[schema])
    by_item = finding_items(result)
    for item in ("blocking", "long_transactions"):
        [f] = by_item[item]
        assert "GRANT PROCESS ON *.* TO <user>" in f["text"] and "PROCESS" in f["text"], f
    [repl] = by_item["replication"]
    assert "GRANT SLAVE MONITOR ON *.* TO <user>" in repl["text"]
    [state] = by_item["database_state"]
    assert state["status"] == "WARN" and "SHOW DATABASES" in state["text"]  # not a false CRIT
    for metric in ("login_ms", "uptime_s", "sessions.used_pct", "innodb.deadlocks_total"):
        assert result.metric(metric) is not None, metric
    assert result.status is Status.WARN


def test_documented_grants_let_every_item_run(admin: Any, schema: str) -> None:
    user = unique("sntl")
    statements = doc_sql("MySQL / MariaDB")
    assert any("PROCESS" in s for s in statements)
    try:
        for statement in statements:
            sql(admin, statement.replace(DOC_USER, user).replace(DOC_PASSWORD, "Right-Pass-123"))
        result = run(user=user, password=PASSWORD_REF, databases=[schema])
        assert permission_findings(result) == [], result.details["findings"]
        assert {f["item"] for f in result.details["findings"]} <= {"version", "binary_log"}
        assert result.metric(f"database.{schema}.size_bytes") is not None  # SHOW VIEW makes it visible
        assert result.details["skipped"] == []
        # and it cannot read patient data
        import pymysql

        conn = pymysql.connect(host="127.0.0.1", port=PORT, user=user, password="Right-Pass-123")
        with pytest.raises(pymysql.err.OperationalError, match="SELECT command denied"), conn.cursor() as cur:
            cur.execute(f"SELECT * FROM {schema}.beds")
        conn.close()
    finally:
        sql(admin, f"DROP USER IF EXISTS '{user}'@'%'")


# ------------------------------------------------------------------ hangs and secrets


def test_silent_server_returns_within_the_timeout_with_the_reason() -> None:
    with silent_tcp_server() as port:
        t0 = time.monotonic()
        result = run(timeout=3.0, port=port, login_timeout=1.5, password=PASSWORD_REF)
        elapsed = time.monotonic() - t0
    assert elapsed < 3.0
    assert result.status is Status.CRIT
    assert result.summary == f"无法登录 MySQL 127.0.0.1:{port}：登录超时：服务器在登录超时内没有应答"
    assert "Right-Pass-123" not in repr(result)


def test_wrong_password_is_crit_and_never_shown(admin: Any, account: Callable[[str], str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    user = account("")
    monkeypatch.setenv(PASSWORD_ENV, "Wr0ng-Pass-xyz")
    result = run(user=user, password=PASSWORD_REF)
    assert result.status is Status.CRIT
    assert result.summary.startswith(f"无法登录 MySQL 127.0.0.1:{PORT}：用户名或密码错误")
    assert user in result.summary
    assert "Wr0ng-Pass-xyz" not in repr(result) and "Wr0ng-Pass-xyz" not in str(result.details)


# ------------------------------------------------------------------ recorded rows


def ictx(memory: Any = None, **options: Any) -> ItemContext:
    from datetime import UTC, datetime

    rules = {k: v for i in ITEMS for k, v in i.thresholds.items()}
    return ItemContext(datetime(2026, 3, 1, tzinfo=UTC), UTC, (8, 0, 36), rules, options, {}, memory or {})


def test_replica_rows_mysql8_and_mariadb_names() -> None:
    rows = [
        {
            "channel_name": "",
            "source_host": "10.0.0.5",
            "replica_io_running": "Connecting",
            "replica_sql_running": "Yes",
            "seconds_behind_source": None,
            "last_io_error": "error connecting to master",
        },
        {
            "connection_name": "his",
            "master_host": "10.0.0.6",
            "slave_io_running": "Yes",
            "slave_sql_running": "Yes",
            "seconds_behind_master": 2000,
        },
        {
            "connection_name": "emr",
            "master_host": "10.0.0.7",
            "slave_io_running": "Yes",
            "slave_sql_running": "Yes",
            "seconds_behind_master": None,
        },
    ]
    out = eval_replication({"replicas": rows}, ictx())
    got = [(f.status, f.obj) for f in out.findings]
    assert got == [(Status.CRIT, "10.0.0.5"), (Status.CRIT, "his"), (Status.WARN, "emr")]
    assert "error connecting to master" in out.findings[0].text
    assert eval_replication({"replicas": []}, ictx()).findings == ()


def test_binlog_off_and_short_retention() -> None:
    off = [{"variable_name": "log_bin", "value": "OFF"}]
    assert [f.obj for f in eval_binlog({"variables": off}, ictx()).findings] == ["log_bin"]
    assert eval_binlog({"variables": off}, ictx(require_binlog=False)).findings == ()
    short = [
        {"variable_name": "log_bin", "value": "ON"},
        {"variable_name": "binlog_expire_logs_seconds", "value": "86400"},
        {"variable_name": "expire_logs_days", "value": "0"},
    ]
    [f] = eval_binlog({"variables": short}, ictx()).findings
    assert f.text.startswith("二进制日志只保留 1.0 天，少于要求的 7 天")
    keep = [*short[:1], {"variable_name": "expire_logs_days", "value": "10"}]
    assert eval_binlog({"variables": keep}, ictx()).findings == ()


def test_mysql8_items_use_performance_schema_and_replica_status() -> None:
    by_name = {i.name: i for i in items_for(False, (8, 0, 36))}
    assert "performance_schema.data_lock_waits" in by_name["blocking"].queries["blocked"]
    assert by_name["replication"].queries["replicas"] == "SHOW REPLICA STATUS"
    assert "INNODB_METRICS" in by_name["deadlocks"].queries["metrics"]
    old = {i.name: i for i in items_for(False, (5, 7, 44))}
    assert "INNODB_LOCK_WAITS" in old["blocking"].queries["blocked"]
    assert old["replication"].queries["replicas"] == "SHOW SLAVE STATUS"
    assert [i.name for i in items_for(True, (10, 11, 6))] == [i.name for i in ITEMS]


def test_tls_is_verified_by_default_and_never_silently_dropped() -> None:
    # The local MariaDB has TLS disabled: with the default the login fails and says why,
    # rather than continuing in plaintext without anyone deciding so.
    assert Settings(host="h", user="u").ssl_mode == "verify_identity"
    result = Probe(Settings(host="127.0.0.1", port=PORT, user="root")).run(ProbeContext("my", 8.0))
    assert result.status is Status.CRIT
    assert "SSL" in result.summary or "ssl" in result.summary
