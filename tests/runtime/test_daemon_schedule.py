"""The daemon's scheduling promises, on the real APScheduler with a shifted clock."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent.config.schema import parse
from agent.runtime.daemon import Daemon
from agent.store.db import Store
from probes.base import Status
from tests.conftest import REPO, FakeClock, free_port, wait_until
from tests.helpers.agent_proc import AgentProcess
from tests.helpers.servers import http_server


def make_config(tmp_path: Path, port: int, extra: str = "") -> object:
    text = f"""
site: {{name: 测试医院, timezone: Asia/Shanghai}}
storage: {{path: {tmp_path}/var/s.db}}
agent: {{heartbeat: 1s}}
reports: {{output_dir: {tmp_path}/reports, daily_time: "07:30"}}
checks:
  - {{name: web, kind: http, url: "http://127.0.0.1:{port}/ok", interval: 10s, timeout: 2s, confirmations: 1}}
{extra}
"""
    return parse(text)


def test_runs_missed_by_the_scheduler_are_recorded_as_unknown(tmp_path: Path) -> None:
    with http_server() as srv:
        cfg = make_config(tmp_path, srv.server_port)
        # The daemon believes it is 100 s earlier than it is: every first run it schedules is
        # already overdue by far more than the misfire grace (half the interval), as after a
        # VM pause. APScheduler drops such runs; the agent must record them.
        daemon = Daemon(cfg, tmp_path / "cfg.yaml", clock=lambda: time.time() - 100)
        daemon.recorder.start()
        daemon.schedule()
        t = threading.Thread(target=daemon.scheduler.start, daemon=True)
        t.start()
        try:
            wait_until(lambda: daemon.recorder.written >= 1, 15, "the missed run to be recorded")
        finally:
            daemon.scheduler.shutdown(wait=False)
            t.join(5)
            daemon.shutdown()
    rows = Store(tmp_path / "var/s.db", readonly=True).results("web")
    assert rows[0].status is Status.UNKNOWN
    assert rows[0].summary.startswith("run missed by the scheduler")


def test_reports_are_one_background_job_and_checks_run_inline(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, 9)
    daemon = Daemon(cfg, tmp_path / "cfg.yaml")
    try:
        daemon.schedule()
        jobs = {j.id: j for j in daemon.scheduler.get_jobs()}
        # Reports are produced by a 60 s tick over the pure schedule (agent.reports.schedule),
        # off the checks' executor, so a slow report never delays a probe.
        assert jobs["check:web"].executor == "checks" and jobs["reports:tick"].executor == "background"
        assert jobs["reports:tick"].trigger.interval.total_seconds() == 60
        assert jobs["check:web"].misfire_grace_time == 5
    finally:
        daemon.shutdown()


def test_report_tick_writes_what_is_due_in_a_child_process(tmp_path: Path) -> None:
    port = free_port()
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text(
        f"""
site: {{name: 测试医院}}
storage: {{path: {tmp_path}/var/s.db}}
reports: {{output_dir: {tmp_path}/reports, daily_time: "07:30"}}
checks:
  - {{name: web, kind: tcp, host: 127.0.0.1, port: {port}, interval: 10s, timeout: 1s}}
""",
        encoding="utf-8",
    )
    from agent.config.schema import load

    # 2026-11-21 08:00 in Shanghai, the agent monitoring since 2026-11-19 12:00: the daily
    # reports of the 19th and the 20th are due (the 19th late), nothing weekly or monthly yet.
    now = datetime(2026, 11, 21, 0, 0, tzinfo=UTC).timestamp()
    daemon = Daemon(load(cfg_file), cfg_file, clock=lambda: now)
    daemon._first_start_ms = int(datetime(2026, 11, 19, 4, 0, tzinfo=UTC).timestamp() * 1000)
    try:
        env_before = os.environ.get("PYTHONPATH")
        os.environ["PYTHONPATH"] = str(REPO)
        try:
            daemon._report_tick()
        finally:
            if env_before is None:
                os.environ.pop("PYTHONPATH")
            else:
                os.environ["PYTHONPATH"] = env_before
        done = {tuple(r) for r in daemon.store.db.execute("SELECT kind, period FROM report_runs")}
        assert done == {("daily", "2026-11-19"), ("daily", "2026-11-20")}
        html = next((tmp_path / "reports/daily/2026-11-20").glob("*.html")).read_text(encoding="utf-8")
        assert "日常巡检报告" in html and "2026-11-20" in html
        # The 19th was due on the 20th at 07:30, long before this tick: it says it is late.
        late = {
            d.name: json.loads((d / "index.json").read_text(encoding="utf-8"))["late"]
            for d in (tmp_path / "reports/daily").iterdir()
        }
        assert late == {"2026-11-19": True, "2026-11-20": False}
        # A second tick finds nothing due: nothing is written twice.
        daemon._report_tick()
        assert daemon.store.db.execute("SELECT count(*) FROM report_runs").fetchone()[0] == 2
    finally:
        daemon.shutdown()


def test_example_configuration_end_to_end(tmp_path: Path) -> None:
    """The README's flow: run the example, then status and the daily report show its checks."""
    port = free_port()
    text = (REPO / "config/sentinel.example.yaml").read_text(encoding="utf-8").replace("9187", str(port))
    text = text.replace("interval: 60s", "interval: 5s").replace("interval: 30s", "interval: 2s")
    text = text.replace("timeout: 10s", "timeout: 4s").replace("timeout: 5s", "timeout: 1s")
    agent = AgentProcess(tmp_path, text)
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "agent", "-c", str(agent.config), *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    try:
        agent.start()

        def all_ok() -> bool:
            p = cli("status", "--json")
            if p.returncode != 0:
                return False
            data = json.loads(p.stdout)
            states = {c["check"]: c["state"] for c in data["checks"]}
            # The host check's state depends on how loaded this machine is; it must have one.
            return (
                states.get("agent-health") == "OK"
                and states.get("agent-port") == "OK"
                and states.get("local-host") in ("OK", "WARN", "CRIT")
            )

        wait_until(all_ok, 60, "the example checks to report (endpoints OK)", step=0.5)
        status = json.loads(cli("status", "--json").stdout)
        assert status["agent"]["running"] is True
        assert {c["check"] for c in status["checks"]} == {"local-host", "agent-health", "agent-port"}
        table = cli("status").stdout
        assert "agent: running" in table and "agent-health" in table
        today = datetime.now(parse(text).site.tz).date().isoformat()
        rep = cli("report", "daily", "--date", today)
        assert rep.returncode == 0, rep.stderr
        (html_path,) = [line for line in rep.stdout.split() if line.endswith(".html")]
        html = Path(html_path).read_text(encoding="utf-8")
        for name in ("local-host", "agent-health", "agent-port", "示例医院"):
            assert name in html
        rc, took = agent.stop()
        assert rc == 0 and took < 10
        assert "agent: not running" in cli("status").stdout
    finally:
        agent.kill()


