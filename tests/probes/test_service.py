"""probes.service against real processes started by the tests; Windows logic with a stand-in."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from pydantic import ValidationError

from probes.base import CheckResult, ProbeContext, Status
from probes.service.probe import Probe, _Report, _RuleView, count_restarts
from probes.service.settings import ProcessRule, Settings
from tests.conftest import FakeClock, wait_until
from tests.helpers.probe_contract import assert_kind_contract

Spawn = Callable[..., subprocess.Popen[bytes]]


@pytest.fixture
def marker() -> str:
    return f"sentinel-svc-test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def spawn(marker: str) -> Iterator[Spawn]:
    """Start `python -c CODE <marker>` processes; all are killed and reaped at the end."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(code: str = "import time; time.sleep(60)", *extra: str) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen([sys.executable, "-c", code, marker, *extra])
        procs.append(proc)
        # The probe reads /proc; make sure the child has exec'd python with our argv first.
        wait_until(lambda: marker in " ".join(_cmdline(proc.pid)), 5.0, "the test process to start")
        return proc

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


def _cmdline(pid: int) -> list[str]:
    try:
        return psutil.Process(pid).cmdline()
    except psutil.Error:
        return []


def rule(marker: str, **extra: Any) -> dict[str, Any]:
    return {"name": "python.*", "cmdline": marker, "label": "his-app", **extra}


def stored(memory: Any) -> dict[str, Any]:
    """What the agent hands back next run: the memory after a JSON round trip."""
    return json.loads(json.dumps(memory))


class Runner:
    """One probe instance run repeatedly, memory carried from run to run like the agent does."""

    def __init__(self, settings: dict[str, Any], clock: Callable[[], float] | None = None, **kw: Any) -> None:
        self.probe = Probe(Settings.model_validate(settings), **kw)
        self.memory: dict[str, Any] = {}
        self.clock = clock

    def run(self) -> CheckResult:
        ctx = ProbeContext("svc", 5.0, memory=self.memory, **({"clock": self.clock} if self.clock else {}))
        result = self.probe.run(ctx)
        if result.memory is not None:
            self.memory = stored(result.memory)
        return result


def value(result: CheckResult, name: str) -> float | None:
    m = result.metric(name)
    return None if m is None else m.value


# ------------------------------------------------------------------ processes


def test_process_started_by_the_test_is_found(spawn: Spawn, marker: str) -> None:
    proc = spawn()
    result = Runner({"processes": [rule(marker)]}).run()
    assert result.status is Status.OK, result.summary
    assert result.summary == "正常: his-app 1 个"
    assert value(result, "proc:his-app.count") == 1
    rss = result.metric("proc:his-app.rss_bytes")
    assert rss is not None and rss.unit == "B"
    assert abs(rss.value - psutil.Process(proc.pid).memory_info().rss) < 4 * 1024**2
    assert result.details["pids"] == {"his-app": [proc.pid]}
    # First run: nothing to compare restarts or CPU with.
    assert result.metric("proc:his-app.restarts") is None
    assert result.metric("proc:his-app.cpu_pct") is None
    assert result.memory is not None
    assert [e[0] for e in result.memory["proc"]["his-app"]] == [proc.pid]


def test_exact_process_name_and_user(spawn: Spawn, marker: str) -> None:
    proc = spawn()
    name = psutil.Process(proc.pid).name()
    me = psutil.Process().username()
    ok = Runner({"processes": [{"name": name, "cmdline": marker, "user": me}]}).run()
    assert ok.status is Status.OK, ok.summary
    assert value(ok, f"proc:{name}.count") == 1
    other = Runner({"processes": [{"name": name, "cmdline": marker, "user": "nobody-else"}]}).run()
    assert other.status is Status.CRIT
    assert other.summary == f"进程 {name} 未运行"
    wrong_name = Runner({"processes": [{"name": "java", "cmdline": marker}]}).run()
    assert value(wrong_name, "proc:java.count") == 0


def test_killed_process_is_crit_even_before_it_is_reaped(spawn: Spawn, marker: str) -> None:
    proc = spawn()
    runner = Runner({"processes": [rule(marker)]})
    assert runner.run().status is Status.OK
    proc.kill()
    # Not reaped yet: a zombie must not count as running.
    wait_until(lambda: psutil.Process(proc.pid).status() == psutil.STATUS_ZOMBIE, 5.0, "the zombie")
    result = runner.run()
    assert result.status is Status.CRIT
    assert result.summary == "进程 his-app 未运行"
    assert value(result, "proc:his-app.count") == 0
    assert value(result, "proc:his-app.restarts") == 0
    proc.wait()


