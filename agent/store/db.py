"""SQLite store: raw results, state intervals, agent runs, hourly roll-ups. One file, WAL.

One `Store` object owns one connection and is used from one thread; the daemon writes from a
single recorder thread and every reader (CLI, reports) opens its own. All times are UTC epoch
milliseconds. Each batch of results and the interval changes it causes commit in one
transaction, so a kill -9 at any moment leaves either all of a batch or none of it.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from agent.state.machine import Change, CheckState
from agent.store import evidence
from agent.store import reports as report_runs
from agent.store.rows import fetch_all, fetch_one, scalar, scan
from agent.store.versions import ConfigVersion
from probes.base import CheckResult, Metric, Status

SCHEMA_VERSION = 5

_MIGRATIONS: dict[int, str] = {
    1: """
    CREATE TABLE checks(
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL,
        system TEXT,
        first_seen INTEGER NOT NULL
    );
    CREATE TABLE agent_runs(
        id INTEGER PRIMARY KEY,
        started_ts INTEGER NOT NULL,
        heartbeat_ts INTEGER NOT NULL,
        stopped_ts INTEGER,
        clean INTEGER NOT NULL DEFAULT 0,
        pid INTEGER NOT NULL,
        host TEXT NOT NULL,
        version TEXT NOT NULL
    );
    CREATE TABLE results(
        id INTEGER PRIMARY KEY,
        check_id INTEGER NOT NULL REFERENCES checks(id),
        ts INTEGER NOT NULL,
        status INTEGER NOT NULL,
        duration_ms INTEGER NOT NULL,
        summary TEXT NOT NULL,
        metrics TEXT,
        details TEXT,
        run_id INTEGER REFERENCES agent_runs(id)
    );
    CREATE INDEX results_check_ts ON results(check_id, ts);
    CREATE INDEX results_ts ON results(ts);
    CREATE TABLE intervals(
        id INTEGER PRIMARY KEY,
        check_id INTEGER NOT NULL REFERENCES checks(id),
        state INTEGER NOT NULL,
        start_ts INTEGER NOT NULL,
        end_ts INTEGER,
        summary TEXT NOT NULL,
        run_id INTEGER REFERENCES agent_runs(id)
    );
    CREATE INDEX intervals_check_start ON intervals(check_id, start_ts);
    CREATE INDEX intervals_open ON intervals(check_id) WHERE end_ts IS NULL;
    CREATE TABLE check_state(
        check_id INTEGER PRIMARY KEY REFERENCES checks(id),
        hard INTEGER,
        pending TEXT NOT NULL,
        last_ts INTEGER NOT NULL,
        last_status INTEGER,
        last_summary TEXT
    );
    CREATE TABLE rollups(
        check_id INTEGER NOT NULL,
        metric TEXT NOT NULL,
        hour_ts INTEGER NOT NULL,
        n INTEGER NOT NULL,
        vmin REAL NOT NULL,
        vmax REAL NOT NULL,
        vsum REAL NOT NULL,
        vlast REAL NOT NULL,
        unit TEXT NOT NULL,
        PRIMARY KEY(check_id, metric, hour_ts)
    ) WITHOUT ROWID;
    CREATE TABLE report_runs(
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,
        period TEXT NOT NULL,
        generated_ts INTEGER NOT NULL,
        path TEXT NOT NULL,
        UNIQUE(kind, period)
    );
    """,
    2: """
    ALTER TABLE intervals ADD COLUMN maintenance TEXT;
    CREATE TABLE faults(
        id INTEGER PRIMARY KEY,
        number TEXT NOT NULL UNIQUE,
        system TEXT,
        campus TEXT,
        level INTEGER NOT NULL,
        level_initial INTEGER NOT NULL,
        type TEXT NOT NULL,
        description TEXT NOT NULL,
        impact TEXT NOT NULL,
        start_ts INTEGER NOT NULL,
        detected_ts INTEGER NOT NULL,
        respond_deadline_ts INTEGER,
        restore_deadline_ts INTEGER,
        calendar_note TEXT,
        acked_ts INTEGER,
        acked_by TEXT,
        recovered_ts INTEGER,
        closed_ts INTEGER,
        closed_by TEXT,
        cause TEXT,
        measures TEXT,
        flapping INTEGER NOT NULL DEFAULT 0,
        maintenance TEXT,
        response_overdue INTEGER NOT NULL DEFAULT 0,
        restore_overdue INTEGER NOT NULL DEFAULT 0,
        warned_response INTEGER NOT NULL DEFAULT 0,
        warned_restore INTEGER NOT NULL DEFAULT 0,
        reminders INTEGER NOT NULL DEFAULT 0,
        last_reminder_ts INTEGER
    );
    CREATE INDEX faults_open ON faults(system) WHERE closed_ts IS NULL;
    CREATE INDEX faults_start ON faults(start_ts);
    CREATE TABLE fault_checks(
        fault_id INTEGER NOT NULL REFERENCES faults(id),
        check_name TEXT NOT NULL,
        first_failed_ts INTEGER NOT NULL,
        recovered_ts INTEGER,
        last_summary TEXT NOT NULL,
        PRIMARY KEY(fault_id, check_name)
    );
    CREATE TABLE fault_events(
        id INTEGER PRIMARY KEY,
        fault_id INTEGER NOT NULL REFERENCES faults(id),
        ts INTEGER NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        detail TEXT NOT NULL
    );
    CREATE INDEX fault_events_fault ON fault_events(fault_id, ts);
    CREATE TABLE outbox(
        id INTEGER PRIMARY KEY,
        created_ts INTEGER NOT NULL,
        dedup_key TEXT NOT NULL UNIQUE,
        channel TEXT NOT NULL,
        event TEXT NOT NULL,
        fault_id INTEGER REFERENCES faults(id),
        message TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'pending',
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_ts INTEGER NOT NULL,
        last_error TEXT,
        delivered_ts INTEGER,
        receipt TEXT
    );
    CREATE INDEX outbox_due ON outbox(next_attempt_ts) WHERE status = 'pending';
    CREATE TABLE outbox_attempts(
        id INTEGER PRIMARY KEY,
        outbox_id INTEGER NOT NULL REFERENCES outbox(id),
        ts INTEGER NOT NULL,
        ok INTEGER NOT NULL,
        detail TEXT NOT NULL
    );
    CREATE TABLE maintenance(
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        source TEXT NOT NULL,
        spec TEXT NOT NULL,
        created_ts INTEGER NOT NULL,
        created_by TEXT NOT NULL,
        removed_ts INTEGER,
        removed_by TEXT
    );
    CREATE UNIQUE INDEX maintenance_active_name ON maintenance(name) WHERE removed_ts IS NULL;
    CREATE TABLE maintenance_log(
        id INTEGER PRIMARY KEY,
        ts INTEGER NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        name TEXT NOT NULL,
        spec TEXT NOT NULL
    );
    CREATE TRIGGER maintenance_log_no_update BEFORE UPDATE ON maintenance_log
        BEGIN SELECT RAISE(ABORT, 'maintenance_log is append-only'); END;
    CREATE TRIGGER maintenance_log_no_delete BEFORE DELETE ON maintenance_log
        BEGIN SELECT RAISE(ABORT, 'maintenance_log is append-only'); END;
    CREATE TRIGGER fault_events_no_update BEFORE UPDATE ON fault_events
        BEGIN SELECT RAISE(ABORT, 'fault_events is append-only'); END;
    CREATE TRIGGER fault_events_no_delete BEFORE DELETE ON fault_events
        BEGIN SELECT RAISE(ABORT, 'fault_events is append-only'); END;
    """,
    3: """
    CREATE TABLE probe_memory(
        check_id INTEGER PRIMARY KEY REFERENCES checks(id),
        ts INTEGER NOT NULL,
        data TEXT NOT NULL
    );
    CREATE TABLE exclusions(
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        kind TEXT NOT NULL,
        start_ts INTEGER NOT NULL,
        end_ts INTEGER NOT NULL,
        systems TEXT NOT NULL,
        reason TEXT NOT NULL,
        approved_by TEXT NOT NULL,
        source TEXT NOT NULL,
        created_ts INTEGER NOT NULL,
        created_by TEXT NOT NULL,
        removed_ts INTEGER,
        removed_by TEXT,
        removed_reason TEXT
    );
    CREATE UNIQUE INDEX exclusions_active_name ON exclusions(name) WHERE removed_ts IS NULL;
    CREATE TABLE exclusions_log(
        id INTEGER PRIMARY KEY,
        ts INTEGER NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        name TEXT NOT NULL,
        record TEXT NOT NULL
    );
    CREATE TRIGGER exclusions_log_no_update BEFORE UPDATE ON exclusions_log
        BEGIN SELECT RAISE(ABORT, 'exclusions_log is append-only'); END;
    CREATE TRIGGER exclusions_log_no_delete BEFORE DELETE ON exclusions_log
        BEGIN SELECT RAISE(ABORT, 'exclusions_log is append-only'); END;
    """,
    4: """
    CREATE TABLE interval_log(
        id INTEGER PRIMARY KEY,
        interval_id INTEGER NOT NULL,
        event TEXT NOT NULL,
        check_id INTEGER NOT NULL,
        ts INTEGER NOT NULL,
        state INTEGER,
        summary TEXT,
        maintenance TEXT,
        run_id INTEGER
    );
    CREATE INDEX interval_log_interval ON interval_log(interval_id, event);
    CREATE TABLE run_log(
        id INTEGER PRIMARY KEY,
        run_id INTEGER NOT NULL,
        event TEXT NOT NULL,
        ts INTEGER NOT NULL,
        pid INTEGER,
        host TEXT,
        version TEXT
    );
    CREATE INDEX run_log_run ON run_log(run_id, event);
    CREATE TABLE evidence(
        tbl INTEGER NOT NULL,
        id INTEGER NOT NULL,
        h BLOB NOT NULL,
        PRIMARY KEY(tbl, id)
    ) WITHOUT ROWID;
    CREATE TABLE evidence_heads(
        tbl INTEGER PRIMARY KEY,
        last_id INTEGER NOT NULL,
        h BLOB NOT NULL,
        rows INTEGER NOT NULL,
        sealed_ts INTEGER NOT NULL
    );
    CREATE TABLE evidence_checkpoints(
        id INTEGER PRIMARY KEY,
        tbl TEXT NOT NULL,
        first_id INTEGER NOT NULL,
        last_id INTEGER NOT NULL,
        n INTEGER NOT NULL,
        h TEXT NOT NULL,
        min_ts INTEGER,
        max_ts INTEGER,
        created_ts INTEGER NOT NULL
    );
    INSERT INTO interval_log(interval_id, event, check_id, ts, state, summary, maintenance, run_id)
        SELECT id, 'open', check_id, start_ts, state, summary, maintenance, run_id FROM intervals ORDER BY id;
    INSERT INTO interval_log(interval_id, event, check_id, ts)
        SELECT id, 'close', check_id, end_ts FROM intervals WHERE end_ts IS NOT NULL ORDER BY id;
    INSERT INTO run_log(run_id, event, ts, pid, host, version)
        SELECT id, 'start', started_ts, pid, host, version FROM agent_runs ORDER BY id;
    INSERT INTO run_log(run_id, event, ts)
        SELECT id, CASE WHEN clean = 1 THEN 'stop' ELSE 'closed' END, stopped_ts FROM agent_runs
        WHERE stopped_ts IS NOT NULL ORDER BY id;
    CREATE TRIGGER interval_log_no_update BEFORE UPDATE ON interval_log
        BEGIN SELECT RAISE(ABORT, 'interval_log is append-only'); END;
    CREATE TRIGGER interval_log_no_delete BEFORE DELETE ON interval_log
        BEGIN SELECT RAISE(ABORT, 'interval_log is append-only'); END;
    CREATE TRIGGER run_log_no_update BEFORE UPDATE ON run_log
        BEGIN SELECT RAISE(ABORT, 'run_log is append-only'); END;
    CREATE TRIGGER run_log_no_delete BEFORE DELETE ON run_log
        BEGIN SELECT RAISE(ABORT, 'run_log is append-only'); END;
    CREATE TRIGGER evidence_checkpoints_no_update BEFORE UPDATE ON evidence_checkpoints
        BEGIN SELECT RAISE(ABORT, 'evidence_checkpoints is append-only'); END;
    CREATE TRIGGER evidence_checkpoints_no_delete BEFORE DELETE ON evidence_checkpoints
        BEGIN SELECT RAISE(ABORT, 'evidence_checkpoints is append-only'); END;
    """,
    5: """
    CREATE TABLE approvals(
        id INTEGER PRIMARY KEY,
        ledger TEXT NOT NULL,
        record_id INTEGER NOT NULL,
        name TEXT NOT NULL,
        party TEXT NOT NULL,
        approver TEXT NOT NULL,
        ts INTEGER NOT NULL,
        os_user TEXT NOT NULL
    );
    CREATE INDEX approvals_record ON approvals(ledger, record_id);
    CREATE TRIGGER approvals_no_update BEFORE UPDATE ON approvals
        BEGIN SELECT RAISE(ABORT, 'approvals is append-only'); END;
    CREATE TRIGGER approvals_no_delete BEFORE DELETE ON approvals
        BEGIN SELECT RAISE(ABORT, 'approvals is append-only'); END;
    CREATE TABLE config_versions(
        id INTEGER PRIMARY KEY,
        ts INTEGER NOT NULL,
        run_id INTEGER,
        hash TEXT NOT NULL,
        config TEXT NOT NULL
    );
    CREATE TRIGGER config_versions_no_update BEFORE UPDATE ON config_versions
        BEGIN SELECT RAISE(ABORT, 'config_versions is append-only'); END;
    CREATE TRIGGER config_versions_no_delete BEFORE DELETE ON config_versions
        BEGIN SELECT RAISE(ABORT, 'config_versions is append-only'); END;
    """,
}

HOUR_MS = 3_600_000


def _statements(script: str) -> Iterator[str]:
    """Split a migration into statements; a trigger body's inner ';' does not end it."""
    buf = ""
    for piece in script.split(";"):
        buf += piece
        if buf.strip() and sqlite3.complete_statement(buf + ";"):
            yield buf.strip()
            buf = ""
        elif buf.strip():
            buf += ";"
    if buf.strip():
        raise ValueError(f"incomplete statement in migration: {buf[:80]!r}")


