"""Online copies of the store, verified before they count, and putting one back.

A copy is taken with SQLite's backup API from a read-only connection while the agent keeps
writing (WAL: the copy is one consistent snapshot of what was committed when it started; the
writer is never blocked). It is written under a hidden temporary name, switched to a
self-contained single file (rollback journal, no -wal/-shm), and then opened again from disk
and checked: `PRAGMA integrity_check` must say ok and the evidence chain must verify with the
agent's key. Only then does it get its final name (`<store stem>-YYYYmmddTHHMMSSZ.db`, UTC,
so names sort by time) and only then are copies beyond `keep` deleted, oldest first. A copy
that fails a check is deleted and the reason is returned.

With `ssh` set the verified copy is made locally next to the store, uploaded over SFTP (the
SSH checks' connection code: host key verified against known_hosts before any login,
secrets read when used), its size checked with a remote stat and its bytes read back and
hashed, then renamed into place; remote copies beyond `keep` are deleted the same way.

`restore` puts a copy back as the store: refused while an agent holds the store's lock,
refused for a copy that does not verify; the store it replaces is kept aside.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from agent.store.evidence import sync_dir
from agent.store.rows import scalar

if TYPE_CHECKING:
    import paramiko

    from agent.config.backup import StoreBackup

TRANSFER_TIMEOUT_S = 4 * 3600.0
"""Bound of the whole SFTP transfer (upload and read-back) of one copy."""
STALL_S = 120.0
"""Bound of each SFTP request: a server that stops answering fails the copy, not the agent."""
_CHUNK = 1 << 20

AfterCopy = Callable[[Path], None]
"""Test seam: called with the temporary copy after copying and before it is verified (a test
flips bytes in it to prove the verification catches a damaged copy)."""


class RestoreRefused(Exception):
    """The copy was not put back; the message says why (the store is unchanged)."""


@dataclass(frozen=True, slots=True)
class CopyCheck:
    """What the verification of one copy found."""

    integrity: str
    """'ok', or what `PRAGMA integrity_check` (or opening the file) reported."""
    chain: str
    """'ok', or the evidence chain's first problems ('not checked' after a failed integrity check)."""
    schema: int = 0
    rows: int = 0
    """Chained rows verified."""
    head: str | None = None
    """Chain head (hex) of the copy."""

    @property
    def ok(self) -> bool:
        return self.integrity == "ok" and self.chain == "ok"

    def reason(self) -> str:
        if self.integrity != "ok":
            return f"完整性检查失败 (integrity_check): {self.integrity}"
        return f"证据链校验失败 (evidence chain): {self.chain}"


@dataclass
class Outcome:
    """One backup: the verified copy, or why there is none."""

    ok: bool
    target: str
    """Where copies go, as configured (a directory, or user@host:port:directory)."""
    file: str | None = None
    """The verified copy (a local path, or user@host:port:path)."""
    size: int = 0
    sha256: str | None = None
    check: CopyCheck | None = None
    pruned: list[str] = field(default_factory=list)
    """Older copies deleted after this one was in place."""
    warning: str | None = None
    """The copy is good but something around it was not (older copies could not be deleted)."""
    error: str | None = None
    seconds: float = 0.0

    def as_json(self) -> dict[str, Any]:
        c = self.check
        return {
            "ok": self.ok,
            "target": self.target,
            "file": self.file,
            "size": self.size,
            "sha256": self.sha256,
            "integrity": c.integrity if c else None,
            "chain": c.chain if c else None,
            "rows": c.rows if c else 0,
            "head": c.head if c else None,
            "schema": c.schema if c else None,
            "pruned": self.pruned,
            "warning": self.warning,
            "error": self.error,
            "seconds": round(self.seconds, 3),
        }


@dataclass(frozen=True, slots=True)
class Restored:
    source: Path
    store: Path
    check: CopyCheck
    aside: Path | None
    """The store that was replaced, kept under this name (None: there was none)."""
    removed: tuple[str, ...]
    """Stale -wal/-shm files removed (a -wal of the replaced store moves aside with it)."""
    migrated_from: int | None = None
    """The copy had this older schema and was brought up to date before it was verified."""


# ------------------------------------------------------------------------ copying


def _uri(path: Path, mode: str = "ro") -> str:
    return f"file:{quote(str(path))}?mode={mode}"


def _reason(exc: BaseException) -> str:
    text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return text or type(exc).__name__