def test_a_report_archived_but_not_queued_is_not_done_and_is_tried_again_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Done means archived AND queued for the recipients: a child that gets only half way
    leaves the report owed, with the reason in the log, and the next attempt completes it."""
    port = free_port()
    cfg_file = tmp_path / "cfg.yaml"
    recipients = "recipients: {daily: [ops-mail]}"
    text = f"""
site: {{name: 测试医院}}
storage: {{path: {tmp_path}/var/s.db}}
reports: {{output_dir: {tmp_path}/reports, daily_time: "07:30", {recipients},
          schedule: {{kinds: [daily], holiday_inspection: false}}}}
checks:
  - {{name: web, kind: tcp, host: 127.0.0.1, port: {port}, interval: 10s, timeout: 1s}}
notifications:
  channels:
    ops-mail: {{type: email, host: 127.0.0.1, port: {port}, security: none,
               sender: sentinel@hospital.local, to: [ops@hospital.local]}}
"""
    cfg_file.write_text(text, encoding="utf-8")
    from agent.config.schema import load

    config = load(cfg_file)
    # The child reads the file again; without the recipients there it archives the report and
    # queues nothing — what a child that dies between the two leaves behind.
    cfg_file.write_text(text.replace(recipients, "recipients: {}"), encoding="utf-8")
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    # 2026-11-21 08:00 in Shanghai, monitoring since the 20th: the daily report of the 20th is due.
    clock = FakeClock(datetime(2026, 11, 21, 0, 0, tzinfo=UTC).timestamp())
    daemon = Daemon(config, cfg_file, clock=clock)
    daemon._first_start_ms = int(datetime(2026, 11, 20, 4, 0, tzinfo=UTC).timestamp() * 1000)

    def done() -> set[tuple[str, str]]:
        return {tuple(r) for r in daemon.store.db.execute("SELECT kind, period FROM report_runs")}

    def queued() -> list[tuple[str, str]]:
        return list(daemon.store.db.execute("SELECT dedup_key, status FROM outbox"))

    def attempts() -> int:
        writing = "writing the daily report for 2026-11-20"
        return sum(r.getMessage().startswith(writing) for r in caplog.records)

    try:
        with caplog.at_level(logging.INFO, "sentinel.daemon"):
            daemon._report_tick()
            assert (tmp_path / "reports/daily/2026-11-20/index.json").is_file()  # the child archived it
            (error,) = [r for r in caplog.records if r.levelno == logging.ERROR]
            assert error.getMessage().startswith(
                "daily report 2026-11-20 failed (archived but not queued for ops-mail)"
            )
            assert done() == set() and queued() == []
            # Still owed, but not hammered: the next try is 30 minutes later.
            clock.advance(60)
            daemon._report_tick()
            assert attempts() == 1
            cfg_file.write_text(text, encoding="utf-8")
            clock.advance(1800)
            daemon._report_tick()
            assert attempts() == 2
        assert done() == {("daily", "2026-11-20")}
        assert queued() == [("report:daily:2026-11-20:ops-mail", "pending")]
        # Done now: a later tick leaves it alone.
        clock.advance(1800)
        daemon._report_tick()
        assert attempts() == 2
    finally:
        daemon.shutdown()
