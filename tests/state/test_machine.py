from __future__ import annotations

from agent.state.machine import CheckState
from probes.base import Status

OK, WARN, CRIT, UNKNOWN = Status.OK, Status.WARN, Status.CRIT, Status.UNKNOWN


def feed(
    state: CheckState, samples: list[tuple[int, Status]], confirmations: int
) -> list[tuple[Status, int]]:
    out = []
    for ts, st in samples:
        out += [(c.state, c.at_ms) for c in state.observe(ts, st, st.name, confirmations)]
    return out


def test_first_sample_opens_interval_at_once() -> None:
    s = CheckState()
    assert feed(s, [(1000, OK)], 3) == [(OK, 1000)]
    assert s.hard is OK


def test_outage_starts_at_first_failing_sample_not_at_confirmation() -> None:
    s = CheckState()
    changes = feed(s, [(0, OK), (60, CRIT), (120, CRIT), (180, CRIT), (240, OK), (300, OK), (360, OK)], 3)
    assert changes == [(OK, 0), (CRIT, 60), (OK, 240)]


def test_blip_shorter_than_confirmations_is_absorbed() -> None:
    s = CheckState()
    changes = feed(s, [(0, OK), (60, CRIT), (120, CRIT), (180, OK), (240, CRIT), (300, OK)], 3)
    assert changes == [(OK, 0)]
    assert s.hard is OK and s.pending == []


def test_mixed_failure_run_is_recorded_as_it_happened() -> None:
    s = CheckState()
    changes = feed(s, [(0, OK), (10, CRIT), (20, UNKNOWN), (30, CRIT)], 3)
    assert changes == [(OK, 0), (CRIT, 10), (UNKNOWN, 20), (CRIT, 30)]
    assert s.hard is CRIT


def test_confirmations_one_changes_immediately() -> None:
    s = CheckState()
    assert feed(s, [(0, OK), (5, WARN), (9, OK)], 1) == [(OK, 0), (WARN, 5), (OK, 9)]


def test_after_gap_first_sample_reopens_the_confirmed_state_and_a_change_waits_for_confirmation() -> None:
    s = CheckState()
    feed(s, [(0, CRIT)], 3)
    s.gap()
    assert feed(s, [(500, CRIT)], 3) == [(CRIT, 500)]
    s.gap()
    # A different state after a gap is not taken at once (issue 14): the confirmed state
    # re-opens at the first sample and the new one needs its confirmations, counted afresh.
    assert feed(s, [(900, OK)], 3) == [(CRIT, 900)]
    assert s.hard is CRIT
    assert feed(s, [(1000, OK), (1100, OK)], 3) == [(OK, 900)]


def test_maintenance_window_splits_the_interval_whatever_the_state() -> None:
    s = CheckState()
    out = []
    for ts, st, maint in [(0, OK, None), (10, CRIT, "w"), (20, CRIT, "w"), (30, CRIT, "w"), (40, CRIT, None)]:
        out += [(c.state, c.at_ms, c.maintenance) for c in s.observe(ts, st, "", 3, maint)]
    # The window starts at 10: the interval splits there at once (still OK, now maintenance);
    # when CRIT is confirmed at 30 it replaces that interval from 10 (the store closes the
    # maintenance-OK interval at 10, leaving it empty); at 40 the window is over.
    assert out == [(OK, 0, None), (OK, 10, "w"), (CRIT, 10, "w"), (CRIT, 40, None)]


def test_a_late_sample_never_makes_intervals_overlap() -> None:
    s = CheckState()
    out = []
    # OK at 1000; a "skipped" UNKNOWN at 4608 arrives before the CRIT of the run that started
    # at 4112 but finished later (it had waited for a worker).
    for ts, st in [(1000, OK), (4608, UNKNOWN), (4112, CRIT)]:
        out += [(c.state, c.at_ms) for c in s.observe(ts, st, "", 1)]
    assert out == [(OK, 1000), (UNKNOWN, 4608), (CRIT, 4608)]
    starts = [at for _, at in out]
    assert starts == sorted(starts)


# ------------------------------------------------------------------ restarts (issue 14, item 5)


def restored(
    hard: Status,
    last_ts: int,
    pending: list[tuple[int, Status]] | None = None,
    step_ms: int | None = None,
    summary: str = "stored",
) -> CheckState:
    """A machine as `Store.load_states` rebuilds it after a stop or a crash."""
    return CheckState(
        hard=hard,
        interval_open=False,
        pending=[(ts, int(st), st.name) for ts, st in pending or []],
        last_ts=last_ts,
        last_status=hard if not pending else pending[-1][1],
        summary=summary,
        step_ms=step_ms,
    )


