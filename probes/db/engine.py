"""Runs an engine's inspection items over one connection, within the probe's time budget.

One failing item (a missing grant, a view absent on this version, a slow catalog query)
becomes a finding of its own and never stops the others. `run_db_probe` is the whole
probe flow every engine shares: log in within the login timeout, read the version and the
server's clock, run the items, close, and fold the findings into one `CheckResult`.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Generic, Literal, Protocol, TypeVar

from probes.base import CheckResult, Metric, ProbeContext, Status, Stopwatch, worst
from probes.db.items import Finding, Item, ItemContext, ItemOutcome, Rows
from probes.db.settings import DbSettings, ItemOverride
from probes.thresholds import Threshold
from probes.values import SecretError, scrub_secrets

__all__ = [
    "DbConnection",
    "DeadlineGuard",
    "Engine",
    "EngineReport",
    "ErrorCodes",
    "ErrorKind",
    "error_text",
    "run_db_probe",
    "run_engine",
]

ErrorKind = Literal["permission", "missing", "timeout", "other"]

MIN_QUERY_S = 0.05
"""Below this much time left an item is not started: it could only time out."""
GUARD_GRACE_S = 0.3
"""A session still blocked this long after its deadline is cut off (the runner waits 1 s more)."""
_MAX_ERROR_CHARS = 200
_SUMMARY_FINDINGS = 3


S = TypeVar("S", bound=DbSettings)
"""An engine's own settings model (its host, port, TLS and login fields)."""


class DbConnection(Protocol):
    def query(self, sql: str, timeout_s: float) -> list[dict[str, Any]]:
        """Rows as dicts with lower-case keys; raises the driver's error (or TimeoutError)."""
        ...

    def server_version(self) -> tuple[int, ...]: ...

    def server_now(self) -> datetime | None:
        """The server's clock, aware UTC."""
        ...

    def close(self) -> None: ...


def error_text(exc: BaseException) -> str:
    """First line of an error, bounded: driver messages can carry a whole SQL text."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= _MAX_ERROR_CHARS else text[: _MAX_ERROR_CHARS - 1] + "…"


@dataclass(frozen=True, slots=True)
class ErrorCodes:
    """An engine's driver error codes by what they mean; calling it classifies an error."""

    code: Callable[[BaseException], Hashable | None]
    """The driver's code of an error (SQLSTATE, ORA-nnnnn, error number); None without one."""
    permission: frozenset[Hashable]
    missing: frozenset[Hashable]
    timeout: frozenset[Hashable] = frozenset()
    timeout_words: str | None = None
    """Lower-case words that mark a timeout where the driver gives no code for it (FreeTDS)."""

    def __call__(self, exc: BaseException) -> ErrorKind:
        code = self.code(exc)
        worded = self.timeout_words is not None and self.timeout_words in str(exc).lower()
        if isinstance(exc, TimeoutError) or code in self.timeout or worded:
            return "timeout"
        if code in self.permission:
            return "permission"
        if code in self.missing:
            return "missing"
        return "other"


@dataclass(slots=True)
class EngineReport:
    metrics: list[Metric] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    memory: dict[str, Any] = field(default_factory=dict)
    skipped: list[dict[str, str]] = field(default_factory=list)
    ran: list[str] = field(default_factory=list)


def _thresholds(item: Item, override: ItemOverride | None) -> dict[str, Threshold]:
    rules = dict(item.thresholds)
    if override is not None:
        for key, spec in override.thresholds.items():
            rules[key] = spec.over(rules.get(key))
    return rules


def _failure(item: Item, kind: ErrorKind, exc: BaseException) -> Finding:
    reason = error_text(exc)
    if kind == "permission":
        text = f"{item.title}（{item.name}）无法检查：监控账号权限不足，需要 {item.grant}（{reason}）"
    elif kind == "missing":
        text = f"{item.title}（{item.name}）无法检查：视图或功能不存在（{reason}）"
    elif kind == "timeout":
        text = f"{item.title}（{item.name}）查询超时未完成（{reason}）"
    else:
        text = f"{item.title}（{item.name}）检查失败：{reason}"
    return Finding(Status.WARN, text, "综合类", item.name, item.name)


