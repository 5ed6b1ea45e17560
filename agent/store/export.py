"""What the evidence export (agent.reports.export) reads from the store: the chained rows of a
period, the id range each table needs, and the link each range continues from.

Rows are read by column name; `chained_rows` returns them in the export's JSON Lines form
(the canonical columns in their documented order, then the row's link in hex).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from agent.store.evidence import TABLES, ChainTable
from agent.store.rows import fetch_all, fetch_one
from agent.store.verify_standalone import genesis

_LINK = "evidence_link_h"
"""The alias of the row's link: no canonical column may share it (checkpoints have an `h`)."""


def anchor(db: sqlite3.Connection, t: ChainTable, lo: int) -> str:
    """The link row `lo` continues from: the previous row's, a checkpoint's, or the genesis."""
    if lo <= 1:
        return genesis(t.name).hex()
    row = fetch_one(db, "SELECT h FROM evidence WHERE tbl=? AND id=?", (t.code, lo - 1))
    if row is not None:
        return bytes(row["h"]).hex()
    cp = fetch_one(
        db,
        "SELECT h FROM evidence_checkpoints WHERE tbl=? AND last_id=? ORDER BY id DESC LIMIT 1",
        (t.name, lo - 1),
    )
    return str(cp["h"]) if cp is not None else ""


def ranges(db: sqlite3.Connection, start_ms: int, end_ms: int) -> dict[str, tuple[int, int] | None]:
    """The contiguous id range of each chained table (in `TABLES` order) the period needs."""

    def span(sql: str, args: Sequence[Any]) -> tuple[int | None, int | None]:
        row = fetch_one(db, sql, args)  # an aggregate without GROUP BY: always one row
        return (None, None) if row is None else (row["lo"], row["hi"])

    def union(*spans: tuple[int | None, int | None]) -> tuple[int, int] | None:
        los = [s[0] for s in spans if s[0] is not None]
        his = [s[1] for s in spans if s[1] is not None]
        return (min(los), max(his)) if los and his else None

    out: dict[str, tuple[int, int] | None] = {}
    for t in TABLES:
        in_period = span(
            f"SELECT min(id) AS lo, max(id) AS hi FROM {t.name} WHERE {t.ts} >= ? AND {t.ts} < ?",
            (start_ms, end_ms),
        )
        if t.name == "interval_log":
            # Every open and close event of an interval that overlaps the period.
            overlapping = span(
                "SELECT min(o.id) AS lo, max(o.id) AS hi FROM interval_log o "
                "JOIN intervals i ON i.id = o.interval_id "
                "WHERE i.start_ts < ? AND (i.end_ts IS NULL OR i.end_ts > ?)",
                (end_ms, start_ms),
            )
            out[t.name] = union(in_period, overlapping)
        elif t.name == "run_log":
            overlapping = span(
                "SELECT min(l.id) AS lo, max(l.id) AS hi FROM run_log l JOIN agent_runs r ON r.id = l.run_id "
                "WHERE r.started_ts < ? AND coalesce(r.stopped_ts, r.heartbeat_ts) > ?",
                (end_ms, start_ms),
            )
            out[t.name] = union(in_period, overlapping)
        elif t.name in (
            "maintenance_log",
            "exclusions_log",
            "approvals",
            "config_versions",
            "evidence_checkpoints",
        ):
            # Ledgers are small, a window may have been recorded (or approved) long before or
            # after the time it applies to, and the configuration in force may date from before.
            out[t.name] = union(span(f"SELECT min(id) AS lo, max(id) AS hi FROM {t.name}", ()))
        else:
            out[t.name] = union(in_period)
    return out


def chained_rows(db: sqlite3.Connection, t: ChainTable, lo: int, hi: int) -> list[list[Any]]:
    """Rows `lo`..`hi` of `t`: the canonical columns in order, then the row's link in hex (None
    while unsealed)."""
    cols = ", ".join(f'{e} AS "{c}"' for e, c in zip(t.exprs, t.columns, strict=True))
    sql = (
        f'SELECT {cols}, e.h AS "{_LINK}" FROM {t.source()} LEFT JOIN evidence e ON e.tbl = {t.code} '
        "AND e.id = t.id WHERE t.id BETWEEN ? AND ? ORDER BY t.id"
    )
    return [
        [*(r[c] for c in t.columns), None if r[_LINK] is None else bytes(r[_LINK]).hex()]
        for r in fetch_all(db, sql, (lo, hi))
    ]
