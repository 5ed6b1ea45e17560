"""Restarts through the store (issue 14, item 5): `Store.load_states` gives back what the last run
left (confirmed state, pending samples, the confirmed interval's text, the spacing the carry-over
rule needs), and the intervals written after the restart neither cover the gap nor overlap the
dead run's.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from agent.state.machine import CheckState
from agent.store.db import Store
from probes.base import CheckResult, Status

OK, CRIT = Status.OK, Status.CRIT
T0 = 1_795_000_000_000  # ms


class Agent:
    """One check fed at controllable instants, written as the recorder writes it."""

    def __init__(self, path: Path) -> None:
        self.store = Store(path)
        self.store.sync_checks([("web", "http", "HIS")], T0)
        self.run = self.store.begin_run(T0, 1, "h", "t", grace_ms=2_000)
        self.states: dict[str, CheckState] = self.store.load_states()

    def feed(self, ts: int, status: Status, confirmations: int = 3) -> None:
        st = self.states.setdefault("web", CheckState())
        summary = "HTTP 200" if status is OK else f"HTTP 500 at {ts}"
        result = CheckResult(status, summary, started_at=datetime.fromtimestamp(ts / 1000, UTC))
        changes = st.observe(ts, status, summary, confirmations)
        self.store.write_batch(self.run, [("web", result, changes, st)])

    def restart(self, at: int, clean: bool) -> None:
        if clean:
            self.store.end_run(self.run, at)
        self.run = self.store.begin_run(at, 2, "h", "t", grace_ms=2_000)
        self.states = self.store.load_states()

    def intervals(self) -> list[tuple[int, int, int | None, int]]:
        rows = self.store.db.execute("SELECT state, start_ts, end_ts, run_id FROM intervals ORDER BY id")
        return [(int(s), int(start), end, int(run)) for s, start, end, run in rows.fetchall()]


def no_overlap(intervals: list[tuple[int, int, int | None, int]]) -> None:
    for (_, _, end, _), (_, start, _, _) in zip(intervals, intervals[1:], strict=False):
        assert end is not None and end <= start


def test_a_clean_restart_restores_the_state_and_absorbs_one_bad_sample(tmp_path: Path) -> None:
    a = Agent(tmp_path / "s.db")
    for i in range(3):
        a.feed(T0 + 1_000 * i, OK)
    a.restart(T0 + 2_500, clean=True)
    st = a.states["web"]
    assert (st.hard, st.pending, st.interval_open, st.summary) == (OK, [], False, "HTTP 200")
    a.feed(T0 + 30_000, CRIT)  # the endpoint failed while the agent was down
    a.feed(T0 + 31_000, OK)
    a.feed(T0 + 32_000, OK)
    # The first run's interval ends at its stop; the second counts OK from its first sample.
    assert a.intervals() == [(OK, T0, T0 + 2_500, 1), (OK, T0 + 30_000, None, 2)]


def test_pending_samples_survive_a_crash_when_no_sample_was_missed(tmp_path: Path) -> None:
    a = Agent(tmp_path / "s.db")
    for i in range(3):
        a.feed(T0 + 1_000 * i, OK)
    a.feed(T0 + 3_000, CRIT)
    a.feed(T0 + 4_000, CRIT)
    a.restart(T0 + 4_300, clean=False)  # kill -9, restarted at once
    st = a.states["web"]
    assert st.hard is OK and [(ts, s) for ts, s, _ in st.pending] == [(T0 + 3_000, 2), (T0 + 4_000, 2)]
    assert st.step_ms == 1_000
    a.feed(T0 + 5_200, CRIT)
    got = a.intervals()
    # Three consecutive failures: confirmed, but from the restart's first sample, never
    # across the dead run's end or the gap.
    assert [(s, start, run) for s, start, _, run in got] == [(OK, T0, 1), (CRIT, T0 + 5_200, 2)]
    no_overlap(got)


def test_pending_samples_are_dropped_after_a_long_gap(tmp_path: Path) -> None:
    a = Agent(tmp_path / "s.db")
    for i in range(3):
        a.feed(T0 + 1_000 * i, OK)
    a.feed(T0 + 3_000, CRIT)
    a.feed(T0 + 4_000, CRIT)
    a.restart(T0 + 60_000, clean=False)
    a.feed(T0 + 61_000, CRIT)  # 57 s after the last sample: counted afresh, 1 of 3
    a.feed(T0 + 62_000, OK)
    got = a.intervals()
    assert [(s, start, run) for s, start, _, run in got] == [(OK, T0, 1), (OK, T0 + 61_000, 2)]
    no_overlap(got)
