"""Evidence chain on a real store built through the normal write paths: tampering with any one
row (edit, delete, insert, reorder) makes verify fail and name that row; every write
transaction seals what it wrote, and any row without a link is named; pruning keeps it
verifiable; an HMAC-keyed chain cannot be rebuilt without the key."""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from agent.config.schema import Storage
from agent.config.windows import WindowSpec
from agent.faults import records as F
from agent.state.machine import CheckState
from agent.store import evidence as E
from agent.store.db import Store
from agent.store.verify_standalone import canonical, genesis, key_id, link
from agent.windows import exclusions as X
from agent.windows import ledger as maintdb
from probes.base import CheckResult, Metric, Status
from tests.conftest import FakeClock

T0 = 1_795_000_000.0  # 2026-11-18, epoch seconds
TZ = ZoneInfo("Asia/Shanghai")
CHECKS = {
    "web": F.CheckInfo("web", "HIS", "本院区", 3, "核心系统类", True),
    "db": F.CheckInfo("db", "HIS", "本院区", 2, "数据安全类", True),
}
KEY = b"committee-and-vendor-shared-secret"


class Rig:
    """A store filled the way the daemon fills it: runs, batches, faults, maintenance, exclusions."""

    def __init__(self, path: Path, key: bytes | None = None) -> None:
        self.clock = FakeClock(T0)
        self.store = Store(path, evidence_key=key)
        self.store.sync_checks([(n, "http", c.system) for n, c in CHECKS.items()], 0)
        self.states: dict[str, CheckState] = {}
        self.mgr = F.FaultManager(
            self.store,
            F.Policy(F.default_levels()),
            CHECKS,
            lambda start, s, wt: (start + int(s * 1000), None),
            None,
            lambda ts, system, check: None,
            TZ,
            self.clock,
        )

    def now(self) -> int:
        return int(self.clock() * 1000)

    def feed(self, run: int, statuses: Mapping[str, Status]) -> None:
        batch = []
        ts = self.now()
        for name, status in statuses.items():
            st = self.states.setdefault(name, CheckState())
            result = CheckResult(
                status,
                f"{name} {status.name}，响应 0.01 s",
                (Metric("time", 0.01, "s"),),
                started_at=datetime.fromtimestamp(ts / 1000, UTC),
            )
            batch.append((name, result, st.observe(ts, status, result.summary, 2), st))
        self.store.write_batch(run, batch)
        for name, result, changes, _ in batch:
            self.mgr.observe(name, result, changes)
        self.clock.advance(60)


def build(path: Path, key: bytes | None = None) -> Rig:
    rig = Rig(path, key)
    run = rig.store.begin_run(rig.now(), 101, "his-mon", "t")
    for _ in range(10):
        rig.feed(run, {"web": Status.OK, "db": Status.OK})
    for _ in range(5):
        rig.feed(run, {"web": Status.CRIT, "db": Status.OK})
    for _ in range(5):
        rig.feed(run, {"web": Status.OK, "db": Status.OK})
    spec = WindowSpec(
        name="月度补丁",
        systems=["HIS"],
        reason="操作系统补丁",
        start=datetime(2026, 11, 20, 2, 0, tzinfo=TZ),
        end=datetime(2026, 11, 20, 4, 0, tzinfo=TZ),
    )
    maintdb.add_window(rig.store, spec, "甲方", "信息科 王工", "wang", rig.now())
    maintdb.approve_window(rig.store, "月度补丁", "乙方", "厂商 张经理", "zhang", rig.now())
    fm = X.NewRecord(
        name="市电中断",
        start=datetime(2026, 11, 18, 10, 0),
        end=datetime(2026, 11, 18, 11, 0),
        reason="供电局计划外停电",
    )
    X.add(rig.store, fm, TZ, "甲方", "院方 李主任", "li", rig.now())
    X.approve(rig.store, "市电中断", "乙方", "厂商 张经理", "zhang", rig.now())
    rig.store.record_config(rig.now(), run, '{"site":{"name":"测试医院"}}', "0" * 64)
    # A crash: the next start closes this run as unclean.
    run2 = rig.store.begin_run(rig.now() + 300_000, 102, "his-mon", "t")
    rig.clock.advance(300)
    for _ in range(5):
        rig.feed(run2, {"web": Status.OK, "db": Status.CRIT})
    rig.store.end_run(run2, rig.now())
    return rig


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    return build(tmp_path / "s.db")


