"""Remote Linux host over SSH: the figures of the local `host` probe, without an agent there.

One connection and one read-only POSIX sh script per run (no remote Python, nothing written):
`date`, `/proc/stat` twice `cpu_sample` apart, `/proc/loadavg`, `/proc/meminfo`,
`/proc/uptime`, `/proc/mounts`, `df -Pak` and `df -Paik` (under `timeout` when the host has
it, so one hung NFS mount cannot stall the script), and the process table when processes are
configured. Metric names and formulas are the host probe's, so reports treat both alike:
disk figures follow df (root-reserved blocks count as neither used nor available), memory
is (MemTotal - MemAvailable) / MemTotal like psutil, CPU counts iowait as idle.

Clock offset: the remote `date +%s.%N` is printed first; its arrival time and the time the
command was sent bracket it, and the midpoint (half the round trip) stands for the moment the
remote clock was read. `clock.offset_s` > 0 means the remote clock is ahead of the agent's.
"""

from __future__ import annotations

import math
import re
import shlex
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

from probes.base import CheckResult, Metric, ProbeContext, Status, Stopwatch, worst
from probes.boundary import crash_text
from probes.host import probe as host
from probes.host.probe import Mount, select_mounts
from probes.host.settings import ProcessSpec
from probes.ssh.conn import CommandResult, SshError, ssh_session
from probes.ssh_host.settings import Settings
from probes.thresholds import Threshold
from probes.trend import days_until_full

HISTORY_METRICS = host.HISTORY_METRICS

DEFAULT_THRESHOLDS: dict[str, Threshold] = {
    **host.DEFAULT_THRESHOLDS,
    "clock.abs_offset_s": Threshold(warn=5, crit=60),
}

_MARK = "@@"
_OUTPUT_LIMIT = 4 << 20
"""A host with many mounts and processes prints a few hundred KiB at most."""


# --- the remote script ---------------------------------------------------------------------------


def build_script(settings: Settings) -> str:
    """A single-line POSIX sh script (single line so any login shell can pass it to sh -c)."""
    dft = max(int(math.ceil(settings.disk_timeout)), 1)
    sample = f"{settings.cpu_sample:.2f}"
    parts = [
        "LC_ALL=C",
        "export LC_ALL",
        f'echo "{_MARK}clock $(date +%s.%N)"',
        f"echo {_MARK}stat1",
        "head -n 1 /proc/stat",
        f"echo {_MARK}nproc",
        "getconf _NPROCESSORS_ONLN 2>/dev/null || grep -c '^processor' /proc/cpuinfo",
        f"echo {_MARK}loadavg",
        "cat /proc/loadavg",
        f"echo {_MARK}meminfo",
        "cat /proc/meminfo",
        f"echo {_MARK}uptime",
        "cat /proc/uptime",
        f"echo {_MARK}mounts",
        "cat /proc/mounts",
        # timeout(1) where present: df blocks on a dead NFS server like statvfs does.
        f"T=; command -v timeout >/dev/null 2>&1 && T='timeout {dft}'",
        f"echo {_MARK}df",
        "$T df -Pak 2>&1",
        f'echo "{_MARK}rc $?"',
        f"echo {_MARK}dfi",
        "$T df -Paik 2>&1",
        f'echo "{_MARK}rc $?"',
    ]
    if settings.processes:
        parts += [
            f'echo "{_MARK}self $$"',
            f"echo {_MARK}procs",
            # read is a builtin: one line per process without a fork per process.
            'for d in /proc/[0-9]*; do read -r s 2>/dev/null <"$d/stat" && printf "%s\\n" "$s"; done',
        ]
        if any(p.match for p in settings.processes):
            parts += [f"echo {_MARK}args", "ps -eo pid=,args= 2>/dev/null"]
    parts += [
        f"sleep {sample} 2>/dev/null || sleep 1",
        f"echo {_MARK}stat2",
        "head -n 1 /proc/stat",
        f"echo {_MARK}end",
    ]
    return "; ".join(parts)


