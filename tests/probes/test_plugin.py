"""probes.plugin with Debian's monitoring-plugins and small plugins written by the tests."""

from __future__ import annotations

import os
import re
import socket
import stat
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from pydantic import ValidationError

from probes.base import CheckResult, ProbeContext, Status
from probes.plugin.probe import Probe
from probes.plugin.settings import Settings
from tests.conftest import need, wait_until
from tests.helpers.probe_contract import assert_kind_contract
from tests.helpers.servers import http_server, silent_tcp_server

PLUGINS = Path("/usr/lib/nagios/plugins")


def plugin(name: str) -> str:
    path = PLUGINS / name
    need(os.access(path, os.X_OK), f"{path} (Debian monitoring-plugins-basic/-standard) is not installed")
    return str(path)


def run(settings: dict[str, object], timeout: float = 5.0) -> CheckResult:
    return Probe(Settings.model_validate(settings)).run(ProbeContext("t", timeout))


def script(tmp_path: Path, body: str, name: str = "check_test") -> str:
    """A plugin written in Python; the interpreter of this test run executes it."""
    path = tmp_path / name
    path.write_text(f"#!{sys.executable}\n{body}", encoding="utf-8")
    path.chmod(0o755)
    return str(path)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def is_gone(pid: int, created: float) -> bool:
    """Dead, or only a zombie that the container's init has not reaped yet."""
    try:
        proc = psutil.Process(pid)
        return abs(proc.create_time() - created) > 1 or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.fixture
