"""The two ledgers of excluded time in the store: maintenance windows (`maintenance`,
`maintenance_log`) and force-majeure records (`exclusions`, `exclusions_log`), and the
approvals of both (`approvals`: one row per party that approved a record, append-only).

A ledger row is never edited or deleted: removal marks it. Every add and remove writes the
row and its entry in the append-only, evidence-chained log together (here, in the caller's
transaction), and `agent.store.evidence` checks that the active rows are exactly what the log
leaves active, so the log entries are written in the form it reads back.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence

from agent.store.rows import Row, fetch_all, fetch_one, scalar

# ------------------------------------------------------------------------------- maintenance


def _log_maintenance(db: sqlite3.Connection, ts: int, actor: str, action: str, name: str, spec: str) -> None:
    db.execute(
        "INSERT INTO maintenance_log(ts, actor, action, name, spec) VALUES(?,?,?,?,?)",
        (ts, actor, action, name, spec),
    )


def active_window(db: sqlite3.Connection, name: str) -> Row | None:
    """The active (not removed) window of this name: id, source, spec (JSON), created_ts."""
    return fetch_one(
        db,
        "SELECT id, source, spec, created_ts FROM maintenance WHERE name=? AND removed_ts IS NULL",
        (name,),
    )


def add_window(db: sqlite3.Connection, name: str, source: str, spec: str, ts: int, by: str) -> int:
    """Record a window (`spec`: its JSON) and log the addition; returns its id."""
    cur = db.execute(
        "INSERT INTO maintenance(name, source, spec, created_ts, created_by) VALUES(?,?,?,?,?)",
        (name, source, spec, ts, by),
    )
    _log_maintenance(db, ts, by, "add", name, spec)
    return int(cur.lastrowid or 0)


def remove_window(db: sqlite3.Connection, window_id: int, name: str, spec: str, ts: int, by: str) -> None:
    """Mark the window removed and log the removal with `spec` (JSON)."""
    db.execute("UPDATE maintenance SET removed_ts=?, removed_by=? WHERE id=?", (ts, by, window_id))
    _log_maintenance(db, ts, by, "remove", name, spec)


def windows(db: sqlite3.Connection, include_removed: bool = False) -> list[Row]:
    """Windows by creation: id, name, source, spec (JSON), created_ts, created_by, removed_ts,
    removed_by."""
    where = "" if include_removed else "WHERE removed_ts IS NULL"
    return fetch_all(
        db,
        "SELECT id, name, source, spec, created_ts, created_by, removed_ts, removed_by FROM maintenance "
        f"{where} ORDER BY created_ts, id",
    )


def window_change_token(db: sqlite3.Connection) -> int:
    """Grows with every window added or removed and every approval given: both ids only grow,
    so their sum moves whenever either table gains a row."""
    return int(
        scalar(
            db,
            "SELECT (SELECT coalesce(max(id), 0) FROM maintenance_log) "
            "+ (SELECT coalesce(max(id), 0) FROM approvals)",
        )
    )


def window_log(db: sqlite3.Connection) -> list[Row]:
    """The append-only change log of the windows, oldest first: ts, actor, action, name."""
    return fetch_all(db, "SELECT ts, actor, action, name FROM maintenance_log ORDER BY id")


# ------------------------------------------------------------------------------- force majeure


def _log_exclusion(db: sqlite3.Connection, ts: int, actor: str, action: str, name: str, record: str) -> None:
    db.execute(
        "INSERT INTO exclusions_log(ts, actor, action, name, record) VALUES(?,?,?,?,?)",
        (ts, actor, action, name, record),
    )


def active_exclusion(db: sqlite3.Connection, name: str) -> Row | None:
    """The active (not removed) record of this name: id, source, created_ts."""
    return fetch_one(
        db, "SELECT id, source, created_ts FROM exclusions WHERE name=? AND removed_ts IS NULL", (name,)
    )


def add_exclusion(
    db: sqlite3.Connection,
    *,
    name: str,
    kind: str,
    start_ms: int,
    end_ms: int,
    systems: Sequence[str],
    reason: str,
    approved_by: str,
    start_local: str,
    end_local: str,
    source: str,
    ts: int,
    by: str,
) -> int:
    """Record an exclusion and log the addition; returns its id.

    The log entry carries the exact instants the table holds, so `sentinel verify` can check
    the table against the chained log without knowing the site's time zone; `start_local` and
    `end_local` are the instants as the user wrote them (ISO 8601).
    """
    text = json.dumps(
        {
            "name": name,
            "start_ms": start_ms,
            "end_ms": end_ms,
            "systems": list(systems),
            "reason": reason,
            "approved_by": approved_by,
            "start_local": start_local,
            "end_local": end_local,
        },
        ensure_ascii=False,
    )
    cur = db.execute(
        "INSERT INTO exclusions(name, kind, start_ts, end_ts, systems, reason, approved_by, source, "
        "created_ts, created_by) VALUES(?,?,?,?,?,?,?,?,?,?)",
        (
            name,
            kind,
            start_ms,
            end_ms,
            json.dumps(list(systems), ensure_ascii=False),
            reason,
            approved_by,
            source,
            ts,
            by,
        ),
    )
    _log_exclusion(db, ts, by, "add", name, text)
    return int(cur.lastrowid or 0)


def remove_exclusion(
    db: sqlite3.Connection, exclusion_id: int, name: str, ts: int, by: str, why: str, logged: str
) -> None:
    """Mark the record removed (by whom, why) and log the removal with `logged` (JSON)."""
    db.execute(
        "UPDATE exclusions SET removed_ts=?, removed_by=?, removed_reason=? WHERE id=?",
        (ts, by, why, exclusion_id),
    )
    _log_exclusion(db, ts, by, "remove", name, logged)


def exclusions(db: sqlite3.Connection, include_removed: bool = False) -> list[Row]:
    """Records by start: id, name, start_ts, end_ts, systems (JSON list), reason, approved_by,
    source, created_ts, created_by, removed_ts, removed_by, removed_reason."""
    where = "" if include_removed else "WHERE removed_ts IS NULL"
    return fetch_all(
        db,
        "SELECT id, name, start_ts, end_ts, systems, reason, approved_by, source, created_ts, created_by, "
        f"removed_ts, removed_by, removed_reason FROM exclusions {where} ORDER BY start_ts, id",
    )


def exclusion_log(db: sqlite3.Connection) -> list[Row]:
    """The append-only change log of the records, oldest first: ts, actor, action, name."""
    return fetch_all(db, "SELECT ts, actor, action, name FROM exclusions_log ORDER BY id")


# ------------------------------------------------------------------------------- approvals


def add_approval(
    db: sqlite3.Connection,
    *,
    ledger: str,
    record_id: int,
    name: str,
    party: str,
    approver: str,
    ts: int,
    os_user: str,
) -> int:
    """Append one party's approval of a record (`ledger`: 'maintenance' or 'exclusions',
    `record_id`: the id in that table); returns its id."""
    cur = db.execute(
        "INSERT INTO approvals(ledger, record_id, name, party, approver, ts, os_user) VALUES(?,?,?,?,?,?,?)",
        (ledger, record_id, name, party, approver, ts, os_user),
    )
    return int(cur.lastrowid or 0)


def approvals(db: sqlite3.Connection, ledger: str, record_id: int | None = None) -> list[Row]:
    """The approvals of one ledger (or of one record of it), oldest first: id, record_id, name,
    party, approver, ts, os_user."""
    where, args = ("WHERE ledger=?", (ledger,)) if record_id is None else (
        "WHERE ledger=? AND record_id=?", (ledger, record_id))  # fmt: skip
    return fetch_all(
        db,
        f"SELECT id, record_id, name, party, approver, ts, os_user FROM approvals {where} ORDER BY ts, id",
        args,
    )


def orphan_approval(db: sqlite3.Connection) -> Row | None:
    """The first approval whose record is missing from its ledger table or carries another name
    (an approval moved onto another record): id, ledger, record_id, name."""
    return fetch_one(
        db,
        "SELECT a.id, a.ledger, a.record_id, a.name FROM approvals a "
        "LEFT JOIN maintenance m ON a.ledger = 'maintenance' AND m.id = a.record_id "
        "LEFT JOIN exclusions x ON a.ledger = 'exclusions' AND x.id = a.record_id "
        "WHERE coalesce(m.name, x.name) IS NOT a.name ORDER BY a.id LIMIT 1",
    )
