"""The report reaches the mailbox: real `sentinel run` and `sentinel report` processes, a real
SMTP server (aiosmtpd on 127.0.0.1), the real report child, the real outbox.

`sentinel run` keeps the wall clock, so the schedule is set around it: `reports.daily_time` a
couple of minutes ago makes the daily report of the day before that due now. The store is seeded
with an earlier agent run from the start of that day (the schedule owes no report for days
before the agent first ran) that ended after the due time (so the report is not a late one).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from datetime import datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from zoneinfo import ZoneInfo

from agent import __version__
from agent.store.db import Store
from tests.conftest import REPO, wait_until
from tests.helpers.agent_proc import AgentProcess
from tests.helpers.servers import http_server
from tests.helpers.smtp import SmtpServer

TZ = ZoneInfo("Asia/Shanghai")
SITE = "测试医院"
REPORT_WAIT_S = 150
"""The agent's first report tick comes 30 s after its start; then the child writes the report."""


def due_now() -> tuple[str, str, datetime]:
    """(daily_time, the daily period due at it, the due moment): due two minutes ago."""
    due = (datetime.now(TZ) - timedelta(minutes=2)).replace(second=0, microsecond=0)
    return due.strftime("%H:%M"), (due.date() - timedelta(days=1)).isoformat(), due


def config_text(smtp_port: int, web_port: int, daily_time: str, output_dir: str = "reports") -> str:
    return f"""
site: {{name: {SITE}, timezone: Asia/Shanghai}}
storage: {{path: var/sentinel.db}}
agent: {{heartbeat: 1s}}
reports:
  output_dir: {output_dir}
  daily_time: "{daily_time}"
  schedule: {{kinds: [daily], holiday_inspection: false}}
  recipients: {{daily: [ops-mail]}}
checks:
  - {{name: his-web, kind: http, url: "http://127.0.0.1:{web_port}/ok", interval: 5s, timeout: 2s}}
notifications:
  channels:
    ops-mail: {{type: email, host: 127.0.0.1, port: {smtp_port}, security: none, timeout: 5s,
               sender: "HIS Sentinel <sentinel@hospital.local>", to: ["信息科 <ops@hospital.local>"]}}
"""


def seed_earlier_run(db_path: Path, period: str, due: datetime) -> None:
    """An agent run from the start of `period` that stopped a little after the report fell due."""
    started = datetime.combine(datetime.fromisoformat(period).date(), datetime.min.time(), TZ)
    stopped = min(due + timedelta(seconds=30), datetime.now(TZ))
    db_path.parent.mkdir(parents=True, exist_ok=True)
    store = Store(db_path)
    try:
        run = store.begin_run(int(started.timestamp() * 1000), 1, socket.gethostname(), __version__)
        store.end_run(run, int(stopped.timestamp() * 1000))
    finally:
        store.close()


