"""probes.ssh_host against a real sshd on this machine: its figures must be this machine's."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from probes.base import CheckResult, ProbeContext, Status
from probes.host import probe as host
from probes.host import settings as host_settings
from probes.ssh.conn import SshPool
from probes.ssh_host.probe import (
    DEFAULT_THRESHOLDS,
    HISTORY_METRICS,
    Probe,
    ProcEntry,
    build_script,
    own_session_pids,
    parse_df,
    parse_mounts,
    split_sections,
)
from probes.ssh_host.settings import Settings
from probes.thresholds import apply_thresholds
from tests.helpers.servers import silent_tcp_server
from tests.helpers.sshd import WRONG_PASSWORD, Sshd, known_fixture, running_sshd, sshd_fixture  # noqa: F401
from tests.probes.test_host import meminfo

GIB = 1 << 30
DAY = 86400.0


def settings(sshd: Sshd, known_hosts: Path | str, **over: object) -> Settings:
    ssh = {
        "address": "127.0.0.1",
        "port": sshd.port,
        "user": sshd.user,
        "password": sshd.password_ref,
        "known_hosts": str(known_hosts),
        "connect_timeout": 3.0,
    }
    ssh.update(over.pop("ssh", {}))  # type: ignore[call-overload]
    return Settings.model_validate({"ssh": ssh, **over})


def run(
    st: Settings,
    clock: Callable[[], float] = time.time,
    history: dict[str, list[tuple[float, float]]] | None = None,
    pool: SshPool | None = None,
    timeout_s: float = 8.0,
) -> CheckResult:
    shared = {"ssh": pool} if pool is not None else {}
    probe = Probe(st)
    return probe.run(ProbeContext("remote", timeout_s, history=history or {}, clock=clock, shared=shared))


def value(result: CheckResult, name: str) -> float:
    m = result.metric(name)
    assert m is not None, f"metric {name} missing; have {[x.name for x in result.metrics]}"
    return m.value


# --- figures of the real machine ----------------------------------------------------------------


@pytest.fixture(scope="module")
def real(sshd: Sshd, known: Path) -> CheckResult:
    return run(settings(sshd, known))


def test_real_run_is_ok_with_chinese_summary(real: CheckResult) -> None:
    assert real.status is Status.OK, real.summary
    assert "CPU" in real.summary and "内存" in real.summary and "挂载点" in real.summary
    assert real.details["host"].startswith("sentinel-test@127.0.0.1:")


def test_disks_match_statvfs_and_the_local_host_probe(real: CheckResult) -> None:
    local = host.Probe(host_settings.Settings()).run(ProbeContext("local", 10.0))
    local_disks = {m.name for m in local.metrics if m.name.startswith("disk:")}
    remote_disks = {m.name for m in real.metrics if m.name.startswith("disk:")}
    assert remote_disks == local_disks and "disk:/.used_pct" in remote_disks
    for mp in real.details["mounts"]:
        st = os.statvfs(mp)
        used = (st.f_blocks - st.f_bfree) * st.f_frsize
        pct = used / (used + st.f_bavail * st.f_frsize) * 100
        assert value(real, f"disk:{mp}.used_pct") == pytest.approx(pct, abs=0.5)
        assert value(real, f"disk:{mp}.used_bytes") == pytest.approx(used, rel=0.01, abs=64 << 20)
        assert value(real, f"disk:{mp}.total_bytes") == pytest.approx(st.f_blocks * st.f_frsize, abs=1024)
        if st.f_files:
            iused = st.f_files - st.f_ffree
            ipct = iused / (iused + st.f_favail) * 100
            assert value(real, f"disk:{mp}.inode_pct") == pytest.approx(ipct, abs=0.5)
    assert real.metric("disk:/.used_pct").unit == "%"  # type: ignore[union-attr]


def test_memory_load_uptime_cpu_and_clock_match_proc(real: CheckResult) -> None:
    mi = meminfo()
    mem_pct = (mi["MemTotal"] - mi["MemAvailable"]) / mi["MemTotal"] * 100
    assert value(real, "mem.pct") == pytest.approx(mem_pct, abs=3)
    assert value(real, "mem.available_bytes") == pytest.approx(mi["MemAvailable"], rel=0.05)
    swap = (mi["SwapTotal"] - mi["SwapFree"]) / mi["SwapTotal"] * 100 if mi["SwapTotal"] else 0.0
    assert value(real, "swap.pct") == pytest.approx(swap, abs=3)
    cores = os.cpu_count() or 1
    assert real.details["cores"] == cores
    load1, load5, _ = os.getloadavg()
    assert value(real, "load5.per_core") == pytest.approx(load5 / cores, abs=0.3)
    assert value(real, "load1.per_core") == pytest.approx(load1 / cores, abs=0.6)
    with open("/proc/uptime", encoding="ascii") as fh:
        uptime = float(fh.read().split()[0])
    assert value(real, "uptime.s") == pytest.approx(uptime, abs=30)
    assert 0.0 <= value(real, "cpu.pct") <= 100.0
    assert abs(value(real, "clock.offset_s")) < 0.5
    assert 0 <= real.details["round_trip_ms"] < 2000


def test_metric_names_are_the_host_probes(real: CheckResult) -> None:
    local = host.Probe(host_settings.Settings()).run(ProbeContext("local", 10.0))
    local_names = {m.name for m in local.metrics}
    remote_names = {m.name for m in real.metrics}
    assert local_names - remote_names == set()
    assert remote_names - local_names == {"clock.offset_s", "clock.abs_offset_s"}
    units = {m.name: m.unit for m in local.metrics}
    assert all(units[m.name] == m.unit for m in real.metrics if m.name in units)
    assert HISTORY_METRICS == host.HISTORY_METRICS
    assert {
        k: v for k, v in DEFAULT_THRESHOLDS.items() if k in host.DEFAULT_THRESHOLDS
    } == host.DEFAULT_THRESHOLDS


def test_one_connection_one_command_per_run(sshd: Sshd, known: Path) -> None:
    mark = sshd.mark()
    result = run(settings(sshd, known))
    assert result.status is Status.OK, result.summary
    log = sshd.wait_log(r"Close session: user sentinel-test", mark)
    assert log
    assert sshd.connections(mark) == 1
    assert len([x for x in sshd._log_since(mark).splitlines() if x.startswith("Starting session:")]) == 1


def test_clock_offset_against_the_agent_clock(sshd: Sshd, known: Path) -> None:
    # The agent's clock runs 100 s behind: the remote host is 100 s ahead of it.
    result = run(settings(sshd, known), clock=lambda: time.time() - 100.0)
    assert value(result, "clock.offset_s") == pytest.approx(100.0, abs=0.5)
    assert value(result, "clock.abs_offset_s") == pytest.approx(100.0, abs=0.5)
    assert "时钟偏差 +100" in result.summary
    judged = apply_thresholds(result, DEFAULT_THRESHOLDS)
    assert judged.status is Status.CRIT and "clock.abs_offset_s" in judged.summary


def test_days_to_full_from_history(sshd: Sshd, known: Path) -> None:
    st = os.statvfs("/")
    used = (st.f_blocks - st.f_bfree) * st.f_frsize
    capacity = used + st.f_bavail * st.f_frsize
    now = time.time()
    # Two days of history growing 1 GiB a day up to today's figure.
    history = {"disk:/.used_bytes": [(now - DAY * d, float(used - GIB * d)) for d in (2, 1.5, 1, 0.5)]}
    result = run(settings(sshd, known), clock=lambda: now, history=history)
    expected = (capacity - used) / GIB
    assert value(result, "disk:/.days_to_full") == pytest.approx(expected, rel=0.05)
    assert result.metric("disk:/.days_to_full").unit == "d"  # type: ignore[union-attr]


# --- processes -----------------------------------------------------------------------------------


@pytest.fixture
def named_process(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    name = f"sntl{os.getpid() % 100000}x"
    exe = tmp_path / name
    shutil.copy("/bin/sleep", exe)
    proc = subprocess.Popen([str(exe), "4242.5"])
    try:
        yield name, proc
    finally:
        proc.kill()
        proc.wait(5)


def test_named_processes_found_and_missing(
    sshd: Sshd, known: Path, named_process: tuple[str, subprocess.Popen[bytes]]
) -> None:
    name, _ = named_process
    procs = [
        {"name": name},
        {"name": "by-args", "match": "4242.5"},
        {"name": "sntl-not-running", "min": 1},
    ]
    result = run(settings(sshd, known, processes=procs))
    assert value(result, f"proc:{name}.count") == 1
    assert value(result, "proc:by-args.count") == 1
    assert value(result, "proc:sntl-not-running.count") == 0
    assert result.status is Status.CRIT
    assert result.summary.startswith("进程 sntl-not-running 未运行 (0 < 1) | ")


def test_the_probes_own_login_is_not_counted(sshd: Sshd, known: Path) -> None:
    # The probe's login adds processes that exist only while it runs: the script's shell, the
    # login shell that started it, sshd's monitor and user child. The listener is a real service.
    assert sshd.proc is not None
    result = run(settings(sshd, known, processes=[{"name": "sshd"}]))
    assert result.status is Status.OK, result.summary
    own = result.details["own_login_pids"]
    assert len(own) == 4 and sshd.proc.pid not in own
    assert value(result, "proc:sshd.count") >= 1


def test_own_session_pids_for_old_and_new_openssh() -> None:
    def table(*chain: tuple[int, int, str]) -> dict[int, ProcEntry]:
        return {pid: ProcEntry(pid, ppid, "S", comm) for pid, ppid, comm in chain}

    old = table(
        (1, 0, "init"), (10, 1, "sshd"), (20, 10, "sshd"), (21, 20, "sshd"), (30, 21, "bash"), (31, 30, "sh")
    )
    assert own_session_pids(old, 31) == {20, 21, 30, 31}
    new = table(
        (1, 0, "systemd"), (10, 1, "sshd"), (20, 10, "sshd-session"), (21, 20, "sshd-session"), (31, 21, "sh")
    )
    assert own_session_pids(new, 31) == {20, 21, 31}
    no_listener = table((1, 0, "inetd"), (21, 1, "sshd"), (31, 21, "sh"))
    assert own_session_pids(no_listener, 31) == {21, 31}
    assert own_session_pids(table((31, 1, "sh")), 31) == {31}


# --- failures -----------------------------------------------------------------------------------


def test_unknown_host_key_is_unknown_with_fingerprint(sshd: Sshd, tmp_path: Path) -> None:
    mark = sshd.mark()
    result = run(settings(sshd, tmp_path / "empty_known_hosts"))
    assert result.status is Status.UNKNOWN
    assert sshd.host_fingerprint() in result.summary
    assert result.metrics == ()
    # The server logs the end of the connection after anything it logged for it.
    sshd.wait_log(r"^Connection (?:closed|reset) by 127\.0\.0\.1 port \d+.*\[preauth\]", mark)
    assert sshd.auth_attempts(mark) == []


def test_changed_host_key_is_crit(tmp_path: Path) -> None:
    with running_sshd() as server:
        known_hosts = server.write_known_hosts(tmp_path / "kh")
        server.rotate_host_key()
        mark = server.mark()
        result = run(settings(server, known_hosts))
        assert server.auth_attempts(mark) == []
    assert result.status is Status.CRIT
    assert "host key changed" in result.summary and "主机密钥已变更" in result.summary


def test_wrong_password_is_crit_and_never_in_the_result(sshd: Sshd, known: Path) -> None:
    result = run(settings(sshd, known, ssh={"password": sshd.wrong_password_ref}))
    assert result.status is Status.CRIT
    assert "认证失败" in result.summary
    assert WRONG_PASSWORD not in repr(result) and WRONG_PASSWORD not in str(dict(result.details))


def test_silent_server_gives_a_result_within_the_timeout(tmp_path: Path) -> None:
    with silent_tcp_server() as port:
        st = Settings.model_validate(
            {
                "ssh": {
                    "address": "127.0.0.1",
                    "port": port,
                    "user": "x",
                    "password": "${HOME}",
                    "known_hosts": str(tmp_path / "kh"),
                }
            }
        )
        t0 = time.monotonic()
        result = run(st, timeout_s=1.0)
    assert time.monotonic() - t0 < 1.5
    assert result.status is Status.CRIT and "banner" in result.summary


def test_pool_reuses_the_connection_between_runs(sshd: Sshd, known: Path) -> None:
    pool = SshPool()
    mark = sshd.mark()
    try:
        first = run(settings(sshd, known), pool=pool)
        second = run(settings(sshd, known), pool=pool)
    finally:
        pool.close_all()
    assert (first.status, second.status) == (Status.OK, Status.OK)
    assert (first.details["connection_reused"], second.details["connection_reused"]) == (False, True)
    assert sshd.connections(mark) == 1


def test_settings_validation() -> None:
    with pytest.raises(ValidationError, match="ssh"):
        Settings.model_validate({})
    with pytest.raises(ValidationError, match="listed twice"):
        Settings.model_validate(
            {
                "ssh": {"address": "h", "user": "u", "key_file": "/k"},
                "processes": [{"name": "a"}, {"name": "a"}],
            }
        )
    with pytest.raises(ValidationError):
        Settings.model_validate({"ssh": {"address": "h", "user": "u", "key_file": "/k"}, "cpu_sample": "10s"})


# --- parsing --------------------------------------------------------------------------------------


def test_parse_df_handles_spaces_dashes_errors_and_timeouts() -> None:
    table = parse_df(
        [
            "Filesystem     1024-blocks    Used Available Capacity Mounted on",
            "proc                     0       0         0        - /proc",
            "/dev/sdb1          1000000  250000    700000      27% /data/病历 归档",
            "df: /mnt/nfs: Stale file handle",
            "df: /root/x: Permission denied",
            "@@rc 1",
        ]
    )
    assert table.rows["/data/病历 归档"].used == 250000 * 1024
    assert table.rows["/proc"].total == 0
    assert table.errors == ["df: /mnt/nfs: Stale file handle"]
    assert table.exit_code == 1
    inodes = parse_df(["Filesystem Inodes IUsed IFree IUse% Mounted on", "tmpfs - - - - /run", "@@rc 124"])
    assert inodes.rows == {} and inodes.exit_code == 124


def test_parse_mounts_unescapes_and_selection_follows_the_host_probe() -> None:
    mounts = parse_mounts(
        ["/dev/sdb1 /data/my\\040disk ext4 rw 0 0", "proc /proc proc rw 0 0", "/dev/sdb1 /bind ext4 rw 0 0"]
    )
    assert mounts[0].mountpoint == "/data/my disk"
    assert [m.mountpoint for m in host.select_mounts(mounts)] == ["/bind"]


def test_script_is_one_line_and_sections_split() -> None:
    st = Settings.model_validate({"ssh": {"address": "h", "user": "u", "key_file": "/k"}})
    script = build_script(st)
    assert "\n" not in script and "@@procs" not in script  # no process table unless asked for
    sections = split_sections("@@clock 1.5\n@@df\nFilesystem\nrow\n@@rc 0\n@@end\n")
    assert sections == {"clock": ["1.5"], "df": ["Filesystem", "row", "@@rc 0"], "end": []}
