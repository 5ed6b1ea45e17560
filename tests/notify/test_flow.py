"""Fault notifications end to end: fault manager -> planner -> outbox -> real SMTP / robot stand-ins.

Runs on a controllable clock; the servers are real (aiosmtpd, http.server) on 127.0.0.1.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from datetime import UTC, datetime
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from agent.clock.workcal import WorkCalendar
from agent.config.schema import parse
from agent.faults.notices import AlertPlanner, enqueue_closed, make_sender
from agent.faults.records import FaultManager, acknowledge, close, list_faults, resolve
from agent.notify.outbox import Dispatcher
from agent.runtime.daemon import check_info, policy_from_config
from agent.state.machine import CheckState
from agent.store.db import Store
from probes.base import CheckResult, Status
from tests.conftest import FakeClock, free_port
from tests.helpers.smtp import SmtpServer

T0 = 1_795_000_000.0  # Wed 2026-11-18 11:06:40 UTC = 19:06:40 in Shanghai
DT_SECRET = "SECdingtalk-signing-secret-123"


def make_config(smtp_port: int, extra_channels: str = "", routes: str = "") -> Any:
    return parse(f"""
site: {{name: 测试医院, timezone: Asia/Shanghai, campuses: [本院区]}}
systems:
  - {{name: LIS, campus: 本院区}}
checks:
  - {{name: lis-web, kind: http, url: "http://127.0.0.1:9/", system: LIS, fault_level: 二级,
     fault_type: 核心系统类}}
faults:
  recovery_hold: 60s