class StoreLocked(RuntimeError):
    """Another agent holds the store."""


@dataclass(frozen=True, slots=True)
class StoredResult:
    check: str
    ts: int
    status: Status
    duration_ms: int
    summary: str
    metrics: tuple[Metric, ...]
    details: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class Interval:
    check: str
    state: Status
    start_ts: int
    end_ts: int | None
    summary: str
    maintenance: str | None = None


@dataclass(frozen=True, slots=True)
class AgentRun:
    id: int
    started_ts: int
    heartbeat_ts: int
    stopped_ts: int | None
    clean: bool
    pid: int
    host: str
    version: str

    @property
    def end_ts(self) -> int:
        """When the run is last known to have been alive."""
        return self.stopped_ts if self.stopped_ts is not None else self.heartbeat_ts

    def alive_until(self, now_ms: int, grace_ms: int) -> int:
        """The liveness rule, one for availability, `status`, reports and verify.py: a stopped
        run was alive until its stop; a run without a stop until its last heartbeat plus the
        grace, and not past now."""
        if self.stopped_ts is not None:
            return self.stopped_ts
        return max(self.started_ts, min(now_ms, self.heartbeat_ts + grace_ms))

    def alive(self, now_ms: int, grace_ms: int) -> bool:
        return self.stopped_ts is None and self.heartbeat_ts + grace_ms >= now_ms