def run_engine(
    conn: DbConnection,
    items: Sequence[Item],
    ctx: ProbeContext,
    overrides: Mapping[str, ItemOverride],
    classify: Callable[[BaseException], ErrorKind],
    deadline: float,
    *,
    query_timeout: float | None = None,
    base_options: Mapping[str, Any] | None = None,
    version: tuple[int, ...] | None = None,
    server_now: datetime | None = None,
) -> EngineReport:
    """Run every enabled item whose version and time allow. One failing item becomes a
    Finding naming `item.grant` (permission) or the missing view (missing) and never stops
    the others.

    `deadline` is a time.monotonic() instant; each statement gets the smaller of
    `query_timeout` and the time left. `base_options` (check-wide settings such as the
    expected databases) sit under each item's configured options.
    """
    report = EngineReport()
    version = conn.server_version() if version is None else version
    old_memory = ctx.memory
    now = ctx.now_utc()
    base = dict(base_options or {})
    for item in items:
        override = overrides.get(item.name)
        if item.name in old_memory:
            report.memory[item.name] = old_memory[item.name]
        if override is not None and not override.enabled:
            report.skipped.append({"item": item.name, "reason": "disabled"})
            continue
        if item.min_version and version < item.min_version:
            need = ".".join(map(str, item.min_version))
            report.skipped.append({"item": item.name, "reason": f"needs version {need}"})
            continue
        if deadline - time.monotonic() < MIN_QUERY_S:
            report.skipped.append({"item": item.name, "reason": "time budget exhausted"})
            continue
        rows: dict[str, Rows] = {}
        try:
            for qname, sql in item.queries.items():
                left = deadline - time.monotonic()
                if left < MIN_QUERY_S:
                    raise TimeoutError("time budget exhausted")
                timeout = left if query_timeout is None else min(query_timeout, left)
                rows[qname] = conn.query(sql, timeout)
        except Exception as exc:  # noqa: BLE001 - any driver error is this item's finding, never the run's
            kind = "timeout" if isinstance(exc, TimeoutError) else classify(exc)
            if kind == "missing" and item.optional:
                report.skipped.append({"item": item.name, "reason": f"feature absent: {error_text(exc)}"})
                continue
            report.findings.append(_failure(item, kind, exc))
            continue
        ictx = ItemContext(
            now=now,
            tz=ctx.tz,
            version=version,
            thresholds=_thresholds(item, override),
            options={**base, **(override.options if override else {})},
            history=ctx.history,
            memory=old_memory.get(item.name) or {},
            server_now=server_now,
        )
        try:
            outcome = item.evaluate(rows, ictx)
        except Exception as exc:  # noqa: BLE001 - a bug in one evaluation must not hide the other items
            report.findings.append(
                Finding(Status.UNKNOWN, f"{item.title}（{item.name}）结果无法解析：{type(exc).__name__}: "
                        f"{error_text(exc)}", "综合类", item.name, item.name)
            )  # fmt: skip
            continue
        _collect(report, item, outcome)
    return report


def _collect(report: EngineReport, item: Item, outcome: ItemOutcome) -> None:
    report.ran.append(item.name)
    report.metrics.extend(outcome.metrics)
    report.findings.extend(
        replace(f, item=item.name, category=f.category or item.category) for f in outcome.findings
    )
    if outcome.facts:
        report.facts[item.name] = dict(outcome.facts)
    if outcome.memory is not None:
        report.memory[item.name] = dict(outcome.memory)


# --- the whole probe --------------------------------------------------------------------


class DeadlineGuard:
    """Shuts a connection's socket down if the session outlives its deadline.

    Server-side statement timeouts cover slow queries; this covers a server that stops
    answering altogether, where a blocking driver read would otherwise wait forever.
    Shutting the socket down makes that read fail at once.
    """

    __slots__ = ("_timer", "_fd", "fired")

    def __init__(self, fileno: int, delay_s: float) -> None:
        self._fd = os.dup(fileno)
        self.fired = False
        self._timer = threading.Timer(max(delay_s, 0.0), self._fire)
        self._timer.daemon = True
        self._timer.start()

    def _fire(self) -> None:
        self.fired = True
        with contextlib.suppress(OSError):
            s = socket.socket(fileno=self._fd)
            self._fd = -1
            with s:
                s.shutdown(socket.SHUT_RDWR)

    def raise_if_fired(self) -> None:
        """Called on a driver error: when the guard cut the session, that is why it failed."""
        if self.fired:
            raise TimeoutError("the server stopped answering; the session was cut at the deadline") from None

    def cancel(self) -> None:
        self._timer.cancel()
        self._timer.join(1.0)
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1