def verify(store: Store, key: bytes | None = None) -> E.VerifyReport:
    return E.verify(store.db, key)


def only_problem(rep: E.VerifyReport) -> E.Problem:
    assert not rep.ok, "verify should have failed"
    assert len(rep.problems) >= 1
    return rep.problems[0]


def raw(store: Store, sql: str, args: tuple[Any, ...] = ()) -> None:
    """Tamper the way someone with the database file would: plain SQL, triggers dropped."""
    store.db.execute(sql, args)


def test_untouched_store_verifies_every_table(rig: Rig) -> None:
    rep = verify(rig.store)
    assert rep.ok, [p.text() for p in rep.problems]
    counts = {t.table: t.sealed for t in rep.tables}
    assert counts["results"] == 2 * 25
    assert counts["run_log"] == 4  # start, closed (unclean), start, stop
    assert counts["maintenance_log"] == 1 and counts["exclusions_log"] == 1
    assert counts["approvals"] == 4  # both parties, for the window and the exclusion
    assert counts["config_versions"] == 1
    assert counts["fault_events"] >= 2  # opened and recovered at least
    # web CRIT, back to OK, db CRIT: opens and closes, every close logged
    assert counts["interval_log"] >= 8
    assert all(t.unsealed == 0 for t in rep.tables)
    head = E.head(rig.store.db)
    assert head is not None and head.rows == sum(counts.values())
    assert rep.head == head


@pytest.mark.parametrize(
    ("table", "column", "value"),
    [
        ("results", "status", 0),
        ("results", "summary", "web OK，响应 0.01 s"),
        ("fault_events", "actor", "someone else"),
        ("maintenance_log", "approved", None),
        ("exclusions_log", "actor", "李主任"),
        ("run_log", "ts", 0),
        ("interval_log", "state", 0),
        ("approvals", "approver", "乙方 另一人"),
        ("config_versions", "config", '{"site":{"name":"另一家医院"}}'),
    ],
)
def test_editing_one_row_is_named(rig: Rig, table: str, column: str, value: Any) -> None:
    db = rig.store.db
    if table == "maintenance_log":
        column, value = "spec", json.dumps({"name": "月度补丁", "reason": "临时"})
    db.execute(f"DROP TRIGGER IF EXISTS {table}_no_update")
    # A row in the middle where the table has several (the first CRIT result for results).
    n = db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    rid = db.execute(f"SELECT id FROM {table} ORDER BY id LIMIT 1 OFFSET ?", (min(2, n - 1),)).fetchone()[0]
    if table == "results":
        rid = db.execute("SELECT min(id) FROM results WHERE status=2").fetchone()[0]
    raw(rig.store, f"UPDATE {table} SET {column}=? WHERE id=?", (value, rid))
    p = only_problem(verify(rig.store))
    assert (p.table, p.row_id, p.kind) == (table, rid, "edited"), p.text()


def test_deleting_one_row_is_named(rig: Rig) -> None:
    rid = rig.store.db.execute("SELECT min(id) FROM results WHERE status=2").fetchone()[0]
    raw(rig.store, "DELETE FROM results WHERE id=?", (rid,))
    p = only_problem(verify(rig.store))
    assert (p.table, p.row_id, p.kind) == ("results", rid, "deleted"), p.text()


def test_deleting_a_row_and_its_link_is_named(rig: Rig) -> None:
    db = rig.store.db
    db.execute("DROP TRIGGER fault_events_no_delete")
    rid = db.execute("SELECT min(id) FROM fault_events").fetchone()[0] + 1
    raw(rig.store, "DELETE FROM fault_events WHERE id=?", (rid,))
    raw(rig.store, "DELETE FROM evidence WHERE tbl=4 AND id=?", (rid,))
    p = only_problem(verify(rig.store))
    assert (p.table, p.row_id, p.kind) == ("fault_events", rid, "deleted"), p.text()


def test_deleting_the_last_sealed_row_is_named(rig: Rig) -> None:
    last = rig.store.db.execute("SELECT max(id) FROM results").fetchone()[0]
    raw(rig.store, "DELETE FROM results WHERE id=?", (last,))
    p = only_problem(verify(rig.store))
    assert (p.table, p.row_id, p.kind) == ("results", last, "deleted"), p.text()