class HourlyValue(NamedTuple):
    """One hour of a metric's roll-up: the value last recorded in that hour."""

    metric: str
    hour_ts: int
    value: float


@dataclass(frozen=True, slots=True)
class CurrentState:
    check: str
    kind: str
    system: str | None
    hard: Status | None
    since_ts: int | None
    last_ts: int | None
    last_status: Status | None
    last_summary: str | None


def _metrics_json(metrics: Sequence[Metric]) -> str | None:
    if not metrics:
        return None
    return json.dumps([[m.name, m.value, m.unit] for m in metrics], ensure_ascii=False, separators=(",", ":"))


def _metrics_load(text: str | None) -> tuple[Metric, ...]:
    if not text:
        return ()
    return tuple(Metric(n, float(v), u) for n, v, u in json.loads(text))


_RESULT_COLS = (
    "c.name AS name, r.ts AS ts, r.status AS status, r.duration_ms AS duration_ms, r.summary AS summary, "
    "r.metrics AS metrics, r.details AS details"
)


def _stored_result(r: sqlite3.Row) -> StoredResult:
    return StoredResult(
        check=r["name"],
        ts=r["ts"],
        status=Status(r["status"]),
        duration_ms=r["duration_ms"],
        summary=r["summary"],
        metrics=_metrics_load(r["metrics"]),
        details=json.loads(r["details"]) if r["details"] else None,
    )


