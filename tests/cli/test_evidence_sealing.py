"""Every row that counts is sealed, whoever writes it (issue 13, scope 5), through real processes:
the agent creates the evidence key at its first start (a 0600 file next to the store); a CLI
command that writes while no agent runs seals its own rows, so `sentinel verify` passes, and an
edit of such a row fails it naming table and id; a key file open to others is refused; the key
is never in the store, the output or the logs, only its fingerprint, which `availability`, the
reports and the export print next to the chain head."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from agent.store.db import Store
from agent.store.verify_standalone import key_id
from tests.conftest import REPO, free_port, wait_until
from tests.helpers.agent_proc import AgentProcess

CONFIG = """
site: {{name: 测试医院, timezone: Asia/Shanghai}}
agent: {{heartbeat: 1s, log_level: DEBUG}}
systems:
  - {{name: HIS}}
checks:
  - {{name: his-port, kind: tcp, host: 127.0.0.1, port: {port}, system: HIS, interval: 1s, timeout: 500ms,
     confirmations: 2, availability_critical: true}}
"""


WINDOW = ("maintenance", "add", "月度补丁", "--system", "HIS", "--start", "2026-11-20 02:00",
          "--end", "2026-11-20 04:00", "--reason", "操作系统补丁",
          "--party", "甲方", "--by", "信息科王主任")  # fmt: skip
"""A maintenance window recorded with 甲方's approval (`maintenance approve` adds 乙方's)."""
EXCLUSION = ("exclusions", "add", "--name", "市电中断", "--start", "2026-11-18 10:00",
             "--end", "2026-11-18 11:00", "--system", "HIS", "--reason", "供电局计划外停电",
             "--party", "乙方", "--by", "张经理")  # fmt: skip


class Site:
    """A working directory with the configuration; the store is var/sentinel.db (the default)."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.config = tmp / "sentinel.yaml"
        self.config.write_text(CONFIG.format(port=free_port()), encoding="utf-8")
        self.outputs: list[str] = []
        """Everything any command printed: the key must be in none of it."""

    @property
    def db(self) -> Path:
        return self.tmp / "var" / "sentinel.db"

    @property
    def key_file(self) -> Path:
        return self.tmp / "var" / "sentinel.db.key"

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PYTHONPATH": str(REPO), "SUDO_USER": "值班员"}
        done = subprocess.run(
            [sys.executable, "-m", "agent", "-c", str(self.config), *args],
            cwd=self.tmp, env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        self.outputs += [done.stdout, done.stderr]
        return done

    def ok(self, *args: str) -> str:
        done = self.cli(*args)
        assert done.returncode == 0, f"{args}: {done.stdout}{done.stderr}"
        return done.stdout

    def verify_json(self) -> dict[str, Any]:
        out: dict[str, Any] = json.loads(self.ok("verify", "--json"))
        return out

    def tamper(self, table: str, column: str, value: object, rid: int) -> None:
        """What someone with write access to the file does: plain SQL, the trigger dropped."""
        with sqlite3.connect(self.db) as db:
            db.execute(f"DROP TRIGGER IF EXISTS {table}_no_update")
            db.execute(f"UPDATE {table} SET {column}=? WHERE id=?", (value, rid))

    def query(self, sql: str, args: tuple[Any, ...] = ()) -> Any:
        with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True) as db:
            return db.execute(sql, args).fetchone()[0]

    def store_bytes(self) -> bytes:
        return b"".join(p.read_bytes() for p in self.db.parent.iterdir() if p.name.startswith("sentinel.db-"))

    def assert_key_kept_secret(self, key: bytes, *logs: str) -> None:
        raw = bytes.fromhex(key.decode())
        data = self.db.read_bytes() + self.store_bytes()
        assert key not in data and raw not in data, "the key is in the store file"
        assert key_id(key).encode() in data  # only its fingerprint
        for text in [*self.outputs, *logs]:
            assert key.decode() not in text, "the key was printed"


