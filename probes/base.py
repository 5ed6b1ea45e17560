"""The contract between the agent and every probe.

A probe gets its validated settings once and a `ProbeContext` per run, and returns a
`CheckResult`. It never touches the store, the scheduler or notifications: everything it
needs from the past (metric history for trends) is handed to it in the context.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, tzinfo
from enum import IntEnum
from types import MappingProxyType
from typing import Any, ClassVar, Protocol


class Status(IntEnum):
    """Nagios-compatible order: the exit code of `sentinel check` is the worst status."""

    OK = 0
    WARN = 1
    CRIT = 2
    UNKNOWN = 3

    @property
    def label_zh(self) -> str:
        return _LABEL_ZH[self]


_LABEL_ZH = {Status.OK: "正常", Status.WARN: "警告", Status.CRIT: "严重", Status.UNKNOWN: "未知"}


def worst(*statuses: Status) -> Status:
    """UNKNOWN ranks above CRIT only when nothing is CRIT: a known failure is more useful."""
    if not statuses:
        return Status.OK
    if Status.CRIT in statuses:
        return Status.CRIT
    return max(statuses)


@dataclass(frozen=True, slots=True)
class Metric:
    name: str
    value: float
    unit: str = ""


_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class CheckResult:
    status: Status
    summary: str
    metrics: tuple[Metric, ...] = ()
    details: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    duration_s: float = 0.0
    memory: Mapping[str, Any] | None = None
    """What the probe wants handed back in `ProbeContext.memory` next run (a log file's read
    offset, a counter's last value). JSON-compatible. The agent commits it in the same
    transaction as this result, so a crash can neither skip nor repeat what it covers.
    None keeps the previous memory."""

    def metric(self, name: str) -> Metric | None:
        for m in self.metrics:
            if m.name == name:
                return m
        return None

    def with_status(self, status: Status, summary: str | None = None) -> CheckResult:
        return replace(self, status=status, summary=self.summary if summary is None else summary)


History = Mapping[str, Sequence[tuple[float, float]]]
"""Metric name -> [(epoch seconds, value), ...] oldest first, supplied by the agent."""


@dataclass(frozen=True, slots=True)
class ProbeContext:
    check: str
    timeout_s: float
    history: History = field(default_factory=lambda: _EMPTY)
    clock: Callable[[], float] = time.time
    """Wall clock in epoch seconds; tests pass a controllable one."""
    memory: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    """The `CheckResult.memory` of this check's last committed result; empty on the first run."""
    tz: tzinfo = UTC
    """The site's time zone, for schedules such as "a full backup every day by 04:00"."""
    shared: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    """Resources the agent shares between checks of one round, by name (e.g. an SSH
    connection pool under "ssh"). A probe must work, only slower, when a name is absent."""

    def now_utc(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)


class Probe(Protocol):
    kind: ClassVar[str]

    def run(self, ctx: ProbeContext) -> CheckResult: ...


class Stopwatch:
    """Start time (UTC, from the context's clock) and monotonic duration of one probe run."""

    __slots__ = ("started_at", "_t0")

    def __init__(self, ctx: ProbeContext) -> None:
        self.started_at = ctx.now_utc()
        self._t0 = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self._t0

    def result(
        self,
        status: Status,
        summary: str,
        metrics: Sequence[Metric] = (),
        details: Mapping[str, Any] | None = None,
        memory: Mapping[str, Any] | None = None,
    ) -> CheckResult:
        return CheckResult(
            status=status,
            summary=summary,
            metrics=tuple(metrics),
            details=MappingProxyType(dict(details)) if details else _EMPTY,
            started_at=self.started_at,
            duration_s=round(self.elapsed(), 6),
            memory=memory,
        )