def test_inserting_a_result_back_in_time_is_named(rig: Rig) -> None:
    """A fabricated result appended now but dated inside the history: not linked, yet the
    chain was sealed after its time."""
    cid = rig.store.check_id("web")
    cur = rig.store.db.execute(
        "INSERT INTO results(check_id, ts, status, duration_ms, summary, run_id) VALUES(?,?,?,?,?,?)",
        (cid, int(T0 * 1000) + 5 * 60_000, 0, 10, "web OK", 1),
    )
    p = only_problem(verify(rig.store))
    assert (p.table, p.row_id, p.kind) == ("results", cur.lastrowid, "inserted"), p.text()


def test_inserting_a_row_with_a_forged_link_is_named(rig: Rig) -> None:
    db = rig.store.db
    cid = rig.store.check_id("web")
    cur = db.execute(
        "INSERT INTO results(check_id, ts, status, duration_ms, summary, run_id) VALUES(?,?,?,?,?,?)",
        (cid, rig.now(), 0, 10, "web OK", 2),
    )
    db.execute("INSERT INTO evidence(tbl, id, h) VALUES(1, ?, ?)", (cur.lastrowid, b"\0" * 32))
    p = only_problem(verify(rig.store))
    assert (p.table, p.row_id, p.kind) == ("results", cur.lastrowid, "edited"), p.text()


def test_inserting_an_interval_outside_the_agent_is_named(rig: Rig) -> None:
    """Availability reads `intervals`: a fake OK interval must not go unnoticed."""
    cid = rig.store.check_id("web")
    cur = rig.store.db.execute(
        "INSERT INTO intervals(check_id, state, start_ts, end_ts, summary, run_id) VALUES(?,?,?,?,?,?)",
        (cid, 0, int(T0 * 1000), int(T0 * 1000) + 1, "OK", 1),
    )
    p = only_problem(verify(rig.store))
    assert (p.table, p.row_id, p.kind) == ("intervals", cur.lastrowid, "inserted"), p.text()


def test_shortening_an_outage_in_intervals_is_named(rig: Rig) -> None:
    row = rig.store.db.execute(
        "SELECT id, start_ts FROM intervals WHERE state=2 ORDER BY id LIMIT 1"
    ).fetchone()
    raw(rig.store, "UPDATE intervals SET end_ts=? WHERE id=?", (row[1] + 1000, row[0]))
    p = only_problem(verify(rig.store))
    assert (p.table, p.row_id, p.kind) == ("intervals", row[0], "edited"), p.text()


def test_editing_an_agent_run_is_named(rig: Rig) -> None:
    raw(rig.store, "UPDATE agent_runs SET stopped_ts = stopped_ts + 3600000 WHERE id=1")
    p = only_problem(verify(rig.store))
    assert (p.table, p.row_id, p.kind) == ("agent_runs", 1, "edited"), p.text()


def test_swapping_two_rows_is_reported_as_reordered(rig: Rig) -> None:
    db = rig.store.db
    a, b = (r[0] for r in db.execute("SELECT id FROM results WHERE status=2 ORDER BY id LIMIT 2"))
    cols = "check_id, ts, status, duration_ms, summary, metrics, details, run_id"
    ra = db.execute(f"SELECT {cols} FROM results WHERE id=?", (a,)).fetchone()
    rb = db.execute(f"SELECT {cols} FROM results WHERE id=?", (b,)).fetchone()
    sets = ", ".join(f"{c.strip()}=?" for c in cols.split(","))
    raw(rig.store, f"UPDATE results SET {sets} WHERE id=?", (*rb, a))
    raw(rig.store, f"UPDATE results SET {sets} WHERE id=?", (*ra, b))
    p = only_problem(verify(rig.store))
    assert (p.table, p.row_id, p.kind) == ("results", a, "reordered"), p.text()
    assert str(b) in p.detail


def test_swapping_two_ids_is_reported_as_reordered(rig: Rig) -> None:
    db = rig.store.db
    db.execute("DROP TRIGGER fault_events_no_update")
    lo = db.execute("SELECT min(id) FROM fault_events").fetchone()[0]
    raw(rig.store, "UPDATE fault_events SET id=-1 WHERE id=?", (lo,))
    raw(rig.store, "UPDATE fault_events SET id=? WHERE id=?", (lo, lo + 1))
    raw(rig.store, "UPDATE fault_events SET id=? WHERE id=-1", (lo + 1,))
    p = only_problem(verify(rig.store))
    assert (p.table, p.row_id, p.kind) == ("fault_events", lo, "reordered"), p.text()