notifications:
  channels:
    ops-mail: {{type: email, host: 127.0.0.1, port: {smtp_port}, security: none,
               sender: "HIS Sentinel <sentinel@hospital.local>", to: [ops@hospital.local]}}
{extra_channels}
  routes:
{routes or "    - {channels: [ops-mail]}"}
""")


class Rig:
    def __init__(self, tmp_path: Path, config: Any) -> None:
        self.config = config
        self.clock = FakeClock(T0)
        self.store = Store(tmp_path / "s.db")
        self.store.sync_checks([("lis-web", "http", "LIS")], 0)
        self.run = self.store.begin_run(int(T0 * 1000), 1, "h", "t")
        self.state = CheckState()
        self.faults = FaultManager(
            self.store,
            policy_from_config(config),
            {"lis-web": check_info(config, config.checks[0])},
            WorkCalendar(config.faults.working_hours, config.site.tz).deadline_ms,
            AlertPlanner(config),
            lambda ts, system, check: None,
            config.site.tz,
            self.clock,
        )
        self.dispatcher = Dispatcher(
            Store(tmp_path / "s.db"),
            make_sender(config.notifications.channels),
            self.clock,
            known_channels=config.notifications.channels,
        )

    def feed(self, status: Status, summary: str) -> None:
        ts = int(self.clock() * 1000)
        result = CheckResult(status, summary, started_at=datetime.fromtimestamp(ts / 1000, UTC))
        changes = self.state.observe(ts, status, summary, 1)
        self.store.write_batch(self.run, [("lis-web", result, changes, self.state)])
        self.faults.observe("lis-web", result, changes)

    def outbox(self) -> list[tuple[str, str, str, int]]:
        return list(self.store.db.execute("SELECT event, channel, status, attempts FROM outbox ORDER BY id"))


def parts(msg: EmailMessage) -> dict[str, str]:
    assert msg.get_content_type() == "multipart/alternative", msg.get_content_type()
    out = {}
    for part in msg.iter_parts():
        out[part.get_content_type()] = part.get_content()
    return out


def test_fault_reminder_recovery_and_close_mails_arrive_intact(tmp_path: Path, smtp: SmtpServer) -> None:
    rig = Rig(tmp_path, make_config(smtp.port))
    rig.feed(Status.OK, "HTTP 200 in 12 ms")
    rig.clock.advance(60)
    rig.feed(Status.CRIT, "HTTP 500 (expected 200-399)")
    assert rig.dispatcher.run_once() == 1
    rig.clock.advance(30 * 60)  # 二级: reminder every 30 min while unacknowledged
    rig.faults.tick()
    rig.dispatcher.run_once()
    fault = list_faults(rig.store.db)[0]
    acknowledge(rig.store, fault.number, "李工", int(rig.clock() * 1000))
    rig.feed(Status.OK, "HTTP 200 in 9 ms")
    assert rig.dispatcher.run_once() == 0  # the recovery notice is held back for 60 s
    rig.clock.advance(61)
    rig.dispatcher.run_once()
    resolve(rig.store, fault.number, "李工", "LIS 应用池耗尽", "调大连接池并重启", int(rig.clock() * 1000))
    now = int(rig.clock() * 1000)
    enqueue_closed(rig.config, rig.store, close(rig.store, fault.number, "李工", now), now)
    rig.dispatcher.run_once()

    mails = smtp.inbox.messages
    events = [m["X-Sentinel-Event"] for m in mails]
    # At 30 min the response deadline passed too: a warning and an escalation come with the
    # reminder (the default route does not carry those; an escalation route would).
    assert events == ["opened", "reminder", "recovered", "closed"], events
    by_event = {m["X-Sentinel-Event"]: m for m in mails}
    assert len({m["Message-ID"] for m in mails}) == 4

    opened = by_event["opened"]
    assert opened["Subject"].startswith("【二级·故障】LIS ") and fault.number in opened["Subject"]
    raw = opened.as_bytes().decode("ascii")  # 7-bit on the wire: encoded words, not raw UTF-8
    subject_line = next(line for line in raw.splitlines() if line.startswith("Subject:"))
    assert "=?utf-8?" in subject_line.lower()
    assert opened["From"].addresses[0].addr_spec == "sentinel@hospital.local"
    assert opened["X-Sentinel-Fault"] == fault.number
    body = parts(opened)
    assert "lis-web: HTTP 500 (expected 200-399)" in body["text/plain"]
    assert "开始时间：2026-11-18 19:07:40" in body["text/plain"]  # first failing sample, Shanghai time
    assert "<table" in body["text/html"] and "故障告警" in body["text/html"]
    assert "HTTP 500" in body["text/html"]

    assert "第 1 次提醒" in parts(by_event["reminder"])["text/plain"]
    recovered = parts(by_event["recovered"])["text/plain"]
    assert "恢复时间：2026-11-18 19:37:40" in recovered and "持续 30分" in recovered
    closed = parts(by_event["closed"])
    assert "LIS 应用池耗尽" in closed["text/plain"] and "调大连接池并重启" in closed["text/html"]
    assert all(status == "delivered" for _, _, status, _ in rig.outbox())


def test_smtp_down_for_a_while_then_every_queued_mail_arrives_exactly_once(tmp_path: Path) -> None:
    server = SmtpServer(free_port())  # not started: connection refused
    rig = Rig(tmp_path, make_config(server.port))
    rig.feed(Status.CRIT, "HTTP 500")
    rig.clock.advance(30 * 60)
    rig.faults.tick()  # warning, escalation, reminder join the opened notice in the queue
    queued = len(rig.outbox())
    assert queued >= 2
    for _ in range(5):  # an hour of failures
        rig.dispatcher.run_once()
        rig.clock.advance(15 * 60)
    rows = rig.outbox()
    # Only the fault's first notice is tried; the later ones wait their turn (one fault's
    # notices go out in order), so they were never attempted.
    assert rows[0][2:] == ("pending", 5), rows
    assert all(status == "pending" and attempts == 0 for _, _, status, attempts in rows[1:]), rows
    errors = [r[0] for r in rig.store.db.execute("SELECT last_error FROM outbox WHERE attempts > 0")]
    assert len(errors) == 1 and "refused" in errors[0], errors
    server.start()
    try:
        while rig.dispatcher.run_once():  # the daemon's loop: the next pass at once after work
            pass
        rig.clock.advance(3600)
        assert rig.dispatcher.run_once() == 0  # nothing is sent twice
        got = server.inbox.messages
        assert len(got) == queued
        assert [m["X-Sentinel-Event"] for m in got] == [r[0] for r in rows]  # in the order queued
        assert len({m["Message-ID"] for m in got}) == queued
        assert all(status == "delivered" for _, _, status, _ in rig.outbox())
        attempts = rig.store.db.execute("SELECT count(*), sum(ok) FROM outbox_attempts").fetchone()
        assert attempts[1] == queued and attempts[0] > queued
    finally:
        server.stop()


class DingTalk(BaseHTTPRequestHandler):
    server: Any

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        body = json.loads(self.rfile.read(length))
        q = parse_qs(urlsplit(self.path).query)
        ts = q["timestamp"][0]
        mac = hmac.new(DT_SECRET.encode(), f"{ts}\n{DT_SECRET}".encode(), hashlib.sha256).digest()
        ok_sign = q["sign"][0] == base64.b64encode(mac).decode() and q["access_token"][0] == "tok123"
        self.server.posts.append(body)
        if not ok_sign:
            answer = {"errcode": 310000, "errmsg": "sign not match"}
        elif len(self.server.posts) == 1:
            answer = {"errcode": 130101, "errmsg": "send too fast"}  # HTTP 200 all the same
        else:
            answer = {"errcode": 0, "errmsg": "ok"}
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        return


def test_dingtalk_errcode_is_a_failed_delivery_and_is_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), DingTalk)
    srv.posts = []  # type: ignore[attr-defined]
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("DT_URL", f"http://127.0.0.1:{srv.server_port}/robot/send?access_token=tok123")
        monkeypatch.setenv("DT_SECRET", DT_SECRET)
        channels = """    ding: {type: dingtalk, webhook: "${DT_URL}", secret: "${DT_SECRET}",
           mention_mobiles: ["13800000000"]}"""
        config = make_config(free_port(), channels, "    - {channels: [ding], levels: [1, 2]}")
        rig = Rig(tmp_path, config)
        rig.feed(Status.CRIT, "HTTP 500")
        rig.dispatcher.run_once()
        (row,) = rig.outbox()
        assert row[2:] == ("pending", 1)
        assert "130101" in rig.store.db.execute("SELECT last_error FROM outbox").fetchone()[0]
        rig.dispatcher.run_once()  # backoff not over yet: no second post
        assert len(srv.posts) == 1  # type: ignore[attr-defined]
        rig.clock.advance(31)
        rig.dispatcher.run_once()
        assert rig.outbox()[0][2:] == ("delivered", 2)
        post = srv.posts[-1]  # type: ignore[attr-defined]
        assert post["msgtype"] == "markdown" and post["at"]["atMobiles"] == ["13800000000"]
        assert "@13800000000" in post["markdown"]["text"] and "二级" in post["markdown"]["title"]
    finally:
        srv.shutdown()
        srv.server_close()


def test_routes_choose_channels_by_level_system_campus_and_event(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WECOM_URL", "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k")
    channels = """    boss: {type: wecom, webhook: "${WECOM_URL}"}"""
    routes = """    - {channels: [ops-mail]}
    - {channels: [boss], levels: [1, 2], campuses: [本院区], events: [warning, escalation]}"""
    planner = AlertPlanner(make_config(25, channels, routes))
    from agent.faults.records import Fault

    def fault(level: int, campus: str | None) -> Fault:
        nones = [None] * 8
        return Fault(
            1,
            "GZ-20261118-001",
            "LIS",
            campus,
            level,
            level,
            "核心系统类",
            "d",
            "i",
            0,
            0,
            None,
            None,
            *nones,
            False,
            None,
            False,
            False,
            False,
            False,
            0,
            None,
            ("lis-web",),
        )

    assert planner.routes_for("opened", fault(1, "本院区")) == ["ops-mail"]
    assert planner.routes_for("escalation", fault(1, "本院区")) == ["boss"]
    assert planner.routes_for("warning", fault(3, "本院区")) == []  # level 3 has no escalation route
    assert planner.routes_for("escalation", fault(2, "分院区")) == []  # another campus
    detail = {"which": "response", "deadline": 0, "reason": "overdue"}
    ((channel, key, payload),) = planner("escalation", fault(2, "本院区"), detail)
    assert channel == "boss" and key == "GZ-20261118-001:escalation:response:boss"
    message = json.loads(payload)
    assert message["subject"].startswith("【二级·升级】LIS") and "响应已超时" in message["text"]
