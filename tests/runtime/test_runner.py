"""The runner's promises: one result per run, on time, with bounded threads."""

from __future__ import annotations

import threading
import time
from typing import ClassVar

import pytest

from agent.runtime import runner as runner_mod
from agent.runtime.runner import CheckSpec, ProbeRunner
from probes.base import CheckResult, ProbeContext, Status, Stopwatch
from probes.thresholds import Threshold
from tests.conftest import wait_until


class Quick:
    kind: ClassVar[str] = "test"

    def __init__(self, value: float = 1.0) -> None:
        self.value = value
        self.calls = 0

    def run(self, ctx: ProbeContext) -> CheckResult:
        self.calls += 1
        from probes.base import Metric

        return Stopwatch(ctx).result(Status.OK, "fine", [Metric("v", self.value, "%")])


class Hang:
    """Blocks until released, like a driver stuck on a socket that never answers."""

    kind: ClassVar[str] = "test"

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = 0

    def run(self, ctx: ProbeContext) -> CheckResult:
        self.entered += 1
        self.release.wait(60)
        return Stopwatch(ctx).result(Status.OK, "late")


class Boom:
    kind: ClassVar[str] = "test"

    def run(self, ctx: ProbeContext) -> CheckResult:
        raise RuntimeError("driver exploded")


class Sink:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.items: list[tuple[str, CheckResult, float]] = []

    def __call__(self, name: str, r: CheckResult) -> None:
        with self.lock:
            self.items.append((name, r, time.monotonic()))

    def of(self, name: str) -> list[CheckResult]:
        with self.lock:
            return [r for n, r, _ in self.items if n == name]


@pytest.fixture(autouse=True)
def short_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner_mod, "DEADLINE_GRACE_S", 0.2)


def test_thresholds_applied_to_probe_result() -> None:
    sink = Sink()
    r = ProbeRunner(sink, workers=2)
    r.submit(CheckSpec("cpu", Quick(97.0), 1.0, {"v": Threshold(warn=80, crit=95)}))
    wait_until(lambda: sink.of("cpu"), 5, "result")
    res = sink.of("cpu")[0]
    assert res.status is Status.CRIT and "v=97% ≥ 95%" in res.summary
    r.stop()


def test_hung_probe_gets_unknown_on_time_and_is_not_restarted() -> None:
    sink = Sink()
    hang = Hang()
    r = ProbeRunner(sink, workers=4)
    t0 = time.monotonic()
    r.submit(CheckSpec("stuck", hang, 0.5))
    wait_until(lambda: sink.of("stuck"), 5, "deadline result")
    first = sink.of("stuck")[0]
    elapsed = sink.items[0][2] - t0
    assert first.status is Status.UNKNOWN and first.summary.startswith("timed out after 0.5 s")
    assert 0.5 <= elapsed < 1.5
    # Still hung: further submissions yield UNKNOWN at once and start no new thread.
    for _ in range(5):
        r.submit(CheckSpec("stuck", hang, 0.5))
    assert len(sink.of("stuck")) == 6
    assert all("still hung" in x.summary for x in sink.of("stuck")[1:])
    assert hang.entered == 1 and r.thread_count == 1
    # When the driver finally returns, its late result is discarded, and the check runs again.
    hang.release.set()
    wait_until(lambda: "stuck" not in r.busy_checks(), 5, "worker to come back")
    assert len(sink.of("stuck")) == 6
    r.submit(CheckSpec("stuck", Quick(), 0.5))
    wait_until(lambda: len(sink.of("stuck")) == 7, 5, "fresh run")
    assert sink.of("stuck")[-1].status is Status.OK
    r.stop()


def test_threads_stay_bounded_and_queued_runs_time_out_when_all_workers_hang() -> None:
    sink = Sink()
    hangs = [Hang() for _ in range(3)]
    r = ProbeRunner(sink, workers=3)
    for i, h in enumerate(hangs):
        r.submit(CheckSpec(f"h{i}", h, 0.3))
    quick = Quick()
    r.submit(CheckSpec("q", quick, 0.3))  # no worker free: must still get its result on time
    wait_until(lambda: sink.of("q"), 5, "queued check result")
    q = sink.of("q")[0]
    assert q.status is Status.UNKNOWN and "waiting for a free probe worker" in q.summary
    assert quick.calls == 0 and r.thread_count == 3
    # The queued check is not held: once a worker is free it runs normally.
    for h in hangs:
        h.release.set()
    wait_until(lambda: not r.busy_checks(), 5, "workers free")
    r.submit(CheckSpec("q", quick, 0.3))
    wait_until(lambda: len(sink.of("q")) == 2, 5, "second run")
    assert sink.of("q")[1].status is Status.OK and r.thread_count == 3
    r.stop()


