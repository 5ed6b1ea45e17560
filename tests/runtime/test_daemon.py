"""The real agent process: crash safety, clean stops, the store lock, and a 2-minute soak."""

from __future__ import annotations

import signal
import sqlite3
import time
from collections import defaultdict
from pathlib import Path

import pytest

from agent.store.db import Store
from probes.base import Status
from tests.conftest import free_port, wait_until
from tests.helpers.agent_proc import AgentProcess
from tests.helpers.servers import http_server


def tcp_fleet_config(port: int, n: int, interval: str = "1s", timeout: str = "500ms") -> str:
    checks = "\n".join(
        f"  - {{name: port-{i}, kind: tcp, host: 127.0.0.1, port: {port}, interval: {interval}, "
        f"timeout: {timeout}, confirmations: 1}}"
        for i in range(n)
    )
    return f"""
site: {{name: 测试医院}}
agent: {{heartbeat: 1s, workers: 8}}
checks:
{checks}
"""


def committed_ids(db_path: Path) -> set[int]:
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5) as db:
        return {r[0] for r in db.execute("SELECT id FROM results")}


def test_kill_9_loses_no_committed_result_and_records_the_gap(tmp_path: Path) -> None:
    with http_server() as srv:
        # No liveness grace: a restart within the grace would (rightly) leave no gap to count.
        config = tcp_fleet_config(srv.server_port, 40).replace(
            "workers: 8", "workers: 8, liveness_grace: 1ms"
        )
        agent = AgentProcess(tmp_path, config)
        try:
            before: set[int] = set()
            kill_times = []
            for cycle in range(3):
                agent.start()
                agent.wait_results(len(before) + 120, 60)
                before = committed_ids(agent.db_path)
                agent.proc.kill()  # type: ignore[union-attr]  # SIGKILL in the middle of writing
                agent.proc.wait(10)  # type: ignore[union-attr]
                kill_times.append(time.time())
                store = Store(agent.db_path)
                assert store.integrity_check() == "ok", f"cycle {cycle}"
                after = {r[0] for r in store.db.execute("SELECT id FROM results")}
                assert before <= after, f"cycle {cycle}: {len(before - after)} committed results lost"
                store.close()
            agent.start()
            agent.wait_results(len(before) + 80, 60)
            rc, took = agent.stop()
            assert rc == 0 and took < 10
        finally:
            agent.kill()

    store = Store(agent.db_path, readonly=True)
    runs = store.runs()
    assert len(runs) == 4
    assert [r.clean for r in runs] == [False, False, False, True]
    now = int(time.time() * 1000)
    gaps = store.agent_gaps(runs[0].started_ts, now, now, 0)
    # Three kills, and the time since the final clean stop: the agent is not running now either.
    assert len(gaps) == 4 and gaps[3] == (runs[3].stopped_ts, now)
    gaps = gaps[:3]
    for (gap_start, gap_end), killed, nxt in zip(gaps, kill_times, runs[1:], strict=True):
        # The gap runs from the last sign of life of the killed run to the next start.
        assert gap_end == nxt.started_ts
        assert killed * 1000 - 2500 <= gap_start <= killed * 1000
    # Every interval of a killed run was closed, none overlaps the next one of its check.
    by_check = defaultdict(list)
    for iv in store.intervals(0, now + 1):
        by_check[iv.check].append(iv)
    for check, ivs in by_check.items():
        for a, b in zip(ivs, ivs[1:], strict=False):
            assert a.end_ts is not None and a.end_ts <= b.start_ts, check
    # No interval covers agent-down time: unknown stays unknown.
    for gap_start, gap_end in gaps:
        for ivs in by_check.values():
            for iv in ivs:
                end = iv.end_ts if iv.end_ts is not None else now
                assert end <= gap_start or iv.start_ts >= gap_end


def test_sigterm_stops_within_10_s_with_a_hung_probe(tmp_path: Path) -> None:
    with http_server() as srv:
        config = f"""
site: {{name: x}}
agent: {{heartbeat: 1s}}
checks:
  - {{name: stuck, kind: http, url: "http://127.0.0.1:{srv.server_port}/hang", interval: 30s, timeout: 20s}}
  - {{name: fine, kind: http, url: "http://127.0.0.1:{srv.server_port}/ok", interval: 1s, timeout: 500ms}}
"""
        agent = AgentProcess(tmp_path, config)
        try:
            agent.start()
            wait_until(lambda: srv.hits.get("/hang", 0) >= 1, 30, "the hung probe to start")
            agent.wait_results(2, 30)
            rc, took = agent.stop(signal.SIGTERM)
        finally:
            agent.kill()
    assert rc == 0 and took < 10, (rc, took, agent.text_log()[-2000:])
    store = Store(agent.db_path, readonly=True)
    assert store.runs()[-1].clean
    assert "stopped cleanly" in agent.text_log()


