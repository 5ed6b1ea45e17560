"""Fault records in the store: the `faults`, `fault_checks` and `fault_events` tables.

Plain reads and writes on a connection; the caller (agent.faults.records) owns the
transaction (`Store.tx()`), so a fault's change, its event and the outbox rows it triggers
commit together. Fault rows are returned as dicts keyed by column name, with the fault's
check names under "checks"; agent.faults.records turns them into `Fault` by name.

`fault_events` is append-only (trigger) and chained in the evidence log: the writer's next
seal links the events written here.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from agent.store.rows import Row, as_dict, fetch_all, fetch_one, scalar

FAULT_COLUMNS: tuple[str, ...] = (
    "id",
    "number",
    "system",
    "campus",
    "level",
    "level_initial",
    "type",
    "description",
    "impact",
    "start_ts",
    "detected_ts",
    "respond_deadline_ts",
    "restore_deadline_ts",
    "calendar_note",
    "acked_ts",
    "acked_by",
    "recovered_ts",
    "closed_ts",
    "closed_by",
    "cause",
    "measures",
    "flapping",
    "maintenance",
    "response_overdue",
    "restore_overdue",
    "warned_response",
    "warned_restore",
    "reminders",
    "last_reminder_ts",
)
"""Every column of `faults`, as the keys of a fault row (plus "checks")."""

_COLS = ", ".join(FAULT_COLUMNS)

Deadline = Literal["response", "restore"]
_WARNED: dict[Deadline, str] = {"response": "warned_response", "restore": "warned_restore"}
_OVERDUE: dict[Deadline, str] = {"response": "response_overdue", "restore": "restore_overdue"}


class FaultEvent(NamedTuple):
    ts: int
    actor: str
    action: str
    detail: str
    """JSON"""


@dataclass(frozen=True, slots=True)
class FaultSpan:
    """A fault's time span as availability links it to outages."""

    number: str
    system: str | None
    start_ts: int
    end_ts: int
    """Recovery (or closing) time; `now` while still open."""
    cause: str | None
    checks: frozenset[str]


# ------------------------------------------------------------------------------- reading


def check_names(db: sqlite3.Connection, fault_id: int) -> tuple[str, ...]:
    """The fault's checks in the order they failed."""
    rows = fetch_all(
        db,
        "SELECT check_name FROM fault_checks WHERE fault_id=? ORDER BY first_failed_ts, check_name",
        (fault_id,),
    )
    return tuple(r["check_name"] for r in rows)


def _with_checks(db: sqlite3.Connection, row: Row) -> dict[str, Any]:
    out = as_dict(row)
    out["checks"] = check_names(db, out["id"])
    return out


def fault(db: sqlite3.Connection, key: int | str) -> dict[str, Any] | None:
    """One fault by id (int) or number (str)."""
    col = "id" if isinstance(key, int) else "number"
    row = fetch_one(db, f"SELECT {_COLS} FROM faults WHERE {col}=?", (key,))
    return None if row is None else _with_checks(db, row)


def faults(
    db: sqlite3.Connection,
    open_only: bool = False,
    level: int | None = None,
    start_ms: int | None = None,
    end_ms: int | None = None,
) -> list[dict[str, Any]]:
    """Faults (not closed / of a level / started in [start, end)), by start time."""
    where: list[str] = []
    args: list[Any] = []
    if open_only:
        where.append("closed_ts IS NULL")
    if level is not None:
        where.append("level=?")
        args.append(level)
    if start_ms is not None:
        where.append("start_ts>=?")
        args.append(start_ms)
    if end_ms is not None:
        where.append("start_ts<?")
        args.append(end_ms)
    sql = f"SELECT {_COLS} FROM faults" + (" WHERE " + " AND ".join(where) if where else "")
    return [_with_checks(db, r) for r in fetch_all(db, sql + " ORDER BY start_ts, id", args)]


def unrecovered_of_system(db: sqlite3.Connection, system: str) -> dict[str, Any] | None:
    """The system's latest fault that has neither recovered nor closed."""
    row = fetch_one(
        db,
        f"SELECT {_COLS} FROM faults WHERE system=? AND recovered_ts IS NULL "
        "AND closed_ts IS NULL ORDER BY start_ts DESC LIMIT 1",
        (system,),
    )
    return None if row is None else _with_checks(db, row)


def unrecovered_of_check(db: sqlite3.Connection, check: str) -> dict[str, Any] | None:
    """The latest unrecovered, unclosed fault without a system that holds this check."""
    row = fetch_one(
        db,
        f"SELECT {_COLS} FROM faults f WHERE system IS NULL AND recovered_ts IS NULL "
        "AND closed_ts IS NULL AND EXISTS(SELECT 1 FROM fault_checks c WHERE c.fault_id=f.id "
        "AND c.check_name=?) ORDER BY start_ts DESC LIMIT 1",
        (check,),
    )
    return None if row is None else _with_checks(db, row)


