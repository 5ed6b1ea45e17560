"""`sentinel maintenance` on a real store, through the command line in a subprocess: windows
with the approvals of both parties (甲方, 乙方), their recording time and lateness."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from agent.store.db import Store
from tests.conftest import REPO, free_port, wait_until
from tests.helpers.agent_proc import AgentProcess

SH = ZoneInfo("Asia/Shanghai")

CONFIG = """
site: {name: 测试医院, timezone: Asia/Shanghai}
storage: {path: var/s.db}
systems:
  - {name: HIS}
checks:
  - {name: his-web, kind: http, url: "http://127.0.0.1:9/", system: HIS, availability_critical: true}
maintenance:
  - {name: 每周例行维护, systems: [HIS], weekly: {days: [sun], at: "02:00", duration: 2h},
     reason: 数据库例行维护, approvals: {甲方: 信息科王主任, 乙方: 张工}, ticket: CHG-001}
"""


def cli(tmp: Path, *args: str, user: str = "值班员") -> subprocess.CompletedProcess[str]:
    # SUDO_USER stands for the OS user who runs the command (it wins over the login name).
    env = {**os.environ, "PYTHONPATH": str(REPO), "SUDO_USER": user}
    return subprocess.run(
        [sys.executable, "-m", "agent", "-c", str(tmp / "s.yaml"), *args],
        cwd=tmp, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def local(dt: datetime) -> str:
    return dt.astimezone(SH).strftime("%Y-%m-%d %H:%M")


def listed(tmp: Path, *extra: str) -> dict[str, dict[str, Any]]:
    done = cli(tmp, "maintenance", "list", "--json", *extra)
    assert done.returncode == 0, done.stderr
    return {w["name"]: w for w in json.loads(done.stdout)}


def block(text: str, name: str) -> str:
    """The lines `maintenance list` prints for one window."""
    return next(b for b in text.split("\n\n") if b.startswith(name + "  "))


def test_a_window_recorded_after_it_began_is_late_and_pending_until_the_other_party_approves(
    tmp_path: Path,
) -> None:
    (tmp_path / "s.yaml").write_text(CONFIG, encoding="utf-8")
    now = datetime.now(SH)
    began, ended = now - timedelta(hours=3), now - timedelta(hours=1)
    add = cli(tmp_path, "maintenance", "add", "HIS补录", "--system", "HIS", "--start", local(began),
              "--end", local(ended), "--reason", "HIS 紧急补丁", "--ticket", "CHG-002",
              "--party", "乙方", "--by", "张工")  # fmt: skip
    assert add.returncode == 0, add.stderr
    assert "乙方" in add.stdout and "甲方" in add.stdout

    text = cli(tmp_path, "maintenance", "list").stdout
    his = block(text, "HIS补录")
    assert "[待批准 · 事后补录]" in his
    assert "乙方  张工  " in his and "（系统用户 值班员）" in his and "甲方  —  未批准" in his
    assert "录入  " in his and "值班员（命令行）" in his and "+08:00" in his
    doc = listed(tmp_path)["HIS补录"]
    assert (doc["status"], doc["effective"], doc["late"]) == ("待批准", False, True)
    assert doc["approvals"]["甲方"] is None
    assert doc["approvals"]["乙方"]["approver"] == "张工" and doc["approvals"]["乙方"]["os_user"] == "值班员"
    assert doc["approvals"]["乙方"]["approved_at"].endswith("+08:00")
    assert doc["created_by"] == "值班员" and doc["created_at"].endswith("+08:00")
    assert "approvals" not in doc["spec"]

    # Refusals: exit 1 with the reason, nothing recorded.
    again = cli(tmp_path, "maintenance", "approve", "HIS补录", "--party", "乙方", "--by", "李工")
    assert again.returncode == 1 and "乙方 approved already (张工)" in again.stderr
    same = cli(tmp_path, "maintenance", "approve", "HIS补录", "--party", "甲方", "--by", "张工")
    assert same.returncode == 1 and "two different people" in same.stderr
    unknown = cli(tmp_path, "maintenance", "approve", "没有这个", "--party", "甲方", "--by", "王主任")
    assert unknown.returncode == 1 and "no active maintenance window named '没有这个'" in unknown.stderr
    party = cli(tmp_path, "maintenance", "approve", "HIS补录", "--party", "丙方", "--by", "王主任")
    assert party.returncode == 2 and "丙方" in party.stderr
    old_flag = cli(tmp_path, "maintenance", "add", "旧写法", "--system", "HIS", "--start", local(began),
                   "--end", local(ended), "--reason", "x", "--approved-by", "王主任")  # fmt: skip
    assert old_flag.returncode == 2 and "--party" in old_flag.stderr
    assert listed(tmp_path)["HIS补录"]["status"] == "待批准"

    ok = cli(tmp_path, "maintenance", "approve", "HIS补录", "--party", "甲方", "--by", "信息科王主任",
             user="科长")  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert "生效" in ok.stdout
    his = block(cli(tmp_path, "maintenance", "list").stdout, "HIS补录")
    assert "[生效 · 事后补录]" in his and "甲方  信息科王主任  " in his and "（系统用户 科长）" in his
    doc = listed(tmp_path)["HIS补录"]
    assert (doc["status"], doc["effective"], doc["late"]) == ("生效", True, True)
    assert doc["approvals"]["甲方"]["os_user"] == "科长"

    # A window recorded before it begins is not late.
    soon = now + timedelta(days=2)
    planned = cli(tmp_path, "maintenance", "add", "计划升级", "--system", "HIS", "--start", local(soon),
                  "--end", local(soon + timedelta(hours=2)), "--reason", "升级", "--party", "甲方",
                  "--by", "王主任")  # fmt: skip
    assert planned.returncode == 0, planned.stderr
    doc = listed(tmp_path)["计划升级"]
    assert (doc["status"], doc["late"]) == ("待批准", False)
    assert "[待批准]" in block(cli(tmp_path, "maintenance", "list").stdout, "计划升级")

    # Removed: kept in the log, and no longer approvable.
    assert cli(tmp_path, "maintenance", "remove", "计划升级", "--by", "王主任").returncode == 0
    late = cli(tmp_path, "maintenance", "approve", "计划升级", "--party", "乙方", "--by", "张工")
    assert late.returncode == 1 and "no active maintenance window" in late.stderr
    everything = listed(tmp_path, "--all")
    assert everything["计划升级"]["removed_by"] == "王主任"
    log = cli(tmp_path, "maintenance", "list", "--all").stdout
    assert "值班员  add  HIS补录" in log and "王主任  remove  计划升级" in log


def test_the_window_ledger_stays_append_only(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text(CONFIG, encoding="utf-8")
    now = datetime.now(SH) + timedelta(days=1)
    add = cli(tmp_path, "maintenance", "add", "HIS升级", "--system", "HIS", "--start", local(now),
              "--end", local(now + timedelta(hours=1)), "--reason", "HIS 版本升级", "--party", "甲方",
              "--by", "信息科王主任", "--json")  # fmt: skip
    assert add.returncode == 0 and json.loads(add.stdout)["status"] == "待批准"
    dup = cli(tmp_path, "maintenance", "add", "HIS升级", "--system", "HIS", "--start", local(now),
              "--end", local(now + timedelta(hours=1)), "--reason", "x", "--party", "乙方",
              "--by", "y")  # fmt: skip
    assert dup.returncode == 1 and "exists already" in dup.stderr
    bad = cli(tmp_path, "maintenance", "add", "坏窗口", "--system", "HIS", "--start", "2026-12-03 22:00",
              "--end", "2026-12-03 21:00", "--reason", "x", "--party", "乙方", "--by", "y")  # fmt: skip
    assert bad.returncode == 2 and "end" in bad.stderr
    # The configuration's windows are in the ledger only once the agent loaded them.
    assert "每周例行维护" not in listed(tmp_path)
    store = Store(tmp_path / "var/s.db")
    try:
        for sql in ("UPDATE maintenance_log SET actor='someone else'", "DELETE FROM approvals"):
            with pytest.raises(Exception, match="append-only"):
                store.db.execute(sql)
    finally:
        store.close()


def test_the_agent_records_the_configurations_windows_with_both_approvals_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = CONFIG.replace("storage: {path: var/s.db}", "storage: {path: var/sentinel.db}")
    config = config.replace("site: {name: 测试医院, timezone: Asia/Shanghai}",
                            f"site: {{name: 测试医院, timezone: Asia/Shanghai}}\nagent: {{heartbeat: 1s, "
                            f"listen: \"127.0.0.1:{free_port()}\"}}")  # fmt: skip
    config = config.replace("http://127.0.0.1:9/", f"http://127.0.0.1:{free_port()}/")
    config += (
        "availability:\n  force_majeure:\n"
        "    - {name: 市电中断, start: '2026-01-10 20:00', end: '2026-01-10 21:00', reason: 供电局停电,\n"
        "       approvals: {甲方: 信息科王主任, 乙方: 张工}}\n"
    )
    monkeypatch.setenv("SUDO_USER", "agent-operator")
    agent = AgentProcess(tmp_path, config)
    (tmp_path / "s.yaml").write_text(config, encoding="utf-8")

    def windows() -> dict[str, dict[str, Any]]:
        return listed(tmp_path) if agent.db_path.exists() else {}

    def run_once() -> None:
        before = agent.result_count()
        agent.start()
        try:
            # A result of this run: the agent is up (signal handlers in place, ledgers synced).
            agent.wait_results(before + 1, 60)
        finally:
            rc, _took = agent.stop()
        assert rc == 0, agent.text_log()

    run_once()
    wait_until(lambda: "每周例行维护" in windows(), 10, "the configuration's window in the ledger")
    first = windows()["每周例行维护"]
    assert (first["source"], first["created_by"], first["status"]) == ("config", "config", "生效")
    for party, who in (("甲方", "信息科王主任"), ("乙方", "张工")):
        approval = first["approvals"][party]
        assert (approval["approver"], approval["os_user"]) == (who, "agent-operator")
        assert approval["approved_at"] == first["created_at"]
    fm = json.loads(cli(tmp_path, "exclusions", "list", "--json").stdout)
    assert [(x["name"], x["status"], x["late"], x["created_by"]) for x in fm] == [
        ("市电中断", "生效", True, "config")
    ]

    run_once()  # unchanged: the first recording time stands
    assert windows()["每周例行维护"]["created_at"] == first["created_at"]
    assert len(listed(tmp_path, "--all")) == 1


def test_one_approval_mutes_a_running_agent_from_the_recording_on(tmp_path: Path) -> None:
    """A window recorded while the agent runs (one party's approval, still 待批准 for availability)
    is picked up by the agent and mutes the fault that opens inside it."""
    from tests.helpers.servers import http_server

    with http_server() as srv:
        config = (
            "site: {name: 测试医院, timezone: Asia/Shanghai}\n"
            "agent: {heartbeat: 1s}\n"
            "systems:\n  - {name: HIS}\n"
            f"checks:\n  - {{name: his-web, kind: http, url: 'http://127.0.0.1:{srv.server_port}/switch',"
            " system: HIS, availability_critical: true, interval: 1s, timeout: 500ms, confirmations: 1}\n"
        )
        (tmp_path / "s.yaml").write_text(config, encoding="utf-8")
        agent = AgentProcess(tmp_path, config)
        agent.start()
        try:
            agent.wait_results(2, 60)
            now = datetime.now(SH)
            add = cli(tmp_path, "maintenance", "add", "巡检", "--check", "his-web", "--start",
                      local(now - timedelta(hours=1)), "--end", local(now + timedelta(hours=1)),
                      "--reason", "机房巡检", "--party", "乙方", "--by", "张工")  # fmt: skip
            assert add.returncode == 0, add.stderr
            assert listed(tmp_path)["巡检"]["status"] == "待批准"
            # The agent reloads its windows when the ledger changes (checked every 30 s).
            wait_until(lambda: "maintenance windows reloaded" in agent.text_log(), 45, "the reload")
            srv.up = False

            def faults() -> list[dict[str, Any]]:
                done = cli(tmp_path, "faults", "list", "--json")
                return list(json.loads(done.stdout)) if done.returncode == 0 else []

            wait_until(lambda: bool(faults()), 30, "a fault for the outage")
            (fault,) = faults()
            assert fault["maintenance"] == "巡检"
            rc, _took = agent.stop()
            assert rc == 0, agent.text_log()
        finally:
            agent.kill()
