"""Per-check state machine: samples in, confirmed state changes (as intervals) out.

Pure logic, no I/O. A new state is confirmed after `confirmations` consecutive samples that
differ from the current one; the interval it opens starts at the *first* of those samples,
so an outage begins when it began, not when retries finished. Samples that fall back to the
confirmed state before confirmation are absorbed (a blip), which is what confirmations are for.
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
    """False after a restart or gap: the next sample opens an interval directly."""
    pending: list[tuple[int, int, str]] = field(default_factory=list)
    """Samples (ts_ms, status, summary) differing from `hard`, oldest first."""
    last_ts: int = 0
    last_status: Status | None = None
    maintenance: str | None = None
    """Maintenance window of the open interval."""

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
        ts_ms = max(ts_ms, self.last_ts)
        self.last_ts = ts_ms
        self.last_status = status
        if not self.interval_open:
            # First sample ever, or first after the agent was down: the gap before it is
            # unknown anyway, so the sample's own state starts the interval at once.
            previous = self.hard
            self.hard = status
            self.pending.clear()
            self.interval_open = True
            self.maintenance = maintenance
            return [Change(status, ts_ms, previous, summary, maintenance)]
        changes: list[Change] = []
        if maintenance != self.maintenance:
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
            if s != previous:
                replay.append(Change(s, ts, previous, text, maintenance))
                previous = s
        self.hard = previous
        self.pending.clear()
        # A split at this sample and a replay starting earlier: the replay wins (it is older).
        if changes and replay and replay[0].at_ms <= changes[0].at_ms:
            changes = []
        return changes + replay

    def gap(self) -> None:
        """The agent stopped observing: the open interval was closed by the store."""
        self.interval_open = False
        self.pending.clear()
