"""Local host probe: CPU, load, memory, swap, disks, required processes, uptime.

psutil only and no subprocesses: it runs every 30-60 s inside a daemon that must stay small.
Disk figures follow df's formulas so they match what engineers see on the console.
"""

from __future__ import annotations

import errno
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from typing import Any, ClassVar, Protocol

import psutil

from probes.base import CheckResult, Metric, ProbeContext, Status, Stopwatch, worst
from probes.boundary import run_guarded
from probes.host.settings import Settings
from probes.thresholds import Threshold
from probes.trend import days_until_full

CPU_FIRST_SAMPLE_S = 0.2

# File systems that hold no user data or cannot fill up in a way an admin acts on.
# overlay is handled separately: it is the root file system inside containers.
PSEUDO_FSTYPES: frozenset[str] = frozenset(
    {
        "proc", "sysfs", "tmpfs", "devtmpfs", "devpts", "devfs", "mqueue", "debugfs", "tracefs",
        "securityfs", "pstore", "bpf", "autofs", "fusectl", "configfs", "binfmt_misc", "nsfs",
        "ramfs", "hugetlbfs", "cgroup", "cgroup2", "squashfs", "efivarfs", "selinuxfs",
        "rpc_pipefs", "nfsd", "rootfs", "aufs", "overlay", "iso9660", "udf", "fuse.lxcfs",
        "fuse.gvfsd-fuse", "fuse.portal", "fuse.snapfuse", "fuse.gvfs-fuse-daemon", "shm",
        "cpuset", "zsmalloc", "ipathfs", "sockfs", "pipefs", "anon_inodefs",
    }
)  # fmt: skip

# Errors that mean "nothing to measure here", not "the mount is broken": the mount vanished
# between reading the mount table and the call, or it belongs to another user (FUSE).
_IGNORED_ERRNOS = frozenset({errno.ENOENT, errno.EACCES, errno.EPERM, errno.ENOTDIR})


HISTORY_METRICS = ("disk:*.used_bytes",)
"""Metric history the agent hands in (ctx.history) for growth and days until full."""

DEFAULT_THRESHOLDS: dict[str, Threshold] = {
    "cpu.pct": Threshold(warn=85, crit=95),
    "load5.per_core": Threshold(warn=2, crit=4),
    "mem.pct": Threshold(warn=90, crit=95),
    "swap.pct": Threshold(warn=50, crit=80),
    "disk:*.used_pct": Threshold(warn=85, crit=95),
    "disk:*.inode_pct": Threshold(warn=85, crit=95),
    "disk:*.days_to_full": Threshold(warn=30, crit=7, below=True),
}