def test_one_bad_sample_after_a_restart_is_absorbed_as_while_running() -> None:
    s = restored(OK, last_ts=1_000)
    # The confirmed OK re-opens at the restart's first sample (with the stored text, not the
    # blip's); the CRIT sample only counts toward confirmation.
    first = s.observe(50_000, CRIT, "HTTP 500", 3)
    assert [(c.state, c.at_ms, c.previous, c.summary) for c in first] == [(OK, 50_000, OK, "stored")]
    assert feed(s, [(51_000, OK), (52_000, OK)], 3) == []
    assert s.hard is OK and s.pending == []


def test_a_failure_confirmed_after_a_restart_starts_at_its_first_sample() -> None:
    s = restored(OK, last_ts=1_000)
    assert feed(s, [(50_000, CRIT), (51_000, CRIT), (52_000, CRIT)], 3) == [(OK, 50_000), (CRIT, 50_000)]
    assert s.hard is CRIT


def test_a_check_seen_for_the_first_time_takes_its_first_sample_at_once() -> None:
    s = CheckState()
    assert feed(s, [(50_000, CRIT)], 3) == [(CRIT, 50_000)]
    assert s.hard is CRIT


def test_the_first_sample_equal_to_the_stored_state_reopens_it_at_once() -> None:
    s = restored(CRIT, last_ts=1_000)
    changes = s.observe(50_000, CRIT, "HTTP 500 again", 3)
    assert [(c.state, c.at_ms, c.previous) for c in changes] == [(CRIT, 50_000, CRIT)]
    assert feed(s, [(51_000, OK), (52_000, CRIT)], 3) == []  # a good blip is absorbed too


def test_a_recovery_after_a_restart_needs_its_confirmations() -> None:
    s = restored(CRIT, last_ts=1_000, summary="HTTP 500")
    first = s.observe(50_000, OK, "HTTP 200", 3)
    # Still CRIT until confirmed, and the re-opened interval keeps the failure's own text.
    assert [(c.state, c.at_ms, c.summary) for c in first] == [(CRIT, 50_000, "HTTP 500")]
    assert feed(s, [(51_000, OK), (52_000, OK)], 3) == [(OK, 50_000)]


def test_with_one_confirmation_a_restart_changes_at_once_without_an_empty_interval() -> None:
    s = restored(OK, last_ts=1_000)
    changes = s.observe(50_000, CRIT, "HTTP 500", 1)
    assert [(c.state, c.at_ms, c.previous) for c in changes] == [(CRIT, 50_000, OK)]


def test_pending_samples_carry_over_a_restart_that_missed_no_sample() -> None:
    # Two CRIT samples 1 s apart were pending when the agent stopped; the first sample after
    # the start comes 1.4 s after the last one: the three are consecutive, as while running.
    s = restored(OK, last_ts=10_000, pending=[(9_000, CRIT), (10_000, CRIT)], step_ms=1_000)
    changes = s.observe(11_400, CRIT, "HTTP 500", 3)
    # Confirmed now, but dated at the restart's first sample: before it lie the dead run's
    # closed intervals and the unknown gap, which a change never covers.
    assert [(c.state, c.at_ms, c.previous) for c in changes] == [(CRIT, 11_400, OK)]
    assert s.hard is CRIT and s.pending == []


def test_pending_samples_are_dropped_when_the_restart_missed_a_sample() -> None:
    s = restored(OK, last_ts=10_000, pending=[(9_000, CRIT), (10_000, CRIT)], step_ms=1_000)
    assert feed(s, [(11_600, CRIT)], 3) == [(OK, 11_600)]  # counted afresh: 1 of 3
    assert s.pending == [(11_600, int(CRIT), "CRIT")]
    assert feed(s, [(12_600, OK)], 3) == []  # absorbed


def test_pending_samples_without_a_known_spacing_are_dropped() -> None:
    s = restored(OK, last_ts=10_000, pending=[(9_000, CRIT), (10_000, CRIT)], step_ms=None)
    assert feed(s, [(10_500, CRIT)], 3) == [(OK, 10_500)]
    assert len(s.pending) == 1


def test_carried_mixed_samples_collapse_at_the_restart_instant() -> None:
    s = restored(OK, last_ts=10_000, pending=[(9_000, UNKNOWN), (10_000, CRIT)], step_ms=1_000)
    changes = s.observe(11_000, CRIT, "HTTP 500", 3)
    # UNKNOWN at 9 s and CRIT at 10 s both fall before the restart: one change, the later state.
    assert [(c.state, c.at_ms, c.previous) for c in changes] == [(CRIT, 11_000, OK)]


def test_the_carry_over_rule_applies_only_to_the_first_sample_after_a_restart() -> None:
    s = restored(OK, last_ts=10_000, pending=[(9_000, CRIT)], step_ms=1_000)
    feed(s, [(11_000, OK)], 3)
    assert s.step_ms is None and s.pending == []