def test_restart_between_runs_is_warn_once(spawn: Spawn, marker: str) -> None:
    runner = Runner({"processes": [rule(marker)]})
    first = spawn()
    assert runner.run().status is Status.OK
    first.kill()
    first.wait()
    second = spawn()
    result = runner.run()
    assert result.status is Status.WARN
    assert result.summary == "进程 his-app 自上次检查以来重启 1 次"
    assert value(result, "proc:his-app.restarts") == 1
    assert result.details["pids"] == {"his-app": [second.pid]}
    again = runner.run()
    assert again.status is Status.OK
    assert value(again, "proc:his-app.restarts") == 0


def test_down_then_back_is_crit_then_restart(spawn: Spawn, marker: str) -> None:
    runner = Runner({"processes": [rule(marker)]})
    first = spawn()
    assert runner.run().status is Status.OK
    first.kill()
    first.wait()
    assert runner.run().status is Status.CRIT
    spawn()
    back = runner.run()
    assert back.status is Status.WARN
    assert value(back, "proc:his-app.restarts") == 1
    assert runner.run().status is Status.OK


def test_growing_pool_is_not_a_restart_and_counts_are_judged(spawn: Spawn, marker: str) -> None:
    runner = Runner({"processes": [rule(marker, min_count=2, max_count=3)]})
    spawn()
    few = runner.run()
    assert few.status is Status.CRIT
    assert few.summary == "进程 his-app 数量不足（1 < 2）"
    spawn()
    spawn()
    grown = runner.run()
    # One of the two new workers fills the missing slot (a restart), the other is growth.
    assert value(grown, "proc:his-app.restarts") == 1
    assert value(grown, "proc:his-app.count") == 3
    spawn()
    spawn()
    many = runner.run()
    assert value(many, "proc:his-app.restarts") == 0
    assert many.status is Status.WARN
    assert many.summary == "进程 his-app 数量过多（5 > 3）"


@pytest.mark.parametrize(("on_restart", "status"), [("OK", Status.OK), ("CRIT", Status.CRIT)])
def test_on_restart_is_configurable(spawn: Spawn, marker: str, on_restart: str, status: Status) -> None:
    runner = Runner({"processes": [rule(marker, on_restart=on_restart)]})
    first = spawn()
    runner.run()
    first.kill()
    first.wait()
    spawn()
    result = runner.run()
    assert result.status is status
    assert value(result, "proc:his-app.restarts") == 1


def test_cpu_pct_over_the_interval(spawn: Spawn, marker: str, tmp_path: Path) -> None:
    ready = tmp_path / "burnt"
    burn = (
        "import sys, time\n"
        "while time.process_time() < 0.3: pass\n"
        "open(sys.argv[2], 'w').write('x')\n"
        "time.sleep(60)\n"
    )
    clock = FakeClock()
    runner = Runner({"processes": [rule(marker)]}, clock=clock)
    proc = spawn(burn, str(ready))
    runner.run()
    cpu_before = runner.memory["proc"]["his-app"][0][2]
    wait_until(ready.exists, 10.0, "the test process to burn 0.3 s of CPU")
    clock.advance(10.0)
    result = runner.run()
    times = psutil.Process(proc.pid).cpu_times()
    expected = (times.user + times.system - cpu_before) / 10.0 * 100.0
    cpu = result.metric("proc:his-app.cpu_pct")
    assert cpu is not None and cpu.unit == "%"
    assert cpu.value == pytest.approx(expected, abs=0.2)
    assert cpu.value > 1.0  # at least some of the 0.3 s fell between the runs


def test_memory_from_another_version_is_tolerated(spawn: Spawn, marker: str) -> None:
    spawn()
    probe = Probe(Settings.model_validate({"processes": [rule(marker)]}))
    for memory in ({"proc": "garbage"}, {"proc": {"his-app": [["x"]]}}, {"t": "yesterday", "proc": {}}):
        result = probe.run(ProbeContext("svc", 5.0, memory=memory))
        assert result.status is not Status.UNKNOWN, (memory, result.summary)


def test_unreadable_command_lines_make_a_shortfall_unknown_not_crit() -> None:
    # As root on Linux every command line is readable; Windows denies other accounts' ones to
    # an unprivileged agent, which psutil reports as None. Exercise that decision directly.
    view = _RuleView(ProcessRule(name="java", cmdline="his-server"), None, re.compile("his-server"))
    assert view.matches("java", None, None) is None
    assert view.matches("java", "java -jar his-server.jar", None) is True
    assert view.matches("nginx", None, None) is False
    view.hidden = 2
    report = _Report()
    Probe._judge_count(view, report)
    assert report.problems == [
        (
            Status.UNKNOWN,
            "进程 java 未确认（0 < 1）：2 个同名进程的命令行或用户无权读取，代理需以更高权限运行",
        )
    ]


