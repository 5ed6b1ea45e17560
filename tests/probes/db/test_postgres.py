"""probes.db.postgres against the real PostgreSQL on 127.0.0.1:5432 (trust auth, user postgres).

Each test builds its situation in throwaway databases / roles (random names) and drops
them afterwards: a blocking transaction, a database over its limit, a dropped and a locked
database, a monitoring role without pg_monitor, the documented monitoring account.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from probes import registry
from probes.base import CheckResult, ProbeContext, Status
from probes.db.items import ItemContext
from probes.db.postgres.items import ITEMS, eval_archiver, eval_autovacuum, eval_replication
from probes.db.postgres.probe import Probe, connect
from probes.db.postgres.settings import Settings
from probes.thresholds import Threshold
from tests.conftest import FakeClock, need, wait_until
from tests.helpers.dbfixtures import DOC_USER, doc_sql, finding_items, permission_findings, port_open, unique
from tests.helpers.servers import silent_tcp_server

PORT = 5432


@pytest.fixture(scope="module")
def admin() -> Iterator[Any]:
    need(port_open(PORT), "PostgreSQL on 127.0.0.1:5432 (.ci/run starts it)")
    import psycopg

    conn = psycopg.connect(host="127.0.0.1", port=PORT, user="postgres", dbname="postgres", autocommit=True)
    yield conn
    conn.close()


@pytest.fixture
def scratch_db(admin: Any) -> Iterator[str]:
    name = unique("sentinel_t")
    admin.execute(f"CREATE DATABASE {name}")
    yield name
    admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def scratch_role(admin: Any) -> Iterator[str]:
    name = unique("sentinel_r")
    yield name
    admin.execute(f"DROP OWNED BY {name}") if _role_exists(admin, name) else None
    admin.execute(f"DROP ROLE IF EXISTS {name}")


def _role_exists(admin: Any, name: str) -> bool:
    return admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone() is not None


def run(
    timeout: float = 8.0, memory: dict[str, Any] | None = None, history: Any = None, **settings: Any
) -> CheckResult:
    # The local test server has no TLS: the probe's default (verify-full) must be opted out of.
    base: dict[str, Any] = {"host": "127.0.0.1", "port": PORT, "user": "postgres", "sslmode": "disable"}
    base.update(settings)
    ctx = ProbeContext("pg", timeout, history=history or {}, memory=memory or {})
    return Probe(Settings.model_validate(base)).run(ctx)


def sessions_of(admin: Any, user: str) -> int:
    row = admin.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = %s", (user,)).fetchone()
    return int(row[0])


# ------------------------------------------------------------------ healthy server


def test_registry_kind_and_healthy_server_runs_every_item(admin: Any) -> None:
    assert registry.spec("postgres").probe is Probe
    result = run(databases=["postgres"])
    assert result.status in (Status.OK, Status.WARN)  # WARN only for a restart within 24 h
    assert permission_findings(result) == []
    assert {f["item"] for f in result.details["findings"]} <= {"version"}
    names = {m.name for m in result.metrics}
    for metric in ("login_ms", "uptime_s", "sessions.used_pct", "database.postgres.size_bytes",
                   "tablespace.pg_default.size_bytes", "database.postgres.wraparound_pct",
                   "blocked.count", "transactions.oldest_s", "archiver.failed_count"):  # fmt: skip
        assert metric in names, metric
    assert result.details["version"].startswith(("1", "9"))
    assert {
        "item": "pg_cron",
        "reason": 'feature absent: relation "cron.job" does not exist',
    } in result.details["skipped"]
    assert "wal_archiving" in (result.memory or {})


def test_session_is_read_only_and_statement_timeout_applies(admin: Any) -> None:
    import time as _time

    settings = Settings(host="127.0.0.1", port=PORT, user="postgres", sslmode="disable")
    conn = connect(settings, None, 5, _time.monotonic() + 10)
    try:
        with pytest.raises(Exception, match="read-only transaction"):
            conn.query("CREATE TABLE sentinel_should_not_exist (x int)", 5)
        t0 = time.monotonic()
        with pytest.raises(TimeoutError, match="statement timeout"):
            conn.query("SELECT pg_sleep(5)", 0.3)
        assert time.monotonic() - t0 < 2
        assert conn.query("SELECT 1 AS One", 5) == [{"one": 1}]
    finally:
        conn.close()


def test_deadline_guard_cuts_a_session_that_outlives_the_probe(admin: Any) -> None:
    settings = Settings(host="127.0.0.1", port=PORT, user="postgres", sslmode="disable")
    conn = connect(settings, None, 5, time.monotonic() + 0.5)
    try:
        t0 = time.monotonic()
        with pytest.raises(TimeoutError, match="cut at the deadline"):
            conn.query("SELECT pg_sleep(10)", 30)  # the server-side timeout would not fire in time
        assert time.monotonic() - t0 < 2
    finally:
        conn.close()


# ------------------------------------------------------------------ acceptance situations


def test_long_open_transaction_blocking_another_session(admin: Any, scratch_db: str) -> None:
    import psycopg

    setup = psycopg.connect(host="127.0.0.1", port=PORT, user="postgres", dbname=scratch_db, autocommit=True)
    setup.execute("CREATE TABLE beds (id int PRIMARY KEY, patient text)")
    setup.execute("INSERT INTO beds VALUES (1, NULL)")
    holder = psycopg.connect(host="127.0.0.1", port=PORT, user="postgres", dbname=scratch_db)
    holder.execute("UPDATE beds SET patient = 'A' WHERE id = 1")  # open transaction, row locked
    holder_pid = holder.info.backend_pid
    waiter = psycopg.connect(host="127.0.0.1", port=PORT, user="postgres", dbname=scratch_db, autocommit=True)
    waiter.execute("SET lock_timeout = '20s'")
    errors: list[BaseException] = []

    def blocked_update() -> None:
        try:
            waiter.execute("UPDATE beds SET patient = 'B' WHERE id = 1")
        except psycopg.Error as exc:
            errors.append(exc)

    t = threading.Thread(target=blocked_update, daemon=True)
    t.start()
    try:
        wait_until(
            lambda: admin.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE cardinality(pg_blocking_pids(pid)) > 0"
            ).fetchone()[0],
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
        [blocking] = [f for f in by_item["blocking"] if f["obj"] == str(holder_pid)]
        assert blocking["status"] == "WARN"
        assert blocking["text"].startswith(f"会话 {holder_pid} 阻塞了 1 个会话，最长等待 ")
        assert f"库 {scratch_db}" in blocking["text"] and "idle in transaction" in blocking["text"]
        assert "'A'" not in result.summary and "UPDATE" not in blocking["text"]  # no SQL text / data
        assert result.metric("blocked.count").value >= 1  # type: ignore[union-attr]
        assert any(f["obj"] == str(holder_pid) for f in by_item["long_transactions"]), result.details
        assert result.status is Status.WARN
        # default thresholds (60 s / 300 s): a fresh wait is no finding
        assert not any(f["obj"] == str(holder_pid) for f in finding_items(run()).get("blocking", []))
    finally:
        holder.rollback()
        t.join(10)
        for c in (holder, waiter, setup):
            c.close()
    assert errors == []


def test_database_over_its_limit_and_size_threshold(admin: Any, scratch_db: str) -> None:
    import time as _time

    now = _time.time()
    size = float(admin.execute("SELECT pg_database_size(%s)", (scratch_db,)).fetchone()[0])
    # history: grew by 1 MiB/day for two days; limit 4 MiB above current -> about 4 days left
    history = {
        f"database.{scratch_db}.size_bytes": [
            (now - 2 * 86400, size - 2 * 2**20),
            (now - 86400, size - 2**20),
        ]
    }
    result = run(
        history=history,
        items={
            "database_space": {"options": {"limits": {scratch_db: size + 4 * 2**20, "postgres": 1024}}},
            "tablespace_space": {"thresholds": {"size_bytes": {"warn": 1}}},
        },
    )
    by_item = finding_items(result)
    found = {(f["obj"], f["status"], f["text"].split(" ")[2][:2]) for f in by_item["database_space"]}
    assert ("postgres", "CRIT", "已用") in found  # over its 1 KiB limit
    assert (scratch_db, "CRIT", "预计") in found  # about 4 days left at 1 MiB/day
    assert not any(obj == scratch_db and what == "已用" for obj, _, what in found)  # ~50 %: fine
    days = result.metric(f"database.{scratch_db}.days_to_full")
    assert days is not None and 3 < days.value < 5
    assert {f["obj"] for f in by_item["tablespace_space"]} >= {"pg_default", "pg_global"}
    assert result.status is Status.CRIT
    space = result.details["facts"]["database_space"]["space"]
    assert any(e["name"] == scratch_db and e["limit_bytes"] for e in space)


def test_dropped_locked_and_read_only_databases_are_crit(admin: Any, scratch_db: str) -> None:
    locked = unique("sentinel_t")
    readonly = unique("sentinel_t")
    gone = unique("sentinel_t")
    admin.execute(f"CREATE DATABASE {locked} ALLOW_CONNECTIONS false")
    admin.execute(f"CREATE DATABASE {readonly}")
    admin.execute(f"ALTER DATABASE {readonly} SET default_transaction_read_only = on")
    admin.execute(f"CREATE DATABASE {gone}")
    admin.execute(f"DROP DATABASE {gone}")
    try:
        result = run(databases=[scratch_db, locked, readonly, gone])
        state = {f["obj"]: f for f in finding_items(result)["database_state"]}
        assert state[gone] == {
            "status": "CRIT",
            "text": f"数据库 {gone} 不存在",
            "category": "数据安全类",
            "obj": gone,
            "item": "database_state",
        }
        assert state[locked]["status"] == "CRIT" and "禁止连接" in state[locked]["text"]
        assert state[readonly]["status"] == "CRIT" and "只读" in state[readonly]["text"]
        assert scratch_db not in state
        assert result.status is Status.CRIT
        assert result.summary.startswith("严重：")
    finally:
        admin.execute(f"DROP DATABASE IF EXISTS {locked}")
        admin.execute(f"DROP DATABASE IF EXISTS {readonly}")


def test_login_database_dropped_is_crit_login_failure(admin: Any) -> None:
    gone = unique("sentinel_t")
    result = run(database=gone)
    assert result.status is Status.CRIT
    assert result.summary.startswith("无法登录 PostgreSQL 127.0.0.1:5432：数据库不存在")
    assert gone in result.summary


def test_account_without_pg_monitor_gets_grant_findings_and_other_items_run(
    admin: Any, scratch_db: str, scratch_role: str
) -> None:
    admin.execute(f"CREATE ROLE {scratch_role} LOGIN")
    admin.execute(f"REVOKE CONNECT ON DATABASE {scratch_db} FROM PUBLIC")
    result = run(user=scratch_role, databases=["postgres"])
    by_item = finding_items(result)
    [space] = by_item["database_space"]
    assert "GRANT pg_monitor TO <user>" in space["text"] and "permission denied" in space["text"]
    [ts] = by_item["tablespace_space"]
    assert "GRANT pg_monitor TO <user>" in ts["text"]
    for item in ("sessions", "blocking", "long_transactions"):
        assert any("只能看到监控账号自己的会话" in f["text"] for f in by_item[item]), item
    # the other items still ran and produced metrics
    for metric in ("login_ms", "uptime_s", "sessions.count", "database.postgres.wraparound_pct"):
        assert result.metric(metric) is not None, metric
    assert "database_state" not in by_item
    assert result.status is Status.WARN


def test_documented_grants_let_every_item_run(admin: Any, scratch_role: str) -> None:
    statements = doc_sql("PostgreSQL")
    assert any("pg_monitor" in s for s in statements)
    for sql in statements:
        admin.execute(sql.replace(DOC_USER, scratch_role))
    result = run(user=scratch_role, password="${SENTINEL_T_PG_PW}", databases=["postgres"])
    assert permission_findings(result) == [], result.details["findings"]
    assert result.status in (Status.OK, Status.WARN)
    assert {f["item"] for f in result.details["findings"]} <= {"version"}
    ran = {m.name.split(".")[0] for m in result.metrics}
    assert {"sessions", "blocked", "transactions", "database", "tablespace", "archiver"} <= ran
    # one connection per run, closed afterwards
    wait_until(lambda: sessions_of(admin, scratch_role) == 0, 5, "the probe's session to end")


@pytest.fixture(autouse=True)
def _pg_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENTINEL_T_PG_PW", "Wr0ng-Pass-xyz")


# ------------------------------------------------------------------ hangs and secrets


def test_silent_server_returns_within_the_timeout_with_the_reason() -> None:
    with silent_tcp_server() as port:
        t0 = time.monotonic()
        result = run(timeout=3.0, port=port, login_timeout=2, password="${SENTINEL_T_PG_PW}")
        elapsed = time.monotonic() - t0
    assert elapsed < 3.0
    assert result.status is Status.CRIT
    assert result.summary == f"无法登录 PostgreSQL 127.0.0.1:{port}：登录超时：服务器在登录超时内没有应答"
    assert "Wr0ng-Pass-xyz" not in repr(result)


def test_password_never_appears_in_the_result(admin: Any) -> None:
    refused = run(port=1, password="${SENTINEL_T_PG_PW}")
    assert refused.status is Status.CRIT and "连接被拒绝" in refused.summary
    ok = run(password="${SENTINEL_T_PG_PW}")  # trust auth ignores it; it still must not leak
    for result in (refused, ok):
        assert "Wr0ng-Pass-xyz" not in repr(result) and "Wr0ng-Pass-xyz" not in str(result.details)


# ------------------------------------------------------------------ evaluations on recorded rows


def ictx(memory: dict[str, Any] | None = None, **options: Any) -> ItemContext:
    from datetime import UTC, datetime

    item = {i.name: i for i in ITEMS}
    now = datetime.fromtimestamp(FakeClock()(), UTC)
    rules = {k: v for i in ITEMS for k, v in i.thresholds.items()} if item else {}
    return ItemContext(now, UTC, (15, 4), rules, options, {}, memory or {})


def test_archiver_failure_after_last_success_is_crit_and_recovered_failures_warn() -> None:
    from datetime import timedelta

    ctx = ictx()
    ok = ctx.now - timedelta(minutes=30)
    bad = ctx.now - timedelta(minutes=5)
    row = {
        "archive_mode": "on",
        "last_archived_time": ok,
        "last_failed_time": bad,
        "failed_count": 3.0,
        "last_failed_wal": "00000001000000000000002A",
        "stats_reset": ok - timedelta(days=9),
    }
    out = eval_archiver({"archiver": [row]}, ctx)
    assert [f.status for f in out.findings] == [Status.CRIT]
    assert "00000001000000000000002A" in out.findings[0].text
    # succeeded again since; 2 new failures since the last run -> WARN once
    row2 = {**row, "last_archived_time": ctx.now - timedelta(minutes=1), "failed_count": 5.0}
    out2 = eval_archiver({"archiver": [row2]}, ictx(memory=dict(out.memory or {})))
    assert [(f.status, f.text) for f in out2.findings] == [
        (Status.WARN, "上次检查以来 WAL 归档失败 2 次，现已恢复")
    ]


def test_archiver_judges_log_backup_expectations() -> None:
    from datetime import timedelta

    from probes.db.settings import BackupExpectation

    exp = BackupExpectation.model_validate({"type": "log", "schedule": "every 15m", "grace": "5m"})
    ctx = ictx(backups=[exp])
    row = {"archive_mode": "on", "last_archived_time": ctx.now - timedelta(minutes=40), "failed_count": 0}
    out = eval_archiver({"archiver": [row]}, ctx)
    assert [f.status for f in out.findings] == [Status.CRIT]
    assert out.findings[0].category == "数据安全类" and out.findings[0].text.startswith(
        "WAL 的日志备份未按计划完成"
    )
    assert out.facts["backups_expected"][0]["met"] is False
    fresh = {**row, "last_archived_time": ctx.now - timedelta(minutes=3)}
    assert eval_archiver({"archiver": [fresh]}, ctx).findings == ()


def test_replication_rows_primary_and_standby() -> None:
    ctx = ictx(expect_replicas=2)
    replicas = [
        {"application_name": "standby1", "state": "streaming", "replay_lag_s": None, "lag_bytes": 0.0},
        {"application_name": "standby2", "state": "catchup", "replay_lag_s": 900.0, "lag_bytes": 5e8},
    ]
    out = eval_replication({"replicas": replicas, "standby": [{"in_recovery": False}]}, ctx)
    assert {m.name: m.value for m in out.metrics}["replica.standby1.lag_s"] == 0.0
    texts = [(f.status, f.obj) for f in out.findings]
    assert (Status.WARN, "standby2") in texts and (Status.CRIT, "replicas") in texts
    standby = {"in_recovery": True, "caught_up": False, "replay_age_s": 2000.0, "receiver_status": None}
    out2 = eval_replication({"replicas": [], "standby": [standby]}, ictx())
    assert [(f.status, f.obj) for f in out2.findings] == [
        (Status.CRIT, "wal_receiver"),
        (Status.CRIT, "standby"),
    ]


def test_autovacuum_flags_big_tables_with_garbage_not_static_ones() -> None:
    from datetime import timedelta

    ctx = ictx()
    old = ctx.now - timedelta(days=20)
    rows = [
        {
            "db": "his",
            "schemaname": "public",
            "relname": "orders",
            "live": 6e6,
            "dead": 4e6,
            "last_vacuum": old,
            "size_bytes": 5e9,
        },
        {
            "db": "his",
            "schemaname": "public",
            "relname": "drugs",
            "live": 1e6,
            "dead": 0,
            "last_vacuum": None,
            "size_bytes": 2e9,
        },
        {
            "db": "his",
            "schemaname": "public",
            "relname": "visits",
            "live": 8e6,
            "dead": 1.5e6,
            "last_vacuum": old,
            "size_bytes": 3e9,
        },
        {
            "db": "his",
            "schemaname": "public",
            "relname": "tiny",
            "live": 1,
            "dead": 99,
            "last_vacuum": None,
            "size_bytes": 8192,
        },
    ]
    out = eval_autovacuum({"tables": rows}, ctx)
    assert [(f.obj, f.status) for f in out.findings] == [
        ("his.public.orders", Status.WARN),
        ("his.public.visits", Status.WARN),
    ]
    assert "死元组占 40%" in out.findings[0].text and "20 天前" in out.findings[1].text
    assert len(out.facts["big_tables"]) == 3


def test_thresholds_defaults_are_configurable_per_item() -> None:
    s = Settings.model_validate(
        {"host": "h", "user": "u", "items": {"blocking": {"thresholds": {"wait_s": {"warn": 5}}}}}
    )
    assert s.items["blocking"].thresholds["wait_s"].over(Threshold(60, 300)) == Threshold(5, 300)
    with pytest.raises(ValueError, match="no server-side record of 'full'"):
        Settings.model_validate(
            {"host": "h", "user": "u", "backups": [{"type": "full", "schedule": "daily 04:00"}]}
        )


def test_tls_is_verified_by_default_and_never_silently_dropped() -> None:
    # The local server has no TLS: with the default the login fails and says why, rather
    # than falling back to plaintext (libpq's "prefer") without anyone deciding so.
    assert Settings(host="h", user="u").sslmode == "verify-full"
    settings = Settings(host="127.0.0.1", port=PORT, user="postgres")
    result = Probe(settings).run(ProbeContext("pg", 8.0))
    assert result.status is Status.CRIT
    assert "SSL" in result.summary or "ssl" in result.summary
