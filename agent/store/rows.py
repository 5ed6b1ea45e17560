"""Reading rows by column name.

Every query in agent/store reads its rows as `sqlite3.Row` (index by the column's name or
alias), never by position: adding or reordering a column then cannot silently shift a value
into the wrong field. The factory is set per cursor, not on the connection, so code that still
reads a connection's plain tuples (tests tampering with a store, the standalone verifier) is
unaffected.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any

Row = sqlite3.Row
"""A result row: `row["column"]`; `row.keys()` lists the columns in SELECT order."""


def _cursor(db: sqlite3.Connection) -> sqlite3.Cursor:
    cur = db.cursor()
    cur.row_factory = sqlite3.Row
    return cur


def fetch_all(db: sqlite3.Connection, sql: str, args: Sequence[Any] = ()) -> list[Row]:
    rows: list[Row] = _cursor(db).execute(sql, args).fetchall()
    return rows


def fetch_one(db: sqlite3.Connection, sql: str, args: Sequence[Any] = ()) -> Row | None:
    row: Row | None = _cursor(db).execute(sql, args).fetchone()
    return row


def scan(db: sqlite3.Connection, sql: str, args: Sequence[Any] = (), chunk: int = 4096) -> Iterator[Row]:
    """Rows of a large result, fetched `chunk` at a time (never the whole result in memory)."""
    cur = _cursor(db).execute(sql, args)
    while True:
        rows = cur.fetchmany(chunk)
        if not rows:
            return
        yield from rows


def positions(cur: sqlite3.Cursor, *names: str) -> tuple[int, ...]:
    """Where the named columns are in this cursor's plain tuple rows, looked up by name once.

    For the few loops over millions of rows (evidence verification), where building a
    `sqlite3.Row` per row costs a third of the read: the mapping is still by name.
    """
    index = {d[0]: i for i, d in enumerate(cur.description)}
    return tuple(index[n] for n in names)


def scalar(db: sqlite3.Connection, sql: str, args: Sequence[Any] = ()) -> Any:
    """The single value of a one-column query (`SELECT count(*) ...`); None when no row."""
    row = db.execute(sql, args).fetchone()
    return None if row is None else row[0]


def as_dict(row: Row) -> dict[str, Any]:
    # keys(): iterating a Row yields its values, not its column names
    return {name: row[name] for name in row.keys()}  # noqa: SIM118