class PartitionLike(Protocol):
    """What the probe needs from a mount table entry (psutil's sdiskpart has it)."""

    @property
    def device(self) -> str: ...
    @property
    def mountpoint(self) -> str: ...
    @property
    def fstype(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Mount:
    device: str
    mountpoint: str
    fstype: str


def select_mounts(
    partitions: Iterable[PartitionLike],
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
) -> list[Mount]:
    """Real mounts worth measuring, one per file system, filtered by the globs.

    A mount point listed twice keeps its last entry (the one stacked on top, which is what
    statvfs sees). Bind mounts share their device; the shortest mount point stands for the
    file system so "/" wins over "/etc/hosts" in a container. Globs apply after that, so
    excluding "/" drops the file system rather than promoting one of its bind mounts.
    """
    by_mountpoint: dict[str, Mount] = {}
    for p in partitions:
        by_mountpoint[p.mountpoint] = Mount(p.device, p.mountpoint, p.fstype)
    by_device: dict[str, Mount] = {}
    for m in by_mountpoint.values():
        fstype = m.fstype.lower()
        if fstype in PSEUDO_FSTYPES and not (fstype == "overlay" and m.mountpoint == "/"):
            continue
        # "none" or no device says nothing about identity: do not merge such mounts.
        key = m.device if m.device not in ("", "none") else f"\0{m.mountpoint}"
        kept = by_device.get(key)
        if kept is None or len(m.mountpoint) < len(kept.mountpoint):
            by_device[key] = m
    selected = [
        m
        for m in by_device.values()
        if (not include or any(fnmatchcase(m.mountpoint, g) for g in include))
        and not any(fnmatchcase(m.mountpoint, g) for g in exclude)
    ]
    return sorted(selected, key=lambda m: m.mountpoint)


class _StatvfsCall:
    """One statvfs call in a daemon thread.

    Daemon, not a ThreadPoolExecutor: a call stuck on a dead NFS server may never return,
    and executor workers are joined at interpreter exit, which would hang the shutdown.
    """

    __slots__ = ("mountpoint", "started", "done", "result", "error")

    def __init__(self, statvfs: Callable[[str], os.statvfs_result], mountpoint: str) -> None:
        self.mountpoint = mountpoint
        self.started = time.monotonic()
        self.done = threading.Event()
        self.result: os.statvfs_result | None = None
        self.error: BaseException | None = None
        threading.Thread(
            target=self._run, args=(statvfs,), name=f"sentinel-statvfs {mountpoint}", daemon=True
        ).start()

    def _run(self, statvfs: Callable[[str], os.statvfs_result]) -> None:
        try:
            self.result = statvfs(self.mountpoint)
        except Exception as exc:  # noqa: BLE001 - handed to run(), which turns it into a note
            self.error = exc
        finally:
            self.done.set()


@dataclass(slots=True)
class _DiskReport:
    metrics: list[Metric]
    measured: dict[str, float]  # mount point -> used pct
    timed_out: dict[str, float]  # mount point -> seconds the call has been pending
    failed: dict[str, str]  # mount point -> error text
    mounts: dict[str, dict[str, Any]]


class Probe:
    kind: ClassVar[str] = "host"

    def __init__(
        self,
        settings: Settings,
        statvfs: Callable[[str], os.statvfs_result] | None = None,
        partitions: Callable[[], Iterable[PartitionLike]] | None = None,
    ) -> None:
        """`statvfs` and `partitions` exist for tests; production uses os and psutil."""
        self._settings = settings
        self._statvfs = statvfs if statvfs is not None else os.statvfs
        self._partitions = partitions if partitions is not None else _all_partitions
        self._prev_cpu: tuple[float, float] | None = None
        # At most one call per mount point is ever outstanding; a hung one is adopted by the
        # next run instead of starting another thread that would hang as well.
        self._calls: dict[str, _StatvfsCall] = {}
        self._self_pid = os.getpid()

    def run(self, ctx: ProbeContext) -> CheckResult:
        return run_guarded(ctx, "host probe failed", lambda sw: self._run(ctx, sw))

    def _run(self, ctx: ProbeContext, sw: Stopwatch) -> CheckResult:
        metrics: list[Metric] = []
        problems: list[tuple[Status, str]] = []
        details: dict[str, Any] = {}
        errors: list[str] = []

        # Disk calls go first so their threads run while the CPU is being sampled.
        budget = max(min(self._settings.disk_timeout, ctx.timeout_s - 0.5), 0.05)
        mounts, pending = self._start_disk_calls(errors)
        deadline = time.monotonic() + budget

        cpu = self._cpu_pct(errors)
        if cpu is not None:
            metrics.append(Metric("cpu.pct", round(cpu, 2), "%"))

        load5 = self._load(metrics, errors)
        mem_pct, swap_pct = self._memory(metrics, errors)
        uptime_note = self._uptime(ctx, metrics, details, errors)

        if self._settings.processes:
            self._processes(metrics, problems, details, errors)

        disk = self._collect_disk(ctx, mounts, pending, deadline)
        metrics.extend(disk.metrics)
        details["mounts"] = disk.mounts
        if disk.timed_out:
            details["statvfs_timed_out"] = {mp: round(s, 1) for mp, s in disk.timed_out.items()}
            problems.append((Status.UNKNOWN, f"statvfs timed out: {', '.join(disk.timed_out)}"))
        if disk.failed:
            details["statvfs_failed"] = disk.failed
            failed = ", ".join(f"{mp} ({e})" for mp, e in disk.failed.items())
            problems.append((Status.UNKNOWN, f"statvfs failed: {failed}"))
        if errors:
            details["errors"] = errors
            problems.append((Status.UNKNOWN, "; ".join(errors)))

        # The summary shows the figures exactly as stored (rounded to 2 places first), so the
        # text and the metric never disagree on a value like 2.5 %.
        parts: list[str] = []
        if cpu is not None:
            parts.append(f"CPU {round(cpu, 2):.0f}%")
        if load5 is not None:
            parts.append(f"load/core {load5:.2f}")
        if mem_pct is not None:
            parts.append(f"mem {round(mem_pct, 2):.0f}%")
        if swap_pct is not None:
            parts.append(f"swap {round(swap_pct, 2):.0f}%")
        n = len(disk.mounts)
        parts.append(f"{n} mount{'' if n == 1 else 's'}")
        if disk.measured:
            top = max(disk.measured, key=lambda mp: disk.measured[mp])
            parts.append(f"max disk {round(disk.measured[top], 2):.0f}% ({top})")
        if uptime_note:
            parts.append(uptime_note)
        summary = ", ".join(parts)
        status = worst(Status.OK, *(s for s, _ in problems))
        if problems:
            # The cause goes first: notifications are often cut after one line.
            ordered = sorted(problems, key=lambda p: p[0] != Status.CRIT)
            summary = "; ".join(text for _, text in ordered) + " | " + summary
        return sw.result(status, summary, metrics, details)

    # --- CPU, load, memory, uptime -------------------------------------------------------

    def _cpu_pct(self, errors: list[str]) -> float | None:
        try:
            now = _busy_total(psutil.cpu_times())
            prev = self._prev_cpu
            if prev is None or now[1] - prev[1] <= 0:
                # First run, or called again within one clock tick: measure a short window.
                prev = now
                time.sleep(CPU_FIRST_SAMPLE_S)
                now = _busy_total(psutil.cpu_times())
        except (psutil.Error, OSError) as exc:
            errors.append(f"cpu times unreadable: {exc}")
            return None
        self._prev_cpu = now
        d_total = now[1] - prev[1]
        if d_total <= 0:
            return None
        # Counters can step back slightly on some kernels; a percentage outside 0-100 is noise.
        return min(max((now[0] - prev[0]) / d_total * 100.0, 0.0), 100.0)

    def _load(self, metrics: list[Metric], errors: list[str]) -> float | None:
        try:
            loads = os.getloadavg()
        except (OSError, AttributeError) as exc:
            errors.append(f"load average unreadable: {exc}")
            return None
        # Load counts runnable tasks host-wide, so divide by the host's logical CPUs.
        cores = psutil.cpu_count(logical=True) or os.cpu_count() or 1
        per_core = [round(v / cores, 3) for v in loads]
        for label, v in zip(("load1", "load5", "load15"), per_core, strict=True):
            metrics.append(Metric(f"{label}.per_core", v, ""))
        return per_core[1]

    def _memory(self, metrics: list[Metric], errors: list[str]) -> tuple[float | None, float | None]:
        mem_pct: float | None = None
        swap_pct: float | None = None
        try:
            vm = psutil.virtual_memory()
            mem_pct = float(vm.percent)
            metrics.append(Metric("mem.pct", round(mem_pct, 2), "%"))
            metrics.append(Metric("mem.available_bytes", float(vm.available), "B"))
        except (psutil.Error, OSError) as exc:
            errors.append(f"memory unreadable: {exc}")
        try:
            sw = psutil.swap_memory()
            swap_pct = float(sw.percent) if sw.total > 0 else 0.0
            metrics.append(Metric("swap.pct", round(swap_pct, 2), "%"))
        except (psutil.Error, OSError) as exc:
            errors.append(f"swap unreadable: {exc}")
        return mem_pct, swap_pct

    def _uptime(
        self, ctx: ProbeContext, metrics: list[Metric], details: dict[str, Any], errors: list[str]
    ) -> str | None:
        try:
            boot = psutil.boot_time()
        except (psutil.Error, OSError) as exc:
            errors.append(f"boot time unreadable: {exc}")
            return None
        # A clock set back below boot time would give a negative uptime; 0 is the honest floor.
        uptime = max(ctx.clock() - boot, 0.0)
        metrics.append(Metric("uptime.s", round(uptime, 1), "s"))
        details["boot_time"] = datetime.fromtimestamp(boot, UTC).isoformat()
        if uptime >= 86400:
            return None
        if uptime < 3600:
            return f"rebooted {int(uptime // 60)} min ago"
        return f"rebooted {int(uptime // 3600)} h ago"

    # --- processes ----------------------------------------------------------------------

    def _processes(
        self,
        metrics: list[Metric],
        problems: list[tuple[Status, str]],
        details: dict[str, Any],
        errors: list[str],
    ) -> None:
        specs = self._settings.processes
        # Reading every command line costs a file read per process; skip it when unused.
        attrs = ["name", "status"] + (["cmdline"] if any(s.match for s in specs) else [])
        counts = dict.fromkeys((s.name for s in specs), 0)
        try:
            for proc in psutil.process_iter(attrs):
                info = proc.info
                if proc.pid == self._self_pid or info.get("status") == psutil.STATUS_ZOMBIE:
                    continue
                name = info.get("name") or ""
                cmdline = " ".join(info.get("cmdline") or ()) if "cmdline" in attrs else ""
                for s in specs:
                    if (s.match in cmdline) if s.match else (name == s.name):
                        counts[s.name] += 1
        except (psutil.Error, OSError) as exc:
            errors.append(f"process list unreadable: {exc}")
            return
        details["processes"] = counts
        for s in specs:
            metrics.append(Metric(f"proc:{s.name}.count", float(counts[s.name]), ""))
            if counts[s.name] < s.min:
                verb = "not running" if counts[s.name] == 0 else "too few running"
                problems.append((Status.CRIT, f"process {s.name} {verb} ({counts[s.name]} < {s.min})"))

    # --- disks --------------------------------------------------------------------------

    def _start_disk_calls(self, errors: list[str]) -> tuple[list[Mount], dict[str, _StatvfsCall]]:
        try:
            s = self._settings
            mounts = select_mounts(self._partitions(), s.include_mounts, s.exclude_mounts)
        except (psutil.Error, OSError) as exc:
            errors.append(f"mount table unreadable: {exc}")
            return [], {}
        current = {m.mountpoint for m in mounts}
        # Forget finished calls of mounts that are gone; unfinished ones stay so that a mount
        # that reappears does not get a second thread.
        for mp in [mp for mp, c in self._calls.items() if mp not in current and c.done.is_set()]:
            del self._calls[mp]
        pending: dict[str, _StatvfsCall] = {}
        for m in mounts:
            call = self._calls.get(m.mountpoint)
            if call is None:
                call = _StatvfsCall(self._statvfs, m.mountpoint)
                self._calls[m.mountpoint] = call
            pending[m.mountpoint] = call
        return mounts, pending

    def _collect_disk(
        self, ctx: ProbeContext, mounts: list[Mount], pending: dict[str, _StatvfsCall], deadline: float
    ) -> _DiskReport:
        report = _DiskReport([], {}, {}, {}, {})
        now = ctx.clock()
        for m in mounts:
            mp = m.mountpoint
            call = pending[mp]
            if not call.done.wait(max(deadline - time.monotonic(), 0.0)):
                report.timed_out[mp] = time.monotonic() - call.started
                report.mounts[mp] = {"device": m.device, "fstype": m.fstype, "error": "statvfs timed out"}
                continue
            del self._calls[mp]
            if call.error is not None or call.result is None:
                err = call.error
                if isinstance(err, OSError) and err.errno in _IGNORED_ERRNOS:
                    continue
                text = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
                report.failed[mp] = text
                report.mounts[mp] = {"device": m.device, "fstype": m.fstype, "error": text}
                continue
            st = call.result
            if st.f_blocks == 0:
                # No blocks: a pseudo file system our type list does not know yet.
                continue
            report.mounts[mp] = {"device": m.device, "fstype": m.fstype}
            self._disk_metrics(ctx, mp, st, now, report)
        return report

    def _disk_metrics(
        self, ctx: ProbeContext, mp: str, st: os.statvfs_result, now: float, report: _DiskReport
    ) -> None:
        # df's formulas: root-reserved blocks count as neither used nor available, so a disk
        # is "100 %" when ordinary users can no longer write, which is when applications fail.
        used = (st.f_blocks - st.f_bfree) * st.f_frsize
        avail = st.f_bavail * st.f_frsize
        capacity = used + avail
        pct = used / capacity * 100.0 if capacity > 0 else 0.0
        prefix = f"disk:{mp}"
        report.metrics += [
            Metric(f"{prefix}.used_pct", round(pct, 2), "%"),
            Metric(f"{prefix}.used_bytes", float(used), "B"),
            Metric(f"{prefix}.total_bytes", float(st.f_blocks * st.f_frsize), "B"),
        ]
        report.measured[mp] = pct
        if st.f_files > 0:
            iused = st.f_files - st.f_ffree
            denom = iused + st.f_favail
            ipct = iused / denom * 100.0 if denom > 0 else 0.0
            report.metrics.append(Metric(f"{prefix}.inode_pct", round(ipct, 2), "%"))
        history = ctx.history.get(f"{prefix}.used_bytes", ())
        samples = [*history, (now, float(used))]
        days = days_until_full(samples, float(used), float(capacity), self._settings.trend_min_span)
        if days is not None and math.isfinite(days):
            report.metrics.append(Metric(f"{prefix}.days_to_full", round(days, 2), "d"))


def _busy_total(t: Any) -> tuple[float, float]:
    """(busy, total) CPU seconds, the way psutil.cpu_percent counts them.

    guest time is already included in user/nice on Linux; iowait counts as idle.
    """
    total = sum(t) - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0)
    busy = total - t.idle - getattr(t, "iowait", 0.0)
    return busy, total


def _all_partitions() -> list[PartitionLike]:
    # all=True: psutil's default drops every "nodev" type, which includes NFS, CIFS and
    # overlay, exactly the mounts that matter (or hang) most.
    return list(psutil.disk_partitions(all=True))
