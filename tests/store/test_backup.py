"""Copies of the store (agent.store.backup): made while a writer keeps committing, verified from
disk before they count (integrity check + evidence chain), named by time, pruned to `keep` only
after a verified new copy; a damaged copy is caught, deleted and explained; a copy is written
before any schema migration; SFTP against a real OpenSSH server."""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import stat
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.config.backup import StoreBackup
from agent.config.errors import ConfigError
from agent.config.schema import parse
from agent.store import db as S
from agent.store.backup import CopyCheck, make_backup, verify_copy
from agent.store.db import Store
from tests.helpers.sshd import TEST_USER, Sshd, running_sshd

KEY = b"backup-test-evidence-key"
T0 = 1_795_000_000_000  # 2026-11-18 UTC, ms
NAME = r"s-\d{8}T\d{6}Z(-\d+)?\.db"


def filled(path: Path, rows: int = 300, key: bytes | None = KEY) -> Store:
    store = Store(path, evidence_key=key)
    store.sync_checks([("web", "http", "HIS"), ("db", "tcp", "HIS")], T0)
    run = store.begin_run(T0, 1, "h", "t")
    store.append_bulk(run, [(1 + i % 2, T0 + i * 1000, 0, 5, f"OK {i}", None) for i in range(rows)])
    return store


def copies(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".db"))