def test_a_second_signal_during_shutdown_does_not_break_it(tmp_path: Path) -> None:
    # `timeout` signals the process and then its group; an operator presses Ctrl-C twice.
    with http_server() as srv:
        config = f"""
site: {{name: x}}
agent: {{heartbeat: 1s, listen: "127.0.0.1:{free_port()}"}}
checks:
  - {{name: fine, kind: http, url: "http://127.0.0.1:{srv.server_port}/ok", interval: 1s, timeout: 500ms}}
"""
        agent = AgentProcess(tmp_path, config)
        try:
            agent.start()
            agent.wait_results(2, 30)
            assert agent.proc is not None
            agent.proc.send_signal(signal.SIGTERM)
            rc, took = agent.stop(signal.SIGINT)
        finally:
            agent.kill()
    log = agent.text_log()
    assert rc == 0 and took < 10, (rc, took, log[-2000:])
    assert "Traceback" not in log and "stopped cleanly" in log
    assert Store(agent.db_path, readonly=True).runs()[-1].clean


def test_second_agent_on_the_same_store_is_refused(tmp_path: Path) -> None:
    with http_server() as srv:
        first = AgentProcess(tmp_path, tcp_fleet_config(srv.server_port, 2))
        try:
            first.start()
            first.wait_results(2, 30)
            second = AgentProcess(tmp_path, tcp_fleet_config(srv.server_port, 2))
            second.log = tmp_path / "second.log"
            p = second.start()
            assert p.wait(30) == 1
            assert "another agent is already using" in second.text_log()
            assert first.proc.poll() is None  # type: ignore[union-attr]
            first.stop()
        finally:
            first.kill()


@pytest.mark.slow
def test_200_http_checks_with_10_hanging_endpoints_for_2_minutes(tmp_path: Path) -> None:
    interval, timeout, workers, duration = 10, 5, 32, 120
    with http_server() as srv:
        srv.hang_s = 8.0  # longer than the probe's timeout, bounded so server threads return
        checks = []
        for i in range(200):
            path = f"/hang/{i}" if i % 20 == 0 else f"/ok/{i}"
            checks.append(
                f"  - {{name: ep-{i:03d}, kind: http, url: 'http://127.0.0.1:{srv.server_port}{path}', "
                f"interval: {interval}s, timeout: {timeout}s, confirmations: 2}}"
            )
        config = f"site: {{name: x}}\nagent: {{workers: {workers}, heartbeat: 5s}}\nchecks:\n" + "\n".join(
            checks
        )
        agent = AgentProcess(tmp_path, config)
        threads: list[int] = []
        try:
            agent.start()
            agent.wait_results(200, 60)  # every check has run once: the window starts now
            t_start = time.time()
            while time.time() - t_start < duration:
                threads.append(agent.threads())
                assert agent.proc.poll() is None, agent.text_log()[-2000:]  # type: ignore[union-attr]
                time.sleep(2.0)  # sampling period of the thread count over the fixed window
            t_end = time.time()
            rc, _ = agent.stop()
        finally:
            agent.kill()
    assert rc == 0
    store = Store(agent.db_path, readonly=True)
    start_ms, end_ms = int(t_start * 1000), int(t_end * 1000)
    per_check: dict[str, list] = defaultdict(list)
    for r in store.results(start_ms=start_ms - interval * 1000, end_ms=end_ms):
        per_check[r.check].append(r)
    assert len(per_check) == 200
    for name, rows in per_check.items():
        in_window = [r for r in rows if r.ts >= start_ms]
        assert len(in_window) >= duration // interval - 1, (name, len(in_window))
        gaps = [(b.ts - a.ts) / 1000 for a, b in zip(rows, rows[1:], strict=False)]
        assert max(gaps) <= interval + 1.5, (name, max(gaps))
        hanging = int(name[3:]) % 20 == 0
        for r in rows:
            assert "skipped" not in r.summary and "missed" not in r.summary, (name, r.summary)
            if hanging:
                assert r.status is Status.CRIT and "5" in r.summary, (name, r.summary)
            else:
                assert r.status is Status.OK, (name, r.summary)
    # Bounded: probe workers + the agent's fixed threads (scheduler, executors, recorder, ...).
    assert max(threads) <= workers + 15, threads
