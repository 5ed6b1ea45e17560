"""probes.host against the real machine; only statvfs and the mount table are ever injected."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import NamedTuple

import psutil
import pytest
from pydantic import ValidationError

from probes import registry
from probes.base import CheckResult, ProbeContext, Status
from probes.host.probe import DEFAULT_THRESHOLDS, Probe, select_mounts
from probes.host.settings import ProcessSpec, Settings
from probes.thresholds import apply_thresholds

GIB = 1 << 30
DAY = 86400.0


class Part(NamedTuple):
    device: str
    mountpoint: str
    fstype: str


def ctx(
    history: dict[str, list[tuple[float, float]]] | None = None,
    clock: Callable[[], float] = time.time,
    timeout_s: float = 30.0,
) -> ProbeContext:
    return ProbeContext(check="host", timeout_s=timeout_s, history=history or {}, clock=clock)


def value(result: CheckResult, name: str) -> float:
    m = result.metric(name)
    assert m is not None, f"metric {name} missing; have {[x.name for x in result.metrics]}"
    return m.value


def fake_st(
    blocks: int, bfree: int, bavail: int, *, files: int = 1000, ffree: int = 900
) -> os.statvfs_result:
    """A statvfs result with 4 KiB blocks."""
    return os.statvfs_result((4096, 4096, blocks, bfree, bavail, files, ffree, ffree, 0, 255))


def meminfo() -> dict[str, int]:
    out: dict[str, int] = {}
    with open("/proc/meminfo", encoding="ascii") as fh:
        for line in fh:
            key, rest = line.split(":", 1)
            out[key] = int(rest.split()[0]) * 1024
    return out


# --- real machine -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real() -> CheckResult:
    return Probe(Settings()).run(ctx())


def test_root_disk_matches_df(real: CheckResult) -> None:
    st = os.statvfs("/")
    used = (st.f_blocks - st.f_bfree) * st.f_frsize
    pct = used / (used + st.f_bavail * st.f_frsize) * 100
    assert value(real, "disk:/.used_pct") == pytest.approx(pct, abs=0.5)
    assert value(real, "disk:/.used_bytes") == pytest.approx(used, rel=0.01, abs=64 << 20)
    assert value(real, "disk:/.total_bytes") == st.f_blocks * st.f_frsize
    assert real.metric("disk:/.used_pct").unit == "%"  # type: ignore[union-attr]
    assert real.metric("disk:/.used_bytes").unit == "B"  # type: ignore[union-attr]
    if st.f_files > 0:
        iused = st.f_files - st.f_ffree
        assert value(real, "disk:/.inode_pct") == pytest.approx(iused / (iused + st.f_favail) * 100, abs=0.5)
    # No history in the context: no trend can be claimed.
    assert real.metric("disk:/.days_to_full") is None


def test_pseudo_file_systems_are_not_reported(real: CheckResult) -> None:
    disk_names = [m.name for m in real.metrics if m.name.startswith("disk:")]
    assert disk_names, "at least the root file system must be measured"
    pseudo = {"proc", "sysfs", "tmpfs", "devtmpfs", "devpts", "cgroup", "cgroup2"}
    mounted_pseudo = {p.mountpoint for p in psutil.disk_partitions(all=True) if p.fstype in pseudo}
    assert mounted_pseudo, "the test machine has no pseudo file systems to check against"
    for mp in mounted_pseudo:
        assert not any(n.startswith(f"disk:{mp}.") for n in disk_names), mp
    assert not any(n.startswith(("disk:/proc", "disk:/sys", "disk:/dev")) for n in disk_names)


def test_memory_matches_proc_meminfo(real: CheckResult) -> None:
    mi = meminfo()
    expected = (mi["MemTotal"] - mi["MemAvailable"]) / mi["MemTotal"] * 100
    assert value(real, "mem.pct") == pytest.approx(expected, abs=3)
    assert value(real, "mem.available_bytes") == pytest.approx(mi["MemAvailable"], rel=0.05, abs=256 << 20)
    if mi["SwapTotal"] == 0:
        assert value(real, "swap.pct") == 0
    else:
        swap = (mi["SwapTotal"] - mi["SwapFree"]) / mi["SwapTotal"] * 100
        assert value(real, "swap.pct") == pytest.approx(swap, abs=3)


def test_load_per_core_matches_getloadavg() -> None:
    cores = psutil.cpu_count(logical=True)
    before = os.getloadavg()
    result = Probe(Settings()).run(ctx())
    after = os.getloadavg()
    for i, name in enumerate(("load1", "load5", "load15")):
        lo, hi = sorted((before[i], after[i]))
        assert lo / cores - 0.01 <= value(result, f"{name}.per_core") <= hi / cores + 0.01, name


def test_summary_names_the_fullest_disk(real: CheckResult) -> None:
    fullest = max((m for m in real.metrics if m.name.endswith(".used_pct")), key=lambda m: m.value)
    mountpoint = fullest.name[len("disk:") : -len(".used_pct")]
    assert f"max disk {fullest.value:.0f}% ({mountpoint})" in real.summary
    assert f"mem {value(real, 'mem.pct'):.0f}%" in real.summary
    assert real.summary.startswith(f"CPU {value(real, 'cpu.pct'):.0f}%, load/core ")
    assert real.status is Status.OK


def test_cpu_pct_covers_the_time_since_the_previous_run() -> None:
    probe = Probe(Settings())
    t_start = time.monotonic()
    first = probe.run(ctx())
    # The first run has no previous sample and must measure its own window.
    assert first.duration_s >= 0.2
    assert 0 <= value(first, "cpu.pct") <= 100

    # Burn CPU in a child between the runs, then measure exactly what it used.
    child = subprocess.Popen(
        [sys.executable, "-c", "import time\nt=time.process_time()\nwhile time.process_time()-t<0.6: pass"]
    )
    _, _, usage = os.wait4(child.pid, 0)
    child.returncode = 0  # reaped by wait4; stop Popen from waiting again
    child_cpu = usage.ru_utime + usage.ru_stime

    second = probe.run(ctx())
    window = time.monotonic() - t_start
    cores = psutil.cpu_count(logical=True)
    # All of the child's CPU time lies between the two samples, which lie inside `window`;
    # a fresh 0.2 s sample taken after the child exited would miss it.
    floor = child_cpu / (window * cores) * 100
    assert value(second, "cpu.pct") >= floor * 0.9 - 1
    assert value(second, "cpu.pct") <= 100


# --- processes ----------------------------------------------------------------------------


@pytest.fixture
def marker() -> Iterator[str]:
    yield f"sentinel-test-{uuid.uuid4().hex}"


def _start_sleeper(marker: str) -> subprocess.Popen[bytes]:
    # argv[0] carries the marker while the binary stays `sleep`.
    return subprocess.Popen([marker, "60"], executable=shutil.which("sleep") or "/bin/sleep")


@pytest.fixture
def sleepers(marker: str) -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for p in procs:
        p.kill()
        p.wait(timeout=5)


def test_running_process_found_by_command_line(marker: str, sleepers: list[subprocess.Popen[bytes]]) -> None:
    sleepers += [_start_sleeper(marker), _start_sleeper(marker)]
    # Plain settings, as in the daemon: process specs are read as attributes only.
    probe = Probe(Settings(processes=[ProcessSpec(name="pacs-sleeper", match=marker, min=2)]))
    result = probe.run(ctx())
    assert value(result, "proc:pacs-sleeper.count") == 2
    assert result.status is Status.OK
    assert result.details["processes"] == {"pacs-sleeper": 2}

    sleepers[0].kill()
    sleepers[0].wait(timeout=5)
    result = probe.run(ctx())
    assert value(result, "proc:pacs-sleeper.count") == 1
    assert result.status is Status.CRIT
    assert "process pacs-sleeper too few running (1 < 2)" in result.summary


def test_missing_process_is_crit_and_named(marker: str) -> None:
    settings = Settings(processes=[ProcessSpec(name="oracle-listener", match=marker)])
    result = Probe(settings).run(ctx())
    assert result.status is Status.CRIT
    assert result.summary.startswith("process oracle-listener not running (0 < 1)")
    assert value(result, "proc:oracle-listener.count") == 0
    # Thresholds applied afterwards must not hide the process failure.
    assert apply_thresholds(result, DEFAULT_THRESHOLDS).status is Status.CRIT


def test_default_match_is_the_exact_process_name(
    marker: str, sleepers: list[subprocess.Popen[bytes]]
) -> None:
    sleepers.append(_start_sleeper(marker))
    name = psutil.Process(sleepers[0].pid).name()
    assert name == "sleep"
    exact = sum(
        1
        for p in psutil.process_iter(["name", "status"])
        if p.info["name"] == "sleep" and p.info["status"] != psutil.STATUS_ZOMBIE
    )
    settings = Settings(processes=[ProcessSpec(name="sleep"), ProcessSpec(name="slee", min=0)])
    probe = Probe(settings)
    result = probe.run(ctx())
    # Other `sleep` processes may come and go on the machine; ours must be counted.
    assert 1 <= value(result, "proc:sleep.count") <= exact + 5
    assert value(result, "proc:slee.count") == 0
    assert result.status is Status.OK


# --- uptime -------------------------------------------------------------------------------


def test_uptime_from_context_clock() -> None:
    boot = psutil.boot_time()
    probe = Probe(Settings())
    result = probe.run(ctx(clock=lambda: boot + 2 * 3600 + 125))
    assert value(result, "uptime.s") == pytest.approx(2 * 3600 + 125, abs=0.1)
    assert "rebooted 2 h ago" in result.summary
    assert result.details["boot_time"] == datetime.fromtimestamp(boot, UTC).isoformat()
    assert result.started_at == datetime.fromtimestamp(boot + 2 * 3600 + 125, UTC)
    assert result.status is Status.OK

    result = probe.run(ctx(clock=lambda: boot + 20 * 60))
    assert "rebooted 20 min ago" in result.summary

    result = probe.run(ctx(clock=lambda: boot + 3 * DAY))
    assert value(result, "uptime.s") == pytest.approx(3 * DAY, abs=0.1)
    assert "rebooted" not in result.summary


# --- days to full -------------------------------------------------------------------------


def test_days_to_full_on_root_from_synthetic_history() -> None:
    now = time.time()
    st = os.statvfs("/")
    used = (st.f_blocks - st.f_bfree) * st.f_frsize
    headroom = st.f_bavail * st.f_frsize
    # Two days of hourly samples rising 1 GiB/day up to today's usage.
    history = {"disk:/.used_bytes": [(now - h * 3600.0, used - h / 24 * GIB) for h in range(48, 0, -1)]}
    result = Probe(Settings()).run(ctx(history=history, clock=lambda: now))
    assert value(result, "disk:/.days_to_full") == pytest.approx(headroom / GIB, rel=0.01)
    assert result.metric("disk:/.days_to_full").unit == "d"  # type: ignore[union-attr]


class _FakeDisk:
    """One xfs mount at /data: 100 GiB usable, 5 GiB reserved for root."""

    def __init__(self, used_gib: float) -> None:
        self.used_gib = used_gib

    def partitions(self) -> list[Part]:
        return [Part("/dev/sdb1", "/data", "xfs")]

    def statvfs(self, path: str) -> os.statvfs_result:
        assert path == "/data"
        blocks_per_gib = GIB // 4096
        total = 105 * blocks_per_gib
        used = int(self.used_gib * blocks_per_gib)
        return fake_st(total, total - used, total - used - 5 * blocks_per_gib)


def _rising(now: float, used_gib: float, hours: int) -> list[tuple[float, float]]:
    return [(now - h * 3600.0, (used_gib - h / 24) * GIB) for h in range(hours, 0, -1)]


def test_days_to_full_exact_with_injected_disk() -> None:
    disk = _FakeDisk(40)
    probe = Probe(Settings(), statvfs=disk.statvfs, partitions=disk.partitions)
    now = 1.8e9
    result = probe.run(ctx(history={"disk:/data.used_bytes": _rising(now, 40, 72)}, clock=lambda: now))
    # (100 - 40) GiB usable headroom at 1 GiB/day; the 5 GiB root reserve is not headroom.
    assert value(result, "disk:/data.days_to_full") == pytest.approx(60, rel=0.01)
    assert value(result, "disk:/data.used_pct") == pytest.approx(40.0)
    assert value(result, "disk:/data.total_bytes") == 105 * GIB
    assert value(result, "disk:/data.inode_pct") == pytest.approx(10.0)


def test_days_to_full_absent_when_shrinking_or_too_short() -> None:
    disk = _FakeDisk(40)
    now = 1.8e9
    shrinking = [(now - h * 3600.0, (40 + h / 24) * GIB) for h in range(72, 0, -1)]
    probe = Probe(Settings(), statvfs=disk.statvfs, partitions=disk.partitions)
    result = probe.run(ctx(history={"disk:/data.used_bytes": shrinking}, clock=lambda: now))
    assert result.metric("disk:/data.days_to_full") is None

    # 12 h of history is below a configured minimum span of one day.
    probe = Probe(Settings(trend_min_span="1d"), statvfs=disk.statvfs, partitions=disk.partitions)
    result = probe.run(ctx(history={"disk:/data.used_bytes": _rising(now, 40, 12)}, clock=lambda: now))
    assert result.metric("disk:/data.days_to_full") is None
    result = probe.run(ctx(history={"disk:/data.used_bytes": _rising(now, 40, 30)}, clock=lambda: now))
    assert value(result, "disk:/data.days_to_full") == pytest.approx(60, rel=0.01)


def test_default_thresholds_judge_a_filling_disk() -> None:
    disk = _FakeDisk(96)
    now = 1.8e9
    probe = Probe(Settings(), statvfs=disk.statvfs, partitions=disk.partitions)
    result = probe.run(ctx(history={"disk:/data.used_bytes": _rising(now, 96, 48)}, clock=lambda: now))
    assert result.status is Status.OK  # the probe leaves metric thresholds to the agent
    judged = apply_thresholds(result, DEFAULT_THRESHOLDS)
    assert judged.status is Status.CRIT
    assert "disk:/data.used_pct=96% ≥ 95%" in judged.summary
    assert "disk:/data.days_to_full=4d ≤ 7d" in judged.summary


# --- mount selection ----------------------------------------------------------------------


TABLE = [
    Part("proc", "/proc", "proc"),
    Part("sysfs", "/sys", "sysfs"),
    Part("overlay", "/", "overlay"),
    Part("overlay", "/var/lib/docker/overlay2/abc/merged", "overlay"),
    Part("/dev/sda1", "/var", "ext4"),
    Part("/dev/sda1", "/etc/hosts", "ext4"),
    Part("/dev/loop3", "/snap/core/1", "squashfs"),
    Part("tmpfs", "/run", "tmpfs"),
    Part("cgroup2", "/sys/fs/cgroup", "cgroup2"),
    Part("pacs:/export/images", "/mnt/pacs", "nfs4"),
    Part("//fs01/scans", "/mnt/scans", "cifs"),
    Part("/dev/sdb1", "/data", "xfs"),
    Part("none", "/x1", "ext4"),
    Part("none", "/x2", "ext4"),
]


def test_select_mounts_keeps_real_file_systems_once() -> None:
    got = [m.mountpoint for m in select_mounts(TABLE)]
    assert got == ["/", "/data", "/mnt/pacs", "/mnt/scans", "/var", "/x1", "/x2"]


def test_select_mounts_globs() -> None:
    assert [m.mountpoint for m in select_mounts(TABLE, include=["/mnt/*"])] == ["/mnt/pacs", "/mnt/scans"]
    got = [m.mountpoint for m in select_mounts(TABLE, exclude=["/mnt/*", "/x?"])]
    assert got == ["/", "/data", "/var"]
    # Excluding a file system does not let one of its bind mounts stand in for it.
    assert "/etc/hosts" not in [m.mountpoint for m in select_mounts(TABLE, exclude=["/var"])]


def test_a_remount_on_the_same_mount_point_replaces_the_earlier_one() -> None:
    table = [Part("/dev/sda1", "/srv", "ext4"), Part("tmpfs", "/srv", "tmpfs")]
    assert select_mounts(table) == []


# --- hung statvfs -------------------------------------------------------------------------


class HangingStatvfs:
    """statvfs that blocks on /mnt/nfs until released and counts its calls per path."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls: dict[str, int] = {}
        self._lock = threading.Lock()

    def __call__(self, path: str) -> os.statvfs_result:
        with self._lock:
            self.calls[path] = self.calls.get(path, 0) + 1
        if path == "/mnt/nfs":
            self.release.wait(30)
        return fake_st(1000, 400, 300)

    @staticmethod
    def partitions() -> list[Part]:
        return [
            Part("/dev/sda1", "/", "ext4"),
            Part("srv:/e", "/mnt/nfs", "nfs"),
            Part("/dev/sdb1", "/data", "xfs"),
        ]


