"""Service probe: required processes (any OS) and Windows services, with restarts between runs.

Processes: each rule matches by process name (exact, or a regular expression that must match
the whole name), optionally a regular expression searched in the command line (arguments
joined by spaces) and a user. The rule's count must lie within ``min_count``..``max_count``:
too few is CRIT ("未运行" at zero), too many WARN. On Windows names and users compare without
case. The agent's own process and zombies never count.

Restarts: the identities (pid + start time) of the matching processes are kept in the
check's memory. On the next run a new process counts as a restart when it replaces one that
disappeared, or when the rule was below ``min_count`` last run (the process was down and is
back); a worker pool that only grows beyond its minimum or shrinks is not restarting. A pid
reused by an unrelated process has another start time. A restart is WARN by default (``on_restart`` per
rule: OK for servers that recycle workers on purpose, CRIT where any restart is an incident).
A rule's restarts are reported from its second run on: the first run has nothing to compare.

Metrics per rule (``label`` defaults to the name): ``proc:<label>.count``, ``.restarts``,
``.rss_bytes`` (sum, B) and ``.cpu_pct`` (sum over the interval since the last run, 100 % =
one core, like top; from the second run on, processes started in between count fully).

Windows services (``windows_services``, the service name as in ``sc query``, not the display
name) are read with psutil.win_service_get: running is OK, start/continue pending WARN,
stopped, paused, stopping or not installed CRIT; a changed pid while running counts as a
restart. Metrics ``svc:<name>.running`` (1/0), ``.restarts``, ``.rss_bytes``. On any other OS
the services part of the result is UNKNOWN saying so; configuration stays valid there so one
file can be checked on an engineer's Linux laptop before it goes to the Windows server.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import psutil

from probes.base import CheckResult, Metric, ProbeContext, Status, Stopwatch, worst
from probes.boundary import run_guarded
from probes.service.settings import ProcessRule, Settings
from probes.thresholds import Threshold

__all__ = ["DEFAULT_THRESHOLDS", "Probe", "count_restarts"]

# The probe judges counts, states and restarts itself; rss/cpu rules are opt-in per check.
DEFAULT_THRESHOLDS: dict[str, Threshold] = {}

MAX_IDENTITIES = 500
"""Per rule, kept in memory between runs: bounds the stored state for huge worker pools."""
SAME_START_S = 1.0
"""Start times of one process read at different moments can differ by rounding of the boot time."""

_WINDOWS = os.name == "nt"


# ------------------------------------------------------------------ matching processes


@dataclass(slots=True)
class _Seen:
    pid: int
    started: float
    cpu_s: float | None
    rss: int | None


@dataclass(slots=True)
class _RuleView:
    rule: ProcessRule
    name_re: re.Pattern[str] | None
    cmd_re: re.Pattern[str] | None
    found: list[_Seen] = field(default_factory=list)
    hidden: int = 0
    """Processes with the right name whose command line or user the agent may not read."""

    def matches(self, name: str, cmdline: str | None, user: str | None) -> bool | None:
        """True/False, or None when the name fits but the rest is not readable."""
        r = self.rule
        same_name = name.casefold() == r.name.casefold() if _WINDOWS else name == r.name
        if not same_name and (self.name_re is None or not self.name_re.fullmatch(name)):
            return False
        if (self.cmd_re is not None and cmdline is None) or (r.user is not None and user is None):
            return None
        if self.cmd_re is not None and not self.cmd_re.search(cmdline or ""):
            return False
        return r.user is None or _same_user(user or "", r.user)


def _same_user(actual: str, wanted: str) -> bool:
    if _WINDOWS:
        actual, wanted = actual.casefold(), wanted.casefold()
        # "NT AUTHORITY\SYSTEM" is also meant by "SYSTEM".
        return actual == wanted or ("\\" not in wanted and actual.rpartition("\\")[2] == wanted)
    return actual == wanted


def _name_regex(name: str) -> re.Pattern[str] | None:
    try:
        return re.compile(name, re.IGNORECASE if _WINDOWS else 0)
    except re.error:
        return None  # not a regular expression (e.g. "g++"): the exact comparison decides


def _sample(proc: psutil.Process) -> tuple[float | None, int | None]:
    """CPU seconds and RSS; None where the OS does not let the agent see them."""
    try:
        with proc.oneshot():
            t = proc.cpu_times()
            return t.user + t.system, proc.memory_info().rss
    except (psutil.AccessDenied, psutil.ZombieProcess):
        return None, None


# ------------------------------------------------------------------ memory between runs


def _identities(
    memory: Mapping[str, Any], section: str, key: str
) -> list[tuple[int, float, float | None]] | None:
    """Previous (pid, start, cpu) of one rule; None when it was not observed last run."""
    entries = memory.get(section, {}).get(key) if isinstance(memory.get(section), Mapping) else None
    if not isinstance(entries, list):
        return None
    out: list[tuple[int, float, float | None]] = []
    for e in entries:
        if isinstance(e, list) and len(e) >= 2:
            cpu = float(e[2]) if len(e) > 2 and e[2] is not None else None
            out.append((int(e[0]), float(e[1]), cpu))
    return out


def _same(a: tuple[int, float], b: tuple[int, float]) -> bool:
    return a[0] == b[0] and abs(a[1] - b[1]) < SAME_START_S


def count_restarts(
    previous: Sequence[tuple[int, float]], current: Sequence[tuple[int, float]], min_count: int
) -> int:
    """New processes that replace one that went away or fill a slot that was missing last run
    (below `min_count`): a process that was down and is back has been restarted. A pool that
    only grows beyond its minimum, or shrinks, is not restarting."""
    new = sum(1 for c in current if not any(_same(c, p) for p in previous))
    gone = sum(1 for p in previous if not any(_same(p, c) for c in current))
    return min(new, gone + max(min_count - len(previous), 0))


# ------------------------------------------------------------------ the probe


@dataclass(slots=True)
class _Report:
    metrics: list[Metric] = field(default_factory=list)
    problems: list[tuple[Status, str]] = field(default_factory=list)
    fine: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    memory: dict[str, Any] = field(default_factory=dict)


ServiceGetter = Callable[[str], Any]


class Probe:
    kind: ClassVar[str] = "service"

    __slots__ = ("settings", "_views", "_service_get", "_self_pid")

    def __init__(self, settings: Settings, *, win_service_get: ServiceGetter | None = None) -> None:
        """`win_service_get` replaces psutil.win_service_get (tests of the Windows logic)."""
        self.settings = settings
        self._views = [
            (rule, _name_regex(rule.name), re.compile(rule.cmdline) if rule.cmdline else None)
            for rule in settings.processes
        ]
        self._service_get: ServiceGetter | None = win_service_get or getattr(psutil, "win_service_get", None)
        self._self_pid = os.getpid()

    def run(self, ctx: ProbeContext) -> CheckResult:
        return run_guarded(ctx, "服务探针内部错误", lambda sw: self._run(ctx, sw))

    def _run(self, ctx: ProbeContext, sw: Stopwatch) -> CheckResult:
        now = ctx.clock()
        report = _Report(memory={"t": now})
        if self.settings.processes:
            try:
                views = self._scan()
            except (psutil.Error, OSError) as exc:
                # memory None: keep the previous identities for the next run's comparison.
                return sw.result(Status.UNKNOWN, f"无法读取进程列表: {exc}")
            self._judge_processes(views, ctx.memory, now, report)
        if self.settings.windows_services:
            self._judge_services(ctx.memory, report)
        status = worst(*(s for s, _ in report.problems)) if report.problems else Status.OK
        if report.problems:
            ordered = sorted(report.problems, key=lambda p: (p[0] is not Status.CRIT, -p[0]))
            summary = "；".join(text for _, text in ordered)
        else:
            summary = "正常: " + "，".join(report.fine)
        return sw.result(status, summary, report.metrics, report.details, report.memory)

    def _scan(self) -> list[_RuleView]:
        views = [_RuleView(rule, name_re, cmd_re) for rule, name_re, cmd_re in self._views]
        rules = self.settings.processes
        # Command lines and users cost a read per process: only ask when a rule needs them.
        attrs = ["name", "status", "create_time"]
        attrs += ["cmdline"] if any(r.cmdline for r in rules) else []
        attrs += ["username"] if any(r.user for r in rules) else []
        for proc in _iter_processes(attrs):
            info = proc.info
            if proc.pid == self._self_pid or info.get("status") == psutil.STATUS_ZOMBIE:
                continue
            name = info.get("name") or ""
            # None = access denied (ad_value), unlike [] for a kernel thread.
            argv = info.get("cmdline")
            cmdline = None if argv is None else " ".join(argv)
            hits: list[_RuleView] = []
            for v in views:
                verdict = v.matches(name, cmdline, info.get("username"))
                if verdict is None:
                    v.hidden += 1
                elif verdict:
                    hits.append(v)
            if not hits or info.get("create_time") is None:
                continue
            cpu_s, rss = _sample(proc)
            for v in hits:
                v.found.append(_Seen(proc.pid, float(info["create_time"]), cpu_s, rss))
        return views

    def _judge_processes(
        self, views: list[_RuleView], memory: Mapping[str, Any], now: float, report: _Report
    ) -> None:
        stored: dict[str, list[list[Any]]] = {}
        for v in views:
            stored[v.rule.key] = [[p.pid, p.started, p.cpu_s] for p in v.found[:MAX_IDENTITIES]]
            self._usage(v, memory, now, report)
            self._judge_count(v, report)
        report.details["processes"] = {v.rule.key: len(v.found) for v in views}
        report.details["pids"] = {v.rule.key: [p.pid for p in v.found[:20]] for v in views}
        report.memory["proc"] = stored

    @staticmethod
    def _usage(v: _RuleView, memory: Mapping[str, Any], now: float, report: _Report) -> None:
        """Count, memory, restarts and CPU of one rule's processes."""
        r, key, found = v.rule, v.rule.key, v.found
        prefix = f"proc:{key}"
        report.metrics.append(Metric(f"{prefix}.count", float(len(found))))
        unreadable = sum(1 for p in found if p.rss is None or p.cpu_s is None)
        if unreadable:
            # A partial sum would understate the usage: leave the figures out instead.
            report.details.setdefault("usage_unreadable", {})[key] = unreadable
        elif found:
            report.metrics.append(Metric(f"{prefix}.rss_bytes", float(sum(p.rss or 0 for p in found)), "B"))
        previous = _identities(memory, "proc", key)
        if previous is None:
            return
        now_ids = [(p.pid, p.started) for p in found]
        restarts = count_restarts([(p[0], p[1]) for p in previous], now_ids, r.min_count)
        report.metrics.append(Metric(f"{prefix}.restarts", float(restarts)))
        if restarts and r.on_restart != "OK":
            report.problems.append((Status[r.on_restart], f"进程 {key} 自上次检查以来重启 {restarts} 次"))
        cpu = _cpu_pct(previous, found, memory.get("t"), now) if found and not unreadable else None
        if cpu is not None:
            report.metrics.append(Metric(f"{prefix}.cpu_pct", round(cpu, 2), "%"))

    @staticmethod
    def _judge_count(v: _RuleView, report: _Report) -> None:
        r, key, count = v.rule, v.rule.key, len(v.found)
        if count < r.min_count and v.hidden:
            text = (
                f"进程 {key} 未确认（{count} < {r.min_count}）：{v.hidden} 个同名进程的命令行或用户无权读取"
            )
            report.problems.append((Status.UNKNOWN, f"{text}，代理需以更高权限运行"))
        elif count < r.min_count:
            few = f"进程 {key} 未运行" if count == 0 else f"进程 {key} 数量不足（{count} < {r.min_count}）"
            report.problems.append((Status.CRIT, few))
        elif r.max_count is not None and count > r.max_count:
            report.problems.append((Status.WARN, f"进程 {key} 数量过多（{count} > {r.max_count}）"))
        else:
            report.fine.append(f"{key} {count} 个")

    def _judge_services(self, memory: Mapping[str, Any], report: _Report) -> None:
        names = self.settings.windows_services
        if self._service_get is None:
            report.problems.append(
                (
                    Status.UNKNOWN,
                    f"Windows 服务检查仅在 Windows 上可用（本机为 {sys.platform}）: {', '.join(names)}",
                )
            )
            return
        states: dict[str, str] = {}
        stored: dict[str, list[list[Any]]] = {}
        for name in names:
            state, identity, rss = self._service_state(name)
            states[name] = state
            prefix = f"svc:{name}"
            running = state == "running"
            report.metrics.append(Metric(f"{prefix}.running", 1.0 if running else 0.0))
            if rss is not None:
                report.metrics.append(Metric(f"{prefix}.rss_bytes", float(rss), "B"))
            stored[name] = [list(identity)] if identity else []
            previous = _identities(memory, "svc", name)
            if previous is not None:
                restarts = count_restarts([(p[0], p[1]) for p in previous], [identity] if identity else [], 1)
                report.metrics.append(Metric(f"{prefix}.restarts", float(restarts)))
                how = self.settings.on_service_restart
                if restarts and how != "OK":
                    report.problems.append((Status[how], f"服务 {name} 自上次检查以来重启过"))
            verdict = _SERVICE_VERDICT.get(state)
            if verdict is None:
                report.problems.append((Status.CRIT, f"服务 {name} 状态 {state}"))
            elif verdict[0] is Status.OK:
                report.fine.append(f"服务 {name} {verdict[1]}")
            else:
                report.problems.append((verdict[0], f"服务 {name} {verdict[1]}"))
        report.details["windows_services"] = states
        report.memory["svc"] = stored

    def _service_state(self, name: str) -> tuple[str, tuple[int, float] | None, int | None]:
        """(state, (pid, start) while running, rss)."""
        assert self._service_get is not None
        try:
            service = self._service_get(name)
            state = str(service.status())
            pid = service.pid()
        except psutil.NoSuchProcess:
            return "not_found", None, None
        except psutil.AccessDenied:
            return "access_denied", None, None
        if state != "running" or not pid:
            return state, None, None
        try:
            proc = psutil.Process(pid)
            started = proc.create_time()
        except psutil.Error:
            return state, None, None
        _, rss = _sample(proc)
        return state, (pid, started), rss