def recovered_since(db: sqlite3.Connection, system: str | None, check: str, since_ms: int) -> int | None:
    """Id of the unclosed fault (of the system; of the check when it has none) that recovered
    at or after `since_ms`, the latest first."""
    if system is not None:
        row = fetch_one(
            db,
            "SELECT id FROM faults WHERE system=? AND closed_ts IS NULL AND recovered_ts>=? "
            "ORDER BY recovered_ts DESC LIMIT 1",
            (system, since_ms),
        )
    else:
        row = fetch_one(
            db,
            "SELECT f.id AS id FROM faults f JOIN fault_checks c ON c.fault_id=f.id WHERE f.system IS NULL "
            "AND c.check_name=? AND f.closed_ts IS NULL AND f.recovered_ts>=? "
            "ORDER BY f.recovered_ts DESC LIMIT 1",
            (check, since_ms),
        )
    return None if row is None else int(row["id"])


def recovered_between(db: sqlite3.Connection, start_ms: int, end_ms: int) -> list[int]:
    """Ids of the faults (whenever they started) that recovered in [start, end), by recovery."""
    rows = fetch_all(
        db,
        "SELECT id FROM faults WHERE recovered_ts>=? AND recovered_ts<? ORDER BY recovered_ts, id",
        (start_ms, end_ms),
    )
    return [int(r["id"]) for r in rows]


def failing_with(db: sqlite3.Connection, check: str) -> list[int]:
    """Ids of the unrecovered, unclosed faults in which this check has not recovered yet."""
    rows = fetch_all(
        db,
        "SELECT f.id AS id FROM faults f JOIN fault_checks c ON c.fault_id=f.id WHERE c.check_name=? "
        "AND c.recovered_ts IS NULL AND f.recovered_ts IS NULL AND f.closed_ts IS NULL",
        (check,),
    )
    return [int(r["id"]) for r in rows]


def unrecovered_checks(db: sqlite3.Connection, fault_id: int) -> int:
    return int(
        scalar(db, "SELECT count(*) FROM fault_checks WHERE fault_id=? AND recovered_ts IS NULL", (fault_id,))
    )


def last_number(db: sqlite3.Connection, prefix: str) -> int:
    """The highest sequence number of the fault numbers `prefix` + digits (0: none yet)."""
    n = scalar(
        db,
        "SELECT max(CAST(substr(number, ?) AS INTEGER)) FROM faults WHERE number LIKE ?",
        (len(prefix) + 1, prefix + "%"),
    )
    return int(n or 0)


def events(db: sqlite3.Connection, fault_id: int) -> list[FaultEvent]:
    rows = fetch_all(
        db, "SELECT ts, actor, action, detail FROM fault_events WHERE fault_id=? ORDER BY ts, id", (fault_id,)
    )
    return [FaultEvent(r["ts"], r["actor"], r["action"], r["detail"]) for r in rows]


def overdue_counts(db: sqlite3.Connection, start_ms: int, end_ms: int) -> dict[int, int]:
    """Faults per level started in [start, end) with an overdue response or recovery, outside
    maintenance."""
    rows = fetch_all(
        db,
        "SELECT level, count(*) AS n FROM faults WHERE start_ts>=? AND start_ts<? AND maintenance IS NULL "
        "AND (response_overdue=1 OR restore_overdue=1) GROUP BY level",
        (start_ms, end_ms),
    )
    return {int(r["level"]): int(r["n"]) for r in rows}


def spans_overlapping(db: sqlite3.Connection, start_ms: int, end_ms: int, now_ms: int) -> list[FaultSpan]:
    """Faults whose [start, recovery or close or now) overlaps [start_ms, end_ms), by start."""
    rows = fetch_all(
        db,
        "SELECT f.number AS number, f.system AS system, f.start_ts AS start_ts, "
        "coalesce(f.recovered_ts, f.closed_ts, ?) AS end_ts, f.cause AS cause, "
        "group_concat(fc.check_name, char(31)) AS checks FROM faults f "
        "LEFT JOIN fault_checks fc ON fc.fault_id = f.id "
        "WHERE f.start_ts < ? AND coalesce(f.recovered_ts, f.closed_ts, ?) > ? "
        "GROUP BY f.id ORDER BY f.start_ts",
        (now_ms, end_ms, now_ms, start_ms),
    )
    return [
        FaultSpan(
            r["number"],
            r["system"],
            r["start_ts"],
            r["end_ts"],
            r["cause"],
            frozenset((r["checks"] or "").split("\x1f")),
        )
        for r in rows
    ]


# ------------------------------------------------------------------------------- writing