def cli(agent: AgentProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", "-c", str(agent.config), *args],
        cwd=agent.workdir,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def report_mails(smtp: SmtpServer, period: str) -> list[EmailMessage]:
    return [m for m in smtp.inbox.snapshot() if m["X-Sentinel-Report"] == f"daily {period}"]


def assert_is_the_daily_report(mail: EmailMessage, period: str, archived_html: Path) -> None:
    """The mail's HTML part is the archived daily report, with its charts (if any) inline."""
    assert "日常巡检" in mail["Subject"] and SITE in mail["Subject"] and period in mail["Subject"]
    assert "补发" not in mail["Subject"]  # produced on time
    html_part = mail.get_body(preferencelist=("html",))
    assert html_part is not None, "the mail has no HTML part"
    html = html_part.get_content()
    assert "日常巡检报告" in html and SITE in html and period in html

    # The archived HTML line for line (mail ends lines with CRLF), but for embedded charts
    # switched to cid: references.
    def lines(text: str) -> list[str]:
        return re.sub(r'src="(data:[^"]*|cid:[^"]*)"', "", text).splitlines()

    assert lines(html) == lines(archived_html.read_text(encoding="utf-8"))
    assert "data:image" not in html
    inline = {p["Content-ID"].strip("<>") for p in mail.walk() if p["Content-ID"]}
    assert set(re.findall(r'src="cid:([^"]+)"', html)) == inline
    text_part = mail.get_body(preferencelist=("plain",))
    assert text_part is not None and period in text_part.get_content()


def report_runs(db_path: Path) -> set[tuple[str, str]]:
    store = Store(db_path, readonly=True)
    try:
        return {(str(k), str(p)) for k, p in store.db.execute("SELECT kind, period FROM report_runs")}
    finally:
        store.close()


def outbox(db_path: Path) -> list[tuple[str, str, str]]:
    store = Store(db_path, readonly=True)
    try:
        return [
            (str(k), str(c), str(s))
            for k, c, s in store.db.execute("SELECT dedup_key, channel, status FROM outbox ORDER BY id")
        ]
    finally:
        store.close()


def assert_delivered_once(agent: AgentProcess, smtp: SmtpServer, period: str) -> None:
    """One mail of the day's report arrived, it is the archived report, and the day is done."""
    (mail,) = report_mails(smtp, period)
    listed = json.loads(cli(agent, "report", "list", "--json").stdout)
    assert [(r["kind"], r["period"]) for r in listed] == [("daily", period)]
    assert_is_the_daily_report(mail, period, Path(listed[0]["html"]))
    assert report_runs(agent.db_path) == {("daily", period)}


def test_scheduled_daily_report_arrives_by_mail_from_the_running_agent(
    tmp_path: Path, smtp: SmtpServer
) -> None:
    daily_time, period, due = due_now()
    with http_server() as web:
        agent = AgentProcess(tmp_path, config_text(smtp.port, web.server_port, daily_time))
        seed_earlier_run(agent.db_path, period, due)
        try:
            agent.start()
            wait_until(lambda: report_mails(smtp, period), REPORT_WAIT_S, f"the daily report {period}")
            rc, _ = agent.stop()
            assert rc == 0
        finally:
            agent.kill()
    assert_delivered_once(agent, smtp, period)
    assert outbox(agent.db_path) == [(f"report:daily:{period}:ops-mail", "ops-mail", "delivered")]
    log = agent.text_log()
    assert f"writing the daily report for {period}" in log and f"daily report {period} failed" not in log


def test_report_send_from_the_cli_reaches_the_mailbox_with_and_without_the_agent(
    tmp_path: Path, smtp: SmtpServer
) -> None:
    # Nothing is due for the agent (its store is new): every mail here comes from the CLI.
    yesterday = datetime.now(TZ).date() - timedelta(days=1)
    day1, day2 = yesterday.isoformat(), (yesterday - timedelta(days=1)).isoformat()
    with http_server() as web:
        agent = AgentProcess(tmp_path, config_text(smtp.port, web.server_port, "07:30"))
        # With the agent running, the command only queues; the agent's dispatcher sends it.
        try:
            agent.start()
            wait_until(lambda: agent.result_count() >= 1, 60, "the agent to run")
            p = cli(agent, "report", "daily", "--date", day1, "--send")
            assert p.returncode == 0, p.stderr
            assert "已加入发送队列" in p.stderr
            (html1,) = [Path(line) for line in p.stdout.split() if line.endswith(".html")]
            wait_until(lambda: report_mails(smtp, day1), 60, f"the agent to send the daily report {day1}")
            rc, _ = agent.stop()
            assert rc == 0
        finally:
            agent.kill()
    # No agent holds the store: the command queues the report and delivers it itself.
    p = cli(agent, "report", "daily", "--date", day2, "--send")
    assert p.returncode == 0, p.stderr
    assert "已发送" in p.stderr
    (html2,) = [Path(line) for line in p.stdout.split() if line.endswith(".html")]
    (mail2,) = report_mails(smtp, day2)  # delivered before the command returned
    assert_is_the_daily_report(mail2, day2, html2)
    (mail1,) = report_mails(smtp, day1)  # and nothing was sent twice
    assert_is_the_daily_report(mail1, day1, html1)
    assert outbox(agent.db_path) == [
        (f"report:daily:{day1}:ops-mail", "ops-mail", "delivered"),
        (f"report:daily:{day2}:ops-mail", "ops-mail", "delivered"),
    ]


def test_failing_report_child_is_logged_not_done_and_written_at_the_next_attempt(
    tmp_path: Path, smtp: SmtpServer
) -> None:
    daily_time, period, due = due_now()
    # A file where the report directory should be: the child cannot write the report (this
    # also holds for root, unlike a directory without write permission).
    blocker = tmp_path / "blocked"
    blocker.write_text("not a directory\n", encoding="utf-8")
    with http_server() as web:
        agent = AgentProcess(tmp_path, config_text(smtp.port, web.server_port, daily_time, "blocked/reports"))
        seed_earlier_run(agent.db_path, period, due)
        try:
            agent.start()
            failed = f"daily report {period} failed"
            wait_until(lambda: failed in agent.text_log(), REPORT_WAIT_S, "the failure in the agent log")
            rc, _ = agent.stop()
            assert rc == 0
            line = next(x for x in agent.text_log().splitlines() if failed in x)
            assert "ERROR" in line and "not archived" in line
            assert "Not a directory" in agent.text_log()  # the child's reason, in the agent's log
            assert report_runs(agent.db_path) == set()  # not done: still owed
            assert outbox(agent.db_path) == []
            assert json.loads(cli(agent, "report", "list", "--json").stdout) == []
            assert smtp.inbox.snapshot() == []

            # The cause is removed; the next attempt (here: the next start) writes and sends it.
            blocker.unlink()
            agent.start()
            wait_until(lambda: report_mails(smtp, period), REPORT_WAIT_S, f"the daily report {period}")
            rc, _ = agent.stop()
            assert rc == 0
        finally:
            agent.kill()
    assert_delivered_once(agent, smtp, period)