def test_pruning_writes_checkpoints_and_still_verifies(rig: Rig) -> None:
    store = rig.store
    total = store.db.execute("SELECT count(*) FROM results").fetchone()[0]
    cut = int(T0 * 1000) + 12 * 60_000
    assert store.prune_results(cut, limit=7, now_ms=rig.now()) == 7
    assert store.prune_results(cut, limit=100, now_ms=rig.now()) == 24 - 7
    assert store.prune_results(cut, now_ms=rig.now()) == 0
    cps = store.db.execute(
        "SELECT tbl, first_id, last_id, n FROM evidence_checkpoints ORDER BY id"
    ).fetchall()
    assert cps == [("results", 1, 7, 7), ("results", 8, 24, 17)]
    assert store.db.execute("SELECT count(*) FROM results").fetchone()[0] == total - 24
    assert store.db.execute("SELECT count(*) FROM evidence WHERE tbl=1").fetchone()[0] == total - 24
    rep = verify(store)
    assert rep.ok, [p.text() for p in rep.problems]
    res = next(t for t in rep.tables if t.table == "results")
    assert (res.pruned, res.checkpoints, res.sealed) == (24, 2, total - 24)
    head = E.head(store.db)
    assert head is not None and head.rows == rep.head.rows if rep.head else False


def test_pruning_never_takes_the_newest_row(tmp_path: Path) -> None:
    rig = Rig(tmp_path / "s.db")
    run = rig.store.begin_run(rig.now(), 1, "h", "t")
    for _ in range(3):
        rig.feed(run, {"web": Status.OK})
    assert rig.store.prune_results(10**15, now_ms=rig.now()) == 2
    rig.feed(run, {"web": Status.OK})  # gets a fresh id, not a reused one
    assert verify(rig.store).ok


def test_deleting_inside_the_retained_part_after_pruning_is_named(rig: Rig) -> None:
    store = rig.store
    store.prune_results(int(T0 * 1000) + 12 * 60_000, now_ms=rig.now())
    rid = store.db.execute("SELECT min(id) FROM results").fetchone()[0] + 2
    raw(store, "DELETE FROM results WHERE id=?", (rid,))
    p = only_problem(verify(store))
    assert (p.table, p.row_id, p.kind) == ("results", rid, "deleted"), p.text()


def test_deleting_beyond_a_checkpoint_and_widening_it_is_detected(rig: Rig) -> None:
    """Hide a deletion by rewriting the checkpoint to cover it: the checkpoint chain breaks."""
    store = rig.store
    store.prune_results(int(T0 * 1000) + 12 * 60_000, now_ms=rig.now())
    cp = store.db.execute("SELECT id, last_id FROM evidence_checkpoints").fetchone()
    extra = cp[1] + 3
    h = store.db.execute("SELECT h FROM evidence WHERE tbl=1 AND id=?", (extra,)).fetchone()[0]
    raw(store, "DROP TRIGGER evidence_checkpoints_no_update")
    raw(store, "DELETE FROM results WHERE id<=?", (extra,))
    raw(
        store,
        "UPDATE evidence_checkpoints SET last_id=?, n=n+3, h=? WHERE id=?",
        (extra, bytes(h).hex(), cp[0]),
    )
    p = only_problem(verify(store))
    assert (p.table, p.row_id, p.kind) == ("evidence_checkpoints", cp[0], "edited"), p.text()


def test_restoring_a_row_inside_a_pruned_range_is_named(rig: Rig) -> None:
    store = rig.store
    store.prune_results(int(T0 * 1000) + 12 * 60_000, now_ms=rig.now())
    cid = store.check_id("web")
    raw(
        store,
        "INSERT INTO results(id, check_id, ts, status, duration_ms, summary) VALUES(5, ?, ?, 0, 1, 'x')",
        (cid, int(T0 * 1000)),
    )
    p = only_problem(verify(store))
    assert (p.table, p.row_id, p.kind) == ("results", 5, "inserted"), p.text()


def test_period_verify_checks_only_that_period(rig: Rig) -> None:
    rid = rig.store.db.execute("SELECT min(id) FROM results").fetchone()[0]
    raw(rig.store, "UPDATE results SET summary='x' WHERE id=?", (rid,))
    later = int(T0 * 1000) + 15 * 60_000
    rep = E.verify(rig.store.db, None, later, later + 3600_000)
    assert [p for p in rep.problems if p.table == "results"] == []
    p = only_problem(E.verify(rig.store.db, None, int(T0 * 1000), later))
    assert (p.table, p.row_id) == ("results", rid)


