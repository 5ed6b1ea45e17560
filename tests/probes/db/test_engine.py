"""probes.db engine, items helpers and settings: engine logic on a tiny in-memory connection.

The real-server behaviour lives in test_db_postgres.py / test_db_mysql.py; here the item
table and the connection are fakes so each rule of the engine is pinned down exactly.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from probes.base import Metric, ProbeContext, Status
from probes.db.engine import DeadlineGuard, Engine, ErrorCodes, ErrorKind, run_db_probe, run_engine
from probes.db.items import (
    BackupSeen,
    Finding,
    Item,
    ItemContext,
    ItemOutcome,
    Rows,
    SpaceEntry,
    judge_backups,
    parse_size,
    space_outcome,
)
from probes.db.settings import BackupExpectation, DbSettings, ItemOverride
from probes.thresholds import Threshold
from tests.conftest import FakeClock


class Denied(Exception):
    pass


class NoSuchView(Exception):
    pass


def classify(exc: BaseException) -> ErrorKind:
    if isinstance(exc, Denied):
        return "permission"
    if isinstance(exc, NoSuchView):
        return "missing"
    return "other"


class FakeConn:
    """Answers by SQL text: a list of rows, an exception to raise, or a delay then rows."""

    def __init__(self, answers: Mapping[str, Any], version: tuple[int, ...] = (16, 2)) -> None:
        self.answers = answers
        self.version = version
        self.calls: list[tuple[str, float]] = []
        self.closed = False

    def query(self, sql: str, timeout_s: float) -> list[dict[str, Any]]:
        self.calls.append((sql, timeout_s))
        answer = self.answers[sql]
        if isinstance(answer, BaseException):
            raise answer
        if isinstance(answer, tuple):  # (delay, rows): a slow statement
            time.sleep(answer[0])
            return list(answer[1])
        return list(answer)

    def server_version(self) -> tuple[int, ...]:
        return self.version

    def server_now(self) -> datetime | None:
        return None

    def close(self) -> None:
        self.closed = True


def count_item(name: str, sql: str, **kw: Any) -> Item:
    """An item reporting `n` from its single row as metric `<name>.n`, WARN above threshold n."""

    def evaluate(rows: Mapping[str, Rows], ictx: ItemContext) -> ItemOutcome:
        n = float(rows["q"][0]["n"])
        findings = ()
        if ictx.judge("n", n) is not Status.OK:
            findings = (Finding(ictx.judge("n", n), f"{name} n={n:.0f}"),)
        seen = int(ictx.memory.get("runs", 0)) + 1
        return ItemOutcome((Metric(f"{name}.n", n),), findings, {"n": n}, {"runs": seen})

    return Item(name, f"{name} 标题", {"q": sql}, evaluate, f"GRANT SELECT ON {name}_view TO <user>", **kw)


def ctx(timeout: float = 5.0, memory: Mapping[str, Any] | None = None) -> ProbeContext:
    return ProbeContext("db", timeout, clock=FakeClock(), memory=memory or {}, tz=ZoneInfo("Asia/Shanghai"))


def far() -> float:
    return time.monotonic() + 30


# ------------------------------------------------------------------ item failures


def test_permission_failure_names_the_grant_and_other_items_still_run() -> None:
    conn = FakeConn({"a": [{"n": 1}], "b": Denied("permission denied for view b_view"), "c": [{"n": 3}]})
    items = [count_item("a", "a"), count_item("b", "b"), count_item("c", "c")]
    report = run_engine(conn, items, ctx(), {}, classify, far())
    assert [m.name for m in report.metrics] == ["a.n", "c.n"]
    assert len(report.findings) == 1
    f = report.findings[0]
    assert f.status is Status.WARN and f.item == "b" and f.obj == "b"
    assert "GRANT SELECT ON b_view TO <user>" in f.text and "permission denied for view b_view" in f.text
    assert set(report.facts) == {"a", "c"}
    assert report.memory == {"a": {"runs": 1}, "c": {"runs": 1}}


def test_error_codes_classify_by_the_drivers_code_timeout_first() -> None:
    codes = ErrorCodes(
        lambda e: e.args[0] if e.args and isinstance(e.args[0], int) else None,
        permission=frozenset({1}),
        missing=frozenset({2}),
        timeout=frozenset({3}),
        timeout_words="timed out",
    )
    assert codes(Exception(1, "denied")) == "permission"
    assert codes(Exception(2, "no such view")) == "missing"
    assert codes(Exception(3, "cancelled")) == "timeout"
    assert codes(Exception(1, "Read from the server timed out")) == "timeout"
    assert codes(TimeoutError("budget")) == "timeout"
    assert codes(Exception(9, "syntax")) == "other"
    assert codes(Exception("no code at all")) == "other"


def test_missing_view_is_a_finding_unless_the_item_is_optional() -> None:
    conn = FakeConn({"r": NoSuchView('relation "cron.job" does not exist'), "a": [{"n": 0}]})
    items = [count_item("req", "r"), count_item("opt", "r", optional=True), count_item("a", "a")]
    report = run_engine(conn, items, ctx(), {}, classify, far())
    assert [f.item for f in report.findings] == ["req"]
    assert "视图或功能不存在" in report.findings[0].text and "cron.job" in report.findings[0].text
    assert report.skipped == [{"item": "opt", "reason": 'feature absent: relation "cron.job" does not exist'}]
    assert report.ran == ["a"]


def test_a_crashing_evaluation_is_unknown_for_that_item_only() -> None:
    def boom(rows: Mapping[str, Rows], ictx: ItemContext) -> ItemOutcome:
        raise KeyError("n")

    conn = FakeConn({"x": [{}], "a": [{"n": 2}]})
    items = [Item("bad", "坏项", {"q": "x"}, boom, "-"), count_item("a", "a")]
    report = run_engine(conn, items, ctx(), {}, classify, far())
    assert report.ran == ["a"] and [m.name for m in report.metrics] == ["a.n"]
    assert [(f.item, f.status) for f in report.findings] == [("bad", Status.UNKNOWN)]
    assert "KeyError" in report.findings[0].text


# ------------------------------------------------------------------ configuration


def test_override_disables_an_item_and_changes_thresholds_field_by_field() -> None:
    conn = FakeConn({"a": [{"n": 5}], "b": [{"n": 5}]})
    items = [
        count_item("a", "a", thresholds={"n": Threshold(warn=10, crit=20)}),
        count_item("b", "b", thresholds={"n": Threshold(warn=10, crit=20)}),
    ]
    plain = run_engine(conn, items, ctx(), {}, classify, far())
    assert plain.findings == [] and plain.ran == ["a", "b"]

    overrides = {
        "a": ItemOverride.model_validate({"enabled": False}),
        "b": ItemOverride.model_validate({"thresholds": {"n": {"crit": 4}}}),
    }
    report = run_engine(conn, items, ctx(), overrides, classify, far())
    assert report.skipped == [{"item": "a", "reason": "disabled"}]
    assert [c[0] for c in conn.calls[-1:]] == ["b"]
    # crit overridden to 4, warn kept at 10: 5 is CRIT
    assert [(f.item, f.status) for f in report.findings] == [("b", Status.CRIT)]


def test_options_layer_item_options_over_check_wide_ones() -> None:
    seen: dict[str, Any] = {}

    def capture(rows: Mapping[str, Rows], ictx: ItemContext) -> ItemOutcome:
        seen.update(ictx.options)
        return ItemOutcome()

    items = [Item("x", "x", {"q": "x"}, capture, "-")]
    overrides = {"x": ItemOverride.model_validate({"options": {"limit": 3, "databases": ["only"]}})}
    run_engine(FakeConn({"x": []}), items, ctx(), overrides, classify, far(),
               base_options={"databases": ["a", "b"], "server_role": "primary"})  # fmt: skip
    assert seen == {"databases": ["only"], "server_role": "primary", "limit": 3}


def test_min_version_skips_with_a_note() -> None:
    conn = FakeConn({"a": [{"n": 1}]}, version=(9, 6, 24))
    items = [count_item("new", "a", min_version=(10,)), count_item("a", "a", min_version=(9, 6))]
    report = run_engine(conn, items, ctx(), {}, classify, far())
    assert report.skipped == [{"item": "new", "reason": "needs version 10"}]
    assert report.ran == ["a"]


def test_memory_is_handed_in_per_item_and_kept_for_items_that_did_not_run() -> None:
    conn = FakeConn({"a": [{"n": 1}], "b": Denied("no")})
    items = [count_item("a", "a"), count_item("b", "b"), count_item("c", "a")]
    old = {"a": {"runs": 4}, "b": {"runs": 9}, "c": {"runs": 1}}
    overrides = {"c": ItemOverride(enabled=False)}
    report = run_engine(conn, items, ctx(memory=old), overrides, classify, far())
    assert report.memory == {"a": {"runs": 5}, "b": {"runs": 9}, "c": {"runs": 1}}


# ------------------------------------------------------------------ time budget


def test_each_statement_gets_the_smaller_of_query_timeout_and_time_left() -> None:
    conn = FakeConn({"a": [{"n": 1}]})
    items = [count_item("a", "a")]
    run_engine(conn, items, ctx(), {}, classify, time.monotonic() + 30, query_timeout=2.0)
    assert conn.calls[-1][1] == 2.0
    run_engine(conn, items, ctx(), {}, classify, time.monotonic() + 1.0, query_timeout=2.0)
    assert 0.5 < conn.calls[-1][1] <= 1.0


def test_items_past_the_deadline_are_skipped_not_started() -> None:
    conn = FakeConn({"slow": (0.3, [{"n": 1}]), "a": [{"n": 2}]})
    items = [count_item("slow", "slow"), count_item("a", "a"), count_item("b", "a")]
    t0 = time.monotonic()
    report = run_engine(conn, items, ctx(), {}, classify, t0 + 0.2)
    assert time.monotonic() - t0 < 0.6
    assert report.ran == ["slow"]
    assert [s["item"] for s in report.skipped] == ["a", "b"]
    assert {s["reason"] for s in report.skipped} == {"time budget exhausted"}
    assert [c[0] for c in conn.calls] == ["slow"]


def test_a_statement_timeout_is_a_finding_for_its_item() -> None:
    conn = FakeConn({"t": TimeoutError("canceling statement due to statement timeout"), "a": [{"n": 1}]})
    report = run_engine(conn, [count_item("t", "t"), count_item("a", "a")], ctx(), {}, classify, far())
    assert [f.item for f in report.findings] == ["t"] and "查询超时" in report.findings[0].text
    assert report.ran == ["a"]


def test_deadline_guard_cuts_a_blocked_read() -> None:
    import socket

    a, b = socket.socketpair()
    with a, b:
        guard = DeadlineGuard(a.fileno(), 0.2)
        t0 = time.monotonic()
        data = a.recv(10)  # the peer never writes: only the guard ends this
        assert data == b"" and guard.fired
        assert 0.15 < time.monotonic() - t0 < 2
        guard.cancel()


def test_deadline_guard_cancelled_in_time_leaves_the_socket_alone() -> None:
    import socket

    a, b = socket.socketpair()
    with a, b:
        fds = len(os.listdir("/proc/self/fd"))
        guard = DeadlineGuard(a.fileno(), 5)
        guard.cancel()
        assert not guard.fired and len(os.listdir("/proc/self/fd")) == fds
        b.sendall(b"x")
        assert a.recv(1) == b"x"


# ------------------------------------------------------------------ whole probe


class FakeSettings(DbSettings):
    ITEMS: ClassVar = (count_item("a", "a", thresholds={"n": Threshold(warn=1)}),)
    ENGINE: ClassVar = "FakeDB"


def fake_engine(conn: FakeConn | Exception) -> Engine:
    def connect(settings: DbSettings, secret: str | None, login_s: float, deadline: float) -> FakeConn:
        if isinstance(conn, Exception):
            raise conn
        return conn

    return Engine("FakeDB", 1, connect, lambda c: FakeSettings.ITEMS, classify,
                  lambda exc: f"拒绝：{exc}")  # fmt: skip


def test_probe_status_is_the_worst_finding_and_the_summary_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    conn = FakeConn({"a": [{"n": 3}]})
    settings = FakeSettings(host="db1", user="mon")
    result = run_db_probe(fake_engine(conn), settings, ctx())
    assert result.status is Status.WARN
    assert result.summary.startswith("警告：a n=3 | FakeDB 16.2，登录 ")
    assert result.metric("login_ms") is not None and result.metric("a.n").value == 3  # type: ignore[union-attr]
    assert result.details["findings"][0]["item"] == "a"
    assert result.memory == {"a": {"runs": 1}}
    assert conn.closed


def test_login_failure_is_crit_and_never_shows_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_DB_PW", "s3cr3t-Pw")
    settings = FakeSettings(host="db1", port=1521, user="mon", password="${FAKE_DB_PW}")
    result = run_db_probe(fake_engine(PermissionError("bad password s3cr3t-Pw for mon")), settings, ctx())
    assert result.status is Status.CRIT
    assert result.summary == "无法登录 FakeDB db1:1521：拒绝：bad password *** for mon"
    assert "s3cr3t" not in repr(result)


def test_unresolvable_password_reference_is_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FAKE_DB_PW", raising=False)
    settings = FakeSettings(host="db1", user="mon", password="${FAKE_DB_PW}")
    result = run_db_probe(fake_engine(FakeConn({})), settings, ctx())
    assert result.status is Status.UNKNOWN and "FAKE_DB_PW" in result.summary


# ------------------------------------------------------------------ settings


def test_settings_reject_unknown_items_threshold_keys_and_unjudgeable_backups() -> None:
    with pytest.raises(ValidationError, match="unknown item 'aa'"):
        FakeSettings(host="h", user="u", items={"aa": {}})
    with pytest.raises(ValidationError, match="unknown key 'm'; known: n"):
        FakeSettings(host="h", user="u", items={"a": {"thresholds": {"m": {"warn": 1}}}})
    with pytest.raises(ValidationError, match="FakeDB keeps no server-side record of 'full'"):
        FakeSettings(host="h", user="u", backups=[{"type": "full", "schedule": "daily 04:00"}])
    with pytest.raises(ValidationError, match="secrets may not be written inline"):
        FakeSettings(host="h", user="u", password="plain")


def test_parse_size() -> None:
    assert parse_size("50G") == 50 * 1024**3
    assert parse_size("512 MB") == 512 * 1024**2
    assert parse_size("2TiB") == 2 * 1024**4
    assert parse_size(1000) == 1000.0
    for bad in ("-1", "5 X", True, 0):
        with pytest.raises(ValueError):
            parse_size(bad)


def test_item_threshold_overrides_replace_only_the_fields_written() -> None:
    settings = FakeSettings.model_validate(
        {"host": "h", "user": "u", "items": {"a": {"thresholds": {"n": {"crit": None}}}}}
    )
    spec = settings.items["a"].thresholds["n"]
    assert spec.over(Threshold(warn=1, crit=5)) == Threshold(warn=1, crit=None)
    assert spec.over(None) == Threshold()
    exp = BackupExpectation.model_validate({"database": "his", "type": "log", "schedule": "every 15m"})
    star = exp.model_copy(update={"database": "*"})
    assert (star.database, star.type, star.schedule, star.grace) == ("*", "log", exp.schedule, 3600.0)
    assert exp.database == "his"


# ------------------------------------------------------------------ shared evaluations


def ictx(thresholds: Mapping[str, Threshold], history: Any = None, now: datetime | None = None,
         server_now: datetime | None = None) -> ItemContext:  # fmt: skip
    return ItemContext(now or datetime(2026, 3, 10, 2, 0, tzinfo=UTC), ZoneInfo("Asia/Shanghai"), (16,),
                       thresholds, {}, history or {}, {}, server_now)  # fmt: skip


def test_space_outcome_used_pct_growth_and_days_to_full() -> None:
    now = datetime(2026, 3, 10, 2, 0, tzinfo=UTC)
    t = now.timestamp()
    gib = 1024**3
    # 1 GiB per day for two days, now at 9 GiB of a 10 GiB limit -> 1 day left
    history = {"database.his.size_bytes": [(t - 2 * 86400, 7 * gib), (t - 86400, 8 * gib)]}
    rules = {"used_pct": Threshold(warn=85, crit=95), "days_to_full": Threshold(warn=30, crit=7, below=True)}
    out = space_outcome(
        [SpaceEntry("database", "his", 9 * gib, 10 * gib, "数据库")], ictx(rules, history, now)
    )
    values = {m.name: m.value for m in out.metrics}
    assert values["database.his.used_pct"] == 90.0
    assert values["database.his.growth_bytes_per_day"] == pytest.approx(gib, rel=1e-6)
    assert values["database.his.days_to_full"] == 1.0
    texts = {f.text: f.status for f in out.findings}
    assert texts == {
        "数据库 his 已用 90.0%（9.0 GB / 10.0 GB）（阈值 ≥85%）": Status.WARN,
        "数据库 his 预计 1 天后写满（阈值 ≤7 天）": Status.CRIT,
    }
    assert out.facts["space"][0]["days_to_full"] == 1.0


def test_space_without_limit_reports_size_and_judges_only_size() -> None:
    out = space_outcome([SpaceEntry("database", "x", 5000)], ictx({"size_bytes": Threshold(warn=4000)}))
    assert [m.name for m in out.metrics] == ["database.x.size_bytes"]
    assert [f.status for f in out.findings] == [Status.WARN]


def test_judge_backups_uses_the_server_clock_and_expands_star() -> None:
    from probes.schedule import Expectation

    tz = ZoneInfo("Asia/Shanghai")
    # Agent clock 03:30 local: tonight's 02:00 slot (+1 h grace) is over. The server's clock
    # says 02:30, so by the server's own time tonight's slot is still running.
    agent_now = datetime(2026, 3, 10, 3, 30, tzinfo=tz).astimezone(UTC)
    server_now = agent_now - timedelta(hours=1)
    exp = BackupExpectation(database="*", type="full", schedule=Expectation.parse("daily 02:00"), grace=3600)
    last_night = datetime(2026, 3, 9, 1, 30, tzinfo=tz)
    seen = [BackupSeen("emr", "full", last_night - timedelta(days=1)), BackupSeen("emr", "full", last_night),
            BackupSeen("emr", "log", None)]  # fmt: skip
    out = judge_backups([exp], seen, ["his", "emr"], ictx({}, now=agent_now, server_now=server_now))
    assert {b["database"]: b["met"] for b in out.facts["backups_expected"]} == {"his": False, "emr": True}
    assert [(f.obj, f.status, f.category) for f in out.findings] == [("his", Status.CRIT, "数据安全类")]
    assert out.findings[0].text == "his 的全量备份未按计划完成（每天 02:00 前，从未有记录）"

    by_agent = judge_backups([exp], seen, ["emr"], ictx({}, now=agent_now))
    assert by_agent.facts["backups_expected"][0]["met"] is False
    assert (
        by_agent.findings[0].text == "emr 的全量备份未按计划完成（每天 02:00 前，最近一次 2026-03-09 01:30）"
    )