def _statvfs_threads(mountpoint: str) -> int:
    # By exact name: threads of finished calls may linger for a moment after answering.
    return sum(1 for t in threading.enumerate() if t.name == f"sentinel-statvfs {mountpoint}")


@pytest.fixture
def hanging() -> Iterator[HangingStatvfs]:
    fs = HangingStatvfs()
    yield fs
    fs.release.set()  # let the daemon thread finish even when the test failed


def test_hung_statvfs_is_bounded_and_recovers(hanging: HangingStatvfs) -> None:
    timeout = 0.5
    probe = Probe(Settings(disk_timeout=timeout), statvfs=hanging, partitions=hanging.partitions)

    for attempt in range(2):
        t0 = time.monotonic()
        result = probe.run(ctx())
        elapsed = time.monotonic() - t0
        assert timeout <= elapsed < timeout + 1.5, attempt
        assert result.status is Status.UNKNOWN
        assert "statvfs timed out: /mnt/nfs" in result.summary
        assert list(result.details["statvfs_timed_out"]) == ["/mnt/nfs"]
        assert result.details["mounts"]["/mnt/nfs"]["error"] == "statvfs timed out"
        assert result.metric("disk:/mnt/nfs.used_pct") is None
        # The healthy mounts still report.
        # df's formula: used / (used + available to users).
        assert value(result, "disk:/.used_pct") == pytest.approx(600 / (600 + 300) * 100, abs=0.01)
        assert value(result, "disk:/data.used_pct") > 0
        # One call for the hung mount, however many runs: no thread pile-up.
        assert hanging.calls["/mnt/nfs"] == 1
        assert hanging.calls["/"] == attempt + 1
        assert _statvfs_threads("/mnt/nfs") == 1

    hanging.release.set()
    result = probe.run(ctx())
    assert result.status is Status.OK
    assert value(result, "disk:/mnt/nfs.used_pct") > 0
    assert "statvfs timed out" not in result.summary
    assert hanging.calls["/mnt/nfs"] == 1  # the pending call's answer was used

    result = probe.run(ctx())
    assert hanging.calls["/mnt/nfs"] == 2
    assert value(result, "disk:/mnt/nfs.used_pct") > 0