def recompute_without_key(store: Store, table: E.ChainTable) -> None:
    """What an attacker without the key can do: rebuild the links with plain SHA-256."""
    db = store.db
    prev = genesis(table.name)
    for row in db.execute(E._select(table, "ORDER BY t.id")).fetchall():
        prev = link(prev, canonical(row), None)
        db.execute("UPDATE evidence SET h=? WHERE tbl=? AND id=?", (prev, table.code, row[0]))
    db.execute("UPDATE evidence_heads SET h=? WHERE tbl=?", (prev, table.code))


def test_keyed_chain_verifies_only_with_its_key(tmp_path: Path) -> None:
    rig = build(tmp_path / "k.db", KEY)
    assert E.verify(rig.store.db, KEY).ok
    assert only_problem(E.verify(rig.store.db, None)).kind == "key"
    assert only_problem(E.verify(rig.store.db, b"another key")).kind == "key"


def test_keyed_chain_rebuilt_without_the_key_fails(tmp_path: Path) -> None:
    rig = build(tmp_path / "k.db", KEY)
    rid = rig.store.db.execute("SELECT min(id) FROM results WHERE status=2").fetchone()[0]
    raw(rig.store, "UPDATE results SET status=0 WHERE id=?", (rid,))
    recompute_without_key(rig.store, E.BY_NAME["results"])
    p = only_problem(E.verify(rig.store.db, KEY))
    assert (p.table, p.row_id, p.kind) == ("results", 1, "edited"), p.text()
    # Whereas the same rebuild on an unkeyed store is (by design) only caught by the head.
    plain = build(tmp_path / "p.db")
    before = E.head(plain.store.db)
    raw(plain.store, "UPDATE results SET status=0 WHERE id=?", (rid,))
    recompute_without_key(plain.store, E.BY_NAME["results"])
    assert E.verify(plain.store.db, None).ok
    assert E.head(plain.store.db) != before


def test_a_writer_with_another_key_does_not_seal_and_verify_names_its_rows(tmp_path: Path) -> None:
    rig = build(tmp_path / "k.db", KEY)
    other = Store(tmp_path / "k.db", evidence_key=None)
    run = other.begin_run(rig.now(), 9, "h", "t")  # its rows are stored, not sealed
    assert run > 0
    sql = "SELECT id FROM run_log WHERE run_id=? AND event='start'"
    rid = rig.store.db.execute(sql, (run,)).fetchone()[0]
    rep = E.verify(rig.store.db, KEY)
    p = only_problem(rep)
    assert (p.table, p.row_id, p.kind) == ("run_log", rid, "inserted"), p.text()
    assert next(t for t in rep.tables if t.table == "run_log").unsealed == 1


def test_sealing_is_part_of_the_batch(rig: Rig) -> None:
    """No window in which a committed result has no link."""
    unsealed = rig.store.db.execute(
        "SELECT count(*) FROM results r LEFT JOIN evidence e ON e.tbl=1 AND e.id=r.id WHERE e.id IS NULL"
    ).fetchone()[0]
    assert unsealed == 0


def test_migration_from_schema_3_backfills_the_logs(tmp_path: Path) -> None:
    import sqlite3

    from agent.store import db as S

    path = tmp_path / "old.db"
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    for v in (1, 2, 3):
        for stmt in S._statements(S._MIGRATIONS[v]):
            db.execute(stmt)
    db.execute("INSERT INTO meta VALUES('schema_version', '3')")
    db.execute("INSERT INTO checks(name, kind, system, first_seen) VALUES('web', 'http', 'HIS', 0)")
    db.execute(
        "INSERT INTO agent_runs(started_ts, heartbeat_ts, stopped_ts, clean, pid, host, version) "
        "VALUES(1,5,5,1,1,'h','t')"
    )
    db.execute(
        "INSERT INTO intervals(check_id, state, start_ts, end_ts, summary, run_id) "
        "VALUES(1, 0, 1, 5, 'OK', 1)"
    )
    db.execute(
        "INSERT INTO results(check_id, ts, status, duration_ms, summary, run_id) VALUES(1, 1, 0, 1, 'OK', 1)"
    )
    db.close()
    store = Store(path)
    assert store.schema_version() == S.SCHEMA_VERSION
    # The migration is a write transaction: it seals the backfilled logs and the old rows.
    rep = E.verify(store.db, None)
    assert rep.ok, [p.text() for p in rep.problems]
    assert {t.table: t.sealed for t in rep.tables}["results"] == 1
    store.begin_run(10, 2, "h", "t")
    assert E.verify(store.db, None).ok


