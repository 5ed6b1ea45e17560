"""`sentinel faults` on a real store, through the command line in a subprocess."""

from __future__ import annotations

import getpass
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from agent.config.schema import load
from agent.faults import records as F
from agent.runtime.daemon import check_info, policy_from_config
from agent.state.machine import CheckState
from agent.store.db import Store
from probes.base import CheckResult, Status
from tests.conftest import REPO

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


def cli(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", "-c", str(tmp / "s.yaml"), *args],
        cwd=tmp,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def seed_fault(tmp: Path) -> str:
    (tmp / "s.yaml").write_text(CONFIG, encoding="utf-8")
    cfg = load(tmp / "s.yaml")
    store = Store(tmp / "var/s.db")
    store.sync_checks([("his-web", "http", "HIS")], 0)
    now = datetime.now(UTC).timestamp()
    run = store.begin_run(int(now * 1000) - 120_000, 1, "h", "t")
    mgr = F.FaultManager(
        store,
        policy_from_config(cfg),
        {"his-web": check_info(cfg, cfg.checks[0])},
        lambda s, d, w: (s + int(d * 1000), None),
        None,
        lambda *a: None,
        cfg.site.tz,
        lambda: now,
    )
    st = CheckState()
    for ts, status in ((now - 100, Status.CRIT), (now - 10, Status.OK)):
        r = CheckResult(status, f"{status.name} sample", started_at=datetime.fromtimestamp(ts, UTC))
        ch = st.observe(int(ts * 1000), status, r.summary, 1)
        store.write_batch(run, [("his-web", r, ch, st)])
        mgr.observe("his-web", r, ch)
    number = F.list_faults(store.db)[0].number
    store.close()
    return number


def test_fault_workflow_from_the_command_line(tmp_path: Path) -> None:
    number = seed_fault(tmp_path)
    listing = cli(tmp_path, "faults", "list", "--open")
    assert listing.returncode == 0 and number in listing.stdout and "一级" in listing.stdout
    assert "年超时故障：一级 0/5，二级 0/10" in listing.stdout
    refused = cli(tmp_path, "faults", "close", number, "--by", "张工")
    assert refused.returncode == 1 and "no cause yet" in refused.stderr
    ack = cli(tmp_path, "faults", "ack", number, "--by", "张工")
    assert ack.returncode == 0 and "acknowledged by 张工" in ack.stdout
    again = cli(tmp_path, "faults", "ack", number, "--by", "李工")
    assert again.returncode == 1 and "acknowledged by 张工 already" in again.stderr
    res = cli(tmp_path, "faults", "resolve", number, "--cause", "网络闪断", "--measures", "更换交换机端口")
    assert res.returncode == 0 and "recovered" in res.stdout
    assert cli(tmp_path, "faults", "close", number, "--by", "张工").returncode == 0
    shown = json.loads(cli(tmp_path, "faults", "show", number, "--json").stdout)
    assert shown["cause"] == "网络闪断" and shown["closed_by"] == "张工" and shown["acked_by"] == "张工"
    actions = [e["action"] for e in shown["events"]]
    assert actions == ["opened", "recovered", "acknowledged", "resolved", "closed"]
    assert shown["recovery_s"] == 90.0
    text = cli(tmp_path, "faults", "show", number).stdout
    assert "故障编号：" + number in text and "原因：网络闪断" in text
    # The history is a table: time in the site's zone with its offset, event, who, note.
    history = text.split("历史：\n", 1)[1].splitlines()
    assert history[0].split() == ["时间", "事件", "操作人", "说明"]
    rows = [line.split(maxsplit=4) for line in history[1:]]
    assert [(r[2], r[3]) for r in rows] == [
        ("故障开始", "agent"), ("恢复", "agent"), ("响应", "张工"), ("记录原因", getpass.getuser()),
        ("关闭", "张工")
    ]  # fmt: skip
    assert all(r[1].endswith("+08:00") for r in rows), rows
    assert "原因 网络闪断；处理措施 更换交换机端口" in history[4]
    assert "检查项 his-web" in history[1]
    assert cli(tmp_path, "faults", "list", "--open").stdout.count(number) == 0
