"""Evidence chain: every stored result, state-interval change, agent run, fault event,
maintenance and exclusion change is linked into a per-table hash chain, so the committee can
prove nothing was edited, deleted, inserted or reordered after the fact.

Each chained table's rows are linked in id order: h_i = HMAC-SHA-256(key, h_{i-1} ||
canonical(row_i)) (plain SHA-256 only for a store sealed before keys were created); the encoding
is documented (and implemented) in `agent.store.verify_standalone`, the stdlib-only script that
ships in every export. Links live in `evidence(tbl, id, h)`; every write transaction
(`Store.tx`) seals the rows it added before it commits, so no committed row is ever unsealed,
whichever command wrote it and whether an agent runs or not; `verify` names any unsealed row.

The key is `storage.evidence_key` or, when that is not configured, a random key the first
writer creates in a 0600 file next to the store (`<store>.key`, see `evidence_key`); the store
keeps only its fingerprint (`key_id`).

Mutable rows are evidenced through append-only logs written in the same transactions:
`interval_log` (every interval opened and closed) and `run_log` (agent starts and stops);
`verify` checks that the `intervals` and `agent_runs` tables (which availability reads) still
say what their logs say.

Pruning raw results writes a checkpoint (table, first and last id, count, link at the last id)
in the same transaction as the delete; checkpoints form a chain of their own, so a rewritten
checkpoint (to hide a larger deletion) breaks that chain.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import sqlite3
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.store.rows import Row, fetch_all, fetch_one, positions, scalar, scan
from agent.store.verify_standalone import Problem, Walk, canonical, genesis, key_id, link, walk
from agent.store.windows import orphan_approval

if TYPE_CHECKING:
    from agent.config.schema import Storage

log = logging.getLogger("sentinel.evidence")


@dataclass(frozen=True, slots=True)
class ChainTable:
    name: str
    code: int
    columns: tuple[str, ...]
    """Canonical column names, id first (documented in the export README)."""
    exprs: tuple[str, ...]
    """SQL expression of each column over `t` (the table) and `c` (checks, when joined)."""
    ts: str
    join_checks: bool = False

    def source(self) -> str:
        join = " LEFT JOIN checks c ON c.id = t.check_id" if self.join_checks else ""
        return f"{self.name} t{join}"


TABLES: tuple[ChainTable, ...] = (
    ChainTable(
        "results",
        1,
        ("id", "check", "ts", "status", "duration_ms", "summary", "metrics", "details", "run_id"),
        (
            "t.id",
            "c.name",
            "t.ts",
            "t.status",
            "t.duration_ms",
            "t.summary",
            "t.metrics",
            "t.details",
            "t.run_id",
        ),
        "ts",
        join_checks=True,
    ),
    ChainTable(
        "interval_log",
        2,
        ("id", "interval_id", "event", "check", "ts", "state", "summary", "maintenance", "run_id"),
        (
            "t.id",
            "t.interval_id",
            "t.event",
            "c.name",
            "t.ts",
            "t.state",
            "t.summary",
            "t.maintenance",
            "t.run_id",
        ),
        "ts",
        join_checks=True,
    ),
    ChainTable(
        "run_log",
        3,
        ("id", "run_id", "event", "ts", "pid", "host", "version"),
        ("t.id", "t.run_id", "t.event", "t.ts", "t.pid", "t.host", "t.version"),
        "ts",
    ),
    ChainTable(
        "fault_events",
        4,
        ("id", "fault_id", "ts", "actor", "action", "detail"),
        ("t.id", "t.fault_id", "t.ts", "t.actor", "t.action", "t.detail"),
        "ts",
    ),
    ChainTable(
        "maintenance_log",
        5,
        ("id", "ts", "actor", "action", "name", "spec"),
        ("t.id", "t.ts", "t.actor", "t.action", "t.name", "t.spec"),
        "ts",
    ),
    ChainTable(
        "exclusions_log",
        6,
        ("id", "ts", "actor", "action", "name", "record"),
        ("t.id", "t.ts", "t.actor", "t.action", "t.name", "t.record"),
        "ts",
    ),
    ChainTable(
        "approvals",
        8,
        ("id", "ledger", "record_id", "name", "party", "approver", "ts", "os_user"),
        ("t.id", "t.ledger", "t.record_id", "t.name", "t.party", "t.approver", "t.ts", "t.os_user"),
        "ts",
    ),
    ChainTable(
        "config_versions",
        9,
        ("id", "ts", "run_id", "hash", "config"),
        ("t.id", "t.ts", "t.run_id", "t.hash", "t.config"),
        "ts",
    ),
    ChainTable(
        "evidence_checkpoints",
        7,
        ("id", "tbl", "first_id", "last_id", "n", "h", "min_ts", "max_ts", "created_ts"),
        ("t.id", "t.tbl", "t.first_id", "t.last_id", "t.n", "t.h", "t.min_ts", "t.max_ts", "t.created_ts"),
        "created_ts",
    ),
)
BY_NAME = {t.name: t for t in TABLES}
CHECKPOINTS = BY_NAME["evidence_checkpoints"]


class KeyMismatch(RuntimeError):
    """The chain was sealed with another key (or without one)."""


def load_key(secret: Any) -> bytes | None:
    """The HMAC key from a `probes.settings.Secret` (None when not configured)."""
    if secret is None:
        return None
    value = secret.reveal().strip()
    return value.encode("utf-8") if value else None


def stored_key_id(db: sqlite3.Connection) -> str | None:
    """The fingerprint of the key that sealed the chain: "" sealed without a key (a legacy
    store), None not sealed yet (or a store older than the chain)."""
    try:
        row = fetch_one(db, "SELECT value FROM meta WHERE key='evidence_key_id'")
    except sqlite3.OperationalError:  # no meta table: nothing was ever written
        return None
    return None if row is None else str(row["value"])


# ------------------------------------------------------------------------ the key


class KeyFileError(RuntimeError):
    """The evidence key file cannot be used (too open, unreadable, empty) or is missing for a
    chain sealed with it. The text names the file, never its content."""


KEY_BYTES = 32
"""Random bytes of a created key; the file holds them as hex text, and the key is that text
(so `verify.py --key-file <store>.key` and `storage.evidence_key: file:<store>.key` use it
as is)."""


def key_path(store_path: Path) -> Path:
    """Where the key created for a store lives: next to it, `<store>.key`."""
    return store_path.with_name(store_path.name + ".key")


def evidence_key(storage: Storage, create: bool) -> bytes | None:
    """The HMAC key every writer and reader of the store at `storage.path` uses.

    `storage.evidence_key` when configured; else the key file next to the store when it
    exists; else, for a `create`-ing writer (the agent, a CLI command that writes) of a store
    whose chain is not sealed yet, a new random key written to that file. A store already
    sealed without a key and no key file (a legacy store) stays keyless (None).

    A writer (`create`) is refused (KeyFileError) a key that is not the one that sealed the
    chain, or none when the chain's key is nowhere to be found: every row it wrote would stay
    unsealed. A reader gets what there is, and `verify` reports a mismatch.
    """
    path = key_path(storage.path)
    if storage.evidence_key is not None:
        key, where = load_key(storage.evidence_key), "storage.evidence_key"
    else:
        key, where = _read_key_file(path), str(path)
    if not create:
        return key
    sealed_with = _sealed_key_id(storage.path)
    if key is None and sealed_with is None:
        return _create_key_file(path)
    if key is None and sealed_with:
        raise KeyFileError(
            f"the evidence chain of {storage.path} is sealed with key {sealed_with}, but its key file "
            f"{path} is missing and storage.evidence_key is not set: restore the key file before writing"
        )
    if key is not None and sealed_with is not None and key_id(key) != sealed_with:
        sealed = f"with key {sealed_with}" if sealed_with else "without a key (a legacy store)"
        raise KeyFileError(
            f"the evidence chain of {storage.path} is sealed {sealed}, not with the key of {where} "
            f"(key id {key_id(key)}); a chain is never re-sealed: use the key that sealed it"
        )
    return key


def _read_key_file(path: Path) -> bytes | None:
    """The key in `path` (None when there is no such file); refused, like ssh does with a
    private key, when group or others may access it."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise KeyFileError(f"evidence key file {path}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)  # the file opened, not whatever the path names a moment later
        if not stat.S_ISREG(st.st_mode):
            raise KeyFileError(f"evidence key file {path} is not a regular file")
        # Windows reports emulated mode bits (always group/other readable); NTFS ACLs protect
        # the file there, as for every other secret file (probes.values.Secret).
        if os.name != "nt" and st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KeyFileError(
                f"evidence key file {path} is accessible by group or others "
                f"(mode {stat.S_IMODE(st.st_mode):04o}); it must be readable by its owner only: "
                f"chmod 600 {path}"
            )
        chunks = []
        while chunk := os.read(fd, 4096):
            chunks.append(chunk)
    finally:
        os.close(fd)
    key = b"".join(chunks).strip()
    if not key:
        raise KeyFileError(f"evidence key file {path} is empty")
    return key


