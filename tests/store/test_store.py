from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent.state.machine import CheckState
from agent.store.db import SCHEMA_VERSION, Store, StoreLocked, acquire_lock
from probes.base import CheckResult, Metric, Status


def res(ts_s: float, status: Status, **metrics: float) -> CheckResult:
    return CheckResult(
        status,
        f"{status.name} at {ts_s}",
        tuple(Metric(k, v, "ms") for k, v in metrics.items()),
        started_at=datetime.fromtimestamp(ts_s, UTC),
    )


def write(
    store: Store, run: int, states: dict[str, CheckState], name: str, r: CheckResult, conf: int = 2
) -> None:
    st = states.setdefault(name, CheckState())
    ch = st.observe(int(r.started_at.timestamp() * 1000), r.status, r.summary, conf)
    store.write_batch(run, [(name, r, ch, st)])


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "s.db")
    s.sync_checks([("web", "http", "HIS"), ("db", "tcp", "HIS")], 0)
    return s


def test_schema_version_and_wal(store: Store) -> None:
    assert store.schema_version() == SCHEMA_VERSION
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    s = Store(tmp_path / "x.db")
    s.db.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    s.close()
    with pytest.raises(RuntimeError, match="newer than this agent"):
        Store(tmp_path / "x.db")


def test_intervals_follow_confirmed_changes(store: Store) -> None:
    run = store.begin_run(1_000_000, 1, "h", "t")
    states: dict[str, CheckState] = {}
    for t, st in [
        (1000, Status.OK),
        (1060, Status.CRIT),
        (1120, Status.CRIT),
        (1180, Status.OK),
        (1240, Status.OK),
    ]:
        write(store, run, states, "web", res(t, st, latency_ms=5))
    iv = store.intervals(0, 10**13, "web")
    assert [(i.state, i.start_ts, i.end_ts) for i in iv] == [
        (Status.OK, 1_000_000, 1_060_000),
        (Status.CRIT, 1_060_000, 1_180_000),
        (Status.OK, 1_180_000, None),
    ]
    assert len(store.results("web")) == 5
    cur = {c.check: c for c in store.current()}
    assert cur["web"].hard is Status.OK and cur["web"].since_ts == 1_180_000


def test_unclean_run_is_closed_at_last_sign_of_life(store: Store) -> None:
    run = store.begin_run(1_000_000, 1, "h", "t")
    states: dict[str, CheckState] = {}
    write(store, run, states, "web", res(1000, Status.OK))
    store.heartbeat(run, 1_030_000)
    write(store, run, states, "web", res(1040, Status.OK))
    # The process dies here (no end_run). A new run starts later.
    run2 = store.begin_run(1_500_000, 2, "h", "t")
    store.heartbeat(run2, 2_000_000)
    runs = store.runs()
    assert (runs[0].clean, runs[0].stopped_ts) == (False, 1_040_000)
    assert store.intervals(0, 10**13, "web")[0].end_ts == 1_040_000
    assert store.agent_gaps(0, 2_000_000, now_ms=2_000_000, grace_ms=0) == [(1_040_000, 1_500_000)]
    store.end_run(run2, 1_600_000)
    assert store.runs()[1].clean is True
    assert store.agent_gaps(0, 2_000_000, now_ms=2_000_000, grace_ms=0) == [
        (1_040_000, 1_500_000),
        (1_600_000, 2_000_000),
    ]


def test_gaps_are_clipped_to_period(store: Store) -> None:
    r1 = store.begin_run(100_000, 1, "h", "t")
    store.end_run(r1, 200_000)
    r2 = store.begin_run(500_000, 1, "h", "t")
    store.end_run(r2, 900_000)
    assert store.agent_gaps(300_000, 400_000, now_ms=10**7, grace_ms=0) == [(300_000, 400_000)]
    assert store.agent_gaps(150_000, 600_000, now_ms=10**7, grace_ms=0) == [(200_000, 500_000)]
    assert store.agent_gaps(0, 150_000, now_ms=10**7, grace_ms=0) == []