def stamp(now_ms: int) -> str:
    """UTC time in a file name: 20261121T023000Z (sorts as time does)."""
    return datetime.fromtimestamp(now_ms / 1000, UTC).strftime("%Y%m%dT%H%M%SZ")


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def online_copy(source: Path, dest: Path) -> None:
    """A consistent copy of the SQLite file `source` at `dest`, taken while others may write.

    One backup step copies every page inside a single read transaction: in WAL mode writers
    go on meanwhile, and the copy is the database as committed when the step began (a copy in
    several steps would restart each time the agent commits). The copy is switched to a
    rollback journal so that it is one self-contained file, and synced to disk.
    """
    if not source.is_file():
        raise FileNotFoundError(f"{source}: no such file")
    _unlink(dest)
    for side in ("-journal", "-wal", "-shm"):
        _unlink(dest.with_name(dest.name + side))
    src = sqlite3.connect(_uri(source), uri=True, timeout=30)
    try:
        dst = sqlite3.connect(str(dest), isolation_level=None)
        try:
            src.backup(dst)
            dst.execute("PRAGMA journal_mode=DELETE")
        finally:
            dst.close()
    except BaseException:
        _unlink(dest)
        raise
    finally:
        src.close()
    fd = os.open(dest, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _single_file(path: Path) -> None:
    """Back to a rollback journal: one self-contained file that opens read-only anywhere."""
    db = sqlite3.connect(str(path), isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=DELETE")
    finally:
        db.close()


def _schema(db: sqlite3.Connection) -> int:
    try:
        return int(scalar(db, "SELECT value FROM meta WHERE key='schema_version'") or 0)
    except sqlite3.OperationalError:
        return 0  # no meta table: not a Sentinel store


def _integrity(db: sqlite3.Connection) -> str:
    """'ok', or what SQLite found (a badly damaged file makes the check itself fail)."""
    try:
        lines = [str(r[0]) for r in db.execute("PRAGMA integrity_check").fetchall()]
    except sqlite3.DatabaseError as exc:  # "file is not a database", "disk image is malformed"
        return _reason(exc)
    if lines == ["ok"]:
        return "ok"
    return "; ".join(lines[:3]) + (f" (+{len(lines) - 3} more)" if len(lines) > 3 else "")


def verify_copy(path: Path, key: bytes | None) -> CopyCheck:
    """Open the copy afresh from disk (read-only) and check it: SQLite's integrity check,
    then the evidence chain with `key` (the agent's evidence key)."""
    from agent.store.evidence import verify

    try:
        db = sqlite3.connect(_uri(path), uri=True)
    except sqlite3.Error as exc:
        return CopyCheck(_reason(exc), "not checked")
    try:
        integrity = _integrity(db)
        if integrity != "ok":
            return CopyCheck(integrity, "not checked")
        schema = _schema(db)
        if schema == 0:
            return CopyCheck(integrity, "not a Sentinel store (no schema version)", schema)
        try:
            rep = verify(db, key)
        except sqlite3.Error as exc:
            return CopyCheck(integrity, f"cannot be verified: {_reason(exc)}", schema)
        head = rep.head.digest_hex if rep.head is not None else None
        chain = "ok" if rep.ok else "; ".join(p.text() for p in rep.problems[:3])
        return CopyCheck(integrity, chain, schema, rep.rows, head)
    finally:
        db.close()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


# ------------------------------------------------------------------------ names


def _pattern(stem: str) -> re.Pattern[str]:
    return re.compile(rf"^{re.escape(stem)}-(\d{{8}}T\d{{6}}Z)(?:-(\d+))?\.db$")


def _order(names: list[str], stem: str) -> list[str]:
    """The copies among `names` (other files are never touched), oldest first."""
    pat = _pattern(stem)
    found = [(m.group(1), int(m.group(2) or 1), n) for n in names if (m := pat.match(n))]
    return [n for _, _, n in sorted(found)]


def _free_name(stem: str, now_ms: int, taken: Callable[[str], bool]) -> str:
    base = f"{stem}-{stamp(now_ms)}"
    name = f"{base}.db"
    n = 1
    while taken(name):  # two copies in one second (the daemon's and one by hand)
        n += 1
        name = f"{base}-{n}.db"
    return name


def _beyond_keep(names: list[str], stem: str, keep: int, new: str) -> list[str]:
    """The oldest copies to delete so that `keep` remain; never the new one."""
    others = [n for n in _order(names, stem) if n != new]
    return others[: max(0, len(others) - (keep - 1))]


# ------------------------------------------------------------------------ backup


def make_backup(
    store_path: Path,
    target: StoreBackup,
    key: bytes | None,
    now_ms: int | None = None,
    *,
    key_file: Path | None = None,
    prune: bool = True,
    after_copy: AfterCopy | None = None,
) -> Outcome:
    """One verified copy of the store at `store_path` into `target`; never raises for a failed
    copy (the Outcome says why). `key_file`: the evidence key file to keep next to the copies
    (written once, mode 0600; see `StoreBackup.include_key`)."""
    t0 = time.monotonic()
    now = int(time.time() * 1000) if now_ms is None else now_ms
    out = Outcome(ok=False, target=target.where)
    key_bytes = _key_file_bytes(key_file, out)
    try:
        if target.ssh is None:
            _local(store_path, target, key, now, prune, after_copy, out, key_bytes)
        else:
            _remote(store_path, target, key, now, prune, after_copy, out, key_bytes)
    finally:
        out.seconds = time.monotonic() - t0
    return out


def _key_file_bytes(path: Path | None, out: Outcome) -> tuple[str, bytes] | None:
    if path is None:
        return None
    try:
        return path.name, path.read_bytes()
    except FileNotFoundError:
        return None  # no key created (yet): nothing to keep
    except OSError as exc:
        out.warning = f"证据密钥文件无法读取，未保存到备份目录 (key file not kept): {_reason(exc)}"
        return None


def _copy_and_check(
    store_path: Path, part: Path, key: bytes | None, after_copy: AfterCopy | None, out: Outcome
) -> bool:
    try:
        online_copy(store_path, part)
    except (sqlite3.Error, OSError) as exc:
        _unlink(part)
        out.error = f"复制失败 (copy failed): {_reason(exc)}"
        return False
    if after_copy is not None:
        after_copy(part)
    out.check = verify_copy(part, key)
    if not out.check.ok:
        _unlink(part)
        out.error = f"副本校验失败，已删除 (copy failed verification, deleted): {out.check.reason()}"
        return False
    out.size = part.stat().st_size
    out.sha256 = _sha256(part)
    return True


def _local(
    store_path: Path,
    target: StoreBackup,
    key: bytes | None,
    now: int,
    prune: bool,
    after_copy: AfterCopy | None,
    out: Outcome,
    key_file: tuple[str, bytes] | None,
) -> None:
    directory = Path(target.directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        out.error = f"备份目录无法创建 (cannot create the directory) {directory}: {_reason(exc)}"
        return
    stem = store_path.stem
    name = _free_name(stem, now, lambda n: (directory / n).exists())
    # The pid keeps two backups started in the same second (the daemon's, one by hand) apart.
    part = directory / f".{name}.{os.getpid()}.part"
    if not _copy_and_check(store_path, part, key, after_copy, out):
        return
    final = directory / name
    try:
        os.replace(part, final)
    except OSError as exc:
        _unlink(part)
        out.error = f"副本无法命名 (cannot rename the copy) {final}: {_reason(exc)}"
        return
    sync_dir(directory)
    out.ok = True
    out.file = str(final)
    if key_file is not None:
        _keep_key_local(directory, key_file, out)
    if not prune:
        return
    try:
        names = [p.name for p in directory.iterdir()]
        for old in _beyond_keep(names, stem, target.keep, name):
            (directory / old).unlink()
            out.pruned.append(old)
    except OSError as exc:
        out.warning = f"旧副本未能删除 (older copies not deleted): {_reason(exc)}"


def _keep_key_local(directory: Path, key_file: tuple[str, bytes], out: Outcome) -> None:
    name, content = key_file
    dest = directory / name
    try:
        if dest.is_file() and dest.read_bytes() == content:
            return
        part = directory / f".{name}.{os.getpid()}.part"
        _unlink(part)
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, content)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(part, dest)
    except OSError as exc:
        out.warning = f"证据密钥文件未能保存到备份目录 (key file not kept): {_reason(exc)}"


def _remote(
    store_path: Path,
    target: StoreBackup,
    key: bytes | None,
    now: int,
    prune: bool,
    after_copy: AfterCopy | None,
    out: Outcome,
    key_file: tuple[str, bytes] | None,
) -> None:
    stem = store_path.stem
    part = store_path.with_name(f".{stem}-{stamp(now)}.{os.getpid()}.upload.part")
    try:
        if not _copy_and_check(store_path, part, key, after_copy, out):
            return
        _upload(part, stem, target, now, prune, out, key_file)
    finally:
        _unlink(part)


def _sftp_makedirs(sftp: paramiko.SFTPClient, directory: str) -> None:
    parts: list[str] = []
    d = directory.rstrip("/") or "/"
    while d not in ("", "/", "."):
        try:
            sftp.stat(d)
            break
        except FileNotFoundError:
            parts.append(d)
            d = posixpath.dirname(d)
    for p in reversed(parts):
        sftp.mkdir(p)


def _sftp_keep_key(sftp: paramiko.SFTPClient, directory: str, key_file: tuple[str, bytes]) -> None:
    name, content = key_file
    dest = posixpath.join(directory, name)
    try:
        with sftp.open(dest, "rb") as f:
            if f.read(len(content) + 1) == content:
                return
    except FileNotFoundError:
        pass
    part = posixpath.join(directory, f".{name}.{os.getpid()}.part")
    # Made 0600 before the first byte is written: the key is never readable by others.
    with sftp.open(part, "wb") as f:
        f.chmod(0o600)
        f.write(content)
    try:
        sftp.posix_rename(part, dest)
    except OSError:
        sftp.rename(part, dest)


def _upload(
    local: Path,
    stem: str,
    target: StoreBackup,
    now: int,
    prune: bool,
    out: Outcome,
    key_file: tuple[str, bytes] | None,
) -> None:
    import paramiko

    from probes.base import ProbeContext
    from probes.ssh.conn import SshError, ssh_session

    ssh = target.ssh
    assert ssh is not None
    directory = target.directory.rstrip("/") or "/"
    deadline = time.monotonic() + TRANSFER_TIMEOUT_S
    step = "连接 (connect)"
    try:
        ctx = ProbeContext(check="sentinel.store_backup", timeout_s=TRANSFER_TIMEOUT_S)
        with ssh_session(ssh, ctx, deadline) as session:
            sftp = session.sftp()
            channel = sftp.get_channel()
            if channel is not None:
                channel.settimeout(STALL_S)
            step = f"创建目录 (mkdir) {directory}"
            _sftp_makedirs(sftp, directory)

            def taken(n: str) -> bool:
                try:
                    sftp.stat(posixpath.join(directory, n))
                except FileNotFoundError:
                    return False
                return True

            name = _free_name(stem, now, taken)
            remote_part = posixpath.join(directory, f".{name}.{os.getpid()}.part")
            final = posixpath.join(directory, name)
            step = f"上传 (upload) {remote_part}"
            sftp.put(str(local), remote_part, confirm=False)
            step = f"核对 (check) {remote_part}"
            size = sftp.stat(remote_part).st_size
            if size != out.size:
                sftp.remove(remote_part)
                out.error = f"上传后大小不符 (size after upload) {size} ≠ {out.size} 字节，已删除"
                return
            digest = hashlib.sha256()
            with sftp.open(remote_part, "rb") as f:
                f.prefetch(out.size)
                while chunk := f.read(_CHUNK):
                    digest.update(chunk)
            if digest.hexdigest() != out.sha256:
                sftp.remove(remote_part)
                out.error = "上传后读回的内容与副本不一致 (read-back hash differs)，已删除"
                return
            step = f"命名 (rename) {final}"
            try:
                sftp.posix_rename(remote_part, final)
            except OSError:
                sftp.rename(remote_part, final)  # a server without the posix-rename extension
            out.ok = True
            out.file = f"{ssh.where}:{final}"
            if key_file is not None:
                step = "保存证据密钥文件 (key file)"
                try:
                    _sftp_keep_key(sftp, directory, key_file)
                except (OSError, EOFError, paramiko.SSHException) as exc:
                    out.warning = f"证据密钥文件未能保存到备份目录 (key file not kept): {_reason(exc)}"
            if not prune:
                return
            try:
                for old in _beyond_keep(sftp.listdir(directory), stem, target.keep, name):
                    sftp.remove(posixpath.join(directory, old))
                    out.pruned.append(old)
            except (OSError, EOFError, paramiko.SSHException) as exc:
                out.warning = f"远端旧副本未能删除 (older remote copies not deleted): {_reason(exc)}"
    except SshError as exc:
        out.error = f"SFTP {ssh.where}: {exc.message}"
    except (OSError, EOFError, paramiko.SSHException) as exc:
        # paramiko's texts name the path and the problem, never a password or key.
        out.error = f"SFTP {ssh.where} {step}: {_reason(exc)}"


# ------------------------------------------------------------------------ migration


def copy_before_migration(store_path: Path, version: int) -> Path:
    """`<store>.pre-migration-v<version>.db` next to the store, before a migration changes it.

    Called by the migrating connection while it holds the write lock, so the copy (read
    through a second connection) is exactly what the migration starts from. A copy that
    SQLite does not find intact stops the migration: a damaged store is not migrated.
    """
    dest = store_path.with_name(f"{store_path.name}.pre-migration-v{version}.db")
    part = dest.with_name(f".{dest.name}.part")
    online_copy(store_path, part)
    db = sqlite3.connect(_uri(part), uri=True)
    try:
        integrity = _integrity(db)
    finally:
        db.close()
    if integrity != "ok":
        _unlink(part)
        raise sqlite3.DatabaseError(
            f"store {store_path} is damaged (integrity_check: {integrity}); not migrated — "
            "restore a backup (sentinel store restore FILE)"
        )
    os.replace(part, dest)
    sync_dir(dest.parent)
    return dest


# ------------------------------------------------------------------------ restore


def restore(store_path: Path, source: Path, key: bytes | None, now_ms: int | None = None) -> Restored:
    """Put the copy `source` back as the store at `store_path`.

    Refused (StoreLocked) while an agent holds the store; refused (RestoreRefused) unless the
    copy passes the integrity check and its evidence chain verifies with `key`. The store it
    replaces is renamed `<store>.before-restore-<UTC time>` (with its -wal, so nothing it had
    committed is lost); a stale -shm is removed.
    """
    from agent.store.db import SCHEMA_VERSION, Store, acquire_lock

    now = int(time.time() * 1000) if now_ms is None else now_ms
    # Held until the copy is in place: no agent can start on a half-restored store.
    lock = acquire_lock(store_path)
    part = store_path.with_name(f".{store_path.name}.restore.part")
    try:
        if not source.is_file():
            raise RestoreRefused(f"{source}: 文件不存在 (no such file)")
        if store_path.exists() and source.resolve() == store_path.resolve():
            raise RestoreRefused(f"{source} 就是当前存储 (is the store itself)")
        try:
            online_copy(source, part)
        except (sqlite3.Error, OSError) as exc:
            raise RestoreRefused(
                f"{source} 无法读取为 SQLite 数据库 (not readable as SQLite): {_reason(exc)}"
            ) from None
        db = sqlite3.connect(_uri(part), uri=True)
        try:
            schema = _schema(db)
            integrity = _integrity(db) if schema < SCHEMA_VERSION else "ok"
        except sqlite3.Error as exc:
            schema, integrity = 0, _reason(exc)
        finally:
            db.close()
        if schema > SCHEMA_VERSION:
            raise RestoreRefused(
                f"{source} 的存储格式 v{schema} 比本程序 (v{SCHEMA_VERSION}) 新：请先升级 agent"
            )
        migrated_from = None
        if integrity == "ok" and 0 < schema < SCHEMA_VERSION:
            # An older copy (e.g. a pre-migration one): brought to this schema first, so that
            # the chain is verified by the same code that will read it.
            Store(part, evidence_key=key).close()
            _unlink(part.with_name(f"{part.name}.pre-migration-v{schema}.db"))
            _single_file(part)
            migrated_from = schema
        check = verify_copy(part, key)
        if not check.ok:
            raise RestoreRefused(f"{source} 未通过校验 (failed verification): {check.reason()}")
        aside: Path | None = None
        removed: list[str] = []
        if store_path.exists():
            aside = store_path.with_name(f"{store_path.name}.before-restore-{stamp(now)}")
            os.replace(store_path, aside)
            wal = store_path.with_name(store_path.name + "-wal")
            if wal.exists():
                os.replace(wal, aside.with_name(aside.name + "-wal"))
        for side in ("-wal", "-shm", "-journal"):
            stale = store_path.with_name(store_path.name + side)
            if stale.exists():
                stale.unlink()
                removed.append(stale.name)
        os.replace(part, store_path)
        sync_dir(store_path.parent)
        return Restored(source, store_path, check, aside, tuple(removed), migrated_from)
    finally:
        for leftover in ("", "-wal", "-shm", "-journal"):
            _unlink(part.with_name(part.name + leftover))
        os.close(lock)
