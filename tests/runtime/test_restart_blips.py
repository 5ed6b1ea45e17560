"""A restart does not turn one bad sample into a fault (issue 14, item 5).

Through the real `sentinel run`: a check with `confirmations: 3` is confirmed OK, the agent stops
(cleanly or by kill -9), the endpoint fails while it is down, the agent starts again, its first
sample is CRIT and the endpoint is back before the second. A running agent absorbs such a blip;
so must a restarted one: no CRIT interval, no fault, and the time from the restart counts in the
confirmed state (OK) from the first sample on, as it would have while running. The dead run's
intervals stay closed where the store closed them; the gap is not covered.

Every step waits on what the agent stored, never on a sleep.
"""

from __future__ import annotations

import json
import signal
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import wait_until
from tests.helpers.agent_proc import AgentProcess
from tests.helpers.servers import http_server

OK, CRIT = 0, 2


def config(port: int) -> str:
    # Interval 2 s: after the first post-restart result is stored the test has more than a
    # second to bring the endpoint back; even a second CRIT sample stays below 3 confirmations.
    return f"""
site: {{name: 测试医院, timezone: Asia/Shanghai}}
agent: {{heartbeat: 1s, liveness_grace: 2s}}
systems:
  - {{name: HIS}}
checks:
  - {{name: web, kind: http, url: "http://127.0.0.1:{port}/switch", system: HIS,
     interval: 2s, timeout: 900ms, confirmations: 3, availability_critical: true}}
"""


def web_results(agent: AgentProcess, after_ms: int = 0) -> list[sqlite3.Row]:
    return agent.rows(
        "SELECT r.ts AS ts, r.status AS status, r.run_id AS run_id FROM results r "
        "JOIN checks c ON c.id = r.check_id WHERE c.name='web' AND r.ts >= ? ORDER BY r.ts",
        (after_ms,),
    )


def web_intervals(agent: AgentProcess) -> list[sqlite3.Row]:
    return agent.rows(
        "SELECT i.state AS state, i.start_ts AS start_ts, i.end_ts AS end_ts, i.run_id AS run_id "
        "FROM intervals i JOIN checks c ON c.id = i.check_id WHERE c.name='web' ORDER BY i.id",
    )


def faults(agent: AgentProcess) -> list[dict[str, Any]]:
    done = agent.cli("faults", "list", "--json")
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout))


@pytest.mark.parametrize("stop", ["clean", "kill -9"])
def test_one_failing_sample_after_a_restart_opens_no_fault(tmp_path: Path, stop: str) -> None:
    with http_server() as srv:
        agent = AgentProcess(tmp_path, config(srv.server_port))
        try:
            agent.start()
            wait_until(lambda: [i["state"] for i in web_intervals(agent)] == [OK], 30, "web confirmed OK")
            n = len(web_results(agent))
            wait_until(lambda: len(web_results(agent)) >= n + 2, 30, "two more OK samples")
            if stop == "clean":
                rc, _ = agent.stop(signal.SIGTERM)
                assert rc == 0, agent.text_log()
            else:
                agent.kill()
            (run1,) = agent.rows("SELECT * FROM agent_runs")
            last_before = web_results(agent)[-1]["ts"]

            srv.up = False  # fails while nobody watches, and at the first sample after the start
            agent.start()
            wait_until(lambda: web_results(agent, last_before + 1), 30, "the first sample after the restart")
            srv.up = True
            (first, *_) = web_results(agent, last_before + 1)
            assert first["status"] == CRIT  # the blip really happened
            wait_until(
                lambda: [r["status"] for r in web_results(agent, last_before + 1)][-2:] == [OK, OK],
                30,
                "two OK samples after the blip",
            )
            assert agent.stop()[0] == 0, agent.text_log()
        finally:
            agent.kill()

        after = web_results(agent, last_before + 1)
        # Fewer failing samples than confirmations: the blip a running agent would absorb.
        assert [r["status"] for r in after].count(CRIT) < 3
        assert faults(agent) == []
        intervals = web_intervals(agent)
        assert CRIT not in [i["state"] for i in intervals]
        (run2,) = agent.rows("SELECT * FROM agent_runs WHERE id > ?", (run1["id"],))
        old = [i for i in intervals if i["run_id"] == run1["id"]]
        new = [i for i in intervals if i["run_id"] == run2["id"]]
        # The dead run's interval ends where the store closed it, before the restart: the gap
        # stays unknown. The restarted run counts OK from its first sample, blip included.
        assert [i["state"] for i in old] == [OK]
        assert old[0]["end_ts"] is not None and old[0]["end_ts"] <= run2["started_ts"]
        assert [(i["state"], i["start_ts"]) for i in new] == [(OK, first["ts"])]