def _json_default(o: Any) -> Any:
    if isinstance(o, set | frozenset | tuple):
        return list(o)
    return str(o)


class Store:
    def __init__(self, path: str | Path, readonly: bool = False, evidence_key: bytes | None = None) -> None:
        self.path = Path(path)
        self.evidence_key = evidence_key
        """HMAC key of the evidence chain (`agent.store.evidence.evidence_key` decides it);
        None: plain SHA-256 links (a legacy store, or a test's)."""
        if readonly:
            if not self.path.exists():
                raise FileNotFoundError(f"no store at {self.path}: has the agent run yet?")
            uri = f"file:{self.path}?mode=ro"
            self.db = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
            # WAL + NORMAL: a process crash (kill -9) loses nothing committed; only a power
            # loss can drop the last transactions, and it never corrupts the file.
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("PRAGMA foreign_keys=ON")
        self.db.execute("PRAGMA busy_timeout=10000")
        # A small page cache: the agent's writes are appends and its reads are narrow; the
        # default 2 MB per connection is resident memory the monitor does not need.
        self.db.execute("PRAGMA cache_size=-512")
        self._check_ids: dict[str, int] = {}
        if not readonly:
            self._migrate()

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction. Before it commits, the rows it added to the chained tables
        are sealed into the evidence chain (whoever writes: the agent, a CLI command while no
        agent runs), so no committed row is ever unsealed; a transaction that added none pays
        one query."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
            self._seal(self.db, None)
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # ---------------------------------------------------------------- schema

    def _migrate(self) -> None:
        with self.tx() as db:
            db.execute("CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            current = int(scalar(db, "SELECT value FROM meta WHERE key='schema_version'") or 0)
            if current > SCHEMA_VERSION:
                raise RuntimeError(
                    f"store {self.path} has schema {current}, newer than this agent ({SCHEMA_VERSION}); "
                    "upgrade the agent"
                )
            if 0 < current < SCHEMA_VERSION:
                # A way back before anything changes: `<store>.pre-migration-v{current}.db`,
                # copied while this transaction holds the write lock (nothing moves meanwhile).
                from agent.store.backup import copy_before_migration

                copy_before_migration(self.path, current)
            for version in range(current + 1, SCHEMA_VERSION + 1):
                for stmt in _statements(_MIGRATIONS[version]):
                    db.execute(stmt)
                db.execute(
                    "INSERT INTO meta(key, value) VALUES('schema_version', ?) "
                    "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                    (str(version),),
                )

    def schema_version(self) -> int:
        return int(scalar(self.db, "SELECT value FROM meta WHERE key='schema_version'") or 0)

    # ---------------------------------------------------------------- checks

    def sync_checks(self, checks: Iterable[tuple[str, str, str | None]], now_ms: int) -> None:
        """Register (name, kind, system) of configured checks; removed ones keep their history."""
        with self.tx() as db:
            for name, kind, system in checks:
                db.execute(
                    "INSERT INTO checks(name, kind, system, first_seen) VALUES(?,?,?,?) "
                    "ON CONFLICT(name) DO UPDATE SET kind=excluded.kind, system=excluded.system",
                    (name, kind, system, now_ms),
                )
        self._check_ids = {r["name"]: r["id"] for r in fetch_all(self.db, "SELECT name, id FROM checks")}

    def check_id(self, name: str) -> int:
        cid = self._check_ids.get(name)
        if cid is None:
            found = scalar(self.db, "SELECT id FROM checks WHERE name=?", (name,))
            if found is None:
                raise KeyError(f"unknown check {name!r}")
            cid = self._check_ids[name] = int(found)
        return cid

    def check_names(self) -> list[str]:
        return [r["name"] for r in fetch_all(self.db, "SELECT name FROM checks ORDER BY name")]

    # ---------------------------------------------------------------- agent runs

    def begin_run(self, now_ms: int, pid: int, host: str, version: str, grace_ms: int = 0) -> int:
        """Start a run; close what an earlier run left open at the moment it was last alive.

        The end given to a run that died is the one the liveness rule gave it while it lay dead
        (last heartbeat + grace, or its last result if later), so a restart moves no figure."""
        with self.tx() as db:
            for run in self._runs(db, "WHERE stopped_ts IS NULL"):
                last_result = scalar(db, "SELECT max(ts) FROM results WHERE run_id=?", (run.id,))
                end = max(run.alive_until(now_ms, grace_ms), min(last_result or 0, now_ms))
                db.execute("UPDATE agent_runs SET stopped_ts=?, clean=0 WHERE id=?", (end, run.id))
                self._log_run(db, run.id, "closed", end)
                self._close_intervals(
                    db,
                    "UPDATE intervals SET end_ts=max(start_ts, ?) WHERE end_ts IS NULL AND run_id=?",
                    (end, run.id),
                )
            # Intervals of runs that stopped cleanly are closed already; anything still open
            # here belongs to a run whose row was lost and is closed at its own start.
            self._close_intervals(db, "UPDATE intervals SET end_ts=start_ts WHERE end_ts IS NULL", ())
            cur = db.execute(
                "INSERT INTO agent_runs(started_ts, heartbeat_ts, pid, host, version) VALUES(?,?,?,?,?)",
                (now_ms, now_ms, pid, host, version),
            )
            run_id = int(cur.lastrowid or 0)
            self._log_run(db, run_id, "start", now_ms, pid, host, version)
            self._seal(db, now_ms)
            return run_id

    @staticmethod
    def _log_run(
        db: sqlite3.Connection,
        run_id: int,
        event: str,
        ts: int,
        pid: int | None = None,
        host: str | None = None,
        version: str | None = None,
    ) -> None:
        db.execute(
            "INSERT INTO run_log(run_id, event, ts, pid, host, version) VALUES(?,?,?,?,?,?)",
            (run_id, event, ts, pid, host, version),
        )

    @staticmethod
    def _close_intervals(db: sqlite3.Connection, update: str, args: Sequence[Any]) -> None:
        """Run an UPDATE that closes intervals and log each close (the end time is evidence)."""
        closed = fetch_all(db, update + " RETURNING id, check_id, end_ts", args)
        db.executemany(
            "INSERT INTO interval_log(interval_id, event, check_id, ts) VALUES(?, 'close', ?, ?)",
            sorted((r["id"], r["check_id"], r["end_ts"]) for r in closed),
        )

    def _seal(self, db: sqlite3.Connection, now_ms: int | None) -> None:
        evidence.seal_safely(db, self.evidence_key, int(time.time() * 1000) if now_ms is None else now_ms)

    def heartbeat(self, run_id: int, now_ms: int) -> None:
        with self.tx() as db:
            db.execute("UPDATE agent_runs SET heartbeat_ts=? WHERE id=?", (now_ms, run_id))

    def end_run(self, run_id: int, now_ms: int) -> None:
        with self.tx() as db:
            db.execute(
                "UPDATE agent_runs SET stopped_ts=?, heartbeat_ts=?, clean=1 WHERE id=?",
                (now_ms, now_ms, run_id),
            )
            self._log_run(db, run_id, "stop", now_ms)
            self._close_intervals(
                db, "UPDATE intervals SET end_ts=max(start_ts, ?) WHERE end_ts IS NULL", (now_ms,)
            )
            self._seal(db, now_ms)

    def record_config(self, now_ms: int, run_id: int | None, text: str, digest: str) -> None:
        """Record the configuration a start put in force (see agent.store.versions)."""
        from agent.store import versions

        with self.tx() as db:
            versions.record(db, now_ms, run_id, text, digest)
            self._seal(db, now_ms)

    def config_versions(self) -> list[ConfigVersion]:
        from agent.store import versions

        return versions.all_versions(self.db)

    @staticmethod
    def _runs(db: sqlite3.Connection, where: str = "", args: Sequence[Any] = ()) -> list[AgentRun]:
        rows = fetch_all(
            db,
            "SELECT id, started_ts, heartbeat_ts, stopped_ts, clean, pid, host, version FROM agent_runs "
            f"{where} ORDER BY started_ts",
            args,
        )
        return [
            AgentRun(
                id=r["id"],
                started_ts=r["started_ts"],
                heartbeat_ts=r["heartbeat_ts"],
                stopped_ts=r["stopped_ts"],
                clean=bool(r["clean"]),
                pid=r["pid"],
                host=r["host"],
                version=r["version"],
            )
            for r in rows
        ]

    def runs(self, start_ms: int | None = None, end_ms: int | None = None) -> list[AgentRun]:
        if start_ms is None or end_ms is None:
            return self._runs(self.db)
        return self._runs(
            self.db,
            "WHERE started_ts < ? AND coalesce(stopped_ts, heartbeat_ts) > ?",
            (end_ms, start_ms),
        )

    def agent_gaps(self, start_ms: int, end_ms: int, now_ms: int, grace_ms: int) -> list[tuple[int, int]]:
        """Spans within [start, end) when no agent run was alive (the agent was not running).

        One liveness rule (`AgentRun.alive_until`): a run without a recorded stop is alive up to
        its last heartbeat plus `grace_ms`, never past `now_ms`; after that the agent is down,
        even while it has not been restarted. The time before the first run is not a gap here:
        it is "before monitoring began", which availability treats on its own.
        """
        runs = self._runs(self.db)
        if not runs:
            return []
        spans = [(r.started_ts, r.alive_until(now_ms, grace_ms)) for r in runs]
        gaps = []
        cursor = max(start_ms, runs[0].started_ts)
        for s, e in sorted(spans):
            if s > cursor:
                gaps.append((cursor, min(s, end_ms)))
            cursor = max(cursor, e)
            if cursor >= end_ms:
                break
        if cursor < min(end_ms, now_ms):
            gaps.append((cursor, min(end_ms, now_ms)))
        return [(s, e) for s, e in gaps if e > s and s < end_ms and e > start_ms]

    def monitoring_start(self) -> int | None:
        """When monitoring began: the first agent run, or the first check registered (a store
        seeded without runs); None when nothing was ever monitored."""
        first_run = scalar(self.db, "SELECT min(started_ts) FROM agent_runs")
        first_seen = scalar(self.db, "SELECT min(first_seen) FROM checks")
        known = [int(v) for v in (first_run, first_seen) if v is not None]
        return min(known) if known else None

    # ---------------------------------------------------------------- state

    def load_states(self) -> dict[str, CheckState]:
        """The state machines as the last run left them: confirmed state, pending samples and
        the text of the confirmed state's last interval. Intervals are closed, so each re-opens
        one at its next sample; whether the pending samples still count is the machine's rule
        (`CheckState.step_ms`), given the spacing of the check's last two results."""
        out: dict[str, CheckState] = {}
        rows = fetch_all(
            self.db,
            "SELECT c.name AS name, s.check_id AS check_id, s.hard AS hard, s.pending AS pending, "
            "s.last_ts AS last_ts, s.last_status AS last_status, "
            "(SELECT i.summary FROM intervals i WHERE i.check_id = s.check_id AND i.state = s.hard "
            "ORDER BY i.id DESC LIMIT 1) AS summary "
            "FROM check_state s JOIN checks c ON c.id = s.check_id",
        )
        for r in rows:
            hard, last_status = r["hard"], r["last_status"]
            pending = [(int(ts), int(st), str(text)) for ts, st, text in json.loads(r["pending"] or "[]")]
            step = None
            if pending:  # only these need the spacing (few, at most one query each)
                last = [
                    int(v["ts"])
                    for v in fetch_all(
                        self.db,
                        "SELECT ts FROM results WHERE check_id=? ORDER BY ts DESC LIMIT 2",
                        (r["check_id"],),
                    )
                ]
                step = last[0] - last[1] if len(last) == 2 and last[0] > last[1] else None
            out[r["name"]] = CheckState(
                hard=Status(hard) if hard is not None else None,
                interval_open=False,
                pending=pending,
                last_ts=r["last_ts"],
                last_status=Status(last_status) if last_status is not None else None,
                summary=r["summary"] or "",
                step_ms=step,
            )
        return out

    def write_batch(
        self,
        run_id: int | None,
        batch: Sequence[tuple[str, CheckResult, Sequence[Change], CheckState]],
    ) -> None:
        """Results, their interval changes, the new state and roll-ups, in one transaction.

        Rows are gathered first and written with executemany: at a few hundred results a
        second the per-statement overhead is most of the writer's CPU.
        """
        results: list[tuple[Any, ...]] = []
        states: list[tuple[Any, ...]] = []
        rollups: list[tuple[Any, ...]] = []
        memories: list[tuple[Any, ...]] = []
        interval_ops: list[tuple[int, Change]] = []
        for name, result, changes, state in batch:
            cid = self.check_id(name)
            ts = int(result.started_at.timestamp() * 1000)
            if result.memory is not None:
                memories.append(
                    (cid, ts, json.dumps(dict(result.memory), ensure_ascii=False, default=_json_default))
                )
            details = (
                json.dumps(dict(result.details), ensure_ascii=False, default=_json_default)
                if result.details
                else None
            )
            status = int(result.status)
            results.append(
                (
                    cid,
                    ts,
                    status,
                    int(result.duration_s * 1000),
                    result.summary,
                    _metrics_json(result.metrics),
                    details,
                    run_id,
                )
            )
            interval_ops.extend((cid, ch) for ch in changes)
            states.append(
                (
                    cid,
                    None if state.hard is None else int(state.hard),
                    json.dumps(state.pending, ensure_ascii=False) if state.pending else "[]",
                    ts,
                    status,
                    result.summary,
                )
            )
            if result.metrics and result.status is not Status.UNKNOWN:
                hour = ts - ts % HOUR_MS
                rollups.extend(
                    (cid, m.name, hour, m.value, m.value, m.value, m.value, m.unit) for m in result.metrics
                )
        with self.tx() as db:
            db.executemany(
                "INSERT INTO results(check_id, ts, status, duration_ms, summary, metrics, details, run_id) "
                "VALUES(?,?,?,?,?,?,?,?)",
                results,
            )
            self._apply_changes(db, run_id, interval_ops)
            db.executemany(
                "INSERT INTO check_state(check_id, hard, pending, last_ts, last_status, last_summary) "
                "VALUES(?,?,?,?,?,?) ON CONFLICT(check_id) DO UPDATE SET hard=excluded.hard, "
                "pending=excluded.pending, last_ts=excluded.last_ts, last_status=excluded.last_status, "
                "last_summary=excluded.last_summary",
                states,
            )
            db.executemany(
                "INSERT INTO rollups(check_id, metric, hour_ts, n, vmin, vmax, vsum, vlast, unit) "
                "VALUES(?,?,?,1,?,?,?,?,?) ON CONFLICT(check_id, metric, hour_ts) DO UPDATE SET "
                "n=n+1, vmin=min(vmin, excluded.vmin), vmax=max(vmax, excluded.vmax), "
                "vsum=vsum+excluded.vsum, vlast=excluded.vlast",
                rollups,
            )
            # Same transaction as the result: a log offset can never run ahead of (or lag
            # behind) the result that reported the lines it covers.
            db.executemany(
                "INSERT INTO probe_memory(check_id, ts, data) VALUES(?,?,?) ON CONFLICT(check_id) "
                "DO UPDATE SET ts=excluded.ts, data=excluded.data",
                memories,
            )
            # Same transaction again: a result is never on disk without its link.
            self._seal(db, max((r[1] for r in results), default=None))

    def _apply_changes(
        self, db: sqlite3.Connection, run_id: int | None, interval_ops: Sequence[tuple[int, Change]]
    ) -> None:
        for cid, ch in interval_ops:  # order matters: each change closes the previous one
            self._close_intervals(
                db,
                "UPDATE intervals SET end_ts=max(start_ts, ?) WHERE check_id=? AND end_ts IS NULL",
                (ch.at_ms, cid),
            )
            row = (cid, int(ch.state), ch.at_ms, ch.summary, ch.maintenance, run_id)
            cur = db.execute(
                "INSERT INTO intervals(check_id, state, start_ts, summary, maintenance, run_id) "
                "VALUES(?,?,?,?,?,?)",
                row,
            )
            db.execute(
                "INSERT INTO interval_log(interval_id, event, check_id, state, ts, summary, maintenance, "
                "run_id) VALUES(?, 'open', ?,?,?,?,?,?)",
                (cur.lastrowid, *row),
            )

    def append_bulk(
        self,
        run_id: int | None,
        results: Sequence[tuple[int, int, int, int, str, str | None]],
        changes: Sequence[tuple[int, Change]] = (),
        rollups: Sequence[tuple[int, str, int, int, float, float, float, float, str]] = (),
    ) -> None:
        """Import or replay history in one transaction: raw result rows (check_id, ts, status,
        duration_ms, summary, metrics JSON), the interval changes they cause in time order, and
        finished hourly roll-ups (check_id, metric, hour_ts, n, min, max, sum, last, unit).

        The same tables, logs and evidence links as `write_batch`, without building a
        CheckResult per sample (benchmarks, migrations from another monitor).
        """
        with self.tx() as db:
            db.executemany(
                "INSERT INTO results(check_id, ts, status, duration_ms, summary, metrics, run_id) "
                f"VALUES(?,?,?,?,?,?,{int(run_id) if run_id is not None else 'NULL'})",
                results,
            )
            self._apply_changes(db, run_id, changes)
            db.executemany(
                "INSERT INTO rollups(check_id, metric, hour_ts, n, vmin, vmax, vsum, vlast, unit) "
                "VALUES(?,?,?,?,?,?,?,?,?) ON CONFLICT(check_id, metric, hour_ts) DO UPDATE SET "
                "n=n+excluded.n, vmin=min(vmin, excluded.vmin), vmax=max(vmax, excluded.vmax), "
                "vsum=vsum+excluded.vsum, vlast=excluded.vlast",
                rollups,
            )
            self._seal(db, max((r[1] for r in results), default=None))

    def probe_memories(self) -> dict[str, dict[str, Any]]:
        """Every check's last committed probe memory (CheckResult.memory)."""
        rows = fetch_all(
            self.db,
            "SELECT c.name AS name, m.data AS data FROM probe_memory m JOIN checks c ON c.id = m.check_id",
        )
        return {r["name"]: json.loads(r["data"]) for r in rows}

    # ---------------------------------------------------------------- reading

    def results(
        self, check: str | None = None, start_ms: int | None = None, end_ms: int | None = None
    ) -> list[StoredResult]:
        where: list[str] = []
        args: list[Any] = []
        if check is not None:
            where.append("c.name=?")
            args.append(check)
        if start_ms is not None:
            where.append("r.ts>=?")
            args.append(start_ms)
        if end_ms is not None:
            where.append("r.ts<?")
            args.append(end_ms)
        sql = (
            f"SELECT {_RESULT_COLS} FROM results r JOIN checks c ON c.id=r.check_id"
            + (" WHERE " + " AND ".join(where) if where else "")
            + " ORDER BY r.ts, r.id"
        )
        return [_stored_result(r) for r in scan(self.db, sql, args)]

    def intervals(self, start_ms: int, end_ms: int, check: str | None = None) -> list[Interval]:
        """Intervals overlapping [start, end), open ones with end None."""
        sql = (
            "SELECT c.name AS name, i.state AS state, i.start_ts AS start_ts, i.end_ts AS end_ts, "
            "i.summary AS summary, i.maintenance AS maintenance FROM intervals i "
            "JOIN checks c ON c.id=i.check_id WHERE i.start_ts < ? AND (i.end_ts IS NULL OR i.end_ts > ?)"
        )
        args: list[Any] = [end_ms, start_ms]
        if check is not None:
            sql += " AND c.name=?"
            args.append(check)
        sql += " ORDER BY c.name, i.start_ts, i.id"
        return [
            Interval(
                check=r["name"],
                state=Status(r["state"]),
                start_ts=r["start_ts"],
                end_ts=r["end_ts"],
                summary=r["summary"],
                maintenance=r["maintenance"],
            )
            for r in fetch_all(self.db, sql, args)
        ]

    def current(self) -> list[CurrentState]:
        rows = fetch_all(
            self.db,
            "SELECT c.name AS name, c.kind AS kind, c.system AS system, s.hard AS hard, "
            "s.last_ts AS last_ts, s.last_status AS last_status, s.last_summary AS last_summary, "
            "(SELECT max(start_ts) FROM intervals i WHERE i.check_id=c.id) AS since_ts "
            "FROM checks c LEFT JOIN check_state s ON s.check_id=c.id ORDER BY c.name",
        )
        return [
            CurrentState(
                check=r["name"],
                kind=r["kind"],
                system=r["system"],
                hard=Status(r["hard"]) if r["hard"] is not None else None,
                since_ts=r["since_ts"],
                last_ts=r["last_ts"],
                last_status=Status(r["last_status"]) if r["last_status"] is not None else None,
                last_summary=r["last_summary"],
            )
            for r in rows
        ]

    def latest_result(self, check: str) -> StoredResult | None:
        row = fetch_one(
            self.db,
            f"SELECT {_RESULT_COLS} FROM results r "
            "JOIN checks c ON c.id=r.check_id WHERE c.name=? ORDER BY r.ts DESC, r.id DESC LIMIT 1",
            (check,),
        )
        return None if row is None else _stored_result(row)

    def metric_history(
        self, check: str, patterns: Sequence[str], since_ms: int
    ) -> dict[str, list[tuple[float, float]]]:
        """Hourly last values of metrics matching GLOB patterns: name -> [(epoch s, value)]."""
        cid = self.check_id(check)
        out: dict[str, list[tuple[float, float]]] = {}
        for pattern in patterns:
            for r in fetch_all(
                self.db,
                "SELECT metric, hour_ts, vlast FROM rollups "
                "WHERE check_id=? AND metric GLOB ? AND hour_ts>=? "
                "ORDER BY metric, hour_ts",
                (cid, pattern, since_ms),
            ):
                out.setdefault(r["metric"], []).append((r["hour_ts"] / 1000.0, float(r["vlast"])))
        return out

    def rollups(
        self, check: str, metric: str, start_ms: int, end_ms: int
    ) -> list[tuple[int, int, float, float, float]]:
        """(hour_ts, n, min, max, avg) for one metric."""
        cid = self.check_id(check)
        return [
            (r["hour_ts"], r["n"], r["vmin"], r["vmax"], r["vsum"] / r["n"])
            for r in fetch_all(
                self.db,
                "SELECT hour_ts, n, vmin, vmax, vsum FROM rollups WHERE check_id=? AND metric=? "
                "AND hour_ts>=? AND hour_ts<? ORDER BY hour_ts",
                (cid, metric, start_ms, end_ms),
            )
        ]

    def rollup_last_values(
        self, check: str, pattern: str, start_ms: int, end_ms: int
    ) -> Iterator[HourlyValue]:
        """The last value of each hour in [start, end) of the metrics matching a GLOB pattern,
        by metric then hour."""
        for r in scan(
            self.db,
            "SELECT metric, hour_ts, vlast FROM rollups WHERE check_id=? AND metric GLOB ? "
            "AND hour_ts>=? AND hour_ts<? ORDER BY metric, hour_ts",
            (self.check_id(check), pattern, start_ms, end_ms),
        ):
            yield HourlyValue(r["metric"], int(r["hour_ts"]), float(r["vlast"]))

    def latest_rollup(self, check: str, metric: str, start_ms: int, end_ms: int) -> float | None:
        """The last hourly value of one metric in [start, end); None when it has none there."""
        row = fetch_one(
            self.db,
            "SELECT vlast FROM rollups WHERE check_id=? AND metric=? AND hour_ts>=? AND hour_ts<? "
            "ORDER BY hour_ts DESC LIMIT 1",
            (self.check_id(check), metric, start_ms, end_ms),
        )
        return None if row is None else float(row["vlast"])

    def result_details(self, check: str, start_ms: int, end_ms: int) -> Iterator[tuple[int, str]]:
        """(ts, details JSON) of the check's results in [start, end) that have details, in time
        order; streamed, and the JSON left unparsed (a caller skips repeats without parsing)."""
        for r in scan(
            self.db,
            "SELECT ts, details FROM results WHERE check_id=? AND ts>=? AND ts<? AND details IS NOT NULL "
            "ORDER BY ts, id",
            (self.check_id(check), start_ms, end_ms),
        ):
            yield int(r["ts"]), str(r["details"])

    # ---------------------------------------------------------------- housekeeping

    def prune_results(self, older_than_ms: int, limit: int = 5000, now_ms: int | None = None) -> int:
        """Delete at most `limit` raw results older than the cut-off; roll-ups and intervals stay.

        Small batches keep each write transaction short so the recorder is never blocked long.
        Each batch is a contiguous run of the oldest sealed ids, recorded as an evidence
        checkpoint in the same transaction, so the chain still verifies after pruning.
        """
        from agent.store.evidence import prune_with_checkpoint

        with self.tx() as db:
            return prune_with_checkpoint(
                db,
                self.evidence_key,
                older_than_ms,
                limit,
                int(time.time() * 1000) if now_ms is None else now_ms,
            )

    def record_report(self, kind: str, period: str, generated_ms: int, path: str) -> None:
        with self.tx() as db:
            report_runs.record(db, kind, period, generated_ms, path)

    def report_done(self, kind: str, period: str) -> bool:
        return report_runs.is_done(self.db, kind, period)

    def integrity_check(self) -> str:
        return str(scalar(self.db, "PRAGMA integrity_check"))


def acquire_lock(store_path: Path) -> int:
    """An exclusive advisory lock next to the store; held until the process exits.

    The kernel drops the lock when the process dies (even by kill -9), so no stale lock
    needs cleaning up after a crash.
    """
    lock_path = store_path.with_name(store_path.name + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        _lock_fd(fd)
    except OSError:
        os.close(fd)
        holder = ""
        try:
            holder = lock_path.read_text().strip()
        except OSError:
            pass
        raise StoreLocked(
            f"another agent is already using {store_path}" + (f" (pid {holder})" if holder else "")
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd


def _lock_fd(fd: int) -> None:
    if os.name == "nt":
        import msvcrt

        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
    else:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