def _sealed_key_id(store_path: Path) -> str | None:
    """`stored_key_id` of the store file, read without creating or migrating it."""
    if not store_path.exists():
        return None
    db = sqlite3.connect(f"{store_path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)
    try:
        db.execute("PRAGMA busy_timeout=10000")
        return stored_key_id(db)
    finally:
        db.close()


def _create_key_file(path: Path) -> bytes:
    """A new random key in `path`, mode 0600 whatever the umask, created atomically: the file
    appears complete or not at all, and when two first writers race, both use the winner's."""
    key = secrets.token_hex(KEY_BYTES).encode("ascii")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(tmp, flags, 0o600)
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, 0o600)  # the umask may have taken bits off; never more than 0600
        os.write(fd, key + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        # link() fails when the name exists: never overwrites a key another writer created.
        os.link(tmp, path)
    except FileExistsError:
        existing = _read_key_file(path)
        if existing is None:  # removed between link() and the read: a human is at work
            raise KeyFileError(f"evidence key file {path} appeared and vanished; try again") from None
        return existing
    except OSError:
        # A file system without hard links: the exclusive create is still atomic, the content
        # follows it (a reader in between sees an empty file and is told so).
        try:
            _exclusive_write(path, key)
        except FileExistsError:
            existing = _read_key_file(path)
            if existing is None:
                raise KeyFileError(f"evidence key file {path} appeared and vanished; try again") from None
            return existing
    finally:
        tmp.unlink(missing_ok=True)
    sync_dir(path.parent)
    log.info("evidence key created: %s (key id %s)", path, key_id(key))
    return key


def _exclusive_write(path: Path, key: bytes) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags, 0o600)
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, 0o600)
        os.write(fd, key + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_dir(directory: Path) -> None:
    """The new name survives a power loss (POSIX: fsync the directory)."""
    if os.name == "nt":
        return
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on a directory; the file itself is synced
    finally:
        os.close(fd)


def _check_key(db: sqlite3.Connection, key: bytes | None) -> None:
    stored = stored_key_id(db)
    mine = key_id(key)
    if stored is None:
        db.execute("INSERT INTO meta(key, value) VALUES('evidence_key_id', ?)", (mine,))
    elif stored != mine:
        raise KeyMismatch(
            "the evidence chain was sealed "
            + ("without a key" if not stored else f"with key {stored}")
            + (f", this agent has key {mine}" if mine else ", this agent has no key (storage.evidence_key)")
        )


def _select(t: ChainTable, where: str = "") -> str:
    """The canonical columns of `t`, in their documented order, each named as documented."""
    cols = ", ".join(f'{e} AS "{c}"' for e, c in zip(t.exprs, t.columns, strict=True))
    return f"SELECT {cols} FROM {t.source()} {where}"


def seal(
    db: sqlite3.Connection, key: bytes | None, now_ms: int, tables: tuple[ChainTable, ...] = TABLES
) -> int:
    """Link every row not linked yet; call inside the writer's transaction. Returns rows sealed."""
    _check_key(db, key)
    total = 0
    for t in tables:
        head = fetch_one(db, "SELECT last_id, h, rows FROM evidence_heads WHERE tbl=?", (t.code,))
        if head is None:
            last_id, prev, count = 0, genesis(t.name), 0
        else:
            last_id, prev, count = head["last_id"], head["h"], head["rows"]
        rows = fetch_all(db, _select(t, "WHERE t.id > ? ORDER BY t.id"), (last_id,))
        if not rows:
            continue
        links = []
        for row in rows:
            prev = link(prev, canonical(row), key)  # the values in the documented column order
            links.append((t.code, row["id"], prev))
        db.executemany("INSERT INTO evidence(tbl, id, h) VALUES(?,?,?)", links)
        db.execute(
            "INSERT INTO evidence_heads(tbl, last_id, h, rows, sealed_ts) VALUES(?,?,?,?,?) "
            "ON CONFLICT(tbl) DO UPDATE SET last_id=excluded.last_id, h=excluded.h, rows=excluded.rows, "
            "sealed_ts=excluded.sealed_ts",
            (t.code, rows[-1]["id"], prev, count + len(rows), now_ms),
        )
        total += len(rows)
    return total


def _pending_sql() -> str:
    # One statement, one flag per table: is its newest row past its sealed head? max(id) of an
    # INTEGER PRIMARY KEY is a single b-tree descent, so a transaction that added no chained row
    # (a heartbeat, an outbox update) pays one cheap query for its seal.
    flags = ", ".join(
        f"(SELECT max(id) FROM {t.name}) > "
        f'coalesce((SELECT last_id FROM evidence_heads WHERE tbl={t.code}), 0) AS "{t.name}"'
        for t in TABLES
    )
    return f"SELECT {flags}"


_PENDING = _pending_sql()


def pending(db: sqlite3.Connection) -> tuple[ChainTable, ...]:
    """The chained tables holding rows newer than their sealed head."""
    row = fetch_one(db, _PENDING)
    return () if row is None else tuple(t for t in TABLES if row[t.name])


def seal_safely(db: sqlite3.Connection, key: bytes | None, now_ms: int) -> None:
    """Seal inside the caller's transaction; a failure never costs the caller's rows (they
    stay unsealed, and `verify` names them)."""
    try:
        tables = pending(db)
    except sqlite3.OperationalError as exc:  # a store older than the chain (mid-migration)
        log.debug("evidence chain not sealed: %s", exc)
        return
    if not tables:
        return
    db.execute("SAVEPOINT evidence_seal")
    try:
        seal(db, key, now_ms, tables)
    except (KeyMismatch, sqlite3.Error) as exc:
        db.execute("ROLLBACK TO evidence_seal")
        log.error("evidence chain not sealed: %s", exc)
    db.execute("RELEASE evidence_seal")


def prune_with_checkpoint(
    db: sqlite3.Connection, key: bytes | None, older_than_ms: int, limit: int, now_ms: int
) -> int:
    """Delete up to `limit` sealed raw results older than the cut-off, oldest ids first, and
    record the pruned segment as a checkpoint in the same transaction.

    Only a contiguous id prefix is pruned, and never the newest row (SQLite would reuse its id).
    """
    t = BY_NAME["results"]
    sealed_to = scalar(db, "SELECT last_id FROM evidence_heads WHERE tbl=?", (t.code,))
    top = scalar(db, "SELECT max(id) FROM results")
    if sealed_to is None or top is None:
        return 0
    upto = min(sealed_to, top - 1)
    rows = fetch_all(db, "SELECT id, ts FROM results WHERE id <= ? ORDER BY id LIMIT ?", (upto, limit))
    n = 0
    for row in rows:
        if row["ts"] >= older_than_ms:
            break
        n += 1
    if n == 0:
        return 0
    first, last = rows[0]["id"], rows[n - 1]["id"]
    tss = [row["ts"] for row in rows[:n]]
    h = scalar(db, "SELECT h FROM evidence WHERE tbl=? AND id=?", (t.code, last))
    if h is None:
        return 0
    db.execute(
        "INSERT INTO evidence_checkpoints(tbl, first_id, last_id, n, h, min_ts, max_ts, created_ts) "
        "VALUES(?,?,?,?,?,?,?,?)",
        (t.name, first, last, n, bytes(h).hex(), min(tss), max(tss), now_ms),
    )
    db.execute("DELETE FROM results WHERE id BETWEEN ? AND ?", (first, last))
    db.execute("DELETE FROM evidence WHERE tbl=? AND id BETWEEN ? AND ?", (t.code, first, last))
    seal(db, key, now_ms, (CHECKPOINTS,))
    return n


# ------------------------------------------------------------------------ head


@dataclass(frozen=True, slots=True)
class ChainHead:
    digest_hex: str
    """SHA-256 over every table's last link: names the exact state a figure was computed from."""
    sealed_at_ms: int | None
    rows: int
    """Rows ever linked (pruned ones included)."""

    def short(self) -> str:
        return self.digest_hex[:16]


def head(db: sqlite3.Connection) -> ChainHead | None:
    """The current chain head of the store on `db` (None for a store older than schema 4)."""
    try:
        rows = {
            r["tbl"]: (r["last_id"], bytes(r["h"]), r["rows"], r["sealed_ts"])
            for r in fetch_all(db, "SELECT tbl, last_id, h, rows, sealed_ts FROM evidence_heads")
        }
    except sqlite3.OperationalError:
        return None
    d = hashlib.sha256()
    sealed = None
    total = 0
    for t in TABLES:
        last, h, n, ts = rows.get(t.code, (0, genesis(t.name), 0, None))
        d.update(f"{t.name}:{last}:{h.hex()}\n".encode())
        total += n
        if ts is not None:
            sealed = ts if sealed is None else max(sealed, ts)
    return ChainHead(d.hexdigest(), sealed, total)


# ------------------------------------------------------------------------ verify


@dataclass
class TableReport:
    table: str
    rows: int = 0
    sealed: int = 0
    unsealed: int = 0
    checkpoints: int = 0
    pruned: int = 0
    problem: Problem | None = None


@dataclass
class VerifyReport:
    tables: list[TableReport] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    head: ChainHead | None = None
    keyed: bool = False
    key_id: str | None = None
    """Fingerprint of the key that sealed the chain: "" sealed without a key (a legacy store),
    None nothing sealed yet."""

    @property
    def legacy_keyless(self) -> bool:
        return self.key_id == ""

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def rows(self) -> int:
        return sum(t.rows for t in self.tables)


Progress = Callable[[str, int, int], None]
"""(table, rows done, rows expected)"""


def _sql_json(t: ChainTable) -> str:
    # SQLite's json_array escapes exactly like Python's json (see the standalone module); a
    # mismatch is re-derived in Python before anything is reported, so this is only speed.
    return f"json_array({', '.join(t.exprs)})"


def _rows(
    db: sqlite3.Connection, t: ChainTable, lo: int, hi: int | None
) -> Iterator[tuple[int, bytes, bytes | None]]:
    sql = (
        f"SELECT t.id AS id, {_sql_json(t)} AS canonical, e.h AS h FROM {t.source()} "
        f"LEFT JOIN evidence e ON e.tbl = {t.code} AND e.id = t.id WHERE t.id >= ?"
        + (" AND t.id <= ?" if hi is not None else "")
        + " ORDER BY t.id"
    )
    cur = db.execute(sql, (lo,) if hi is None else (lo, hi))
    i_id, i_text, i_h = positions(cur, "id", "canonical", "h")
    while True:
        chunk = cur.fetchmany(4096)
        if not chunk:
            return
        for row in chunk:
            yield row[i_id], row[i_text].encode("utf-8"), row[i_h]


def _python_bytes(db: sqlite3.Connection, t: ChainTable, rid: int) -> bytes | None:
    row = fetch_one(db, _select(t, "WHERE t.id = ?"), (rid,))
    return None if row is None else canonical(row)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    id: int
    first_id: int
    last_id: int
    n: int
    h: str
    """hex"""


def _checkpoints(db: sqlite3.Connection, table: str) -> list[Checkpoint]:
    rows = fetch_all(
        db, "SELECT id, first_id, last_id, n, h FROM evidence_checkpoints WHERE tbl=? ORDER BY id", (table,)
    )
    return [Checkpoint(r["id"], r["first_id"], r["last_id"], r["n"], r["h"]) for r in rows]


def _id_range(
    db: sqlite3.Connection, t: ChainTable, start_ms: int | None, end_ms: int | None
) -> tuple[int, int | None] | None:
    if start_ms is None and end_ms is None:
        return (0, None)
    row = fetch_one(
        db,
        f"SELECT min(id) AS lo, max(id) AS hi FROM {t.name} WHERE {t.ts} >= ? AND {t.ts} < ?",
        (start_ms if start_ms is not None else -(2**62), end_ms if end_ms is not None else 2**62),
    )
    if row is None or row["lo"] is None:
        return None
    return int(row["lo"]), int(row["hi"])


def _verify_table(
    db: sqlite3.Connection,
    t: ChainTable,
    key: bytes | None,
    start_ms: int | None,
    end_ms: int | None,
    progress: Progress | None,
) -> TableReport:
    rep = TableReport(t.name)
    cps = _checkpoints(db, t.name) if t is not CHECKPOINTS else []
    rep.checkpoints = len(cps)
    prev, expect = genesis(t.name), 1
    for cp in cps:
        cp_id, first, last, n = cp.id, cp.first_id, cp.last_id, cp.n
        if first != expect:
            kind, what = (
                ("deleted", f"rows {expect}..{first - 1} missing before it")
                if first > expect
                else ("inserted", f"overlaps the previous checkpoint (starts at {first}, expected {expect})")
            )
            rep.problem = Problem(
                t.name, expect if first > expect else first, kind, f"checkpoint {cp_id}: {what}"
            )
            return rep
        if n != last - first + 1:
            rep.problem = Problem(
                t.name,
                first,
                "deleted",
                f"checkpoint {cp_id}: {last - first + 1 - n} row(s) of {first}..{last} "
                "were missing when pruned",
            )
            return rep
        rep.pruned += n
        prev, expect = bytes.fromhex(cp.h), last + 1
    present_before = scalar(db, f"SELECT min(id) FROM {t.name} WHERE id < ?", (expect,))
    if present_before is not None:
        rep.problem = Problem(t.name, present_before, "inserted", "row inside a pruned (checkpointed) range")
        return rep
    rng = _id_range(db, t, start_ms, end_ms)
    if rng is None:
        return rep
    lo, hi = rng
    if lo > expect:
        # A period in the middle: start from the stored link of the row before it.
        before = scalar(db, "SELECT h FROM evidence WHERE tbl=? AND id=?", (t.code, lo - 1))
        if before is None:
            exists = fetch_one(db, f"SELECT 1 FROM {t.name} WHERE id=?", (lo - 1,))
            rep.problem = Problem(
                t.name, lo - 1, "inserted" if exists else "deleted",
                "row has no link" if exists else "row before the period is missing",
            )  # fmt: skip
            return rep
        prev, expect = bytes(before), lo
    total = (hi if hi is not None else (scalar(db, f"SELECT max(id) FROM {t.name}") or 0)) - expect + 1

    def lazy(rid: int, p: bytes, h: bytes) -> bool:
        data = _python_bytes(db, t, rid)
        return data is not None and link(p, data, key) == h

    def tick(n: int) -> None:
        if progress is not None:
            progress(t.name, n, max(total, n))

    w: Walk = walk(t.name, _rows(db, t, expect, hi), prev, expect, key, tick, lazy)
    rep.rows, rep.sealed, rep.unsealed = w.rows, w.sealed, w.unsealed
    if progress is not None:
        progress(t.name, w.rows, max(total, w.rows))
    if w.problem is not None:
        rep.problem = w.problem
        return rep
    head = fetch_one(db, "SELECT last_id, h FROM evidence_heads WHERE tbl=?", (t.code,))
    if hi is None and head is not None:
        rep.problem = _check_tail(t, w, head, expect - 1)
    if rep.problem is None and w.unsealed_ids:
        rep.problem = _unsealed(t, w.unsealed_ids[0])
    return rep


def _unsealed(t: ChainTable, rid: int) -> Problem:
    # Every writer seals before it commits (Store.tx), so a committed row without a link was
    # written around the agent (or by a writer that could not seal): nothing vouches for it.
    return Problem(t.name, rid, "inserted", "row has no link: written without sealing the evidence chain")


def _check_tail(t: ChainTable, w: Walk, head: Row, before: int) -> Problem | None:
    """The end of a chain (`head`: its evidence_heads row): nothing sealed may be missing, the
    head must be the last row's link, and no row may lack a link."""
    last_id, h = head["last_id"], head["h"]
    ended = w.last_id if w.last_id is not None else before
    sealed_end = ended - len(w.unsealed_ids)
    if sealed_end < last_id:
        return Problem(
            t.name,
            sealed_end + 1,
            "deleted",
            f"rows were sealed up to {last_id} but are missing from {sealed_end + 1}",
        )
    if w.last_h is not None and w.sealed and bytes(h) != w.last_h:
        return Problem(t.name, last_id, "edited", "the chain head does not match the row's link")
    if w.unsealed_ids and w.unsealed_ids[0] <= last_id:
        return Problem(
            t.name, w.unsealed_ids[0], "inserted", "row has no link but the chain was sealed past it"
        )
    return None


def _consistency(db: sqlite3.Connection) -> Problem | None:
    """The tables availability reads must say what their append-only logs say."""
    rid = scalar(
        db,
        "SELECT i.id FROM intervals i LEFT JOIN interval_log o ON o.interval_id = i.id AND o.event = 'open' "
        "WHERE o.id IS NULL OR o.check_id IS NOT i.check_id OR o.state IS NOT i.state "
        "OR o.ts IS NOT i.start_ts OR o.summary IS NOT i.summary OR o.maintenance IS NOT i.maintenance "
        "OR o.run_id IS NOT i.run_id "
        "ORDER BY i.id LIMIT 1",
    )
    if rid is not None:
        logged = fetch_one(db, "SELECT 1 FROM interval_log WHERE interval_id=? AND event='open'", (rid,))
        return Problem(
            "intervals", rid, "edited" if logged else "inserted",
            "differs from its interval_log entry" if logged
            else "no interval_log entry (row added outside the agent)",
        )  # fmt: skip
    rid = scalar(
        db,
        "SELECT i.id FROM intervals i LEFT JOIN interval_log o ON o.interval_id = i.id AND o.event = 'close' "
        "WHERE o.ts IS NOT i.end_ts ORDER BY i.id LIMIT 1",
    )
    if rid is not None:
        return Problem("intervals", rid, "edited", "end time differs from its interval_log close entry")
    rid = scalar(
        db,
        "SELECT o.interval_id FROM interval_log o LEFT JOIN intervals i ON i.id = o.interval_id "
        "WHERE o.event = 'open' AND i.id IS NULL ORDER BY o.id LIMIT 1",
    )
    if rid is not None:
        return Problem("intervals", rid, "deleted", "logged in interval_log but missing from intervals")
    rid = scalar(
        db,
        "SELECT r.id FROM agent_runs r LEFT JOIN run_log s ON s.run_id = r.id AND s.event = 'start' "
        "LEFT JOIN run_log e ON e.run_id = r.id AND e.event IN ('stop', 'closed') "
        "WHERE s.id IS NULL OR s.ts IS NOT r.started_ts OR s.pid IS NOT r.pid OR s.host IS NOT r.host "
        "OR s.version IS NOT r.version OR e.ts IS NOT r.stopped_ts "
        "OR (e.event = 'stop') IS NOT (CASE WHEN r.stopped_ts IS NULL THEN NULL ELSE r.clean = 1 END) "
        "ORDER BY r.id LIMIT 1",
    )
    if rid is not None:
        return Problem("agent_runs", rid, "edited", "differs from its run_log entries")
    rid = scalar(
        db,
        "SELECT s.run_id FROM run_log s LEFT JOIN agent_runs r ON r.id = s.run_id "
        "WHERE s.event = 'start' AND r.id IS NULL ORDER BY s.id LIMIT 1",
    )
    if rid is not None:
        return Problem("agent_runs", rid, "deleted", "logged in run_log but missing from agent_runs")
    return None


def _ledger_consistency(
    db: sqlite3.Connection, table: str, log: str, record_col: str, fields: Callable[[Row], Any],
    logged_fields: Callable[[Any], Any], columns: str,
) -> Problem | None:  # fmt: skip
    """A ledger table (exclusions, maintenance) must hold exactly the records its chained,
    append-only log leaves active: availability reads the table, so a row slipped into it
    (or edited there) would change the figure without touching the chain.

    `fields` reads the compared `columns` of a table row, `logged_fields` the same values
    from the record the log added. The recording time and who recorded it are compared too:
    they decide whether a window is late and where a recurring one begins."""
    active: dict[str, tuple[int, Any, tuple[int, str]]] = {}
    logged_sql = f"SELECT id, ts, actor, action, name, {record_col} AS record FROM {log} ORDER BY id"
    for entry in scan(db, logged_sql):
        if entry["action"] == "add":
            active[entry["name"]] = (entry["id"], json.loads(entry["record"]), (entry["ts"], entry["actor"]))
        elif entry["action"] == "remove":
            active.pop(entry["name"], None)
    rows_sql = (
        f"SELECT id, name, created_ts, created_by, {columns} FROM {table} "
        "WHERE removed_ts IS NULL ORDER BY id"
    )
    for row in scan(db, rows_sql):
        name = row["name"]
        logged = active.pop(name, None)
        if logged is None:
            return Problem(table, row["id"], "inserted", f"{name!r} is active but {log} never added it")
        log_id, record, recorded = logged
        if fields(row) != logged_fields(record) or (row["created_ts"], row["created_by"]) != recorded:
            detail = f"{name!r} differs from its {log} entry (row {log_id})"
            return Problem(table, row["id"], "edited", detail)
    for name, (lid, _rec, _when) in active.items():
        detail = f"{name!r} is active in {log} (row {lid}) but missing or removed"
        return Problem(table, None, "deleted", detail)
    return None


def _ledgers(db: sqlite3.Connection) -> Problem | None:
    problem = _ledger_consistency(
        db, "exclusions", "exclusions_log", "record",
        lambda r: (r["start_ts"], r["end_ts"], json.loads(r["systems"]), r["reason"], r["approved_by"]),
        lambda rec: (rec.get("start_ms"), rec.get("end_ms"), rec.get("systems"), rec.get("reason"),
                     rec.get("approved_by")),
        "start_ts, end_ts, systems, reason, approved_by",
    ) or _ledger_consistency(
        db, "maintenance", "maintenance_log", "spec",
        lambda r: json.loads(r["spec"]),
        lambda rec: rec,
        "spec",
    )  # fmt: skip
    if problem is not None:
        return problem
    # Approvals are chained, but they name their record by its id in a ledger table that is
    # not: an approval must still point at a record of its own name.
    orphan = orphan_approval(db)
    if orphan is not None:
        detail = (
            f"approval of {orphan['name']!r} points at {orphan['ledger']} row {orphan['record_id']}, "
            "which is missing or holds another record"
        )
        return Problem(orphan["ledger"], orphan["record_id"], "edited", detail)
    return None


def verify(
    db: sqlite3.Connection,
    key: bytes | None,
    start_ms: int | None = None,
    end_ms: int | None = None,
    progress: Progress | None = None,
) -> VerifyReport:
    """Recompute every chain (or the rows of one period) of the store on `db` and report each
    chain's first break."""
    stored = stored_key_id(db)
    rep = VerifyReport(head=head(db), keyed=bool(stored), key_id=stored)
    if stored is not None and stored != key_id(key):
        detail = (
            "the chain is sealed with an HMAC key: configure storage.evidence_key to verify it"
            if stored and key is None
            else "this key is not the one that sealed the chain"
        )
        rep.problems.append(Problem("*", None, "key", detail))
        return rep
    for t in (CHECKPOINTS, *[t for t in TABLES if t is not CHECKPOINTS]):
        tr = _verify_table(db, t, key, start_ms, end_ms, progress)
        rep.tables.append(tr)
        if tr.problem is not None:
            rep.problems.append(tr.problem)
    problem = _consistency(db) or _ledgers(db)
    if problem is not None:
        rep.problems.append(problem)
    return rep
