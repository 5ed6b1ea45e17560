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


def test_after_gap_first_sample_opens_new_interval_even_in_same_state() -> None:
    s = CheckState()
    feed(s, [(0, CRIT)], 3)
    s.gap()
    assert feed(s, [(500, CRIT)], 3) == [(CRIT, 500)]
    s.gap()
    # A different state after a gap is taken at once too: the gap itself is unknown time.
    assert feed(s, [(900, OK)], 3) == [(OK, 900)]


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
