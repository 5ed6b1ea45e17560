"""Run one configured command on a remote host over SSH and judge what it did.

The command is a list of arguments; each is quoted with shlex.join, so nothing in it is
interpreted by the remote shell (no `;`, `$()`, globbing). Write `["sh", "-c", "..."]`
explicitly when a pipeline is really wanted.

Judged, in this order: the exit code against `expect_exit`; regular expressions that must
(`*_match`) or must not (`*_not_match`) occur in stdout/stderr; optionally one field of stdout
parsed as JSON (`json_field`, dotted path, list items by index: `data.items.0.state`), either
compared with `json_equals` or, when numeric, against `json_warn`/`json_crit` (with
`json_below` when low values are bad). The start of stdout and stderr goes into the details.
"""

from __future__ import annotations

import json
import math
import re
import shlex
import time
from typing import Any, ClassVar

from probes.base import CheckResult, Metric, ProbeContext, Status, Stopwatch, worst
from probes.boundary import crash_text
from probes.ssh.conn import CommandResult, SshError, ssh_session
from probes.ssh_command.settings import Settings
from probes.thresholds import Threshold

# The probe judges its own limits (exit code, patterns, JSON thresholds).
DEFAULT_THRESHOLDS: dict[str, Threshold] = {}

_EXCERPT_CHARS = 800
_LABEL_CHARS = 60


class FieldMissing(LookupError):
    pass


def json_lookup(doc: Any, path: str) -> Any:
    """`a.b.0.c` -> doc["a"]["b"][0]["c"]; FieldMissing names the first step that fails."""
    value = doc
    done: list[str] = []
    for step in path.split("."):
        if isinstance(value, dict) and step in value:
            value = value[step]
        elif isinstance(value, list) and step.lstrip("-").isdigit() and -len(value) <= int(step) < len(value):
            value = value[int(step)]
        else:
            where = ".".join(done) or "(根)"
            raise FieldMissing(f"JSON 字段 {path} 不存在 (在 {where} 处找不到 {step!r})")
        done.append(step)
    return value


def _excerpt(text: str) -> str:
    return text if len(text) <= _EXCERPT_CHARS else text[:_EXCERPT_CHARS] + f"…(共 {len(text)} 字符)"


def _label(pattern: str) -> str:
    return pattern if len(pattern) <= 40 else pattern[:37] + "..."


