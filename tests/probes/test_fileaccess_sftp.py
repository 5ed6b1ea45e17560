"""SFTP file access against a real OpenSSH server: the same answers as local access, and the
backup_files and log probes working over SFTP like they do locally."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from probes.base import ProbeContext, Status
from probes.fileaccess import AccessError, FileAccess, LocalAccess, SftpAccess, open_access
from probes.ssh.conn import SshPool
from probes.ssh.settings import SshSettings
from tests.helpers.sshd import WRONG_PASSWORD, Sshd, running_sshd
from tests.probes.test_backup_files import at, backup, history
from tests.probes.test_backup_files import run as run_backup
from tests.probes.test_log import Runner, append


@pytest.fixture(scope="module")
def sshd() -> Iterator[Sshd]:
    with running_sshd() as server:
        yield server


@pytest.fixture(scope="module")
def ssh(sshd: Sshd) -> dict[str, Any]:
    known = sshd.write_known_hosts()
    return {
        "address": "127.0.0.1",
        "port": sshd.port,
        "user": sshd.user,
        "password": sshd.password_ref,
        "known_hosts": str(known),
        "connect_timeout": 3.0,
    }


@pytest.fixture
def remote_dir(sshd: Sshd) -> Iterator[Path]:
    """A directory the test user can read (pytest's tmp_path is private to root)."""
    d = Path(tempfile.mkdtemp(prefix="files-", dir=sshd.dir))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


# ------------------------------------------------------------------ the interface


def test_sftp_access_answers_like_local_access(remote_dir: Path, ssh: dict[str, Any]) -> None:
    (remote_dir / "sub").mkdir()
    (remote_dir / "sub").chmod(0o755)
    (remote_dir / "a.log").write_bytes(b"line 1\nline 2\n")
    (remote_dir / "b.log").write_bytes("挂号 连接超时\n".encode("gbk"))
    (remote_dir / "sub" / "c.log").write_bytes(b"c" * 5000)
    (remote_dir / "notes.txt").write_text("x")
    os.utime(remote_dir / "a.log", (1_700_000_000, 1_700_000_000))
    local = LocalAccess()
    ctx = ProbeContext("t", 5.0)
    with open_access(SshSettings.model_validate(ssh), ctx, time.monotonic() + 5) as remote:
        assert isinstance(remote, SftpAccess)
        assert remote.where == f"{ssh['user']}@127.0.0.1:{ssh['port']}"
        for pattern in ("*.log", "*/*.log", "a.log", "none.log", "sub"):
            full = str(remote_dir / pattern)
            assert remote.glob(full) == local.glob(full), pattern

        def listing(fs: FileAccess) -> list[tuple[str, int, float, bool]]:
            return sorted((e.name, e.size, int(e.mtime), e.is_dir) for e in fs.listdir(str(remote_dir)))

        assert listing(remote) == listing(local)
        assert remote.stat(str(remote_dir / "missing")) is None
        st = remote.stat(str(remote_dir / "a.log"))
        assert st is not None and st.size == 14 and st.mtime == 1_700_000_000 and st.ino is None
        with remote.open(str(remote_dir / "sub" / "c.log")) as f:
            assert f.info().size == 5000
            assert f.read_at(4990, 100) == b"c" * 10
            assert len(f.read_at(0, 5000)) == 5000
        with pytest.raises(FileNotFoundError), remote.open(str(remote_dir / "missing")):
            pass
        free_remote = remote.free_bytes(str(remote_dir))
        free_local = local.free_bytes(str(remote_dir))
        assert free_remote is not None and free_local is not None
        assert abs(free_remote - free_local) < 0.02 * free_local + 64 * 1024**2


def test_sftp_access_stops_at_its_deadline(remote_dir: Path, ssh: dict[str, Any]) -> None:
    (remote_dir / "a.log").write_text("x\n")
    settings = SshSettings.model_validate(ssh)
    with open_access(settings, ProbeContext("t", 5.0), time.monotonic() + 5) as remote:
        assert isinstance(remote, SftpAccess)
        remote.deadline = time.monotonic() - 1
        with pytest.raises(AccessError):
            remote.listdir(str(remote_dir))
        assert remote.free_bytes(str(remote_dir)) is None


# ------------------------------------------------------------------ log over SFTP


def test_log_over_sftp_appends_rotation_truncation_once(remote_dir: Path, ssh: dict[str, Any]) -> None:
    log = remote_dir / "app.log"
    log.write_text("2025-01-01 08:00:00 ORA-00600 history, never reported\n")
    pool = SshPool()
    try:
        r = Runner({"files": [str(log)], "patterns": ["ORA-\\d+"], "ssh": ssh}, shared={"ssh": pool})
        first = r.run()
        assert first.status is Status.OK, first.summary
        assert first.details["excerpt"] == []

        append(log, "08:01 ORA-01555 snapshot too old\n08:01 ok\n08:02 ORA-0006")
        assert r.lines() == ["08:01 ORA-01555 snapshot too old"]  # the partial line waits
        append(log, "0 deadlock\n")
        assert r.lines() == ["08:02 ORA-00060 deadlock"]
        assert r.lines() == []

        # rename rotation: the rest of the old file, then the new one from its start
        append(log, "09:00 ORA-00001 unread before rotation\n")
        log.rename(remote_dir / "app.log.1")
        log.write_text("09:01 ORA-00002 new file\n")
        assert r.lines() == ["09:00 ORA-00001 unread before rotation", "09:01 ORA-00002 new file"]

        # truncation in place
        with log.open("r+b") as fh:
            fh.truncate(0)
        append(log, "10:00 ORA-00003 after truncation\n")
        assert r.lines() == ["10:00 ORA-00003 after truncation"]
        assert r.lines() == []
        assert pool.stats()["connects"] == 1  # one pooled connection served every run
    finally:
        pool.close_all()


def test_gbk_log_over_sftp(remote_dir: Path, ssh: dict[str, Any]) -> None:
    log = remote_dir / "his.log"
    log.write_bytes("启动完成\n".encode("gbk"))
    r = Runner(
        {
            "files": [str(remote_dir / "*.log")],
            "patterns": [{"regex": "连接超时", "status": "CRIT"}],
            "encoding": "gbk",
            "ssh": ssh,
        }
    )
    r.run()
    append(log, "12:00 挂号服务 连接超时 password=Secr3t\n12:01 门诊收费 正常\n", "gbk")
    result = r.run()
    assert result.status is Status.CRIT
    assert [e["line"] for e in result.details["excerpt"]] == ["12:00 挂号服务 连接超时 password=***"]
    assert "Secr3t" not in json.dumps([result.summary, dict(result.details)], ensure_ascii=False)
    assert r.lines() == []


def test_wrong_password_is_crit_and_never_shown(remote_dir: Path, ssh: dict[str, Any], sshd: Sshd) -> None:
    r = Runner(
        {
            "files": [str(remote_dir / "x.log")],
            "patterns": ["x"],
            "ssh": {**ssh, "password": sshd.wrong_password_ref},
        }
    )
    result = r.run()
    assert result.status is Status.CRIT
    assert "认证失败" in result.summary
    assert result.memory is None  # offsets untouched
    assert WRONG_PASSWORD not in json.dumps([result.summary, dict(result.details)], ensure_ascii=False)


# ------------------------------------------------------------------ backup_files over SFTP


def test_backup_set_over_sftp_like_local(remote_dir: Path, ssh: dict[str, Any]) -> None:
    history(remote_dir)
    path = backup(remote_dir, "his_20250310.dmp", 10_000, at(0, "02:30"), fill=b"dump-")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    (remote_dir / "his_20250310.dmp.sha256").write_text(f"{digest}  his_20250310.dmp\n")

    ok = run_backup(remote_dir, ssh=ssh, checksum="sha256")
    assert ok.status is Status.OK, ok.summary
    assert ok.metric("backup.his_full.copies").value == 6
    assert ok.metric("backup.his_full.age_s").value == 6.5 * 3600
    assert ok.metric("backup.his_full.free_bytes").value > 0  # from df over the session
    assert ok.details["sets"]["his_full"]["checksum"]["state"] == "ok"
    assert ok.details["sets"]["his_full"]["expected"]["met"] is True

    (remote_dir / "his_20250310.dmp.sha256").write_text("0" * 64 + "  his_20250310.dmp\n")
    assert run_backup(remote_dir, ssh=ssh, checksum="sha256").status is Status.CRIT

    backup(remote_dir, "his_20250310.dmp", 4_000, at(0, "02:30"))
    shrunk = run_backup(remote_dir, ssh=ssh)
    assert shrunk.status is Status.CRIT
    assert "小 60%" in shrunk.summary

    os.remove(path)
    late = run_backup(remote_dir, ssh=ssh)
    assert late.status is Status.CRIT
    assert late.details["backups_expected"][0]["met"] is False

    gone = run_backup(remote_dir / "nope", ssh=ssh)
    assert gone.status is Status.CRIT
    assert "备份目录不存在" in gone.summary


def test_large_backup_is_hashed_over_sftp_with_pipelined_reads(remote_dir: Path, ssh: dict[str, Any]) -> None:
    # 3 MB: above the size where reads are pipelined (readv) instead of one request at a time.
    data = bytearray(os.urandom(3 * 1024 * 1024 + 123))
    path = backup(remote_dir, "his_20250310.dmp", 0, at(0, "02:30"))
    path.write_bytes(data)
    ts = at(0, "02:30").timestamp()
    os.utime(path, (ts, ts))
    digest = hashlib.sha256(data).hexdigest()
    (remote_dir / "his_20250310.dmp.sha256").write_text(f"{digest}  his_20250310.dmp\n")
    ok = run_backup(remote_dir, ssh=ssh, checksum="sha256")
    assert ok.status is Status.OK, ok.summary
    assert ok.details["sets"]["his_full"]["checksum"]["state"] == "ok"
    data[2 * 1024 * 1024] ^= 0xFF  # one flipped byte deep inside, same size and mtime
    path.write_bytes(data)
    os.utime(path, (ts, ts))
    bad = run_backup(remote_dir, ssh=ssh, checksum="sha256")
    assert bad.status is Status.CRIT
    assert "校验失败" in bad.summary
