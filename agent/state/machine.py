"""Per-check state machine: samples in, confirmed state changes (as intervals) out.

Pure logic, no I/O. A new state is confirmed after `confirmations` consecutive samples that
differ from the current one; the interval it opens starts at the *first* of those samples,
so an outage begins when it began, not when retries finished. Samples that fall back to the
confirmed state before confirmation are absorbed (a blip), which is what confirmations are for.

A restart changes none of this (issue 14): the store gives back each check's confirmed state, so
the first sample after a start is judged against it like any other. Only the interval is new:
the dead run's intervals were closed at its last sign of life, the gap stays unknown, and the
first sample re-opens the confirmed state at its own time (see `CheckState.observe`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from probes.base import Status


@dataclass(frozen=True, slots=True)
class Change:
    """Close the open interval (if any) at `at_ms` and open `(state, at_ms)`."""

    state: Status
    at_ms: int
    previous: Status | None
    summary: str
    maintenance: str | None = None
    """Name of the maintenance window the new interval lies in (None: normal operation)."""


@dataclass(slots=True)
class CheckState:
    hard: Status | None = None
    """Confirmed state; None before the first sample."""
    interval_open: bool = False
    """False after a restart or gap: the next sample re-opens an interval of `hard` (or of its
    own state when `hard` is None: a check never seen before)."""
    pending: list[tuple[int, int, str]] = field(default_factory=list)
    """Samples (ts_ms, status, summary) differing from `hard`, oldest first."""
    last_ts: int = 0
    last_status: Status | None = None
    maintenance: str | None = None
    """Maintenance window of the open interval."""
    summary: str = ""
    """Text of the sample that opened the confirmed state's interval: an interval re-opened
    after a restart keeps it (the first sample may be a blip that says something else)."""
    step_ms: int | None = None
    """Only while restored and not yet observed: the spacing of the check's samples before the
    restart. Pending samples carried over from the store still count when the first sample
    after the start comes within 1.5 steps of the last one (no scheduled sample was missed);
    None: they are dropped and counting starts afresh."""
    floor_ms: int = 0
    """Start of the interval re-opened after a restart: a confirmation never dates a change
    earlier (before it lie the dead run's closed intervals and the unknown gap)."""

    def observe(
        self,
        ts_ms: int,
        status: Status,
        summary: str,
        confirmations: int,
        maintenance: str | None = None,
    ) -> list[Change]:
        # Results of one check can arrive out of order (a run that waited for a worker reports
        # after a later "skipped" result). Intervals must never overlap, so a late sample counts
        # from the latest time already seen.
        previous_ts = self.last_ts
        ts_ms = max(ts_ms, self.last_ts)
        self.last_ts = ts_ms
        self.last_status = status
        changes: list[Change] = []
        if not self.interval_open:
            self.interval_open = True
            self.maintenance = maintenance
            self.floor_ms = ts_ms
            step, self.step_ms = self.step_ms, None
            if self.hard is None or status == self.hard:
                # First sample ever (nothing to confirm against: its state starts the
                # interval), or the confirmed state still holds after a restart.
                previous = self.hard
                self.hard = status
                self.pending.clear()
                self.summary = summary
                return [Change(status, ts_ms, previous, summary, maintenance)]
            # After a restart, a sample that differs from the confirmed state is pending like
            # any other: the state stays as confirmed, so its interval re-opens here, at the
            # first observed instant, as a running agent's interval would simply go on.
            if step is None or ts_ms - previous_ts > step * 3 // 2:
                # Samples around a gap in which a sample was missed are not consecutive.
                self.pending.clear()
            changes.append(Change(self.hard, ts_ms, self.hard, self.summary, maintenance))
        elif maintenance != self.maintenance:
            # A maintenance window began or ended: split the interval here so the time
            # inside the window is recorded as maintenance, whatever the state.
            self.maintenance = maintenance
            assert self.hard is not None
            changes.append(Change(self.hard, ts_ms, self.hard, summary, maintenance))
        if status == self.hard:
            self.pending.clear()
            return changes
        self.pending.append((ts_ms, int(status), summary))
        if len(self.pending) < confirmations:
            return changes
        # Confirmed: replay the pending samples as intervals, one per run of equal status,
        # so a CRIT/UNKNOWN mix is recorded as it happened.
        previous = self.hard
        replay: list[Change] = []
        for ts, st, text in self.pending:
            s = Status(st)
            if s == previous:
                continue
            # Samples carried over a restart are dated at the re-opened interval's start.
            at = max(ts, self.floor_ms)
            if replay and replay[-1].at_ms == at:
                # Two changes at one instant: the later one is the state from then on.
                prior = replay.pop().previous
                if s != prior:
                    replay.append(Change(s, at, prior, text, maintenance))
            else:
                replay.append(Change(s, at, previous, text, maintenance))
            previous = s
        self.hard = previous
        self.pending.clear()
        if replay:
            self.summary = replay[-1].summary
        # A split (or re-opening) at this sample and a replay starting no later: the replay
        # wins (it is older), and the interval it would have opened would be empty.
        if changes and replay and replay[0].at_ms <= changes[0].at_ms:
            changes = []
        return changes + replay

    def gap(self) -> None:
        """The agent stopped observing: the open interval was closed by the store."""
        self.interval_open = False
        self.pending.clear()