def test_a_silent_run_is_alive_until_heartbeat_plus_grace_then_down(store: Store) -> None:
    run = store.begin_run(100_000, 1, "h", "t")
    store.heartbeat(run, 160_000)
    # Killed after its last heartbeat, never restarted: asked at 200 s, with 10 s of grace.
    assert store.agent_gaps(0, 300_000, now_ms=200_000, grace_ms=10_000) == [(170_000, 200_000)]
    # Within the grace it is still alive.
    assert store.agent_gaps(0, 300_000, now_ms=165_000, grace_ms=10_000) == []
    # A restart closes the dead run where the rule put its end while it lay dead.
    store.begin_run(250_000, 2, "h", "t", grace_ms=10_000)
    assert store.runs()[0].stopped_ts == 170_000
    assert store.agent_gaps(0, 300_000, now_ms=255_000, grace_ms=10_000) == [(170_000, 250_000)]


def test_state_and_pending_survive_restart(tmp_path: Path) -> None:
    s = Store(tmp_path / "s.db")
    s.sync_checks([("web", "http", None)], 0)
    run = s.begin_run(0, 1, "h", "t")
    states: dict[str, CheckState] = {}
    write(s, run, states, "web", res(10, Status.CRIT), conf=3)
    write(s, run, states, "web", res(20, Status.OK), conf=3)  # pending
    s.close()
    s2 = Store(tmp_path / "s.db")
    loaded = s2.load_states()["web"]
    # Issue 14: the pending samples come back with the spacing the machine's carry-over rule
    # needs (whether they still count is decided at the first sample after the restart).
    assert loaded.hard is Status.CRIT and not loaded.interval_open
    assert loaded.pending == [(20_000, int(Status.OK), "OK at 20")] and loaded.step_ms == 10_000
    assert loaded.summary == "CRIT at 10"


def test_rollups_and_history(store: Store) -> None:
    run = store.begin_run(0, 1, "h", "t")
    states: dict[str, CheckState] = {}
    for t, v in [(3600, 10.0), (3700, 30.0), (7300, 50.0)]:
        write(store, run, states, "web", res(t, Status.OK, latency_ms=v))
    write(store, run, states, "web", res(7400, Status.UNKNOWN, latency_ms=999.0))  # not rolled up
    rows = store.rollups("web", "latency_ms", 0, 10**9)
    assert rows == [(3_600_000, 2, 10.0, 30.0, 20.0), (7_200_000, 1, 50.0, 50.0, 50.0)]
    hist = store.metric_history("web", ["latency*"], 0)
    assert hist == {"latency_ms": [(3600.0, 30.0), (7200.0, 50.0)]}


def test_prune_keeps_recent_and_intervals(store: Store) -> None:
    run = store.begin_run(0, 1, "h", "t")
    states: dict[str, CheckState] = {}
    for t in range(100, 1100, 100):
        write(store, run, states, "db", res(t, Status.OK))
    assert store.prune_results(500_000, limit=3) == 3
    assert store.prune_results(500_000) == 1
    assert [r.ts for r in store.results("db")] == list(range(500_000, 1_100_000, 100_000))
    assert store.intervals(0, 10**9, "db")


def test_batch_is_atomic(store: Store) -> None:
    run = store.begin_run(0, 1, "h", "t")
    st = CheckState()
    good = res(1, Status.OK)
    with pytest.raises(KeyError):
        store.write_batch(run, [("web", good, [], st), ("no-such-check", good, [], st)])
    assert store.results() == []


def test_lock_excludes_second_agent(tmp_path: Path) -> None:
    fd = acquire_lock(tmp_path / "s.db")
    with pytest.raises(StoreLocked, match="another agent"):
        acquire_lock(tmp_path / "s.db")
    import os

    os.close(fd)
    os.close(acquire_lock(tmp_path / "s.db"))


def test_readonly_store_cannot_write(tmp_path: Path) -> None:
    Store(tmp_path / "s.db").close()
    ro = Store(tmp_path / "s.db", readonly=True)
    with pytest.raises(sqlite3.OperationalError):
        ro.db.execute("CREATE TABLE x(a)")