def test_an_exclusion_slipped_into_the_table_is_named(rig: Rig) -> None:
    # Availability reads the exclusions table: a row added there without its chained log
    # entry would excuse downtime unseen.
    raw(
        rig.store,
        "INSERT INTO exclusions(name, kind, start_ts, end_ts, systems, reason, approved_by, source, "
        "created_ts, created_by) VALUES('全天停电','force_majeure',?,?,'[]','x','y','cli',?,'z')",
        (rig.now() - 86_400_000, rig.now(), rig.now()),
    )
    rid = rig.store.db.execute("SELECT id FROM exclusions WHERE name='全天停电'").fetchone()[0]
    p = only_problem(verify(rig.store))
    assert (p.table, p.row_id, p.kind) == ("exclusions", rid, "inserted"), p.text()


def test_widening_an_exclusion_in_the_table_is_named(rig: Rig) -> None:
    rid = rig.store.db.execute("SELECT id FROM exclusions WHERE name='市电中断'").fetchone()[0]
    raw(rig.store, "UPDATE exclusions SET end_ts = end_ts + 3600000 WHERE id=?", (rid,))
    p = only_problem(verify(rig.store))
    assert (p.table, p.row_id, p.kind) == ("exclusions", rid, "edited"), p.text()


def test_withdrawing_an_exclusion_behind_the_logs_back_is_named(rig: Rig) -> None:
    raw(rig.store, "UPDATE exclusions SET removed_ts=1, removed_by='x' WHERE name='市电中断'")
    p = only_problem(verify(rig.store))
    assert (p.table, p.kind) == ("exclusions", "deleted") and "市电中断" in p.detail, p.text()


def test_editing_a_maintenance_window_in_the_table_is_named(rig: Rig) -> None:
    rid, spec = rig.store.db.execute("SELECT id, spec FROM maintenance WHERE name='月度补丁'").fetchone()
    longer = json.loads(spec) | {"end": "2026-11-20T09:00:00+08:00"}
    raw(rig.store, "UPDATE maintenance SET spec=? WHERE id=?", (json.dumps(longer), rid))
    p = only_problem(verify(rig.store))
    assert (p.table, p.row_id, p.kind) == ("maintenance", rid, "edited"), p.text()


def test_ledgers_withdrawn_the_proper_way_still_verify(rig: Rig) -> None:
    X.remove(rig.store, "市电中断", "李主任", "供电局确认为计划停电", rig.now())
    maintdb.remove_window(rig.store, "月度补丁", "王工", rig.now())
    rig.feed(rig.store.begin_run(rig.now(), 103, "his-mon", "t"), {"web": Status.OK})
    assert verify(rig.store).ok


# ------------------------------------------------------------------------ every write seals


def unlinked(store: Store) -> list[tuple[str, int]]:
    """(table, id) of every chained row without a link."""
    out = []
    for t in E.TABLES:
        out += [
            (t.name, r[0])
            for r in store.db.execute(
                f"SELECT x.id FROM {t.name} x LEFT JOIN evidence e ON e.tbl=? AND e.id=x.id "
                "WHERE e.id IS NULL ORDER BY x.id",
                (t.code,),
            )
        ]
    return out


def test_a_write_outside_the_agent_is_sealed_when_it_commits(rig: Rig) -> None:
    """What a person does from the CLI while no agent runs (acknowledge, resolve a fault;
    withdraw an exclusion) is linked in its own transaction, not by some later batch."""
    number = rig.store.db.execute("SELECT number FROM faults ORDER BY id LIMIT 1").fetchone()[0]
    F.resolve(rig.store, number, "王工", "交换机端口故障", "更换端口", rig.now())
    assert unlinked(rig.store) == []
    X.remove(rig.store, "市电中断", "李主任", "供电局确认为计划停电", rig.now())
    assert unlinked(rig.store) == []
    last = rig.store.db.execute("SELECT max(id) FROM fault_events").fetchone()[0]
    head = rig.store.db.execute("SELECT last_id FROM evidence_heads WHERE tbl=4").fetchone()[0]
    assert head == last
    assert verify(rig.store).ok


def test_a_row_written_in_a_transaction_that_rolls_back_leaves_no_link(rig: Rig) -> None:
    before = E.head(rig.store.db)
    with pytest.raises(RuntimeError), rig.store.tx() as db:
        db.execute(
            "INSERT INTO fault_events(fault_id, ts, actor, action, detail) VALUES(1, ?, 'x', 'note', '{}')",
            (rig.now(),),
        )
        raise RuntimeError("the caller gives up")
    assert E.head(rig.store.db) == before
    assert verify(rig.store).ok


