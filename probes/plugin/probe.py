"""Nagios-compatible plugin probe: run a plugin, map its exit code, keep its performance data.

The plugin is started from an argument list, never through a shell, in a new session (its own
process group). Exit code 0/1/2/3 -> OK/WARN/CRIT/UNKNOWN; any other code, death by a signal,
a missing or non-executable file -> UNKNOWN with the reason. The first output line (before
``|``) is the summary, later lines are long output (details), performance data becomes
metrics (see probes.perfdata for the format and the unit rules).

Time budget: the plugin gets ``ctx.timeout_s`` minus the time needed to stop it. When it runs
out, the whole process group gets SIGTERM, then SIGKILL once the plugin has exited or the
grace period is over, so children it forked die too; the result is UNKNOWN "插件超时"
(``on_timeout: CRIT`` for sites that treat a hung check as a failure). Processes the plugin
left behind in its group after a normal exit are killed as well: a monitoring run must not
leave processes behind. A plugin's own ``-t`` option should be set below the check timeout so
that it can report what it was waiting for.

Environment: the agent's environment is NOT inherited (it holds the agent's own secrets).
A plugin gets PATH, HOME, TZ, LANG=C and LC_NUMERIC=C (decimal points in perfdata), plus
the Windows basics (SYSTEMROOT, TEMP, ...) there, plus ``env``. An ``env`` value written as a
secret reference (``${NAME}`` or ``file:/path``) is resolved when the plugin starts; anything
else is passed literally. Secrets never go into the argument list (visible in ``ps``): an
argument containing ``${...}`` is a configuration error. Revealed secret values are masked
in everything the plugin prints before it reaches the result.

Output: at most ``max_output_bytes`` of stdout are kept (the rest is read and dropped so the
plugin does not block on a full pipe); stderr is kept up to 4 KiB and only used as the
summary when stdout is empty.
"""

from __future__ import annotations

import os
import selectors
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from typing import Any, ClassVar

from probes.base import CheckResult, Metric, ProbeContext, Status, Stopwatch
from probes.boundary import run_guarded
from probes.plugin.perfdata import PerfDatum, normalise, parse_output
from probes.plugin.settings import Settings
from probes.thresholds import Threshold
from probes.values import Secret, SecretError, scrub_secrets

__all__ = ["DEFAULT_THRESHOLDS", "Probe", "RunOutcome", "run_bounded"]

# The plugin judges its own thresholds (its exit code); rules on top are opt-in per check.
DEFAULT_THRESHOLDS: dict[str, Threshold] = {}

MAX_STDERR_BYTES = 4096
MAX_LONG_OUTPUT_LINES = 100
MAX_LINE_CHARS = 500
MAX_METRICS = 200
SUMMARY_CHARS = 300
PIPE_GRACE_S = 0.2
"""How long to keep reading after the plugin exited while something it forked holds its pipes."""

_BASE_ENV = ("PATH", "HOME", "TZ", "SYSTEMROOT", "SystemRoot", "WINDIR", "COMSPEC", "PATHEXT", "TEMP", "TMP")
_STATUS_BY_CODE = {0: Status.OK, 1: Status.WARN, 2: Status.CRIT, 3: Status.UNKNOWN}


# ------------------------------------------------------------------ running a process


@dataclass(frozen=True, slots=True)
class RunOutcome:
    returncode: int | None
    """None when the plugin was stopped for running out of time."""
    stdout: bytes
    stderr: bytes
    stdout_truncated: bool


class _Sink:
    __slots__ = ("data", "limit", "dropped")

    def __init__(self, limit: int) -> None:
        self.data = bytearray()
        self.limit = limit
        self.dropped = False

    def add(self, chunk: bytes) -> None:
        room = self.limit - len(self.data)
        if room > 0:
            self.data += chunk[:room]
        if len(chunk) > room:
            self.dropped = True