def pidfile(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "child.pid"
    yield path
    # Whatever the outcome, never leave a sleeping test child behind.
    if path.exists() and path.read_text().strip():
        try:
            os.kill(int(path.read_text()), 9)
        except (ProcessLookupError, ValueError):
            pass


# ------------------------------------------------------------------ monitoring-plugins


def test_check_disk_matches_statvfs() -> None:
    result = run({"command": [plugin("check_disk"), "-w", "1%", "-c", "1%", "-p", "/"]})
    st = os.statvfs("/")
    assert result.status is Status.OK, result.summary
    assert result.summary.startswith("DISK OK")
    assert result.details["exit_code"] == 0
    used = result.metric("/")
    assert used is not None and used.unit == "B"
    assert abs(used.value - (st.f_blocks - st.f_bfree) * st.f_frsize) < 64 * 1024**2
    # Free space is in the summary in MiB; compare it with what statvfs says non-root users get.
    m = re.search(r"/ (\d+)\s*MiB", result.summary)
    assert m is not None, result.summary
    assert abs(int(m.group(1)) - st.f_bavail * st.f_frsize / 1024**2) < 64
    (datum,) = result.details["perfdata"]
    assert datum["min"] == 0 and abs(datum["max"] - st.f_blocks * st.f_frsize) < 16 * 1024**2


def test_check_disk_critical_and_warning() -> None:
    crit = run({"command": [plugin("check_disk"), "-w", "100%", "-c", "100%", "-p", "/"]})
    assert crit.status is Status.CRIT and crit.summary.startswith("DISK CRITICAL")
    assert crit.metric("/") is not None
    warn = run({"command": [plugin("check_disk"), "-w", "100%", "-c", "0%", "-p", "/"]})
    assert warn.status is Status.WARN and warn.summary.startswith("DISK WARNING"), warn.summary


def test_check_load_matches_getloadavg() -> None:
    before = os.getloadavg()
    result = run({"command": [plugin("check_load"), "-w", "500,500,500", "-c", "900,900,900"]})
    after = os.getloadavg()
    assert result.status is Status.OK, result.summary
    for i, label in enumerate(("load1", "load5", "load15")):
        m = result.metric(label)
        assert m is not None and m.unit == ""
        low, high = min(before[i], after[i]), max(before[i], after[i])
        assert low - 0.05 <= m.value <= high + 0.05, (label, m.value, before, after)
    warns = {d["label"]: (d["warn"], d["crit"]) for d in result.details["perfdata"]}
    assert warns["load5"] == ("500.000", "900.000")


def test_check_tcp_open_port_is_ok_and_closed_port_crit() -> None:
    exe = plugin("check_tcp")
    with silent_tcp_server() as port:
        ok = run({"command": [exe, "-H", "127.0.0.1", "-p", str(port)]})
    assert ok.status is Status.OK, ok.summary
    assert ok.summary.startswith("TCP OK") and f"port {port}" in ok.summary
    t = ok.metric("time")
    assert t is not None and t.unit == "s" and 0 <= t.value < 5
    port = closed_port()
    crit = run({"command": [exe, "-H", "127.0.0.1", "-p", str(port)]})
    assert crit.status is Status.CRIT
    assert "Connection refused" in crit.summary
    assert crit.metrics == ()


def test_check_http_against_local_server() -> None:
    exe = plugin("check_http")
    with http_server() as srv:
        port = str(srv.server_address[1])
        ok = run({"command": [exe, "-H", "127.0.0.1", "-p", port, "-u", "/health", "-s", '"UP"']})
        fail = run({"command": [exe, "-H", "127.0.0.1", "-p", port, "-u", "/fail"]})
        missing = run({"command": [exe, "-H", "127.0.0.1", "-p", port, "-u", "/health", "-s", "NOT-THERE"]})
        hits = dict(srv.hits)
    assert ok.status is Status.OK, ok.summary
    assert ok.summary.startswith("HTTP OK")
    size = ok.metric("size")
    assert size is not None and size.unit == "B"
    m = re.search(r"(\d+) bytes", ok.summary)
    assert m is not None and size.value == int(m.group(1)) > len(b'{"status":"UP"}')
    t = ok.metric("time")
    assert t is not None and t.unit == "s"
    assert fail.status is Status.CRIT and "500" in fail.summary
    assert missing.status is Status.CRIT and "NOT-THERE" in missing.summary
    assert hits == {"/health": 2, "/fail": 1}


# ------------------------------------------------------------------ timeouts and process groups


CHILD_AND_SLEEP = """
import os, signal, sys, time
if sys.argv[2] == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
pid = os.fork()
if pid == 0:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # only SIGKILL of the group can stop it
    time.sleep(60)
    os._exit(0)
with open(sys.argv[1], "w") as fh:
    fh.write(str(pid))
print("still working", flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize(("on_timeout", "mode"), [(None, "polite"), ("CRIT", "polite"), (None, "stubborn")])
def test_timeout_kills_the_whole_process_group(
    tmp_path: Path, pidfile: Path, on_timeout: str | None, mode: str
) -> None:
    # "stubborn": the plugin ignores SIGTERM too, so only the SIGKILL after the grace period ends it.
    settings: dict[str, object] = {"command": [script(tmp_path, CHILD_AND_SLEEP), str(pidfile), mode]}
    if on_timeout:
        settings["on_timeout"] = on_timeout
    t0 = time.monotonic()
    result = run(settings, timeout=1.5)
    elapsed = time.monotonic() - t0
    assert elapsed < 1.5 + 0.2
    assert result.status is (Status.CRIT if on_timeout else Status.UNKNOWN)
    assert result.summary.startswith("插件超时")
    assert result.details["timed_out"] is True
    assert result.details["partial_output"] == "still working"
    child = int(pidfile.read_text())
    created = time.time() - elapsed - 60  # any process with this pid created later is not ours
    wait_until(lambda: is_gone(child, created), 3.0, f"child {child} of the timed-out plugin to die")


def test_leftover_child_holding_the_pipe_does_not_delay_the_result(tmp_path: Path, pidfile: Path) -> None:
    body = """
import os, sys, time
pid = os.fork()
if pid == 0:
    time.sleep(60)  # keeps stdout open after the plugin exits
    os._exit(0)
open(sys.argv[1], "w").write(str(pid))
print("OK - done | items=3")
"""
    t0 = time.monotonic()
    result = run({"command": [script(tmp_path, body), str(pidfile)]}, timeout=5.0)
    assert time.monotonic() - t0 < 1.5
    assert result.status is Status.OK
    assert result.summary == "OK - done"
    assert result.metric("items") is not None
    child = int(pidfile.read_text())
    wait_until(lambda: is_gone(child, time.time() - 60), 3.0, f"leftover child {child} to be killed")


# ------------------------------------------------------------------ output handling


def test_multi_line_output_with_perfdata_on_later_lines(tmp_path: Path) -> None:
    body = r"""
print("HIS WARNING - 1 of 3 interfaces slow | total=3;;;0;")
print("挂号接口 12 ms")
print("收费接口 15 ms")
print("检验接口 1800 ms | 'lis time'=1800ms;1000;3000;0")
print("pacs_free=12.5GB;;;0;100")
print("queue=42c")
raise SystemExit(1)
"""
    result = run({"command": [script(tmp_path, body)]})
    assert result.status is Status.WARN
    assert result.summary == "HIS WARNING - 1 of 3 interfaces slow"
    assert result.details["long_output"] == ["挂号接口 12 ms", "收费接口 15 ms", "检验接口 1800 ms"]
    metrics = {m.name: (m.value, m.unit) for m in result.metrics}
    assert metrics == {
        "total": (3.0, ""),
        "lis time": (1800.0, "ms"),
        "pacs_free": (12.5 * 1024**3, "B"),
        "queue": (42.0, "c"),
    }
    lis = next(d for d in result.details["perfdata"] if d["label"] == "lis time")
    assert (lis["warn"], lis["crit"], lis["min"]) == ("1000", "3000", 0.0)


@pytest.mark.parametrize(
    ("code", "status"), [(0, Status.OK), (1, Status.WARN), (2, Status.CRIT), (3, Status.UNKNOWN)]
)
def test_exit_codes_map_to_statuses(tmp_path: Path, code: int, status: Status) -> None:
    result = run({"command": [script(tmp_path, f"print('STATE {code}')\nraise SystemExit({code})")]})
    assert result.status is status
    assert result.summary == f"STATE {code}"
    assert result.details["exit_code"] == code


def test_other_exit_code_and_signal_are_unknown_with_reason(tmp_path: Path) -> None:
    odd = run({"command": [script(tmp_path, "print('weird')\nraise SystemExit(7)")]})
    assert odd.status is Status.UNKNOWN
    assert odd.summary == "插件退出码 7 不是 Nagios 状态（0–3）: weird"
    killed = run({"command": [script(tmp_path, "import os\nos.kill(os.getpid(), 9)", "check_kill")]})
    assert killed.status is Status.UNKNOWN
    assert killed.summary == "插件被 SIGKILL 终止"
    assert killed.details["exit_code"] == -9


def test_missing_and_non_executable_plugins(tmp_path: Path) -> None:
    missing = run({"command": [str(tmp_path / "check_nothing")]})
    assert missing.status is Status.UNKNOWN and missing.summary.startswith("插件不存在")
    not_in_path = run({"command": ["check_nothing_here_xyz"]})
    assert not_in_path.status is Status.UNKNOWN and "PATH" in not_in_path.summary
    path = Path(script(tmp_path, "print('x')", "check_noexec"))
    path.chmod(0o644)
    noexec = run({"command": [str(path)]})
    assert noexec.status is Status.UNKNOWN and noexec.summary.startswith("插件不可执行")
    no_shebang = tmp_path / "check_no_shebang"
    no_shebang.write_bytes(b"\x00\x01binary garbage")
    no_shebang.chmod(0o755)
    garbage = run({"command": [str(no_shebang)]})
    assert garbage.status is Status.UNKNOWN and garbage.summary.startswith("无法启动插件")


def test_bare_name_resolved_through_path_and_workdir(tmp_path: Path) -> None:
    script(tmp_path, "import os\nprint('OK cwd=' + os.getcwd())", "check_here")
    work = tmp_path / "work"
    work.mkdir()
    result = run({"command": ["check_here"], "env": {"PATH": str(tmp_path)}, "workdir": str(work)})
    assert result.status is Status.OK, result.summary
    assert result.summary == f"OK cwd={work}"
    gone = run({"command": ["check_here"], "env": {"PATH": str(tmp_path)}, "workdir": str(tmp_path / "x")})
    assert gone.status is Status.UNKNOWN and gone.summary.startswith("工作目录不存在")


def test_stderr_is_the_summary_only_when_stdout_is_empty(tmp_path: Path) -> None:
    body = "import sys\nsys.stderr.write('cannot connect to ORCL\\n')\nraise SystemExit(2)"
    result = run({"command": [script(tmp_path, body)]})
    assert result.status is Status.CRIT
    assert result.summary == "cannot connect to ORCL"
    silent = run({"command": [script(tmp_path, "raise SystemExit(0)", "check_silent")]})
    assert silent.status is Status.OK and silent.summary == "（插件无输出）"


def test_huge_output_is_bounded_and_the_plugin_not_blocked(tmp_path: Path) -> None:
    body = "import sys\nsys.stdout.write('OK big | n=1\\n' + 'x' * 3_000_000 + '\\n')\nsys.stdout.flush()"
    t0 = time.monotonic()
    result = run({"command": [script(tmp_path, body)], "max_output_bytes": 4096})
    assert time.monotonic() - t0 < 3
    assert result.status is Status.OK
    assert result.summary == "OK big"
    assert result.details["output_truncated"] is True
    assert result.details["exit_code"] == 0
    assert all(len(line) <= 500 for line in result.details["long_output"])


def test_gbk_output(tmp_path: Path) -> None:
    body = "import sys\nsys.stdout.buffer.write('正常 - 服务运行中 | 连接数=5\\n'.encode('gbk'))"
    result = run({"command": [script(tmp_path, body)], "encoding": "gbk"})
    assert result.summary == "正常 - 服务运行中"
    assert result.metric("连接数") is not None


# ------------------------------------------------------------------ environment and secrets


def test_env_secret_reaches_the_plugin_but_never_the_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    password = "S3cret-Pw-4471"
    monkeypatch.setenv("TEST_PLUGIN_DB_PW", password)
    monkeypatch.setenv("AGENT_ONLY_VAR", "agent-private")
    body = """
import os, sys
pw = os.environ.get("PGPASSWORD")
print(f"OK login with {pw} agent={os.environ.get('AGENT_ONLY_VAR')} site={os.environ['SITE']} | '{pw}'=1")
print(f"long line {pw}")
sys.stderr.write(f"debug {pw}\\n")
raise SystemExit(0 if pw == "S3cret-Pw-4471" else 2)
"""
    result = run(
        {"command": [script(tmp_path, body)], "env": {"PGPASSWORD": "${TEST_PLUGIN_DB_PW}", "SITE": "本院区"}}
    )
    assert result.status is Status.OK  # the plugin itself saw the real password
    assert result.summary == "OK login with *** agent=None site=本院区"
    assert password not in repr(result)
    assert result.metric("***") is not None


def test_missing_secret_is_unknown_without_running(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TEST_PLUGIN_NOT_SET", raising=False)
    marker = tmp_path / "ran"
    body = f"open({str(marker)!r}, 'w').write('x')"
    result = run({"command": [script(tmp_path, body)], "env": {"PW": "${TEST_PLUGIN_NOT_SET}"}})
    assert result.status is Status.UNKNOWN
    assert result.summary == "无法读取密钥: environment variable TEST_PLUGIN_NOT_SET is not set"
    assert not marker.exists()


def test_secret_file_in_env(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("file-secret-99\n")
    secret.chmod(stat.S_IRUSR | stat.S_IWUSR)
    body = "import os\nprint('OK ' + os.environ['PW'])"
    result = run({"command": [script(tmp_path, body)], "env": {"PW": f"file:{secret}"}})
    assert result.summary == "OK ***"


# ------------------------------------------------------------------ settings


def test_command_string_without_spaces_is_one_argument() -> None:
    assert Settings.model_validate({"command": "check_dummy"}).command == ["check_dummy"]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {"command": "/usr/lib/nagios/plugins/check_disk -w 10% -p '/var/lib/oracle data'"},
            'write it as ["/usr/lib/nagios/plugins/check_disk", "-w", "10%", "-p", "/var/lib/oracle data"]',
        ),
        ({"command": []}, "at least 1 item"),
        ({"command": ["bin/check_x"]}, "absolute path or a bare program name"),
        ({"command": ["check_pgsql", "-p", "${DB_PW}"]}, "put the secret in env"),
        ({"command": ["check_x", "--password=${DB_PW}"]}, "visible in the process list"),
        ({"command": ["check_x"], "workdir": "rel"}, "workdir must be an absolute path"),
        ({"command": ["check_x"], "env": {"MYSQL_PWD": "inline-pw"}}, "MYSQL_PWD looks like a secret"),
        ({"command": ["check_x"], "env": {"DB_PASSWORD": "inline-pw"}}, "DB_PASSWORD looks like a secret"),
        ({"command": ["check_x"], "env": {"API_TOKEN": "inline-pw"}}, "API_TOKEN looks like a secret"),
        ({"command": ["check_x"], "env": {"BAD NAME": "1"}}, "invalid environment variable name"),
        ({"command": ["check_x"], "env": {"PW": "file:relative"}}, "absolute path"),
        ({"command": ["check_x"], "on_timeout": "WARN"}, "'UNKNOWN' or 'CRIT'"),
        ({"command": ["check_x"], "encoding": "klingon"}, "unknown encoding"),
        ({"command": ["check_x"], "timeout_s": 3}, "Extra inputs are not permitted"),
    ],
)
def test_invalid_settings_are_rejected(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError) as info:
        Settings.model_validate(settings)
    assert message in str(info.value)
    assert "inline-pw" not in str(info.value)


def test_plain_env_value_is_literal_not_a_secret() -> None:
    s = Settings.model_validate({"command": ["x"], "env": {"A": "plain", "B": "${B_VAR}"}})
    assert s.env["A"] == "plain"
    assert s.model_dump()["env"] == {"A": "plain", "B": "${B_VAR}"}


def test_registry_contract() -> None:
    spec = assert_kind_contract("plugin")
    assert spec.settings is Settings and spec.probe is Probe
    assert dict(spec.default_thresholds) == {}