def test_an_unsealed_row_appended_directly_is_named(rig: Rig) -> None:
    """Dated now, after the last seal, at the end of its table: no slack, it is named."""
    cur = rig.store.db.execute(
        "INSERT INTO fault_events(fault_id, ts, actor, action, detail) VALUES(1, ?, '值班员', 'note', '{}')",
        (rig.now() + 60_000,),
    )
    rep = verify(rig.store)
    p = only_problem(rep)
    assert (p.table, p.row_id, p.kind) == ("fault_events", cur.lastrowid, "inserted"), p.text()
    assert "no link" in p.detail
    assert next(t for t in rep.tables if t.table == "fault_events").unsealed == 1


def test_a_chained_table_never_sealed_is_named(tmp_path: Path) -> None:
    """A table with rows and no head at all (nothing ever sealed it) is not waved through."""
    store = Store(tmp_path / "s.db")
    store.begin_run(1000, 1, "h", "t")
    cur = store.db.execute(
        "INSERT INTO approvals(ledger, record_id, name, party, approver, ts, os_user) "
        "VALUES('maintenance', 1, 'w', '甲方', '王主任', 2000, 'root')"
    )
    p = only_problem(verify(store))
    assert (p.table, p.row_id, p.kind) == ("approvals", cur.lastrowid, "inserted"), p.text()


def test_period_verify_names_an_unsealed_row_of_the_period(rig: Rig) -> None:
    ts = rig.now() + 60_000
    cid = rig.store.check_id("web")
    cur = rig.store.db.execute(
        "INSERT INTO results(check_id, ts, status, duration_ms, summary, run_id) VALUES(?,?,0,1,'OK',2)",
        (cid, ts),
    )
    p = only_problem(E.verify(rig.store.db, None, ts - 1000, ts + 1000))
    assert (p.table, p.row_id, p.kind) == ("results", cur.lastrowid, "inserted"), p.text()


def test_a_transaction_that_writes_no_chained_row_seals_nothing(rig: Rig) -> None:
    """The heartbeat's transaction (every few seconds): one query decides there is nothing to
    seal; no savepoint, no per-table reads, no write to the chain."""
    statements: list[str] = []
    run = rig.store.runs()[-1].id
    heads = rig.store.db.execute("SELECT * FROM evidence_heads ORDER BY tbl").fetchall()
    rig.store.db.set_trace_callback(statements.append)
    try:
        rig.store.heartbeat(run, rig.now())
    finally:
        rig.store.db.set_trace_callback(None)
    assert statements[0] == "BEGIN IMMEDIATE" and statements[-1] == "COMMIT"
    body = statements[1:-1]
    assert any(x.startswith("UPDATE agent_runs") for x in body)
    chain = [x for x in body if "evidence" in x or "SAVEPOINT" in x]
    assert chain == [E._PENDING], chain  # the one "anything to seal?" query, nothing else
    assert rig.store.db.execute("SELECT * FROM evidence_heads ORDER BY tbl").fetchall() == heads
    assert E.pending(rig.store.db) == ()


# ------------------------------------------------------------------------ the key


def storage(path: Path, evidence_key: str | None = None) -> Storage:
    return Storage.model_validate({"path": str(path), "evidence_key": evidence_key})


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o277])
def test_the_first_writer_creates_a_0600_key_file_and_seals_with_it(tmp_path: Path, umask: int) -> None:
    st = storage(tmp_path / "var" / "s.db")
    assert E.evidence_key(st, create=False) is None  # a reader never creates one
    assert not E.key_path(st.path).exists()
    old = os.umask(umask)
    try:
        key = E.evidence_key(st, create=True)
    finally:
        os.umask(old)
    path = tmp_path / "var" / "s.db.key"
    assert E.key_path(st.path) == path
    assert key is not None and stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text("ascii")
    assert text.strip().encode() == key and re.fullmatch(r"[0-9a-f]{64}\n", text)
    assert E.evidence_key(st, create=True) == key  # the next writer reads it
    assert E.evidence_key(st, create=False) == key
    rig = build(st.path, key)
    assert E.stored_key_id(rig.store.db) == key_id(key) and len(key_id(key)) == 16
    rep = E.verify(rig.store.db, E.evidence_key(st, create=False))
    assert rep.ok and rep.keyed and rep.key_id == key_id(key)
    assert only_problem(E.verify(rig.store.db, None)).kind == "key"
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".")] == []  # no temporary left


