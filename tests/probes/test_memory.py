"""Probe memory (a log offset, a counter) goes round: probe -> store -> next run's context,
committed in the result's own transaction."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import pytest

from agent.runtime.memory import ProbeMemory
from agent.runtime.runner import CheckSpec, ProbeRunner
from agent.state.machine import CheckState
from agent.store.db import Store
from probes.base import CheckResult, Metric, ProbeContext, Status, Stopwatch
from tests.conftest import FakeClock, wait_until


class CountingProbe:
    """Reports how many runs it has seen, carried only through memory."""

    kind: ClassVar[str] = "counting"

    def run(self, ctx: ProbeContext) -> CheckResult:
        n = int(ctx.memory.get("n", 0)) + 1
        return Stopwatch(ctx).result(Status.OK, f"run {n}", [Metric("n", n)], memory={"n": n})


class SilentProbe:
    kind: ClassVar[str] = "silent"

    def run(self, ctx: ProbeContext) -> CheckResult:
        return Stopwatch(ctx).result(Status.OK, "no memory")


def run_once(runner: ProbeRunner, spec: CheckSpec, got: list[tuple[str, CheckResult]]) -> CheckResult:
    before = len(got)
    runner.submit(spec)
    wait_until(lambda: len(got) > before, 5, "a result")
    return got[-1][1]


def agent_round(store: Store, runs: int, probe: Any = None) -> list[CheckResult]:
    """What the daemon does: the sink notes memory, then the result is committed."""
    memory = ProbeMemory(store.probe_memories())
    got: list[tuple[str, CheckResult]] = []
    lock = threading.Lock()

    def sink(name: str, result: CheckResult) -> None:
        memory.note(name, result)
        with lock:
            got.append((name, result))

    runner = ProbeRunner(sink, workers=2, clock=FakeClock(), memory=memory.get)
    spec = CheckSpec("tail", probe or CountingProbe(), 2.0)
    out = []
    try:
        for _ in range(runs):
            r = run_once(runner, spec, got)
            st = CheckState()
            store.write_batch(None, [("tail", r, st.observe(0, r.status, r.summary, 1), st)])
            out.append(r)
    finally:
        runner.stop()
    return out


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "m.db")
    s.sync_checks([("tail", "log", None)], 0)
    return s


def test_memory_reaches_the_next_run_and_survives_a_restart(store: Store, tmp_path: Path) -> None:
    assert [r.summary for r in agent_round(store, 3)] == ["run 1", "run 2", "run 3"]
    store.close()
    again = Store(tmp_path / "m.db")
    assert again.probe_memories() == {"tail": {"n": 3}}
    assert [r.summary for r in agent_round(again, 2)] == ["run 4", "run 5"]


def test_a_result_without_memory_keeps_the_previous_one(store: Store) -> None:
    agent_round(store, 2)
    agent_round(store, 1, SilentProbe())
    assert store.probe_memories() == {"tail": {"n": 2}}


def test_memory_commits_with_its_result_or_not_at_all(store: Store) -> None:
    agent_round(store, 1)
    # Make the batch's last statement fail: the result and the memory must both roll back.
    store.db.execute(
        "CREATE TRIGGER boom BEFORE INSERT ON probe_memory BEGIN SELECT RAISE(ABORT, 'boom'); END"
    )
    store.db.execute(
        "CREATE TRIGGER boom2 BEFORE UPDATE ON probe_memory BEGIN SELECT RAISE(ABORT, 'boom'); END"
    )
    results_before = store.db.execute("SELECT count(*) FROM results").fetchone()[0]
    with pytest.raises(sqlite3.IntegrityError):
        agent_round(store, 1)
    assert store.db.execute("SELECT count(*) FROM results").fetchone()[0] == results_before
    assert store.probe_memories() == {"tail": {"n": 1}}


def test_memory_is_read_only_for_the_probe() -> None:
    book = ProbeMemory({"a": {"offset": 10}})
    mem: Mapping[str, Any] = book.get("a")
    with pytest.raises(TypeError):
        mem["offset"] = 11  # type: ignore[index]
    assert book.get("missing") == {}
