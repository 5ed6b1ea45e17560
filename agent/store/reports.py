"""The reports written so far, in the store's `report_runs` table: one row per kind and period.

A row says the report is done (the schedule no longer owes it); it is written once the report
is archived (and, with recipients, queued for them), and taken off again when it must be
written anew. Plain reads and writes on a connection; the caller owns the transaction.
"""

from __future__ import annotations

import sqlite3

from agent.store.rows import fetch_all, fetch_one


def record(db: sqlite3.Connection, kind: str, period: str, generated_ms: int, path: str) -> None:
    """Mark the report done, generated at `generated_ms` into `path` (a re-run replaces both)."""
    db.execute(
        "INSERT INTO report_runs(kind, period, generated_ts, path) VALUES(?,?,?,?) "
        "ON CONFLICT(kind, period) DO UPDATE SET generated_ts=excluded.generated_ts, "
        "path=excluded.path",
        (kind, period, generated_ms, path),
    )


def is_done(db: sqlite3.Connection, kind: str, period: str) -> bool:
    return fetch_one(db, "SELECT 1 FROM report_runs WHERE kind=? AND period=?", (kind, period)) is not None


def done(db: sqlite3.Connection) -> set[tuple[str, str]]:
    """(kind, period) of every report done."""
    return {(str(r["kind"]), str(r["period"])) for r in fetch_all(db, "SELECT kind, period FROM report_runs")}


def generated_at(db: sqlite3.Connection, kind: str, period: str) -> int | None:
    """When the report was generated (epoch ms), if it is done."""
    row = fetch_one(db, "SELECT generated_ts FROM report_runs WHERE kind=? AND period=?", (kind, period))
    return None if row is None else int(row["generated_ts"])


def forget(db: sqlite3.Connection, kind: str, period: str) -> None:
    """Take the report off the done list."""
    db.execute("DELETE FROM report_runs WHERE kind=? AND period=?", (kind, period))
