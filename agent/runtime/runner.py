"""Runs probes on a bounded pool of threads, each run behind an outer deadline.

Every run ends in exactly one result delivered on time: the probe's own, or UNKNOWN
"timed out after N s" when the deadline passes first. A probe that hangs keeps its worker
until its driver gives up; meanwhile its check is not started again (it gets an UNKNOWN
"still hung" result instead), so the number of threads never exceeds `workers` however
often probes hang, and the other checks keep their schedule.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from types import MappingProxyType
from typing import Any

from probes.base import CheckResult, History, Probe, ProbeContext, Status
from probes.thresholds import Threshold, apply_thresholds

log = logging.getLogger("sentinel.runner")

DEADLINE_GRACE_S = 1.0
"""Time a probe gets beyond its own timeout before the runner stops waiting for it."""


@dataclass(frozen=True, slots=True)
class CheckSpec:
    """Everything the runner needs to run one check."""

    name: str
    probe: Probe
    timeout_s: float
    rules: Mapping[str, Threshold] = field(default_factory=dict)
    history_patterns: Sequence[str] = ()


HistoryProvider = Callable[[str, Sequence[str]], History]
MemoryProvider = Callable[[str], Mapping[str, Any]]
ResultSink = Callable[[str, CheckResult], None]


@dataclass(slots=True, eq=False)
class _Task:
    spec: CheckSpec
    submitted_wall: float
    deadline: float
    started: bool = False
    run_deadline: float = 0.0
    """Set when a worker picks the task up: the probe's own budget starts then."""
    finished: bool = False
    """A result (the probe's or the deadline's) has been delivered."""