_SERVICE_VERDICT: dict[str, tuple[Status, str]] = {
    "running": (Status.OK, "运行中"),
    "start_pending": (Status.WARN, "正在启动"),
    "continue_pending": (Status.WARN, "正在恢复"),
    "pause_pending": (Status.CRIT, "正在暂停"),
    "paused": (Status.CRIT, "已暂停"),
    "stop_pending": (Status.CRIT, "正在停止"),
    "stopped": (Status.CRIT, "已停止"),
    "not_found": (Status.CRIT, "不存在（服务名错误或已卸载）"),
    "access_denied": (Status.UNKNOWN, "无权读取状态（代理需以有权限的账户运行）"),
}


def _iter_processes(attrs: list[str]) -> Iterator[psutil.Process]:
    return psutil.process_iter(attrs, ad_value=None)


def _cpu_pct(
    previous: list[tuple[int, float, float | None]], found: list[_Seen], prev_t: Any, now: float
) -> float | None:
    if not isinstance(prev_t, int | float) or now - prev_t <= 0:
        return None
    total = 0.0
    for p in found:
        if p.cpu_s is None:
            return None
        before = next((c for pid, start, c in previous if _same((pid, start), (p.pid, p.started))), None)
        if before is not None:
            total += max(p.cpu_s - before, 0.0)
        elif p.started >= prev_t:
            total += p.cpu_s  # started in between: all its CPU time falls in the interval
    return total / (now - prev_t) * 100.0