def flip_page(path: Path, page: int) -> None:
    """Overwrite one whole page of a SQLite file with garbage (a bad sector)."""
    size = sqlite3.connect(path).execute("PRAGMA page_size").fetchone()[0]
    with path.open("r+b") as f:
        f.seek((page - 1) * size)
        f.write(bytes(range(256)) * (size // 256))


def rootpage(path: Path, table: str) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute("SELECT rootpage FROM sqlite_master WHERE name=?", (table,)).fetchone()[0])


# ------------------------------------------------------------------ local copies


def test_copy_of_a_store_being_written_is_verified_named_by_time_and_pruned(tmp_path: Path) -> None:
    store = filled(tmp_path / "var" / "s.db")
    target = StoreBackup(directory=str(tmp_path / "bk"), keep=2)
    stop = threading.Event()
    written = [0]

    def writer() -> None:
        # Another connection keeps committing sealed rows while copies are taken.
        w = Store(tmp_path / "var" / "s.db", evidence_key=KEY)
        run = w.begin_run(T0 + 10_000_000, 2, "h", "t")
        while not stop.is_set():
            w.append_bulk(run, [(1, T0 + 20_000_000 + written[0], 2, 5, "CRIT", None)])
            written[0] += 1
        w.close()

    t = threading.Thread(target=writer)
    t.start()
    try:
        outs = [make_backup(store.path, target, KEY, T0 + i * 1000) for i in range(3)]
    finally:
        stop.set()
        t.join(10)
    assert written[0] > 0
    for out in outs:
        assert out.ok, out.error
        assert out.check is not None and out.check.ok and out.check.rows > 300
    names = [Path(o.file or "").name for o in outs]
    assert names == ["s-20261118T110640Z.db", "s-20261118T110641Z.db", "s-20261118T110642Z.db"]
    # keep=2: the oldest went once the third copy was in place, and only then.
    assert outs[0].pruned == [] and outs[1].pruned == [] and outs[2].pruned == [names[0]]
    assert copies(tmp_path / "bk") == names[1:]
    # Each copy is one self-contained file: no -wal or -shm, no temporary left behind.
    assert sorted(p.name for p in (tmp_path / "bk").iterdir()) == names[1:]
    copy = tmp_path / "bk" / names[2]
    assert hashlib.sha256(copy.read_bytes()).hexdigest() == outs[2].sha256
    assert copy.stat().st_size == outs[2].size
    with sqlite3.connect(copy) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    assert verify_copy(copy, KEY).ok
    store.close()


def test_two_copies_in_one_second_get_distinct_names_in_order(tmp_path: Path) -> None:
    store = filled(tmp_path / "s.db")
    target = StoreBackup(directory=str(tmp_path / "bk"), keep=5)
    a = make_backup(store.path, target, KEY, T0)
    b = make_backup(store.path, target, KEY, T0)
    assert a.ok and b.ok
    assert Path(a.file or "").name == "s-20261118T110640Z.db"
    assert Path(b.file or "").name == "s-20261118T110640Z-2.db"
    c = make_backup(store.path, target.model_copy(update={"keep": 1}), KEY, T0 + 1000)
    assert c.ok and c.pruned == ["s-20261118T110640Z.db", "s-20261118T110640Z-2.db"]


def test_other_files_in_the_directory_are_never_pruned(tmp_path: Path) -> None:
    store = filled(tmp_path / "s.db")
    bk = tmp_path / "bk"
    bk.mkdir()
    for name in ("other-20250101T000000Z.db", "s-notes.db", "s-20250101T000000Z.db.bak", "README"):
        (bk / name).write_text("x")
    for i in range(3):
        assert make_backup(store.path, StoreBackup(directory=str(bk), keep=1), KEY, T0 + i * 1000).ok
    assert copies(bk) == ["other-20250101T000000Z.db", "s-20261118T110642Z.db", "s-notes.db"]
    assert (bk / "README").exists() and (bk / "s-20250101T000000Z.db.bak").exists()


def test_the_key_file_is_kept_with_the_copies_owner_only(tmp_path: Path) -> None:
    store = filled(tmp_path / "s.db")
    key_file = tmp_path / "s.db.key"
    key_file.write_bytes(KEY + b"\n")
    key_file.chmod(0o600)
    out = make_backup(store.path, StoreBackup(directory=str(tmp_path / "bk")), KEY, T0, key_file=key_file)
    assert out.ok and out.warning is None
    kept = tmp_path / "bk" / "s.db.key"
    assert kept.read_bytes() == KEY + b"\n"
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600


# ------------------------------------------------------------------ failures


@pytest.mark.parametrize("damage", ["page", "truncate", "row"])
def test_a_damaged_copy_is_caught_deleted_and_explained(tmp_path: Path, damage: str) -> None:
    store = filled(tmp_path / "s.db", rows=3000)
    bk = tmp_path / "bk"
    good = make_backup(store.path, StoreBackup(directory=str(bk), keep=1), KEY, T0)
    assert good.ok
    page = rootpage(store.path, "results")

    def spoil(copy: Path) -> None:
        # The seam: make_backup(after_copy=...) runs between copying and verifying.
        if damage == "page":
            flip_page(copy, page)
        elif damage == "truncate":
            with copy.open("r+b") as f:
                f.truncate(copy.stat().st_size // 2)
        else:  # a bit of data changed, the file structure intact
            with sqlite3.connect(copy) as db:
                db.execute("UPDATE results SET summary='OK（已改）' WHERE id=7")

    out = make_backup(store.path, StoreBackup(directory=str(bk), keep=1), KEY, T0 + 1000, after_copy=spoil)
    assert not out.ok and out.file is None and out.check is not None and not out.check.ok
    assert out.error is not None and "已删除" in out.error
    if damage == "row":
        assert out.check.integrity == "ok"
        assert "results row 7: edited" in out.check.chain and "证据链校验失败" in out.error
    else:
        assert out.check.integrity != "ok" and "integrity_check" in out.error
    # The bad copy is gone and the good one was not pruned for it.
    assert sorted(p.name for p in bk.iterdir()) == [Path(good.file or "").name]


def test_a_tampered_store_is_not_backed_up_as_good(tmp_path: Path) -> None:
    store = filled(tmp_path / "s.db")
    store.db.execute("UPDATE results SET status=0, summary='OK' WHERE id=3")  # an edit behind the chain
    out = make_backup(store.path, StoreBackup(directory=str(tmp_path / "bk")), KEY, T0)
    assert not out.ok and out.check is not None
    assert out.check.integrity == "ok" and "results row 3: edited" in out.check.chain


def test_the_wrong_key_fails_the_chain_check(tmp_path: Path) -> None:
    store = filled(tmp_path / "s.db")
    out = make_backup(store.path, StoreBackup(directory=str(tmp_path / "bk")), b"another key", T0)
    assert not out.ok and out.check is not None and "key" in out.check.chain


def test_a_directory_that_cannot_be_created_is_a_failure_with_its_reason(tmp_path: Path) -> None:
    store = filled(tmp_path / "s.db")
    (tmp_path / "afile").write_text("not a directory")
    out = make_backup(store.path, StoreBackup(directory=str(tmp_path / "afile" / "bk")), KEY, T0)
    assert not out.ok and out.error is not None
    assert "备份目录无法创建" in out.error and "afile" in out.error


def test_no_store_is_a_failure_not_a_crash(tmp_path: Path) -> None:
    out = make_backup(tmp_path / "none.db", StoreBackup(directory=str(tmp_path / "bk")), KEY, T0)
    assert not out.ok and out.error is not None and "复制失败" in out.error


def test_verify_copy_of_garbage_says_so(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(os.urandom(8192))
    check = verify_copy(junk, KEY)
    assert isinstance(check, CopyCheck) and not check.ok and check.chain == "not checked"


# ------------------------------------------------------------------ configuration


def test_backup_configuration_is_validated_and_resolved(tmp_path: Path) -> None:
    cfg = parse(
        "site: {name: x}\nstorage: {path: var/s.db, backup: {directory: var/backup, at: '03:15', keep: 3, "
        "fault_level: 二级}}\n",
        base_dir=tmp_path,
    )
    b = cfg.storage.backup
    assert b is not None and b.at == "03:15" and b.keep == 3 and b.fault_level == 2
    assert b.directory == str(tmp_path / "var" / "backup")  # relative: like the store path
    with pytest.raises(ConfigError) as err:
        parse("site: {name: x}\nstorage: {backup: {directory: /b, at: 25:00}}\n")
    assert "storage.backup.at" in err.value.render()
    with pytest.raises(ConfigError) as err:
        parse("site: {name: x}\nstorage: {backup: {directory: /b, keep: 0}}\n")
    assert "storage.backup.keep" in err.value.render()


# ------------------------------------------------------------------ before a migration


def schema_4_store(path: Path) -> None:
    """A store as the agent of schema 4 left it (the migrations up to 4, one check, one run)."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    for v in (1, 2, 3, 4):
        for stmt in S._statements(S._MIGRATIONS[v]):
            db.execute(stmt)
    db.execute("INSERT INTO meta VALUES('schema_version', '4')")
    db.execute("INSERT INTO checks(name, kind, system, first_seen) VALUES('web', 'http', 'HIS', 0)")
    db.execute("INSERT INTO results(check_id, ts, status, duration_ms, summary) VALUES(1, 1, 0, 1, 'OK')")
    db.close()


def test_a_copy_is_written_before_a_schema_migration(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    schema_4_store(path)
    before = hashlib.sha256()
    with sqlite3.connect(path) as db:
        for row in db.execute("SELECT * FROM results ORDER BY id"):
            before.update(repr(row).encode())
    store = Store(path)
    assert store.schema_version() == S.SCHEMA_VERSION > 4
    store.close()
    copy = tmp_path / "s.db.pre-migration-v4.db"
    with sqlite3.connect(f"file:{copy}?mode=ro", uri=True) as db:
        assert db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == "4"
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("SELECT name FROM sqlite_master WHERE name='approvals'").fetchone() is None
        after = hashlib.sha256()
        for row in db.execute("SELECT * FROM results ORDER BY id"):
            after.update(repr(row).encode())
    assert after.digest() == before.digest()
    # The next open migrates nothing and copies nothing; a new store is never "migrated".
    os.remove(copy)
    Store(path).close()
    Store(tmp_path / "new.db").close()
    assert sorted(p.name for p in tmp_path.iterdir() if "pre-migration" in p.name) == []


def test_a_damaged_store_is_not_migrated(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    schema_4_store(path)
    with sqlite3.connect(path, isolation_level=None) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        for i in range(400):  # enough rows for an index of its own pages
            db.execute(
                "INSERT INTO results(check_id, ts, status, duration_ms, summary) VALUES(1, ?, 0, 1, 'OK')",
                (i + 10,),
            )
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    flip_page(path, rootpage(path, "results_check_ts"))
    with pytest.raises(sqlite3.DatabaseError, match="not migrated"):
        Store(path)
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        assert db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == "4"
    assert not (tmp_path / "s.db.pre-migration-v4.db").exists()


# ------------------------------------------------------------------ SFTP


@pytest.fixture(scope="module")
def sshd() -> Iterator[Sshd]:
    with running_sshd() as server:
        yield server


@pytest.fixture
def remote_dir(sshd: Sshd) -> Iterator[Path]:
    """A directory the SSH test user owns (pytest's tmp_path is private to root)."""
    d = Path(tempfile.mkdtemp(prefix="backup-", dir=sshd.dir))
    shutil.chown(d, TEST_USER)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def sftp_target(sshd: Sshd, directory: Path, **extra: object) -> StoreBackup:
    return StoreBackup.model_validate(
        {
            "directory": str(directory),
            "ssh": {
                "address": "127.0.0.1",
                "port": sshd.port,
                "user": sshd.user,
                "key_file": str(sshd.client_key),
                "known_hosts": str(sshd.write_known_hosts()),
                "connect_timeout": 5.0,
            },
            **extra,
        }
    )


def test_sftp_copy_is_uploaded_checked_and_pruned(tmp_path: Path, sshd: Sshd, remote_dir: Path) -> None:
    store = filled(tmp_path / "s.db")
    key_file = tmp_path / "s.db.key"
    key_file.write_bytes(KEY)
    key_file.chmod(0o600)
    target = sftp_target(sshd, remote_dir / "sentinel" / "copies", keep=2)
    outs = [make_backup(store.path, target, KEY, T0 + i * 1000, key_file=key_file) for i in range(3)]
    for out in outs:
        assert out.ok, out.error
        assert out.file is not None and out.file.startswith(f"{sshd.user}@127.0.0.1:{sshd.port}:")
    remote = remote_dir / "sentinel" / "copies"
    names = sorted(p.name for p in remote.iterdir())
    assert names == ["s-20261118T110641Z.db", "s-20261118T110642Z.db", "s.db.key"]
    assert outs[2].pruned == ["s-20261118T110640Z.db"]
    last = remote / "s-20261118T110642Z.db"
    assert hashlib.sha256(last.read_bytes()).hexdigest() == outs[2].sha256
    assert last.stat().st_uid == os.stat(remote).st_uid  # written by the SSH login
    assert verify_copy(last, KEY).ok
    assert stat.S_IMODE((remote / "s.db.key").stat().st_mode) == 0o600
    # The local temporary copy next to the store is gone.
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_sftp_with_an_unknown_host_key_uploads_nothing(tmp_path: Path, sshd: Sshd, remote_dir: Path) -> None:
    store = filled(tmp_path / "s.db")
    target = sftp_target(sshd, remote_dir)
    assert target.ssh is not None
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    target = target.model_copy(update={"ssh": target.ssh.model_copy(update={"known_hosts": str(empty)})})
    mark = sshd.mark()
    out = make_backup(store.path, target, KEY, T0)
    assert not out.ok and out.error is not None and "unknown host key" in out.error
    assert sshd.auth_attempts(mark) == []  # no login was even tried
    assert list(remote_dir.iterdir()) == []


def test_sftp_a_damaged_copy_is_never_uploaded(tmp_path: Path, sshd: Sshd, remote_dir: Path) -> None:
    store = filled(tmp_path / "s.db")
    mark = sshd.mark()
    out = make_backup(
        store.path,
        sftp_target(sshd, remote_dir),
        KEY,
        T0,
        after_copy=lambda p: flip_page(p, rootpage(p, "results")),
    )
    assert not out.ok and out.check is not None and not out.check.ok
    assert sshd.connections(mark) == 0 and list(remote_dir.iterdir()) == []
