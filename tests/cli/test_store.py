"""`sentinel store backup|restore` end to end with real processes: a copy taken from a running
agent's store while it writes, restored into a fresh place and over the store, `sentinel
verify` passing on both; restore refused while the agent runs and for a damaged copy; a
failed backup made by the daemon is a fault in `sentinel faults list`."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from tests.conftest import REPO, wait_until
from tests.helpers.agent_proc import AgentProcess
from tests.helpers.servers import http_server

BACKUP_CHECK = "sentinel.store_backup"


def config(port: int, backup: str, extra: str = "") -> str:
    return f"""
site: {{name: 测试医院, timezone: Asia/Shanghai}}
agent: {{heartbeat: 1s}}
storage: {{backup: {backup}}}
systems:
  - {{name: HIS}}
checks:
  - {{name: web, kind: http, url: "http://127.0.0.1:{port}/ok", system: HIS, interval: 1s, timeout: 500ms,
     confirmations: 1, availability_critical: true}}
{extra}
"""


def sentinel(workdir: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "agent", "-c", str(workdir / "sentinel.yaml"), *args],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def ok_json(workdir: Path, *args: str) -> Any:
    done = sentinel(workdir, *args, "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


def count(db: Path, table: str = "results") -> int:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def backup_faults(workdir: Path) -> list[dict[str, Any]]:
    faults: list[dict[str, Any]] = ok_json(workdir, "faults", "list")
    return [f for f in faults if f["description"].startswith(BACKUP_CHECK)]


def test_backup_of_a_running_agent_restores_and_verifies(tmp_path: Path) -> None:
    with http_server() as srv:
        agent = AgentProcess(tmp_path, config(srv.server_port, "{directory: backups, keep: 5}"))
        try:
            agent.start()
            agent.wait_results(5, 30)
            r = sentinel(tmp_path, "store", "backup")
            assert r.returncode == 0, r.stdout + r.stderr
            assert "备份完成 / backup done:" in r.stdout and "完整性 / integrity:     ok" in r.stdout
            assert "证据链 / evidence chain: 完整 INTACT" in r.stdout
            copy = Path(r.stdout.split("backup done: ")[1].split("\n")[0])
            assert copy.parent == tmp_path / "backups" and copy.is_file()
            in_copy = count(copy)
            # The agent went on writing: the copy was taken online, not by stopping it.
            agent.wait_results(in_copy + 3, 30)
            # Restore while the agent holds the store: refused, nothing touched.
            before = sorted(p.name for p in agent.db_path.parent.iterdir())
            refused = sentinel(tmp_path, "store", "restore", str(copy))
            assert refused.returncode == 1
            assert "restore REFUSED" in refused.stderr and "another agent" in refused.stderr
            assert sorted(p.name for p in agent.db_path.parent.iterdir()) == before
            rc, _ = agent.stop()
            assert rc == 0
        finally:
            agent.kill()
    assert count(agent.db_path) > in_copy
    key_kept = tmp_path / "backups" / "sentinel.db.key"
    assert key_kept.read_bytes() == (tmp_path / "var" / "sentinel.db.key").read_bytes()

    # 1. Into a fresh place (the disk was lost): the key comes from the backup directory.
    fresh = tmp_path / "fresh"
    (fresh / "var").mkdir(parents=True)
    (fresh / "sentinel.yaml").write_text((tmp_path / "sentinel.yaml").read_text("utf-8"), "utf-8")
    shutil.copy2(key_kept, fresh / "var" / "sentinel.db.key")
    done = ok_json(fresh, "store", "restore", str(copy))
    assert done["ok"] and done["integrity"] == "ok" and done["chain"] == "ok" and done["kept_aside"] is None
    assert count(fresh / "var" / "sentinel.db") == in_copy
    v = sentinel(fresh, "verify")
    assert v.returncode == 0 and "完整 INTACT" in v.stdout, v.stdout + v.stderr

    # 2. Over the store itself: the replaced store is kept aside, no stale -wal/-shm remain.
    n_before = count(agent.db_path)
    r = sentinel(tmp_path, "store", "restore", str(copy))
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"已恢复 / restored: {copy} → {agent.db_path}" in r.stdout
    aside = sorted(p.name for p in agent.db_path.parent.iterdir() if ".before-restore-" in p.name)
    assert re.fullmatch(r"sentinel\.db\.before-restore-\d{8}T\d{6}Z", aside[0]), aside
    assert aside[1:] in ([], [f"{aside[0]}-wal"])
    main_aside = agent.db_path.parent / aside[0]
    assert f"previous store kept as: {main_aside}" in r.stdout
    assert count(main_aside) == n_before > in_copy  # the replaced store, nothing of it lost
    assert not (tmp_path / "var" / "sentinel.db-wal").exists()
    assert not (tmp_path / "var" / "sentinel.db-shm").exists()
    assert count(agent.db_path) == in_copy
    v = sentinel(tmp_path, "verify")
    assert v.returncode == 0 and "完整 INTACT" in v.stdout, v.stdout + v.stderr

    # The restored store is a working store: the agent runs on it and it still verifies.
    with http_server() as srv:
        (tmp_path / "sentinel.yaml").write_text(config(srv.server_port, "{directory: backups}"), "utf-8")
        try:
            agent.start()
            agent.wait_results(in_copy + 3, 30)
            rc, _ = agent.stop()
            assert rc == 0
        finally:
            agent.kill()
    v = sentinel(tmp_path, "verify")
    assert v.returncode == 0 and "完整 INTACT" in v.stdout, v.stdout + v.stderr


def made_store(tmp_path: Path) -> tuple[Path, Path]:
    """A stopped agent's store with a few sealed rows (that agent made no backup), and one
    verified copy of it made by hand."""
    with http_server() as srv:
        agent = AgentProcess(tmp_path, config(srv.server_port, "null"))
        try:
            agent.start()
            agent.wait_results(3, 30)
            rc, _ = agent.stop()
            assert rc == 0
        finally:
            agent.kill()
    (tmp_path / "sentinel.yaml").write_text(config(9, "{directory: backups}"), "utf-8")
    out = ok_json(tmp_path, "store", "backup")
    assert out["ok"]
    return agent.db_path, Path(out["file"])


def test_damaged_copies_are_refused_by_restore(tmp_path: Path) -> None:
    store, copy = made_store(tmp_path)
    before = digest(store)
    bad = tmp_path / "bad.db"
    page = 4096

    def refused(path: Path, why: str) -> None:
        r = sentinel(tmp_path, "store", "restore", str(path))
        assert r.returncode == 1, r.stdout + r.stderr
        assert "restore REFUSED" in r.stderr and why in r.stderr, r.stderr
        assert digest(store) == before  # the store is untouched
        assert not [
            p for p in store.parent.iterdir() if "before-restore" in p.name or p.name.endswith(".part")
        ]

    # Bytes flipped over a whole page of the results (a bad sector): the integrity check.
    with sqlite3.connect(f"file:{copy}?mode=ro", uri=True) as db:
        root = db.execute("SELECT rootpage FROM sqlite_master WHERE name='results'").fetchone()[0]
    data = bytearray(copy.read_bytes())
    data[(root - 1) * page : root * page] = bytes(range(256)) * (page // 256)
    bad.write_bytes(bytes(data))
    refused(bad, "failed verification")
    # Cut short (a copy that was never finished).
    bad.write_bytes(copy.read_bytes()[: len(data) // 3])
    refused(bad, "")
    # Structurally fine, one row changed: the evidence chain names it.
    shutil.copy(copy, bad)
    with sqlite3.connect(bad) as db:
        rid = db.execute("SELECT max(id) FROM results").fetchone()[0]
        db.execute("UPDATE results SET status=0, summary='OK' WHERE id=?", (rid,))
    refused(bad, f"results row {rid}: edited")
    # Not a store at all.
    bad.write_text("hello")
    refused(bad, "")
    # The good copy still restores.
    r = sentinel(tmp_path, "store", "restore", str(copy))
    assert r.returncode == 0, r.stdout + r.stderr


def test_backup_command_failure_and_missing_configuration(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("a file where the directory should be")
    (tmp_path / "sentinel.yaml").write_text(config(9, "{directory: afile/backups}"), "utf-8")
    from agent.store.db import Store

    Store(tmp_path / "var" / "sentinel.db").close()
    r = sentinel(tmp_path, "store", "backup")
    assert r.returncode == 1 and "备份失败 / backup FAILED" in r.stdout and "afile" in r.stdout
    r = sentinel(tmp_path, "store", "backup", "--json")
    assert r.returncode == 1 and json.loads(r.stdout)["error"].startswith("备份目录无法创建")
    # Without storage.backup: say what to do; --dir makes a one-off copy anyway.
    (tmp_path / "sentinel.yaml").write_text(config(9, "null"), "utf-8")
    r = sentinel(tmp_path, "store", "backup")
    assert r.returncode == 2 and "storage.backup is not configured" in r.stderr
    out = ok_json(tmp_path, "store", "backup", "--dir", "once")
    assert out["ok"] and Path(out["file"]).parent == tmp_path / "once"


def test_a_failed_daily_backup_is_a_fault(tmp_path: Path) -> None:
    # The backup directory cannot exist (a file is in the way). The first copy is owed at
    # start (none was ever made), so the daemon tries a few seconds after starting.
    (tmp_path / "afile").write_text("x")
    with http_server() as srv:
        agent = AgentProcess(tmp_path, config(srv.server_port, "{directory: afile/backups, at: '03:00'}"))
        try:
            agent.start()
            found = wait_until(lambda: backup_faults(tmp_path), 60, "the backup fault")
            rc, _ = agent.stop()
            assert rc == 0
        finally:
            agent.kill()
    assert isinstance(found, list)
    (fault,) = found
    assert "存储备份失败" in fault["description"] and "afile/backups" in fault["description"]
    assert fault["level"] == 3 and fault["type"] == "数据安全类" and fault["system"] is None
    # Not availability-critical: a fault of the monitoring, not downtime of HIS.
    assert "不可用" not in fault["impact"]
    text = sentinel(tmp_path, "faults", "list").stdout
    assert fault["number"] in text and BACKUP_CHECK in text
    today = datetime.now(ZoneInfo("Asia/Shanghai")).date().isoformat()
    avail = ok_json(tmp_path, "availability", "--period", today)
    assert BACKUP_CHECK not in json.dumps(avail, ensure_ascii=False)


def test_a_tampered_store_fails_the_daemons_backup_as_a_fault(tmp_path: Path) -> None:
    store, _ = made_store(tmp_path)
    with sqlite3.connect(store) as db:
        rid = db.execute("SELECT min(id) FROM results").fetchone()[0]
        db.execute("UPDATE results SET summary='（已改）' WHERE id=?", (rid,))
    # The agent starts with backups configured: none was ever made, so one is owed at once.
    with http_server() as srv:
        agent = AgentProcess(tmp_path, config(srv.server_port, "{directory: backups}"))
        try:
            agent.start()
            found = wait_until(lambda: backup_faults(tmp_path), 60, "the backup fault")
            rc, _ = agent.stop()
            assert rc == 0
        finally:
            agent.kill()
    assert isinstance(found, list)
    (fault,) = found
    assert f"results row {rid}: edited" in fault["description"]
    assert "证据链校验失败" in fault["description"]
