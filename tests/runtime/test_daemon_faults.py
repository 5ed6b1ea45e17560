"""The real agent process raises a fault, mails it through a real SMTP server, and repeats
nothing after a restart in the middle of the fault."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from agent.faults.records import list_faults
from agent.store.db import Store
from tests.conftest import free_port, wait_until
from tests.helpers.agent_proc import AgentProcess
from tests.helpers.servers import http_server
from tests.helpers.smtp import SmtpServer


def test_fault_mail_from_the_daemon_and_no_repeat_after_restart(tmp_path: Path) -> None:
    smtp = SmtpServer(free_port())
    smtp.start()
    try:
        with http_server() as srv:
            config = f"""
site: {{name: 测试医院}}
agent: {{heartbeat: 1s}}
systems:
  - {{name: HIS}}
checks:
  - {{name: his-login, kind: http, url: "http://127.0.0.1:{srv.server_port}/fail", system: HIS,
     interval: 1s, timeout: 500ms, confirmations: 2, availability_critical: true}}
notifications:
  channels:
    mail: {{type: email, host: 127.0.0.1, port: {smtp.port}, security: none,
           sender: sentinel@hospital.local, to: [ops@hospital.local]}}
  routes:
    - {{channels: [mail]}}
"""
            agent = AgentProcess(tmp_path, config)
            try:
                agent.start()
                wait_until(lambda: smtp.inbox.messages, 30, "the fault mail")
                rc, _ = agent.stop()
                assert rc == 0
                first_results = agent.result_count()
                agent.start()  # restart in the middle of the open fault
                agent.wait_results(first_results + 5, 30)
                rc, _ = agent.stop()
                assert rc == 0
            finally:
                agent.kill()
    finally:
        smtp.stop()
    (mail,) = smtp.inbox.messages
    assert mail["X-Sentinel-Event"] == "opened"
    assert mail["Subject"].startswith("【一级·故障】HIS 不可用")  # critical check: raised to 一级
    store = Store(agent.db_path, readonly=True)
    (fault,) = list_faults(store.db)
    assert fault.level == 1 and fault.recovered_ts is None and fault.checks == ("his-login",)
    # The fault starts at the first failing sample, i.e. the first result of the first run.
    with sqlite3.connect(f"file:{agent.db_path}?mode=ro", uri=True) as db:
        first_ts = db.execute("SELECT min(ts) FROM results").fetchone()[0]
        sent = db.execute("SELECT count(*) FROM outbox WHERE status='delivered'").fetchone()[0]
    assert fault.start_ts == first_ts and sent == 1


def test_dead_mans_switch_is_called_while_the_agent_is_healthy(tmp_path: Path) -> None:
    with http_server() as srv:
        config = f"""
site: {{name: x}}
checks:
  - {{name: p, kind: tcp, host: 127.0.0.1, port: {srv.server_port}, interval: 5s, timeout: 1s}}
notifications:
  heartbeat_url: "http://127.0.0.1:{srv.server_port}/ok/heartbeat"
  heartbeat_every: 1s
"""
        agent = AgentProcess(tmp_path, config)
        try:
            agent.start()
            wait_until(lambda: srv.hits.get("/ok/heartbeat", 0) >= 3, 30, "three heartbeat calls")
            rc, _ = agent.stop()
            assert rc == 0
            calls = srv.hits["/ok/heartbeat"]
        finally:
            agent.kill()
        # Stopped agent: the calls stop, which is what lets the outside service raise the alarm.
        assert srv.hits["/ok/heartbeat"] == calls
