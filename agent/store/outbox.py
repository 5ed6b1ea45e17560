"""The notification outbox in the store: the `outbox` and `outbox_attempts` tables.

Plain reads and writes on a connection; the caller owns the transaction. Fault events queue
their notices in the fault's own transaction (agent.faults.records), the dispatcher records
each attempt and its outcome in one (agent.notify.outbox).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from agent.store.rows import Row, fetch_all


@dataclass(frozen=True, slots=True)
class DueMessage:
    id: int
    channel: str
    message: str
    """JSON"""
    attempts: int


def enqueue(
    db: sqlite3.Connection,
    *,
    created_ts: int,
    dedup_key: str,
    channel: str,
    event: str,
    fault_id: int | None,
    message: str,
    next_attempt_ts: int,
) -> bool:
    """Queue a message; False when one with this dedup key exists already (nothing written)."""
    cur = db.execute(
        "INSERT OR IGNORE INTO outbox(created_ts, dedup_key, channel, event, fault_id, message, "
        "next_attempt_ts) VALUES(?,?,?,?,?,?,?)",
        (created_ts, dedup_key, channel, event, fault_id, message, next_attempt_ts),
    )
    return cur.rowcount > 0


def enqueue_or_renew(
    db: sqlite3.Connection,
    *,
    created_ts: int,
    dedup_key: str,
    channel: str,
    event: str,
    message: str,
    next_attempt_ts: int,
) -> bool:
    """Queue a message that belongs to no fault (a report), or renew the undelivered one with
    this dedup key: the new message replaces it, pending again and due at `next_attempt_ts`.
    A delivered message is never renewed (False: nothing written)."""
    cur = db.execute(
        "INSERT INTO outbox(created_ts, dedup_key, channel, event, fault_id, message, "
        "next_attempt_ts) VALUES(?,?,?,?,NULL,?,?) "
        "ON CONFLICT(dedup_key) DO UPDATE SET message=excluded.message, status='pending', "
        "next_attempt_ts=excluded.next_attempt_ts, last_error=NULL "
        "WHERE outbox.status != 'delivered'",
        (created_ts, dedup_key, channel, event, message, next_attempt_ts),
    )
    return cur.rowcount > 0


def withdraw_pending(db: sqlite3.Connection, fault_id: int, event: str) -> int:
    """Withdraw the fault's unsent messages of this event; returns how many."""
    return db.execute(
        "UPDATE outbox SET status='withdrawn' WHERE fault_id=? AND event=? AND status='pending'",
        (fault_id, event),
    ).rowcount


def due(db: sqlite3.Connection, now_ms: int, limit: int) -> list[DueMessage]:
    """Pending messages whose next attempt is due, the longest waiting first; of one fault's
    messages on one channel, only the earliest pending one (the lowest id, i.e. queued first).

    So a fault's notices go out in the order of its events: "recovered" and "closed" wait while
    "opened" waits for its retry, "closed" waits for a "recovered" still in its hold. Only
    pending rows hold others back: delivered, withdrawn and permanently failed ones (a person
    has to fix the channel and `sentinel notifications retry`) do not, so a given-up notice
    never blocks the fault's later ones. Messages of no fault (reports) are not ordered.

    Both scans go through the partial index of pending rows (`outbox_due`), never the history
    of delivered rows; the subquery is not correlated, so it runs once per call.
    """
    rows = fetch_all(
        db,
        "SELECT id, channel, message, attempts FROM outbox "
        "WHERE status='pending' AND next_attempt_ts<=? AND (fault_id IS NULL OR id IN ("
        "SELECT min(id) FROM outbox WHERE status='pending' AND fault_id IS NOT NULL "
        "GROUP BY fault_id, channel)) "
        "ORDER BY next_attempt_ts, id LIMIT ?",
        (now_ms, limit),
    )
    return [DueMessage(r["id"], r["channel"], r["message"], r["attempts"]) for r in rows]


def record_attempt(db: sqlite3.Connection, outbox_id: int, ts: int, ok: bool, detail: str) -> None:
    db.execute(
        "INSERT INTO outbox_attempts(outbox_id, ts, ok, detail) VALUES(?,?,?,?)",
        (outbox_id, ts, int(ok), detail),
    )


def mark_delivered(db: sqlite3.Connection, outbox_id: int, attempts: int, ts: int, receipt: str) -> None:
    db.execute(
        "UPDATE outbox SET status='delivered', attempts=?, delivered_ts=?, receipt=?, last_error=NULL "
        "WHERE id=?",
        (attempts, ts, receipt, outbox_id),
    )


def schedule_retry(
    db: sqlite3.Connection, outbox_id: int, attempts: int, next_attempt_ts: int, error: str
) -> None:
    db.execute(
        "UPDATE outbox SET attempts=?, next_attempt_ts=?, last_error=? WHERE id=?",
        (attempts, next_attempt_ts, error, outbox_id),
    )


def mark_failed(db: sqlite3.Connection, outbox_id: int, attempts: int, error: str) -> None:
    db.execute(
        "UPDATE outbox SET status='failed', attempts=?, last_error=? WHERE id=?", (attempts, error, outbox_id)
    )


def requeue_failed(db: sqlite3.Connection, now_ms: int) -> int:
    """Put every permanently failed message back in the queue, due now; returns how many."""
    return db.execute(
        "UPDATE outbox SET status='pending', next_attempt_ts=? WHERE status='failed'", (now_ms,)
    ).rowcount


def listing(db: sqlite3.Connection, failed_only: bool = False, limit: int = 200) -> list[Row]:
    """The newest messages first (failed or retried ones only, when asked): id, created_ts,
    channel, event, fault_id, status, attempts, next_attempt_ts, last_error, delivered_ts,
    dedup_key, message."""
    where = "WHERE status != 'delivered' AND (status = 'failed' OR attempts > 0)" if failed_only else ""
    return fetch_all(
        db,
        "SELECT id, created_ts, channel, event, fault_id, status, attempts, next_attempt_ts, last_error, "
        f"delivered_ts, dedup_key, message FROM outbox {where} ORDER BY id DESC LIMIT ?",
        (limit,),
    )


def keys_like(db: sqlite3.Connection, event: str, pattern: str) -> list[str]:
    """Dedup keys of the messages of this event whose key matches a LIKE pattern."""
    rows = fetch_all(db, "SELECT dedup_key FROM outbox WHERE event=? AND dedup_key LIKE ?", (event, pattern))
    return [str(r["dedup_key"]) for r in rows]


def existing_keys(db: sqlite3.Connection, keys: Sequence[str]) -> set[str]:
    """Those of `keys` that have a message in the outbox (in any status)."""
    marks = ",".join("?" * len(keys))
    rows = fetch_all(db, f"SELECT dedup_key FROM outbox WHERE dedup_key IN ({marks})", list(keys))
    return {str(r["dedup_key"]) for r in rows}


def statuses(db: sqlite3.Connection, keys: Sequence[str]) -> list[Row]:
    """status and last_error of the messages with these dedup keys."""
    marks = ",".join("?" * len(keys))
    return fetch_all(db, f"SELECT status, last_error FROM outbox WHERE dedup_key IN ({marks})", list(keys))
