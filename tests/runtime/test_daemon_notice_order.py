"""The notices of one fault reach a webhook in the order of the fault's events, through the real
agent process and the command line, across a refused delivery (issue 14, "Order").

The receiver refuses the first POST, so the "opened" notice waits 30 s for its retry (the
outbox's first backoff). Meanwhile the endpoint recovers ("recovered", held only 1 s) and a
person closes the fault from the command line ("closed", due at once). Before the fix the two
later notices went out while "opened" was waiting: recovered, closed, opened.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from agent.faults.records import list_faults
from agent.store.db import Store
from tests.conftest import wait_until
from tests.helpers.agent_proc import AgentProcess
from tests.helpers.servers import http_server


class _Hook(BaseHTTPRequestHandler):
    server: _Receiver

    def do_POST(self) -> None:
        doc = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
        headers = doc.get("headers", {})
        with self.server.lock:
            refuse = self.server.refuse > 0
            self.server.refuse -= 1 if refuse else 0
            self.server.log.append(
                (headers.get("X-Sentinel-Fault"), headers.get("X-Sentinel-Event"), not refuse)
            )
        code = 503 if refuse else 204  # 503 is retryable: the row stays pending with a backoff
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


class _Receiver(ThreadingHTTPServer):
    """A webhook that refuses the first `refuse` POSTs; `log` is (fault, event, accepted)."""

    daemon_threads = True

    def __init__(self, refuse: int) -> None:
        super().__init__(("127.0.0.1", 0), _Hook)
        self.lock = threading.Lock()
        self.log: list[tuple[str | None, str | None, bool]] = []
        self.refuse = refuse


@contextmanager
def webhook_receiver(refuse: int) -> Iterator[_Receiver]:
    srv = _Receiver(refuse)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


def outbox_rows(agent: AgentProcess) -> list[tuple[str, str, int]]:
    """(event, status, attempts) of every outbox row, in the order they were queued."""
    return [
        (r["event"], r["status"], r["attempts"])
        for r in agent.rows("SELECT event, status, attempts FROM outbox ORDER BY id")
    ]


def test_recovered_and_closed_wait_for_the_refused_opened_notice(tmp_path: Path) -> None:
    with http_server() as srv, webhook_receiver(refuse=1) as hook:
        srv.up = False
        config = f"""
site: {{name: 测试医院}}
agent: {{heartbeat: 1s}}
systems:
  - {{name: LIS}}
checks:
  - {{name: lis-web, kind: http, url: "http://127.0.0.1:{srv.server_port}/switch", system: LIS,
     interval: 1s, timeout: 500ms, confirmations: 1, fault_level: 二级}}
faults:
  recovery_hold: 1s
notifications:
  channels:
    hook: {{type: webhook, url: "http://127.0.0.1:{hook.server_port}/alerts"}}
  routes:
    - {{channels: [hook]}}
"""
        agent = AgentProcess(tmp_path, config)
        try:
            agent.start()
            # The opened notice was refused once: it waits for its retry (30 s backoff).
            wait_until(lambda: outbox_rows(agent)[:1] == [("opened", "pending", 1)], 30, "a refused opened")
            srv.up = True
            wait_until(
                lambda: [e for e, _, _ in outbox_rows(agent)] == ["opened", "recovered"],
                30,
                "the recovered notice queued",
            )
            store = Store(agent.db_path, readonly=True)
            (fault,) = list_faults(store.db)
            store.close()
            resolved = agent.cli(
                "faults", "resolve", fault.number, "--cause", "应用池耗尽",
                "--measures", "重启应用池", "--by", "张工",
            )  # fmt: skip
            assert resolved.returncode == 0, resolved.stderr
            closed = agent.cli("faults", "close", fault.number, "--by", "张工")
            assert closed.returncode == 0, closed.stderr
            # The scenario holds: all three are queued while "opened" still waits for its retry
            # (without the ordering rule, recovered and closed would be out by now or soon).
            rows = outbox_rows(agent)
            assert [e for e, _, _ in rows] == ["opened", "recovered", "closed"], rows
            assert rows[0] == ("opened", "pending", 1), rows
            wait_until(
                lambda: [s for _, s, _ in outbox_rows(agent)] == ["delivered"] * 3,
                60,
                "all three notices delivered",
            )
            rc, _ = agent.stop()
            assert rc == 0
        finally:
            agent.kill()
    with hook.lock:
        log = list(hook.log)
    assert all(number == fault.number for number, _, _ in log), log
    assert [event for _, event, ok in log if ok] == ["opened", "recovered", "closed"], log
    assert log[0] == (fault.number, "opened", False)  # the refused first attempt