def _has_exited(pid: int) -> bool:
    """Whether the child exited, without reaping it: while it is an unreaped zombie its pid,
    and so its process group id, cannot be reused, which makes killpg() later safe."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _pidfd(pid: int) -> int | None:
    opener = getattr(os, "pidfd_open", None)
    if opener is None:
        return None
    try:
        fd: int = opener(pid)
    except OSError:  # kernel older than 5.3, or seccomp: fall back to polling
        return None
    return fd


def _killpg(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass  # nothing left in the group (PermissionError: macOS on a group of zombies)


def _stop_group(proc: subprocess.Popen[bytes], grace_s: float) -> None:
    """SIGTERM the group, give the plugin `grace_s` to exit, then SIGKILL whatever is left."""
    _killpg(proc.pid, signal.SIGTERM)
    end = time.monotonic() + grace_s
    while not _has_exited(proc.pid) and time.monotonic() < end:
        time.sleep(0.01)
    _killpg(proc.pid, signal.SIGKILL)


def run_bounded(
    argv: list[str],
    env: dict[str, str],
    cwd: str | None,
    budget_s: float,
    kill_grace_s: float,
    max_stdout: int,
) -> RunOutcome:
    """Run argv in a new session; return within about budget_s + kill_grace_s.

    Raises OSError when the program cannot be started (not found, not executable).
    """
    windows = os.name == "nt"
    platform: dict[str, Any] = (
        {"creationflags": getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)}
        if windows
        else {"start_new_session": True}
    )
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=cwd,
        **platform,
    )
    collect = _collect_windows if windows else _collect_posix
    return collect(proc, budget_s, kill_grace_s, max_stdout)


def _collect_posix(
    proc: subprocess.Popen[bytes], budget_s: float, kill_grace_s: float, max_stdout: int
) -> RunOutcome:
    assert proc.stdout is not None and proc.stderr is not None
    sinks = {proc.stdout.fileno(): _Sink(max_stdout), proc.stderr.fileno(): _Sink(MAX_STDERR_BYTES)}
    pidfd = _pidfd(proc.pid)
    deadline = time.monotonic() + budget_s
    exited_at: float | None = None
    timed_out = False
    with selectors.DefaultSelector() as sel:
        for fd in sinks:
            sel.register(fd, selectors.EVENT_READ)
        if pidfd is not None:
            sel.register(pidfd, selectors.EVENT_READ)
        try:
            while True:
                now = time.monotonic()
                if exited_at is None and _has_exited(proc.pid):
                    exited_at = now
                pipes_open = any(fd in sinks for fd in sel.get_map())
                if exited_at is not None and (not pipes_open or now >= exited_at + PIPE_GRACE_S):
                    break
                if now >= deadline:
                    timed_out = exited_at is None
                    break
                limit = deadline if exited_at is None else min(deadline, exited_at + PIPE_GRACE_S)
                wait = limit - now
                if pidfd is None and exited_at is None:
                    wait = min(wait, 0.05)
                for key, _ in sel.select(wait):
                    if key.fd == pidfd:
                        sel.unregister(pidfd)
                        continue
                    chunk = os.read(key.fd, 65536)
                    if chunk:
                        sinks[key.fd].add(chunk)
                    else:
                        sel.unregister(key.fd)
        finally:
            if timed_out:
                _stop_group(proc, kill_grace_s)
            else:
                # Leftovers of a finished plugin (or of one we bail out on) must not pile up.
                _killpg(proc.pid, signal.SIGKILL)
            if pidfd is not None:
                os.close(pidfd)
            proc.stdout.close()
            proc.stderr.close()
            proc.wait()
    stdout_sink, stderr_sink = sinks.values()
    return RunOutcome(
        returncode=None if timed_out else proc.returncode,
        stdout=bytes(stdout_sink.data),
        stderr=bytes(stderr_sink.data),
        stdout_truncated=stdout_sink.dropped,
    )


def _collect_windows(
    proc: subprocess.Popen[bytes], budget_s: float, kill_grace_s: float, max_stdout: int
) -> RunOutcome:
    """Windows has no process groups to signal: kill the process tree psutil can see."""
    import psutil

    timed_out = False
    try:
        out, err = proc.communicate(timeout=budget_s)
    except subprocess.TimeoutExpired:
        timed_out = True
        try:
            tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        except psutil.Error:
            tree = []
        for p in tree:
            try:
                p.kill()
            except psutil.Error:
                pass
        try:
            out, err = proc.communicate(timeout=kill_grace_s)
        except subprocess.TimeoutExpired:
            out, err = b"", b""
    return RunOutcome(
        returncode=None if timed_out else proc.returncode,
        stdout=out[:max_stdout],
        stderr=err[:MAX_STDERR_BYTES],
        stdout_truncated=len(out) > max_stdout,
    )


# ------------------------------------------------------------------ the probe


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _datum_details(d: PerfDatum) -> dict[str, Any]:
    out: dict[str, Any] = {"label": d.label, "value": d.value, "uom": d.uom}
    for key in ("warn", "crit", "min", "max"):
        value = getattr(d, key)
        if value is not None:
            out[key] = value
    return out


def _signal_name(num: int) -> str:
    try:
        return signal.Signals(num).name
    except ValueError:
        return f"信号 {num}"


class Probe:
    kind: ClassVar[str] = "plugin"

    __slots__ = ("settings",)

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def run(self, ctx: ProbeContext) -> CheckResult:
        secrets: list[str] = []
        return run_guarded(
            ctx,
            "插件探针内部错误",
            lambda sw: self._run(ctx, sw, secrets),
            secrets=secrets,
            limit=SUMMARY_CHARS,
        )

    def _environment(self, secrets: list[str]) -> dict[str, str]:
        env = {k: os.environ[k] for k in _BASE_ENV if k in os.environ}
        env.setdefault("PATH", os.defpath)
        env["LANG"] = "C"
        env["LC_NUMERIC"] = "C"
        for name, value in self.settings.env.items():
            if isinstance(value, Secret):
                revealed = value.reveal()
                secrets.append(revealed)
                env[name] = revealed
            else:
                env[name] = value
        return env

    def _run(self, ctx: ProbeContext, sw: Stopwatch, secrets: list[str]) -> CheckResult:
        s = self.settings
        details: dict[str, Any] = {"command": list(s.command)}
        try:
            env = self._environment(secrets)
        except SecretError as exc:
            reason = scrub_secrets(str(exc), secrets)
            return sw.result(Status.UNKNOWN, f"无法读取密钥: {reason}", details=details)
        program = s.command[0]
        if not os.path.isabs(program):
            found = shutil.which(program, path=env["PATH"])
            if found is None:
                return sw.result(Status.UNKNOWN, f"插件不存在: PATH 中找不到 {program}", details=details)
            program = found
        if s.workdir is not None and not os.path.isdir(s.workdir):
            return sw.result(Status.UNKNOWN, f"工作目录不存在: {s.workdir}", details=details)
        # Stopping the group takes up to the grace period; keep both inside the check's timeout.
        grace = min(1.0, ctx.timeout_s * 0.2)
        budget = max(ctx.timeout_s - grace - sw.elapsed() - 0.05, 0.05)
        try:
            argv = [program, *s.command[1:]]
            outcome = run_bounded(argv, env, s.workdir, budget, grace, s.max_output_bytes)
        except FileNotFoundError:
            return sw.result(Status.UNKNOWN, f"插件不存在: {program}", details=details)
        except PermissionError:
            return sw.result(Status.UNKNOWN, f"插件不可执行（权限不足）: {program}", details=details)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            return sw.result(Status.UNKNOWN, f"无法启动插件 {program}: {reason}", details=details)
        return self._judge(sw, outcome, budget, details, secrets)

    def _judge(
        self, sw: Stopwatch, outcome: RunOutcome, budget: float, details: dict[str, Any], secrets: list[str]
    ) -> CheckResult:
        s = self.settings
        stdout = scrub_secrets(outcome.stdout.decode(s.encoding, "replace"), secrets)
        stderr = scrub_secrets(outcome.stderr.decode(s.encoding, "replace"), secrets).strip()
        parsed = parse_output(stdout)
        if outcome.stdout_truncated:
            details["output_truncated"] = True
        if stderr:
            details["stderr"] = _clip(stderr, 1000)
        if parsed.long_output:
            lines = parsed.long_output[:MAX_LONG_OUTPUT_LINES]
            details["long_output"] = [_clip(line, MAX_LINE_CHARS) for line in lines]
        metrics, errors = self._metrics(parsed.perfdata)
        errors = list(parsed.errors) + errors
        if parsed.perfdata:
            details["perfdata"] = [_datum_details(d) for d in parsed.perfdata[:MAX_METRICS]]
        if errors:
            details["perfdata_errors"] = errors[:20]
        text = parsed.summary or (stderr.splitlines()[0] if stderr else "")

        rc = outcome.returncode
        if rc is None:
            details["timed_out"] = True
            summary = f"插件超时（{budget:.1f} s 内未结束，已终止其进程组）"
            if text:
                details["partial_output"] = _clip(text, SUMMARY_CHARS)
            return sw.result(Status[s.on_timeout], summary, metrics, details)
        details["exit_code"] = rc
        status = _STATUS_BY_CODE.get(rc)
        if status is not None:
            return sw.result(status, _clip(text or "（插件无输出）", SUMMARY_CHARS), metrics, details)
        prefix = f"插件被 {_signal_name(-rc)} 终止" if rc < 0 else f"插件退出码 {rc} 不是 Nagios 状态（0–3）"
        summary = f"{prefix}: {text}" if text else prefix
        return sw.result(Status.UNKNOWN, _clip(summary, SUMMARY_CHARS), metrics, details)

    @staticmethod
    def _metrics(perfdata: tuple[PerfDatum, ...]) -> tuple[list[Metric], list[str]]:
        metrics: list[Metric] = []
        errors: list[str] = []
        seen: set[str] = set()
        for d in perfdata:
            if d.label in seen:
                errors.append(f"{d.label}: label repeated, first value kept")
                continue
            if len(metrics) >= MAX_METRICS:
                errors.append(f"more than {MAX_METRICS} performance data items, the rest dropped")
                break
            seen.add(d.label)
            value, unit = normalise(d)
            metrics.append(Metric(d.label, value, unit))
        return metrics, errors