def test_many_hanging_rounds_do_not_grow_threads() -> None:
    sink = Sink()
    r = ProbeRunner(sink, workers=8)
    hangs = {f"h{i}": Hang() for i in range(5)}
    quicks = {f"q{i}": Quick() for i in range(20)}
    for _ in range(10):
        for name, p in [*hangs.items(), *quicks.items()]:
            r.submit(CheckSpec(name, p, 0.2))
        wait_until(lambda: all(sink.of(n) for n in quicks), 5, "quick results")
        assert r.thread_count <= 8
        wait_until(lambda: set(r.busy_checks()) <= set(hangs), 5, "quick checks done")
    assert all(len(sink.of(n)) == 10 for n in quicks)
    assert all(sink.of(n)[-1].status is Status.OK for n in quicks)
    assert all(h.entered == 1 for h in hangs.values())
    assert threading.active_count() < 30
    for h in hangs.values():
        h.release.set()
    r.stop()


def test_probe_exception_becomes_unknown_with_reason() -> None:
    sink = Sink()
    r = ProbeRunner(sink, workers=1)
    r.submit(CheckSpec("boom", Boom(), 1.0))
    wait_until(lambda: sink.of("boom"), 5, "result")
    res = sink.of("boom")[0]
    assert res.status is Status.UNKNOWN and "RuntimeError: driver exploded" in res.summary
    r.submit(CheckSpec("after", Quick(), 1.0))
    wait_until(lambda: sink.of("after"), 5, "worker survived")
    r.stop()


def test_history_is_passed_to_probe() -> None:
    seen: dict[str, object] = {}

    class Wants:
        kind: ClassVar[str] = "test"

        def run(self, ctx: ProbeContext) -> CheckResult:
            seen.update(ctx.history)
            return Stopwatch(ctx).result(Status.OK, "ok")

    def provider(check: str, patterns: object) -> dict[str, list[tuple[float, float]]]:
        return {f"{check}:{list(patterns)}": [(1.0, 2.0)]}  # type: ignore[call-overload]

    sink = Sink()
    r = ProbeRunner(sink, workers=1, history=provider)
    r.submit(CheckSpec("x", Wants(), 1.0, history_patterns=("disk:*",)))
    wait_until(lambda: sink.of("x"), 5, "result")
    assert seen == {"x:['disk:*']": [(1.0, 2.0)]}
    r.stop()


def test_unknown_result_raised_only_by_crit_breach() -> None:
    from probes.base import Metric
    from probes.thresholds import apply_thresholds

    rules = {"disk:*.used_pct": Threshold(warn=85, crit=95)}
    partial = CheckResult(Status.UNKNOWN, "statvfs timed out: /nfs", (Metric("disk:/.used_pct", 90.0, "%"),))
    assert apply_thresholds(partial, rules) is partial
    full = CheckResult(Status.UNKNOWN, "statvfs timed out: /nfs", (Metric("disk:/.used_pct", 99.0, "%"),))
    raised = apply_thresholds(full, rules)
    assert raised.status is Status.CRIT and "disk:/.used_pct=99% ≥ 95%" in raised.summary


def test_a_burst_of_submissions_gets_enough_workers() -> None:
    class Slow:
        kind: ClassVar[str] = "test"

        def run(self, ctx: ProbeContext) -> CheckResult:
            threading.Event().wait(0.3)  # a real 0.3 s answer time, like a slow endpoint
            return Stopwatch(ctx).result(Status.OK, "slow but fine")

    sink = Sink()
    r = ProbeRunner(sink, workers=100)
    # One worker exists and is idle (a previous round), then a burst arrives all at once, as
    # when `sentinel check` submits every check: the idle worker must not be the only one.
    r.submit(CheckSpec("warm-up", Quick(), 1.0))
    wait_until(lambda: sink.of("warm-up") and not r.busy_checks(), 5, "an idle worker")
    sink.items.clear()
    for i in range(100):
        r.submit(CheckSpec(f"c{i}", Slow(), 1.0))
    wait_until(lambda: len(sink.items) == 100, 10, "100 results")
    statuses = [res.status for _, res, _ in sink.items]
    assert statuses.count(Status.OK) == 100, [res.summary for _, res, _ in sink.items if res.status]
    assert r.thread_count >= 50
    r.stop()


def test_a_run_that_waited_for_a_worker_gets_its_full_budget_from_its_start() -> None:
    class Takes:
        kind: ClassVar[str] = "test"

        def __init__(self, seconds: float) -> None:
            self.seconds = seconds

        def run(self, ctx: ProbeContext) -> CheckResult:
            threading.Event().wait(self.seconds)
            return Stopwatch(ctx).result(Status.CRIT, f"no answer within {self.seconds} s")

    sink = Sink()
    r = ProbeRunner(sink, workers=1)
    r.submit(CheckSpec("first", Takes(0.7), 2.0))
    r.submit(CheckSpec("second", Takes(0.7), 1.0))  # waits ~0.7 s, then runs 0.7 s
    wait_until(lambda: len(sink.items) == 2, 5, "both results")
    # Counted from submission, `second` would be past 1.0 + 0.2 s; from its start it is not.
    assert sink.of("second")[0].summary == "no answer within 0.7 s"
    r.stop()