def split_sections(text: str) -> dict[str, list[str]]:
    """'@@name rest' lines start sections; the rest of the marker line is the section's first line."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith(_MARK):
            name, _, rest = line[len(_MARK) :].partition(" ")
            if name == "rc":
                # "@@rc N" closes the df section it follows.
                if current is not None:
                    current.append(line)
                continue
            current = sections.setdefault(name, [])
            if rest:
                current.append(rest)
        elif current is not None:
            current.append(line)
    return sections


# --- parsing (pure) ------------------------------------------------------------------------------


def cpu_busy_total(line: str) -> tuple[float, float]:
    """(busy, total) jiffies of a /proc/stat `cpu` line, counted like the host probe."""
    fields = [float(x) for x in line.split()[1:]]
    fields += [0.0] * (10 - len(fields))
    idle, iowait, guest, guest_nice = fields[3], fields[4], fields[8], fields[9]
    # guest time is already inside user/nice; iowait is idle time.
    total = sum(fields[:10]) - guest - guest_nice
    return total - idle - iowait, total


def parse_meminfo(lines: Sequence[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in lines:
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            out[key.strip()] = int(parts[0]) * (1024 if len(parts) > 1 and parts[1] == "kB" else 1)
    return out


_OCTAL = re.compile(r"\\([0-7]{3})")


def _unescape_mount(field: str) -> str:
    # /proc/mounts writes space, tab, newline and backslash as \040, \011, \012, \134.
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), field)


def parse_mounts(lines: Sequence[str]) -> list[Mount]:
    mounts: list[Mount] = []
    for line in lines:
        parts = line.split()
        if len(parts) >= 3:
            mounts.append(Mount(_unescape_mount(parts[0]), _unescape_mount(parts[1]), parts[2]))
    return mounts


@dataclass(frozen=True, slots=True)
class DfRow:
    total: int
    used: int
    avail: int


@dataclass(slots=True)
class DfTable:
    rows: dict[str, DfRow] = field(default_factory=dict)
    """Mount point -> figures (blocks scaled to bytes, or inode counts)."""
    errors: list[str] = field(default_factory=list)
    exit_code: int | None = None


_IGNORED_DF_ERRORS = ("Permission denied", "No such file or directory", "Not a directory")


def parse_df(lines: Sequence[str]) -> DfTable:
    """`df -P[i]` output, plus its own error lines (stderr was merged) and the `@@rc N` line."""
    table = DfTable()
    unit = 1
    for line in lines:
        if line.startswith(_MARK + "rc "):
            rc = line[len(_MARK) + 3 :].strip()
            table.exit_code = int(rc) if rc.lstrip("-").isdigit() else None
            continue
        if line.startswith(("df:", "timeout:")):
            if not any(s in line for s in _IGNORED_DF_ERRORS):
                table.errors.append(line.strip())
            continue
        parts = line.split(None, 5)
        if len(parts) < 6:
            continue
        if parts[0] == "Filesystem":
            m = re.match(r"(\d+)-blocks", parts[1])
            unit = int(m.group(1)) if m else 1
            continue
        try:
            total, used, avail = int(parts[1]), int(parts[2]), int(parts[3])
        except ValueError:
            continue  # "-" for file systems without the figure
        table.rows[parts[5]] = DfRow(total * unit, used * unit, avail * unit)
    return table


@dataclass(frozen=True, slots=True)
class ProcEntry:
    pid: int
    ppid: int
    state: str
    comm: str


def parse_proc_stat(lines: Sequence[str]) -> dict[int, ProcEntry]:
    procs: dict[int, ProcEntry] = {}
    for line in lines:
        # "pid (comm) S ppid ...": comm may hold spaces and ')', so split at the last ')'.
        open_, close = line.find("("), line.rfind(")")
        if open_ < 0 or close < open_:
            continue
        rest = line[close + 1 :].split()
        try:
            pid, ppid = int(line[:open_]), int(rest[1])
        except (ValueError, IndexError):
            continue
        procs[pid] = ProcEntry(pid, ppid, rest[0], line[open_ + 1 : close])
    return procs


_SSHD_NAMES = frozenset({"sshd", "sshd-session"})


def own_session_pids(procs: Mapping[int, ProcEntry], self_pid: int) -> set[int]:
    """The script's shell and its ancestors up to, not including, the sshd listener.

    The chain is shell (<- login shell) <- sshd user child <- sshd monitor <- listener;
    they exist only because the probe is logged in, so counting them would be wrong.
    The listener is the last of the consecutive sshd processes above the shell.
    """
    chain: list[ProcEntry] = []
    pid, seen = self_pid, set()
    while pid in procs and pid not in seen and pid > 1:
        seen.add(pid)
        chain.append(procs[pid])
        pid = procs[pid].ppid
    first_sshd = next((i for i, p in enumerate(chain) if p.comm in _SSHD_NAMES), None)
    if first_sshd is None:
        return {self_pid}
    last = first_sshd
    while last + 1 < len(chain) and chain[last + 1].comm in _SSHD_NAMES:
        last += 1
    if last == first_sshd:
        return {p.pid for p in chain[: last + 1]}  # no listener above (inetd-style start)
    return {p.pid for p in chain[:last]}


def count_processes(
    specs: Sequence[ProcessSpec], procs: Mapping[int, ProcEntry], args: Mapping[int, str], exclude: set[int]
) -> dict[str, int]:
    counts = dict.fromkeys((s.name for s in specs), 0)
    for p in procs.values():
        if p.pid in exclude or p.state == "Z":
            continue
        for s in specs:
            if s.match:
                hit = s.match in args.get(p.pid, "")
            else:
                # The kernel keeps 15 characters of the name; psutil completes it the same way.
                hit = p.comm == s.name or (len(p.comm) == 15 and s.name.startswith(p.comm))
            if hit:
                counts[s.name] += 1
    return counts


def parse_ps_args(lines: Sequence[str]) -> dict[int, str]:
    out: dict[int, str] = {}
    for line in lines:
        pid, _, args = line.strip().partition(" ")
        if pid.isdigit():
            out[int(pid)] = args.strip()
    return out


# --- the probe ---------------------------------------------------------------------------------


@dataclass(slots=True)
class _Report:
    metrics: list[Metric] = field(default_factory=list)
    problems: list[tuple[Status, str]] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    parts: list[str] = field(default_factory=list)


class Probe:
    kind: ClassVar[str] = "ssh_host"

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._command = shlex.join(["sh", "-c", build_script(settings)])

    def run(self, ctx: ProbeContext) -> CheckResult:
        sw = Stopwatch(ctx)
        try:
            return self._run(ctx, sw)
        except SshError as exc:
            return sw.result(exc.status, exc.message, details={"host": self._settings.ssh.where})
        except Exception as exc:  # noqa: BLE001 - a probe reports, it never raises into the scheduler
            return sw.result(Status.UNKNOWN, crash_text("ssh_host 探测出错", exc))

    def _run(self, ctx: ProbeContext, sw: Stopwatch) -> CheckResult:
        s = self._settings
        # A little of the budget is kept back to build the result after a late command.
        deadline = time.monotonic() + max(ctx.timeout_s - 0.2, 0.1)
        with ssh_session(s.ssh, ctx, deadline) as session:
            wall0, mono0 = ctx.clock(), time.monotonic()
            result = session.run(self._command, session.remaining(), _OUTPUT_LIMIT)
            reused = session.reused
        rep = _Report()
        rep.details["host"] = s.ssh.where
        rep.details["connection_reused"] = reused
        if result.timed_out:
            rep.problems.append((Status.UNKNOWN, f"远程命令在 {ctx.timeout_s:.0f} 秒内未完成"))
        text = result.stdout.decode("utf-8", "replace")
        sections = split_sections(text)
        if "end" not in sections and not result.timed_out:
            stderr = result.stderr.decode("utf-8", "replace").strip()[:300]
            rep.problems.append((Status.UNKNOWN, f"远程脚本未完整执行 (exit {result.exit_code}): {stderr}"))
        self._clock(ctx, sections, result, wall0, mono0, rep)
        self._cpu(sections, rep)
        self._memory(sections, rep)
        self._uptime(ctx, sections, rep)
        if s.processes:
            self._processes(sections, rep)
        self._disks(ctx, sections, rep)
        return self._finish(sw, rep)

    # --- sections ------------------------------------------------------------------------

    def _clock(
        self,
        ctx: ProbeContext,
        sections: dict[str, list[str]],
        result: CommandResult,
        wall0: float,
        mono0: float,
        rep: _Report,
    ) -> None:
        lines = sections.get("clock")
        if not lines or result.first_output_at is None:
            rep.errors.append("远程时间不可读")
            return
        try:
            remote = float(lines[0].strip())
        except ValueError:
            # busybox date has no %N: whole seconds still catch a clock that is minutes off.
            try:
                remote = float(lines[0].split(".")[0])
            except ValueError:
                rep.errors.append(f"远程时间无法解析: {lines[0][:40]!r}")
                return
        sent = wall0 + (result.sent_at - mono0)
        arrived = wall0 + (result.first_output_at - mono0)
        offset = remote - (sent + arrived) / 2.0
        rep.metrics.append(Metric("clock.offset_s", round(offset, 3), "s"))
        rep.metrics.append(Metric("clock.abs_offset_s", round(abs(offset), 3), "s"))
        rep.details["round_trip_ms"] = round((arrived - sent) * 1000.0, 1)
        rep.details["remote_time"] = datetime.fromtimestamp(remote, UTC).isoformat()
        if abs(offset) >= 1.0:
            rep.parts.append(f"时钟偏差 {offset:+.1f} 秒")

    def _cpu(self, sections: dict[str, list[str]], rep: _Report) -> None:
        try:
            b1, t1 = cpu_busy_total(sections["stat1"][0])
            b2, t2 = cpu_busy_total(sections["stat2"][0])
        except (KeyError, IndexError, ValueError):
            rep.errors.append("CPU 时间 (/proc/stat) 不可读")
        else:
            if t2 - t1 > 0:
                # Counters can step back slightly on some kernels; outside 0-100 is noise.
                pct = min(max((b2 - b1) / (t2 - t1) * 100.0, 0.0), 100.0)
                rep.metrics.append(Metric("cpu.pct", round(pct, 2), "%"))
                rep.parts.append(f"CPU {round(pct, 2):.0f}%")
        try:
            cores = max(int(sections["nproc"][0].strip()), 1)
            loads = [float(x) for x in sections["loadavg"][0].split()[:3]]
        except (KeyError, IndexError, ValueError):
            rep.errors.append("负载 (/proc/loadavg) 不可读")
            return
        per_core = [round(v / cores, 3) for v in loads]
        for label, v in zip(("load1", "load5", "load15"), per_core, strict=True):
            rep.metrics.append(Metric(f"{label}.per_core", v, ""))
        rep.details["cores"] = cores
        rep.parts.append(f"每核负载 {per_core[1]:.2f}")

    def _memory(self, sections: dict[str, list[str]], rep: _Report) -> None:
        mem = parse_meminfo(sections.get("meminfo", []))
        total = mem.get("MemTotal", 0)
        if total <= 0:
            rep.errors.append("内存 (/proc/meminfo) 不可读")
            return
        # Kernels before 3.14 (RHEL/CentOS 6) lack MemAvailable; psutil estimates it like this.
        avail = mem.get("MemAvailable", mem.get("MemFree", 0) + mem.get("Buffers", 0) + mem.get("Cached", 0))
        pct = (total - avail) / total * 100.0
        rep.metrics.append(Metric("mem.pct", round(pct, 2), "%"))
        rep.metrics.append(Metric("mem.available_bytes", float(avail), "B"))
        swap_total = mem.get("SwapTotal", 0)
        swap_pct = (swap_total - mem.get("SwapFree", 0)) / swap_total * 100.0 if swap_total > 0 else 0.0
        rep.metrics.append(Metric("swap.pct", round(swap_pct, 2), "%"))
        rep.parts.append(f"内存 {round(pct, 2):.0f}%")
        rep.parts.append(f"交换 {round(swap_pct, 2):.0f}%")

    def _uptime(self, ctx: ProbeContext, sections: dict[str, list[str]], rep: _Report) -> None:
        try:
            uptime = float(sections["uptime"][0].split()[0])
        except (KeyError, IndexError, ValueError):
            rep.errors.append("运行时间 (/proc/uptime) 不可读")
            return
        rep.metrics.append(Metric("uptime.s", round(uptime, 1), "s"))
        rep.details["boot_time"] = datetime.fromtimestamp(ctx.clock() - uptime, UTC).isoformat()
        if uptime < 3600:
            rep.parts.append(f"{int(uptime // 60)} 分钟前重启")
        elif uptime < 86400:
            rep.parts.append(f"{int(uptime // 3600)} 小时前重启")

    def _processes(self, sections: dict[str, list[str]], rep: _Report) -> None:
        procs = parse_proc_stat(sections.get("procs", []))
        if not procs:
            rep.errors.append("进程列表不可读")
            return
        try:
            self_pid = int(sections["self"][0].strip())
        except (KeyError, IndexError, ValueError):
            self_pid = -1
        args = parse_ps_args(sections.get("args", []))
        own = own_session_pids(procs, self_pid)
        counts = count_processes(self._settings.processes, procs, args, own)
        rep.details["processes"] = counts
        rep.details["own_login_pids"] = sorted(own)
        for spec in self._settings.processes:
            n = counts[spec.name]
            rep.metrics.append(Metric(f"proc:{spec.name}.count", float(n), ""))
            if n < spec.min:
                verb = "未运行" if n == 0 else "运行数不足"
                rep.problems.append((Status.CRIT, f"进程 {spec.name} {verb} ({n} < {spec.min})"))

    def _disks(self, ctx: ProbeContext, sections: dict[str, list[str]], rep: _Report) -> None:
        s = self._settings
        mounts = select_mounts(parse_mounts(sections.get("mounts", [])), s.include_mounts, s.exclude_mounts)
        blocks = parse_df(sections.get("df", []))
        inodes = parse_df(sections.get("dfi", []))
        if blocks.exit_code == 124:
            rep.problems.append((Status.UNKNOWN, f"df 在 {s.disk_timeout:.0f} 秒内未完成 (挂载点无响应?)"))
        df_errors = blocks.errors + [e for e in inodes.errors if e not in blocks.errors]
        if df_errors:
            rep.details["df_errors"] = df_errors[:20]
            rep.problems.append((Status.UNKNOWN, f"df 报错: {'; '.join(df_errors[:3])}"))
        now = ctx.clock()
        measured: dict[str, float] = {}
        info: dict[str, dict[str, Any]] = {}
        for m in mounts:
            row = blocks.rows.get(m.mountpoint)
            if row is None or row.total == 0:
                continue  # df could not see it (permissions) or a pseudo type our list lacks
            info[m.mountpoint] = {"device": m.device, "fstype": m.fstype}
            prefix = f"disk:{m.mountpoint}"
            capacity = row.used + row.avail
            pct = row.used / capacity * 100.0 if capacity > 0 else 0.0
            measured[m.mountpoint] = pct
            rep.metrics += [
                Metric(f"{prefix}.used_pct", round(pct, 2), "%"),
                Metric(f"{prefix}.used_bytes", float(row.used), "B"),
                Metric(f"{prefix}.total_bytes", float(row.total), "B"),
            ]
            irow = inodes.rows.get(m.mountpoint)
            if irow is not None and irow.total > 0:
                denom = irow.used + irow.avail
                ipct = irow.used / denom * 100.0 if denom > 0 else 0.0
                rep.metrics.append(Metric(f"{prefix}.inode_pct", round(ipct, 2), "%"))
            samples = [*ctx.history.get(f"{prefix}.used_bytes", ()), (now, float(row.used))]
            days = days_until_full(samples, float(row.used), float(capacity), s.trend_min_span)
            if days is not None and math.isfinite(days):
                rep.metrics.append(Metric(f"{prefix}.days_to_full", round(days, 2), "d"))
        rep.details["mounts"] = info
        rep.parts.append(f"{len(info)} 个挂载点")
        if measured:
            top = max(measured, key=lambda mp: measured[mp])
            rep.parts.append(f"最满磁盘 {round(measured[top], 2):.0f}% ({top})")

    def _finish(self, sw: Stopwatch, rep: _Report) -> CheckResult:
        if rep.errors:
            rep.details["errors"] = rep.errors
            rep.problems.append((Status.UNKNOWN, "; ".join(rep.errors)))
        summary = "，".join(rep.parts) or "无数据"
        status = worst(Status.OK, *(st for st, _ in rep.problems))
        if rep.problems:
            # The cause goes first: notifications are often cut after one line.
            ordered = sorted(rep.problems, key=lambda p: p[0] != Status.CRIT)
            summary = "；".join(text for _, text in ordered) + " | " + summary
        return sw.result(status, summary, rep.metrics, rep.details)