@dataclass(frozen=True, slots=True)
class Engine(Generic[S]):
    """What run_db_probe needs to know about one database product."""

    label: str
    """"PostgreSQL", "MySQL", "Oracle", "SQL Server"."""
    default_port: int
    connect: Callable[[S, str | None, float, float], DbConnection]
    """(settings, revealed password, login timeout s, session deadline as time.monotonic())
    -> an open, read-only session that gives up (DeadlineGuard) soon after the deadline."""
    items: Callable[[DbConnection], Sequence[Item]]
    """The item table for this server (flavour, version)."""
    classify: Callable[[BaseException], ErrorKind]
    describe_login_error: Callable[[BaseException], str]
    """One Chinese line naming why login failed; never the password."""
    product: Callable[[DbConnection], str] | None = None
    """The product name for the summary when it depends on the server (MariaDB vs MySQL)."""


def _scrub(text: str, secret: str | None) -> str:
    # A one- or two-character password would mask unrelated digits in the findings.
    return scrub_secrets(text, (secret,), min_length=3)


def _summarize(findings: Sequence[Finding]) -> str:
    bad = sorted((f for f in findings if f.status is not Status.OK), key=lambda f: -int(f.status))
    head = "；".join(f"{f.status.label_zh}：{f.text}" for f in bad[:_SUMMARY_FINDINGS])
    more = len(bad) - _SUMMARY_FINDINGS
    return head + (f"（另有 {more} 项发现）" if more > 0 else "")


def run_db_probe(engine: Engine[S], settings: S, ctx: ProbeContext) -> CheckResult:
    """Log in, run the engine's items within ctx.timeout_s, close; never raises."""
    sw = Stopwatch(ctx)
    secret: str | None = None
    try:
        secret = settings.password.reveal() if settings.password is not None else None
        return _run(engine, settings, ctx, sw, secret)
    except SecretError as exc:
        return sw.result(Status.UNKNOWN, f"{engine.label} 密码引用无法读取：{exc}")
    except Exception as exc:  # noqa: BLE001 - a probe reports its own failure, never raises into the scheduler
        text = _scrub(f"{engine.label} 探针异常：{type(exc).__name__}: {error_text(exc)}", secret)
        return sw.result(Status.UNKNOWN, text)


def _run(engine: Engine[S], settings: S, ctx: ProbeContext, sw: Stopwatch, secret: str | None) -> CheckResult:
    port = settings.port or engine.default_port
    where = f"{settings.host}:{port}"
    deadline = time.monotonic() + ctx.timeout_s
    login_timeout = max(min(settings.login_timeout, deadline - time.monotonic()), 0.1)
    t0 = time.monotonic()
    details: dict[str, Any] = {"host": settings.host, "port": port, "user": settings.user}
    try:
        conn = engine.connect(settings, secret, login_timeout, deadline + GUARD_GRACE_S)
    except Exception as exc:  # noqa: BLE001 - every driver has its own error tree; all mean "cannot log in"
        reason = _scrub(engine.describe_login_error(exc), secret)
        finding = Finding(
            Status.CRIT, f"无法登录 {engine.label} {where}：{reason}", "数据安全类", where, "login"
        )
        details["findings"] = [finding.as_dict()]
        return sw.result(Status.CRIT, finding.text, details=details)
    login_ms = (time.monotonic() - t0) * 1000.0
    try:
        version = conn.server_version()
        server_now = conn.server_now()
        items = engine.items(conn)
        report = run_engine(
            conn,
            items,
            ctx,
            settings.items,
            engine.classify,
            deadline,
            query_timeout=settings.query_timeout,
            base_options={
                "databases": list(settings.databases),
                "server_role": settings.server_role,
                "backups": list(settings.backups),
            },
            version=version,
            server_now=server_now,
        )
    finally:
        with contextlib.suppress(Exception):  # closing a broken session must not mask the result
            conn.close()
    findings = [replace(f, text=_scrub(f.text, secret)) for f in report.findings]
    status = worst(Status.OK, *(f.status for f in findings))
    vtext = ".".join(map(str, version))
    product = engine.product(conn) if engine.product is not None else engine.label
    base = f"{product} {vtext}，登录 {login_ms:.0f} ms，检查 {len(report.ran)} 项"
    summary = f"{_summarize(findings)} | {base}" if status is not Status.OK else f"正常：{base}"
    details.update(
        {
            "version": vtext,
            "findings": [f.as_dict() for f in findings],
            "facts": report.facts,
            "skipped": report.skipped,
        }
    )
    metrics = [Metric("login_ms", round(login_ms, 1), "ms"), *report.metrics]
    return sw.result(status, summary, metrics, details, report.memory)