def key_of(site: Site) -> bytes:
    assert stat.S_IMODE(site.key_file.stat().st_mode) == 0o600
    key = site.key_file.read_bytes().strip()
    assert len(key) == 64 and all(c in b"0123456789abcdef" for c in key)
    return key


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return Site(tmp_path)


def test_agent_creates_the_key_and_a_cli_write_without_the_agent_is_sealed(site: Site) -> None:
    agent = AgentProcess(site.tmp, site.config.read_text(encoding="utf-8"))
    try:
        agent.start()
        # The check's port is closed: two failed samples open a fault.
        # rows() answers [] until the agent has created the schema (the file exists before it).
        wait_until(lambda: agent.rows("SELECT 1 FROM faults LIMIT 1"), 60, "a fault opened by the agent")
        rc, _ = agent.stop()
        assert rc == 0, agent.text_log()
    finally:
        agent.kill()
    assert agent.db_path == site.db
    key = key_of(site)  # created by the agent at its first start, 0600
    kid = key_id(key)
    log = agent.text_log()
    assert f"key id {kid}" in log
    assert site.query("SELECT value FROM meta WHERE key='evidence_key_id'") == kid

    # No agent runs now: a person acknowledges the fault from the command line.
    number = site.query("SELECT number FROM faults ORDER BY id LIMIT 1")
    site.ok("faults", "ack", number, "--by", "王工")
    rid = site.query("SELECT max(id) FROM fault_events WHERE action='acknowledged'")
    assert rid is not None
    assert site.query("SELECT count(*) FROM evidence WHERE tbl=4 AND id=?", (rid,)) == 1
    out = site.verify_json()
    assert out["ok"] and out["key_id"] == kid and out["keyed"] and not out["legacy_keyless"]
    assert all(t["unsealed"] == 0 for t in out["tables"])

    site.tamper("fault_events", "actor", "另一个人", rid)
    done = site.cli("verify")
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"fault_events row {rid}: edited" in done.stdout and "BROKEN" in done.stdout
    site.assert_key_kept_secret(key, log)


@pytest.mark.parametrize(("table", "column"), [("maintenance_log", "actor"), ("approvals", "approver")])
def test_cli_ledger_rows_on_a_new_store_are_sealed_and_an_edit_is_named(
    site: Site, table: str, column: str
) -> None:
    """No agent has ever run: the first command that writes creates the key and seals."""
    site.ok(*WINDOW)
    key = key_of(site)
    site.ok("maintenance", "approve", "月度补丁", "--party", "乙方", "--by", "张工")
    assert site.query("SELECT count(*) FROM agent_runs") == 0
    out = site.verify_json()
    assert out["ok"], out["problems"]
    assert out["key_id"] == key_id(key)
    counts = {t["table"]: (t["rows"], t["sealed"], t["unsealed"]) for t in out["tables"]}
    assert counts["maintenance_log"] == (1, 1, 0) and counts["approvals"] == (2, 2, 0)

    rid = site.query(f"SELECT max(id) FROM {table}")
    site.tamper(table, column, "伪造", rid)
    done = site.cli("verify", "--json")
    assert done.returncode == 1
    first = json.loads(done.stdout)["problems"][0]
    assert (first["table"], first["row_id"], first["kind"]) == (table, rid, "edited"), first
    site.assert_key_kept_secret(key)


def test_a_row_slipped_in_without_a_link_is_named(site: Site) -> None:
    site.ok(*EXCLUSION)
    assert site.verify_json()["ok"]
    with sqlite3.connect(site.db) as db:
        rid = db.execute(
            "INSERT INTO approvals(ledger, record_id, name, party, approver, ts, os_user) "
            "SELECT 'exclusions', id, name, '甲方', '院方 李主任', created_ts + 1, 'root' FROM exclusions"
        ).lastrowid
    done = site.cli("verify")
    assert done.returncode == 1
    assert f"approvals row {rid}: inserted" in done.stdout and "no link" in done.stdout