class ProbeRunner:
    def __init__(
        self,
        sink: ResultSink,
        workers: int = 64,
        history: HistoryProvider | None = None,
        clock: Callable[[], float] = time.time,
        memory: MemoryProvider | None = None,
        tz: tzinfo = UTC,
        shared: Mapping[str, Any] | None = None,
    ) -> None:
        self._sink = sink
        self._max_workers = workers
        self._history = history
        self._clock = clock
        self._memory = memory
        self._tz = tz
        self._shared: Mapping[str, Any] = MappingProxyType(dict(shared or {}))
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)
        self._queue: deque[_Task] = deque()
        self._idle = 0
        self._threads: list[threading.Thread] = []
        self._inflight: dict[str, _Task] = {}
        self._deadlines: list[tuple[float, int, _Task]] = []
        self._seq = itertools.count()
        self._watch = threading.Condition(threading.Lock())
        self._stopping = False
        self._watchdog = threading.Thread(target=self._watch_loop, name="probe-watchdog", daemon=True)
        self._watchdog.start()

    # ------------------------------------------------------------------ public

    @property
    def thread_count(self) -> int:
        return len(self._threads)

    def busy_checks(self) -> list[str]:
        with self._lock:
            return sorted(self._inflight)

    def submit(self, spec: CheckSpec) -> None:
        """Start one run of `spec` now (never blocks; the result arrives through the sink)."""
        now_wall = self._clock()
        skipped: CheckResult | None = None
        with self._lock:
            if self._stopping:
                return
            prev = self._inflight.get(spec.name)
            if prev is not None:
                since = datetime.fromtimestamp(prev.submitted_wall, UTC).strftime("%H:%M:%S")
                reason = (
                    f"skipped: the run started at {since} UTC is still hung in its driver"
                    if prev.finished
                    else f"skipped: the run started at {since} UTC is still running"
                )
                skipped = CheckResult(
                    Status.UNKNOWN, reason, started_at=datetime.fromtimestamp(now_wall, UTC)
                )
            else:
                task = _Task(spec, now_wall, time.monotonic() + spec.timeout_s + DEADLINE_GRACE_S)
                self._inflight[spec.name] = task
                self._queue.append(task)
                # Compare with the queue, not with "any idle worker": in a burst, a worker that
                # was notified counts as idle until it wakes, and one wake-up cannot serve many.
                if len(self._queue) > self._idle and len(self._threads) < self._max_workers:
                    t = threading.Thread(target=self._worker, name=f"probe-{len(self._threads)}", daemon=True)
                    self._threads.append(t)
                    t.start()
                else:
                    self._work.notify()
        if skipped is not None:
            log.warning("check %s: %s", spec.name, skipped.summary)
            self._sink(spec.name, skipped)
            return
        with self._watch:
            earliest = self._deadlines[0][0] if self._deadlines else None
            heapq.heappush(self._deadlines, (task.deadline, next(self._seq), task))
            if earliest is None or task.deadline < earliest:
                self._watch.notify()  # only an earlier deadline changes the watchdog's sleep

    def stop(self) -> None:
        """Stop accepting work. Worker threads are daemons: a hung one cannot block exit."""
        with self._lock:
            self._stopping = True
            self._queue.clear()
            self._work.notify_all()
        with self._watch:
            self._watch.notify_all()

    # ------------------------------------------------------------------ internals

    def _worker(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._stopping:
                    self._idle += 1
                    self._work.wait()
                    self._idle -= 1
                if self._stopping:
                    return
                task = self._queue.popleft()
                if task.finished:  # timed out while waiting for a worker
                    continue
                task.started = True
                task.run_deadline = time.monotonic() + task.spec.timeout_s + DEADLINE_GRACE_S
            result = self._run(task.spec)
            with self._lock:
                late = task.finished
                task.finished = True
                if self._inflight.get(task.spec.name) is task:
                    del self._inflight[task.spec.name]
            if late:
                log.warning(
                    "check %s: result arrived after the deadline and was discarded: %s",
                    task.spec.name,
                    result.summary,
                )
            else:
                self._sink(task.spec.name, result)

    def _run(self, spec: CheckSpec) -> CheckResult:
        history: History = {}
        try:
            if spec.history_patterns and self._history is not None:
                history = self._history(spec.name, spec.history_patterns)
            memory = self._memory(spec.name) if self._memory is not None else MappingProxyType({})
            ctx = ProbeContext(
                spec.name, spec.timeout_s, history, self._clock, memory, self._tz, self._shared
            )
            result = spec.probe.run(ctx)
            return apply_thresholds(result, spec.rules)
        except Exception as exc:  # a probe bug must cost one result, never the worker
            log.exception("check %s: probe raised", spec.name)
            return CheckResult(
                Status.UNKNOWN,
                f"probe error: {type(exc).__name__}: {exc}"[:300],
                started_at=datetime.fromtimestamp(self._clock(), UTC),
            )

    def _watch_loop(self) -> None:
        while True:
            expired: list[_Task] = []
            with self._watch:
                if self._stopping:
                    return
                now = time.monotonic()
                while self._deadlines and self._deadlines[0][0] <= now:
                    expired.append(heapq.heappop(self._deadlines)[2])
                if not expired:
                    timeout = self._deadlines[0][0] - now if self._deadlines else None
                    self._watch.wait(timeout)
                    continue
            for task in expired:
                self._expire(task)

    def _expire(self, task: _Task) -> None:
        with self._lock:
            if task.finished:
                return
            if task.started and task.run_deadline > time.monotonic():
                # It waited for a worker, then started: it gets its full budget from its start,
                # so a hanging endpoint is reported by the probe (CRIT), not as a runner timeout.
                with self._watch:
                    heapq.heappush(self._deadlines, (task.run_deadline, next(self._seq), task))
                return
            task.finished = True
            if not task.started:
                # Never reached a worker: nothing holds it, so the check is free again.
                if self._inflight.get(task.spec.name) is task:
                    del self._inflight[task.spec.name]
                busy = len(self._threads)
                summary = (
                    f"timed out after {task.spec.timeout_s:g} s waiting for a free probe worker "
                    f"(all {busy} busy)"
                )
            else:
                summary = f"timed out after {task.spec.timeout_s:g} s (probe did not return)"
        log.warning("check %s: %s", task.spec.name, summary)
        self._sink(
            task.spec.name,
            CheckResult(
                Status.UNKNOWN,
                summary,
                started_at=datetime.fromtimestamp(task.submitted_wall, UTC),
                duration_s=task.spec.timeout_s + DEADLINE_GRACE_S,
            ),
        )