def test_statvfs_error_is_reported_not_raised() -> None:
    def broken(path: str) -> os.statvfs_result:
        if path == "/mnt/nfs":
            raise OSError(116, "Stale file handle")
        return fake_st(1000, 400, 300)

    probe = Probe(Settings(), statvfs=broken, partitions=HangingStatvfs.partitions)
    result = probe.run(ctx())
    assert result.status is Status.UNKNOWN
    assert "statvfs failed: /mnt/nfs (Stale file handle)" in result.summary
    assert value(result, "disk:/data.used_pct") > 0


def test_unexpected_failure_becomes_unknown() -> None:
    def no_table() -> list[Part]:
        raise RuntimeError("mount table exploded")

    result = Probe(Settings(), partitions=no_table).run(ctx())
    assert result.status is Status.UNKNOWN
    assert "mount table exploded" in result.summary


# --- settings and registry ----------------------------------------------------------------


def test_registry_and_settings_validation() -> None:
    model = registry.spec("host").settings
    assert model is Settings
    s = model.model_validate(
        {
            "processes": [{"name": "his-app", "match": "java -jar his"}],
            "disk_timeout": "500ms",
            "trend_min_span": "2h",
        }
    )
    assert isinstance(s, Settings)
    assert s.disk_timeout == 0.5 and s.trend_min_span == 7200
    assert s.processes[0].min == 1
    assert dict(registry.spec("host").default_thresholds) == DEFAULT_THRESHOLDS
    assert registry.spec("host").probe is Probe
    for bad in (
        {"disk_timeout": 0},
        {"bogus": 1},
        {"processes": [{"name": "a"}, {"name": "a", "match": "x"}]},
        {"processes": [{"name": "a", "min": -1}]},
        {"processes": [{"name": ""}]},
    ):
        with pytest.raises(ValidationError):
            model.model_validate(bad)