def test_two_first_writers_end_up_with_one_key(tmp_path: Path) -> None:
    path = tmp_path / "s.db.key"
    first = E._create_key_file(path)
    second = E._create_key_file(path)  # lost the race: takes the winner's key, never overwrites
    assert first == second == path.read_bytes().strip()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.db.key"]  # no temporary left


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_a_key_file_open_to_others_is_refused(tmp_path: Path, mode: int) -> None:
    st = storage(tmp_path / "s.db")
    key = E.evidence_key(st, create=True)
    assert key is not None
    E.key_path(st.path).chmod(mode)
    for create in (True, False):
        with pytest.raises(E.KeyFileError) as err:
            E.evidence_key(st, create=create)
        text = str(err.value)
        assert f"{mode:04o}" in text and "chmod 600" in text and str(E.key_path(st.path)) in text
        assert key.decode() not in text


def test_an_empty_key_file_is_refused(tmp_path: Path) -> None:
    st = storage(tmp_path / "s.db")
    path = E.key_path(st.path)
    path.touch(mode=0o600)
    path.chmod(0o600)
    with pytest.raises(E.KeyFileError, match="empty"):
        E.evidence_key(st, create=True)


def test_a_legacy_store_sealed_without_a_key_stays_keyless(tmp_path: Path) -> None:
    rig = build(tmp_path / "old.db")  # sealed before keys were created: key id ""
    st = storage(tmp_path / "old.db")
    assert E.evidence_key(st, create=True) is None
    assert not E.key_path(st.path).exists()
    rep = E.verify(rig.store.db, E.evidence_key(st, create=False))
    assert rep.ok and rep.legacy_keyless and not rep.keyed and rep.key_id == ""


def test_a_keyed_store_whose_key_file_is_gone_is_not_written(tmp_path: Path) -> None:
    st = storage(tmp_path / "s.db")
    key = E.evidence_key(st, create=True)
    rig = build(st.path, key)
    E.key_path(st.path).unlink()
    with pytest.raises(E.KeyFileError) as err:
        E.evidence_key(st, create=True)  # a fresh key would leave every new row unsealed
    assert key_id(key) in str(err.value) and "missing" in str(err.value)
    assert not E.key_path(st.path).exists()
    assert E.evidence_key(st, create=False) is None
    assert only_problem(E.verify(rig.store.db, None)).kind == "key"


def test_a_configured_key_wins_over_the_key_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENTINEL_TEST_EVIDENCE_KEY", KEY.decode())
    st = storage(tmp_path / "s.db", "${SENTINEL_TEST_EVIDENCE_KEY}")
    assert E.evidence_key(st, create=True) == KEY
    assert not E.key_path(st.path).exists()


def test_the_key_never_reaches_the_store_file(tmp_path: Path) -> None:
    st = storage(tmp_path / "s.db")
    key = E.evidence_key(st, create=True)
    assert key is not None
    rig = build(st.path, key)
    rig.store.close()
    key_file = E.key_path(st.path)
    data = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("s.db") and p != key_file)
    assert key not in data and bytes.fromhex(key.decode()) not in data
    assert key_id(key).encode() in data  # only its fingerprint


def test_a_writer_is_refused_a_key_that_did_not_seal_the_chain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every row it wrote would stay unsealed: refused before anything is written."""
    st = storage(tmp_path / "s.db")
    key = E.evidence_key(st, create=True)
    assert key is not None
    build(st.path, key)
    other = b"0" * 64
    E.key_path(st.path).write_bytes(other + b"\n")
    with pytest.raises(E.KeyFileError) as err:
        E.evidence_key(st, create=True)
    assert key_id(key) in str(err.value) and key_id(other) in str(err.value)
    assert other.decode() not in str(err.value) and key.decode() not in str(err.value)
    assert E.evidence_key(st, create=False) == other  # a reader: verify reports the mismatch
    # A configured key on a store sealed before keys existed: not re-sealed either.
    build(tmp_path / "old.db")
    monkeypatch.setenv("SENTINEL_TEST_EVIDENCE_KEY", KEY.decode())
    with pytest.raises(E.KeyFileError, match="without a key"):
        E.evidence_key(storage(tmp_path / "old.db", "${SENTINEL_TEST_EVIDENCE_KEY}"), create=True)