class Probe:
    kind: ClassVar[str] = "ssh_command"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._command = shlex.join(settings.command)
        self._shown = self._command if len(self._command) <= _LABEL_CHARS else self._command[:57] + "..."
        self._patterns = [
            (stream, must, re.compile(p))
            for stream, must, patterns in (
                ("stdout", True, settings.stdout_match),
                ("stdout", False, settings.stdout_not_match),
                ("stderr", True, settings.stderr_match),
                ("stderr", False, settings.stderr_not_match),
            )
            for p in patterns
        ]

    def run(self, ctx: ProbeContext) -> CheckResult:
        sw = Stopwatch(ctx)
        details: dict[str, Any] = {"host": self.settings.ssh.where, "command": self._command}
        try:
            return self._run(ctx, sw, details)
        except SshError as exc:
            return sw.result(exc.status, exc.message, details=details)
        except Exception as exc:  # noqa: BLE001 - a probe reports, it never raises into the scheduler
            return sw.result(Status.UNKNOWN, crash_text("ssh_command 探测出错", exc))

    def _run(self, ctx: ProbeContext, sw: Stopwatch, details: dict[str, Any]) -> CheckResult:
        s = self.settings
        deadline = time.monotonic() + max(ctx.timeout_s - 0.1, 0.1)
        with ssh_session(s.ssh, ctx, deadline) as session:
            timeout = min(s.command_timeout or math.inf, session.remaining())
            t0 = time.monotonic()
            result = session.run(self._command, timeout, s.max_output)
            elapsed_ms = (time.monotonic() - t0) * 1000.0
            details["connection_reused"] = session.reused
        stdout = result.stdout.decode(s.encoding, "replace")
        stderr = result.stderr.decode(s.encoding, "replace")
        details.update(
            exit_code=result.exit_code,
            stdout_excerpt=_excerpt(stdout),
            stderr_excerpt=_excerpt(stderr),
            truncated=result.truncated,
        )
        metrics = [Metric("command_ms", round(elapsed_ms, 1), "ms")]
        if result.timed_out:
            return sw.result(
                Status.CRIT, f"命令 `{self._shown}` 在 {timeout:.1f} 秒内未结束 (已中止)", metrics, details
            )
        metrics.append(Metric("exit_code", float(result.exit_code), ""))
        problems = self._judge_output(result, stdout, stderr)
        notes: list[str] = []
        if s.json_field is not None:
            problems += self._judge_json(stdout, metrics, notes)
        status = worst(Status.OK, *(st for st, _ in problems))
        head = f"`{self._shown}` 退出码 {result.exit_code}，用时 {elapsed_ms:.0f} ms"
        if notes:
            head += "，" + "，".join(notes)
        if problems:
            ordered = sorted(problems, key=lambda p: p[0] != Status.CRIT)
            return sw.result(status, "；".join(t for _, t in ordered) + " | " + head, metrics, details)
        return sw.result(status, head, metrics, details)

    def _judge_output(self, result: CommandResult, stdout: str, stderr: str) -> list[tuple[Status, str]]:
        problems: list[tuple[Status, str]] = []
        if result.exit_code not in self.settings.expect_exit:
            expected = "/".join(str(c) for c in self.settings.expect_exit)
            problems.append((Status.CRIT, f"退出码 {result.exit_code} (期望 {expected})"))
        texts = {"stdout": stdout, "stderr": stderr}
        for stream, must, rx in self._patterns:
            m = rx.search(texts[stream])
            if must and m is None:
                problems.append((Status.CRIT, f"{stream} 未匹配 /{_label(rx.pattern)}/"))
            elif not must and m is not None:
                hit = m.group(0)[:60].replace("\n", " ")
                problems.append((Status.CRIT, f"{stream} 出现 /{_label(rx.pattern)}/: {hit!r}"))
        if result.truncated and problems:
            problems.append((Status.OK, f"输出超过 {self.settings.max_output} 字节，只检查了前面部分"))
        return problems

    def _judge_json(self, stdout: str, metrics: list[Metric], notes: list[str]) -> list[tuple[Status, str]]:
        s = self.settings
        assert s.json_field is not None
        try:
            value = json_lookup(json.loads(stdout), s.json_field)
        except json.JSONDecodeError as exc:
            return [(Status.UNKNOWN, f"stdout 不是 JSON: {exc.msg} (第 {exc.lineno} 行)")]
        except FieldMissing as exc:
            return [(Status.UNKNOWN, str(exc))]
        shown = json.dumps(value, ensure_ascii=False)[:60]
        notes.append(f"{s.json_field}={shown}")
        if s.json_equals is not None:
            # 1 and 1.0 are equal in JSON; True is not 1.
            same = type(value) is bool if isinstance(s.json_equals, bool) else not isinstance(value, bool)
            if not (same and value == s.json_equals):
                want = json.dumps(s.json_equals, ensure_ascii=False)
                return [(Status.CRIT, f"{s.json_field}={shown}，期望 {want}")]
            return []
        if isinstance(value, bool) or not isinstance(value, int | float):
            if s.json_warn is None and s.json_crit is None:
                return []
            return [(Status.UNKNOWN, f"{s.json_field}={shown} 不是数值，无法比较阈值")]
        metrics.append(Metric(f"json.{s.json_field}", float(value), ""))
        rule = Threshold(warn=s.json_warn, crit=s.json_crit, below=s.json_below)
        status = rule.judge(float(value))
        if status is Status.OK:
            return []
        limit = s.json_crit if status is Status.CRIT else s.json_warn
        op = "≤" if s.json_below else "≥"
        return [(status, f"{s.json_field}={shown} {op} {limit:g}")]