def add_event(db: sqlite3.Connection, fault_id: int, ts: int, actor: str, action: str, detail: Any) -> None:
    """Append to the fault's history (`detail` is stored as JSON)."""
    db.execute(
        "INSERT INTO fault_events(fault_id, ts, actor, action, detail) VALUES(?,?,?,?,?)",
        (fault_id, ts, actor, action, json.dumps(detail, ensure_ascii=False, default=str)),
    )


def insert(
    db: sqlite3.Connection,
    *,
    number: str,
    system: str | None,
    campus: str | None,
    level: int,
    level_initial: int,
    type: str,
    description: str,
    impact: str,
    start_ts: int,
    detected_ts: int,
    respond_deadline_ts: int | None,
    restore_deadline_ts: int | None,
    calendar_note: str | None,
    flapping: bool,
    maintenance: str | None,
) -> int:
    """A new fault; returns its id."""
    cur = db.execute(
        "INSERT INTO faults(number, system, campus, level, level_initial, type, description, impact, "
        "start_ts, detected_ts, respond_deadline_ts, restore_deadline_ts, calendar_note, flapping, "
        "maintenance) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (
            number,
            system,
            campus,
            level,
            level_initial,
            type,
            description,
            impact,
            start_ts,
            detected_ts,
            respond_deadline_ts,
            restore_deadline_ts,
            calendar_note,
            int(flapping),
            maintenance,
        ),
    )
    return int(cur.lastrowid or 0)


def add_check(db: sqlite3.Connection, fault_id: int, check: str, first_failed_ts: int, summary: str) -> bool:
    """Join a check to the fault; False when it was part of it already (nothing written)."""
    cur = db.execute(
        "INSERT OR IGNORE INTO fault_checks(fault_id, check_name, first_failed_ts, last_summary) "
        "VALUES(?,?,?,?)",
        (fault_id, check, first_failed_ts, summary),
    )
    return cur.rowcount > 0


def check_failing_again(db: sqlite3.Connection, fault_id: int, check: str, summary: str) -> None:
    db.execute(
        "UPDATE fault_checks SET recovered_ts=NULL, last_summary=? WHERE fault_id=? AND check_name=?",
        (summary, fault_id, check),
    )


def check_recovered(db: sqlite3.Connection, fault_id: int, check: str, ts: int) -> None:
    db.execute(
        "UPDATE fault_checks SET recovered_ts=? WHERE fault_id=? AND check_name=?", (ts, fault_id, check)
    )


def clear_recovery(db: sqlite3.Connection, fault_id: int) -> None:
    db.execute("UPDATE faults SET recovered_ts=NULL WHERE id=?", (fault_id,))


def mark_recovered(db: sqlite3.Connection, fault_id: int, ts: int, restore_overdue: bool) -> None:
    """Recovered at `ts`; flapping ends; a restore overdue already marked stays marked."""
    db.execute(
        "UPDATE faults SET recovered_ts=?, restore_overdue=max(restore_overdue, ?), flapping=0 WHERE id=?",
        (ts, int(restore_overdue), fault_id),
    )


def raise_level(db: sqlite3.Connection, fault_id: int, level: int, impact: str) -> None:
    db.execute("UPDATE faults SET level=?, impact=? WHERE id=?", (level, impact, fault_id))


def mark_flapping(db: sqlite3.Connection, fault_id: int) -> None:
    db.execute("UPDATE faults SET flapping=1 WHERE id=?", (fault_id,))


def record_reminder(db: sqlite3.Connection, fault_id: int, reminders: int, ts: int) -> None:
    db.execute("UPDATE faults SET reminders=?, last_reminder_ts=? WHERE id=?", (reminders, ts, fault_id))


def mark_warned(db: sqlite3.Connection, fault_id: int, which: Deadline) -> None:
    db.execute(f"UPDATE faults SET {_WARNED[which]}=1 WHERE id=?", (fault_id,))


def mark_overdue(db: sqlite3.Connection, fault_id: int, which: Deadline) -> None:
    db.execute(f"UPDATE faults SET {_OVERDUE[which]}=1 WHERE id=?", (fault_id,))


def acknowledge(db: sqlite3.Connection, fault_id: int, ts: int, by: str, response_overdue: bool) -> None:
    """Acknowledged; a response overdue already marked stays marked."""
    db.execute(
        "UPDATE faults SET acked_ts=?, acked_by=?, response_overdue=max(response_overdue, ?) WHERE id=?",
        (ts, by, int(response_overdue), fault_id),
    )


def set_cause(db: sqlite3.Connection, fault_id: int, cause: str, measures: str) -> None:
    db.execute("UPDATE faults SET cause=?, measures=? WHERE id=?", (cause, measures, fault_id))


def close(db: sqlite3.Connection, fault_id: int, ts: int, by: str) -> None:
    db.execute("UPDATE faults SET closed_ts=?, closed_by=? WHERE id=?", (ts, by, fault_id))