@pytest.mark.parametrize(
    ("previous", "current", "min_count", "expected"),
    [
        ([], [(1, 10.0)], 0, 0),
        ([(1, 10.0)], [(1, 10.4)], 1, 0),  # the same process, start time read with jitter
        ([(1, 10.0)], [(1, 99.0)], 1, 1),  # pid reused by a new process
        ([(1, 10.0), (2, 10.0)], [(2, 10.0), (3, 20.0), (4, 20.0)], 2, 1),
        ([(1, 10.0)], [], 1, 0),
        ([], [(5, 30.0), (6, 30.0)], 1, 1),
    ],
)
def test_count_restarts(
    previous: list[tuple[int, float]], current: list[tuple[int, float]], min_count: int, expected: int
) -> None:
    assert count_restarts(previous, current, min_count) == expected


# ------------------------------------------------------------------ Windows services


@pytest.mark.skipif(os.name == "nt", reason="checks the message on other systems")
def test_windows_services_elsewhere_are_unknown_with_reason(spawn: Spawn, marker: str) -> None:
    only = Runner({"windows_services": ["MSSQLSERVER"]}).run()
    assert only.status is Status.UNKNOWN
    assert only.summary == f"Windows 服务检查仅在 Windows 上可用（本机为 {sys.platform}）: MSSQLSERVER"
    both = Runner({"processes": [{"name": "no-such-proc"}], "windows_services": ["MSSQLSERVER"]}).run()
    assert both.status is Status.CRIT  # a known failure outranks the unknown part
    assert both.summary.startswith("进程 no-such-proc 未运行；Windows 服务检查仅在 Windows 上可用")


class StandInService:
    """Answers like psutil's WindowsService (status() and pid()); Windows is not available here."""

    def __init__(self, table: dict[str, tuple[str, int]], name: str) -> None:
        if name not in table:
            raise psutil.NoSuchProcess(pid=0, name=name, msg="service does not exist")
        self._state, self._pid = table[name]

    def status(self) -> str:
        return self._state

    def pid(self) -> int:
        return self._pid


def test_windows_service_states_and_restart(spawn: Spawn) -> None:
    first, second = spawn(), spawn()
    table = {
        "MSSQLSERVER": ("running", first.pid),
        "OracleServiceORCL": ("stopped", 0),
        "HISAppServer": ("start_pending", 0),
    }
    runner = Runner(
        {"windows_services": ["MSSQLSERVER", "OracleServiceORCL", "HISAppServer", "Gone"]},
        win_service_get=lambda name: StandInService(table, name),
    )
    result = runner.run()
    assert result.status is Status.CRIT
    assert (
        result.summary
        == "服务 OracleServiceORCL 已停止；服务 Gone 不存在（服务名错误或已卸载）；服务 HISAppServer 正在启动"
    )
    assert result.details["windows_services"] == {
        "MSSQLSERVER": "running",
        "OracleServiceORCL": "stopped",
        "HISAppServer": "start_pending",
        "Gone": "not_found",
    }
    assert value(result, "svc:MSSQLSERVER.running") == 1
    assert value(result, "svc:OracleServiceORCL.running") == 0
    assert result.metric("svc:MSSQLSERVER.rss_bytes") is not None
    # The SQL Server service came back with another process; the others are fine now.
    table.update({"MSSQLSERVER": ("running", second.pid), "OracleServiceORCL": ("running", first.pid)})
    table.update({"HISAppServer": ("running", first.pid), "Gone": ("running", first.pid)})
    later = runner.run()
    assert later.status is Status.WARN
    assert value(later, "svc:MSSQLSERVER.restarts") == 1
    assert "服务 MSSQLSERVER 自上次检查以来重启过" in later.summary
    steady = runner.run()
    assert steady.status is Status.OK
    assert steady.summary.startswith("正常: 服务 MSSQLSERVER 运行中")


# ------------------------------------------------------------------ settings


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({}, "at least one entry"),
        ({"processes": [{"name": "java"}, {"name": "java"}]}, "listed twice"),
        (
            {"processes": [{"name": "java", "min_count": 3, "max_count": 2}]},
            "max_count (2) is below min_count",
        ),
        ({"processes": [{"name": "java", "cmdline": "(unclosed"}]}, "invalid regular expression"),
        ({"processes": [{"name": "HIS Server"}]}, "needs a label"),
        ({"processes": [{"name": "java", "on_restart": "PANIC"}]}, "'OK', 'WARN' or 'CRIT'"),
        ({"windows_services": ["SQL Server (MSSQLSERVER)"]}, "not the display name"),
        ({"windows_services": ["MSSQLSERVER", "mssqlserver"]}, "listed twice"),
    ],
)
def test_invalid_settings_are_rejected(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as info:
        Settings.model_validate(settings)
    assert message in str(info.value)


def test_registry_contract() -> None:
    spec = assert_kind_contract("service")
    assert spec.settings is Settings and spec.probe is Probe
    assert dict(spec.default_thresholds) == {}