def test_a_key_file_open_to_others_is_refused_by_every_command(site: Site) -> None:
    site.ok(*WINDOW)
    key = key_of(site)
    site.key_file.chmod(0o644)
    rows = site.query("SELECT count(*) FROM maintenance_log")
    for args in (
        ("maintenance", "approve", "月度补丁", "--party", "乙方", "--by", "张工"),
        ("verify",),
        ("run",),
    ):
        done = site.cli(*args)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert str(site.key_file) in done.stderr and "0644" in done.stderr and "chmod 600" in done.stderr
    assert site.query("SELECT count(*) FROM maintenance_log") == rows  # nothing written unsealed
    assert site.query("SELECT count(*) FROM agent_runs") == 0  # the agent did not start
    site.key_file.chmod(0o600)
    assert site.verify_json()["ok"]
    site.assert_key_kept_secret(key)


def test_a_legacy_store_sealed_without_a_key_stays_keyless(site: Site) -> None:
    store = Store(site.db)  # an agent of before keys: its chain is plain SHA-256 (key id "")
    run = store.begin_run(1_795_000_000_000, 1, "h", "t")
    store.end_run(run, 1_795_000_060_000)
    store.close()
    site.ok(*WINDOW)
    assert not site.key_file.exists()
    text = site.ok("verify")
    assert "未使用密钥（旧存储）" in text and "INTACT" in text
    out = site.verify_json()
    assert out["ok"] and out["key_id"] == "" and out["legacy_keyless"]


def test_availability_reports_and_the_export_print_the_head_and_the_fingerprint(site: Site) -> None:
    site.ok(*EXCLUSION)
    kid = key_id(key_of(site))
    head = site.verify_json()["head"]
    assert len(head) == 64

    out = json.loads(site.ok("availability", "--period", "2026-11", "--json"))
    assert out["evidence"] == {"head": head, "key_id": kid}
    text = site.ok("availability", "--period", "2026-11")
    assert f"证据链头 {head}" in text and f"证据链密钥指纹 {kid}" in text

    site.ok("report", "daily", "--date", "2026-11-18", "--out", str(site.tmp / "r"))
    html = (site.tmp / "r" / "daily-2026-11-18.html").read_text("utf-8")
    assert head in html and f"密钥指纹：<code>{kid}</code>" in html
    data = json.loads((site.tmp / "r" / "daily-2026-11-18.json").read_text("utf-8"))
    assert data["chain_head"]["digest_hex"] == head and data["chain_head"]["key_id"] == kid

    text = site.ok("evidence", "export", "--period", "2026-11", "--out", str(site.tmp / "ev.zip"))
    assert f"链头 / chain head: {head}" in text and f"密钥指纹 / key id: {kid}" in text
    assert "--key-file " in text and "sentinel.db.key to verify.py" in text  # where the key is
    export = ("evidence", "export", "--period", "2026-11", "--out", str(site.tmp / "ev.zip"))
    printed = json.loads(site.ok(*export, "--json"))
    assert (printed["head"], printed["key_id"]) == (head, kid)
    root = site.tmp / "unpacked"
    with zipfile.ZipFile(site.tmp / "ev.zip") as z:
        z.extractall(root)
    assert json.loads((root / "manifest.json").read_text("utf-8"))["key_id"] == kid
    # The committee checks the keyed chain with the key file as it is (python3 -I, no agent);
    # without it the links cannot be checked. (The figures' recomputation is tested elsewhere:
    # no agent ever ran here.)
    bare = [sys.executable, "-I", "-S", str(root / "verify.py"), str(root), "--json"]
    keyed = subprocess.run([*bare, "--key-file", str(site.key_file)], capture_output=True, text=True,
                           timeout=60, check=False)  # fmt: skip
    assert json.loads(keyed.stdout)["problems"] == [], keyed.stdout + keyed.stderr
    without = subprocess.run(bare, capture_output=True, text=True, timeout=60, check=False)
    assert without.returncode == 1
    assert [p["kind"] for p in json.loads(without.stdout)["problems"]] == ["key"]
