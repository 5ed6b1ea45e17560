"""The figure the committee signs, through the real processes: `sentinel run` against local HTTP
endpoints whose state the test sets, then the CLI (`status`, `availability`, `report daily`,
`evidence export` + the archive's own verify.py, `config history`).

Each test reads the instants it asserts on (heartbeats, run starts and stops) from the store the
agent wrote, so nothing depends on how fast this machine is.
"""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
import zipfile
from datetime import datetime
from html import unescape
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from tests.conftest import wait_until
from tests.helpers.agent_proc import AgentProcess
from tests.helpers.servers import http_server

SH = ZoneInfo("Asia/Shanghai")


def cli(agent: AgentProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return agent.cli(*args)


def cli_json(agent: AgentProcess, *args: str) -> Any:
    r = cli(agent, *args, "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def runs(agent: AgentProcess) -> list[sqlite3.Row]:
    return agent.rows("SELECT * FROM agent_runs ORDER BY id")


def hard_states(agent: AgentProcess, check: str) -> list[int]:
    return [
        r["state"]
        for r in agent.rows(
            "SELECT i.state AS state FROM intervals i JOIN checks c ON c.id = i.check_id WHERE c.name=? "
            "ORDER BY i.id",
            (check,),
        )
    ]


def to_ms(iso: str) -> int:
    """The CLI's JSON gives instants as ISO 8601 with the site's offset, to the millisecond."""
    dt = datetime.fromisoformat(iso)
    return (
        int(dt.timestamp() * 1000 + 0.5)
        if dt.microsecond % 1000
        else int(dt.timestamp()) * 1000 + dt.microsecond // 1000
    )


def local(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, SH).strftime("%Y-%m-%d %H:%M:%S")


def fleet(port: int, *, api_critical: bool = False, extra: str = "") -> str:
    return f"""
site: {{name: 测试医院, timezone: Asia/Shanghai}}
agent: {{heartbeat: 1s, liveness_grace: 2s}}
systems:
  - {{name: HIS}}
checks:
  - {{name: web, kind: http, url: "http://127.0.0.1:{port}/switch", system: HIS,
     interval: 1s, timeout: 900ms, confirmations: 1, availability_critical: true}}
  - {{name: api, kind: http, url: "http://127.0.0.1:{port}/fail", system: HIS,
     interval: 1s, timeout: 900ms, confirmations: 1, availability_critical: {str(api_critical).lower()}}}
{extra}
"""


def his(doc: dict[str, Any]) -> dict[str, Any]:
    (s,) = [s for s in doc["subjects"] if s["subject"] == "HIS"]
    return s


def test_a_killed_agent_is_unknown_after_heartbeat_and_grace_everywhere(tmp_path: Path) -> None:
    with http_server() as srv:
        agent = AgentProcess(tmp_path, fleet(srv.server_port))
        try:
            agent.start()
            wait_until(lambda: len(hard_states(agent, "web")) >= 1, 30, "web's first state")
            agent.wait_results(agent.result_count() + 4, 30)
            agent.kill()  # kill -9: no stop recorded
            srv.up = False  # the endpoint goes down while nobody watches
            wait_until(lambda: not cli_json(agent, "status")["agent"]["running"], 30, "status: not running")
        finally:
            agent.kill()
        (run,) = runs(agent)
        assert run["stopped_ts"] is None
        dead_from = run["heartbeat_ts"] + 2000
        day = local(run["started_ts"])[:10]

        doc = cli_json(agent, "availability", "--period", day)
        now = to_ms(doc["computed_at"])
        assert now > dead_from
        s = his(doc)
        down = [u for u in s["unknown"] if u["cause"] == "agent_down"]
        # The silence after the last heartbeat + grace is unknown, up to the moment of asking.
        assert down and to_ms(down[-1]["start_at"]) == dead_from and to_ms(down[-1]["end_at"]) == now
        f = s["figures"]
        assert f["available_ms"] <= dead_from - run["started_ts"]
        assert f["unknown_ms"] >= now - dead_from
        assert f["planned_ms"] == now - run["started_ts"]  # monitoring began with the run

        # The daily report counts the same gap.
        r = cli(agent, "report", "daily", "--date", day, "--json")
        assert r.returncode == 0, r.stderr
        written = json.loads(r.stdout)
        json_file = next(Path(p) for p in _paths(written) if p.endswith(".json"))
        report = json.loads(json_file.read_text(encoding="utf-8"))
        gaps = report["coverage"]["gaps"]
        assert gaps and gaps[-1]["start_ms"] == dead_from

        # The committee's verify.py, from the exported archive, agrees.
        out = tmp_path / "evidence.zip"
        r = cli(agent, "evidence", "export", "--period", day, "--out", str(out))
        assert r.returncode == 0, r.stderr
        root = tmp_path / "archive"
        with zipfile.ZipFile(out) as z:
            z.extractall(root)
        v = subprocess.run(
            [sys.executable, "-I", str(root / "verify.py"), str(root), "--json", *_key_args(agent)],
            check=False,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert v.returncode == 0, v.stdout + v.stderr
        assert json.loads(v.stdout)["ok"] is True
        systems = json.loads((root / "availability" / "systems.json").read_text(encoding="utf-8"))
        (exported,) = [x for x in systems if x["name"] == "HIS"]
        assert exported["agent_figures"]["unknown_ms"] >= exported["agent_figures"]["planned_ms"] - (
            dead_from - run["started_ts"]
        )


def _paths(written: Any) -> list[str]:
    if isinstance(written, str):
        return [written]
    if isinstance(written, dict):
        return [p for v in written.values() for p in _paths(v)]
    if isinstance(written, list):
        return [p for v in written for p in _paths(v)]
    return []


def _key_args(agent: AgentProcess) -> list[str]:
    key = agent.db_path.with_name(agent.db_path.name + ".key")
    return ["--key-file", str(key)] if key.exists() else []


def test_a_check_made_critical_later_leaves_earlier_time_alone(tmp_path: Path) -> None:
    with http_server() as srv:
        agent = AgentProcess(tmp_path, fleet(srv.server_port, api_critical=False))
        try:
            agent.start()
            wait_until(lambda: 2 in hard_states(agent, "api"), 30, "api CRIT (not critical yet)")
            agent.wait_results(agent.result_count() + 4, 30)
            assert agent.stop()[0] == 0
        finally:
            agent.kill()
        (run1,) = runs(agent)
        # Whole seconds up to the stop, all in the past: the figure cannot grow as time passes.
        first = f"{local(run1['started_ts'])}..{local(run1['stopped_ts'])}"
        before = his(cli_json(agent, "availability", "--period", first))
        assert before["figures"]["unavailable_ms"] == 0  # api down, but not critical then

        # The hospital makes api critical; the agent restarts with the new file.
        agent.config.write_text(fleet(srv.server_port, api_critical=True), encoding="utf-8")
        try:
            agent.start()
            wait_until(lambda: len(runs(agent)) == 2, 30, "the second run")
            agent.wait_results(agent.result_count() + 4, 30)
            assert agent.stop()[0] == 0
        finally:
            agent.kill()
        after = his(cli_json(agent, "availability", "--period", first))
        assert after["figures"] == before["figures"]
        assert after["availability_pct"] == before["availability_pct"]

        run2 = runs(agent)[1]
        second = f"{local(run2['started_ts'])}..{local(run2['stopped_ts'])}"
        later = his(cli_json(agent, "availability", "--period", second))
        assert later["figures"]["unavailable_ms"] > 0  # api down and critical now
        assert "api" in later["checks"]

        hist = cli_json(agent, "config", "history")["versions"]
        assert len(hist) == 2
        assert any("checks[api].availability_critical: false → true" in c for c in hist[1]["changes"])
        text = cli(agent, "config", "history").stdout
        assert "版本" in text and "availability_critical" in text


def test_a_fresh_install_in_a_service_period_is_neither_failed_nor_exhausted(tmp_path: Path) -> None:
    contract = """
contract:
  service_periods:
    - {start: 2026-04-14, end: 2027-04-13}
"""
    with http_server() as srv:
        agent = AgentProcess(tmp_path, fleet(srv.server_port, extra=contract))
        try:
            agent.start()
            wait_until(lambda: len(hard_states(agent, "web")) >= 1, 30, "web's first state")
            agent.wait_results(agent.result_count() + 3, 30)
            assert agent.stop()[0] == 0
        finally:
            agent.kill()
    (run,) = runs(agent)
    # The default period is the service period so far. The few seconds between the start and the
    # first sample are unknown; over a run this short they would weigh more than 0.5 %, so the
    # verdict is read with unknown time left out (both figures are always computed).
    doc = cli_json(agent, "availability", "--policy", "excluded")
    strict = his(cli_json(agent, "availability"))
    assert strict["verdict"]["exhausted"] is False and strict["verdict"]["remaining_ms"] > 0
    s = his(doc)
    period_start = to_ms(doc["period"]["start_at"])
    assert period_start == int(datetime(2026, 4, 14, tzinfo=SH).timestamp() * 1000)
    assert "服务期" in s["year_label"]
    v = s["verdict"]
    assert v["passed"] is True and v["exhausted"] is False and v["remaining_ms"] > 0
    f = s["figures"]
    assert s["availability_pct"] == 100.0
    # Months before the agent first ran are their own category, not unknown time.
    assert f["before_monitoring_ms"] == run["started_ts"] - period_start
    assert f["unknown_ms"] < 5_000
    assert to_ms(s["before_monitoring"]["end_at"]) == run["started_ts"]
    text = cli(agent, "availability", "--policy", "excluded").stdout
    assert "未达标" not in text and "已用尽" not in text
    assert "未监控：监控开始前" in text


def minute(ms: int, up: bool) -> str:
    """The local minute at or before (up=False) / after (up=True) an instant, as the CLI takes it."""
    m = ms // 60_000 * 60_000 + (60_000 if up else 0)
    return datetime.fromtimestamp(m / 1000, SH).strftime("%Y-%m-%d %H:%M")


def test_a_window_recorded_after_an_outage_needs_both_parties(tmp_path: Path) -> None:
    with http_server() as srv:
        agent = AgentProcess(tmp_path, fleet(srv.server_port))
        try:
            agent.start()
            wait_until(lambda: hard_states(agent, "web")[-1:] == [0], 30, "web OK")
            srv.up = False
            wait_until(lambda: hard_states(agent, "web")[-1:] == [2], 30, "web CRIT")
            srv.up = True
            wait_until(lambda: hard_states(agent, "web")[-2:] == [2, 0], 30, "web OK again")
            assert agent.stop()[0] == 0
        finally:
            agent.kill()
    ((start, end),) = agent.rows(
        "SELECT i.start_ts, i.end_ts FROM intervals i JOIN checks c ON c.id = i.check_id "
        "WHERE c.name='web' AND i.state=2"
    )
    (run,) = runs(agent)
    period = f"{local(run['started_ts'])[:16]}..{minute(run['stopped_ts'], up=True)}"

    def figures() -> dict[str, Any]:
        return his(cli_json(agent, "availability", "--period", period))

    outage = end - start
    assert figures()["figures"]["unavailable_ms"] == outage

    # The vendor records a window over the outage after it happened: late, one party only.
    add = cli(agent, "maintenance", "add", "补录窗口", "--check", "web",
              "--start", minute(start, up=False), "--end", minute(end, up=True),
              "--reason", "应用升级", "--party", "乙方", "--by", "张工")  # fmt: skip
    assert add.returncode == 0, add.stderr
    f = figures()
    assert f["figures"]["unavailable_ms"] == outage  # the outage still counts
    (x,) = f["exclusions"]
    assert x["late"] is True and x["effective"] is False
    listed = cli(agent, "maintenance", "list").stdout
    assert "补录窗口" in listed and "事后补录" in listed and "待" in listed

    # The hospital approves: now the time is excluded, and still marked late.
    ok = cli(agent, "maintenance", "approve", "补录窗口", "--party", "甲方", "--by", "王主任")
    assert ok.returncode == 0, ok.stderr
    f = figures()
    assert f["figures"]["unavailable_ms"] == 0
    assert f["figures"]["maintenance_ms"] >= outage
    (x,) = f["exclusions"]
    assert x["late"] is True and x["effective"] is True
    assert {a["party"] for a in x["approvals"]} == {"甲方", "乙方"}
    text = cli(agent, "availability", "--period", period).stdout
    assert "事后补录" in text and "乙方 张工；甲方 王主任" in text

    # The acceptance report shows the window as recorded after the fact, approved by both.
    day = local(run["started_ts"])[:10]
    r = cli(agent, "report", "acceptance", "--period", day, "--json")
    assert r.returncode == 0, r.stderr
    html_file = next(Path(p) for p in _paths(json.loads(r.stdout)) if p.endswith(".html"))
    html = html_file.read_text(encoding="utf-8")
    text = " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())
    # The window's own row (the report's rules paragraph names both words too).
    assert re.search(r"补录窗口 .{0,300}甲方 王主任 .{0,300}✔ 已生效 ⚠ 事后补录", text), text[-3000:]

    # The same party cannot approve twice, and one person cannot approve for both.
    again = cli(agent, "maintenance", "approve", "补录窗口", "--party", "甲方", "--by", "李四")
    assert again.returncode == 1
