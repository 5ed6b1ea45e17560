"""Excluded time: every occurrence of every maintenance window and force-majeure record of the
ledgers, with what decides whether it excludes time from availability.

The rules (经双方认定; the acceptance committee is shown them):

- A span excludes time only once both 甲方 and 乙方 approved it (`ExcludedSpan.effective`),
  counting the approvals given up to the computation's `as_of_ms`. Once both approved, it
  excludes its whole span, the part before it was recorded included.
- A span recorded after it began is late (事后补录): `late` says so, and reports show it.
- A recurring window exists only from the moment it was recorded: earlier occurrences are not
  spans at all, and the occurrence running when it was recorded starts at the recording time
  (it is still late: it began before it was recorded).
- Only the ledgers count. The daemon records the configuration's windows and records when it
  first loads the configuration holding them; a record the agent has not loaded yet excludes
  nothing.
- The ledgers are read as they stood at `as_of_ms`: a record made later does not exist yet, and
  one withdrawn later still does.

Muting alerts follows another rule (one approval, from the recording on):
agent.windows.ledger.muting_schedule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from zoneinfo import ZoneInfo

from agent.config.windows import PARTIES
from agent.store.db import Store
from agent.windows.approvals import Approval
from agent.windows.exclusions import list_all
from agent.windows.ledger import list_windows
from agent.windows.maintenance import occurrences

__all__ = ["Approval", "ExcludedSpan", "excluded_spans"]


@dataclass(frozen=True, slots=True)
class ExcludedSpan:
    kind: Literal["maintenance", "force_majeure"]
    name: str
    start_ms: int
    """This occurrence's start (a recurring window's: never before `recorded_ms`)."""
    end_ms: int
    systems: tuple[str, ...]
    """Force majeure: empty means every system."""
    checks: tuple[str, ...]
    reason: str
    ticket: str | None
    recorded_ms: int
    recorded_by: str
    """The OS user who recorded it, or "config"."""
    approvals: tuple[Approval, ...]
    """The approvals given up to the computation's as_of_ms, oldest first."""
    late: bool
    """Recorded after this occurrence (or record) began (事后补录)."""

    @property
    def effective(self) -> bool:
        """Both 甲方 and 乙方 approved: the span excludes time from availability."""
        return {a.party for a in self.approvals} >= set(PARTIES)

    def covers(self, system: str | None, check: str) -> bool:
        """Whether the span applies to `check` of `system`: a window to the systems and checks it
        names, a force-majeure record to the systems it names (every system when none)."""
        if self.kind == "force_majeure":
            return not self.systems or system in self.systems
        return check in self.checks or (system is not None and system in self.systems)


def excluded_spans(
    store: Store, tz: ZoneInfo, start_ms: int, end_ms: int, as_of_ms: int
) -> list[ExcludedSpan]:
    """Every occurrence of every active maintenance window and force-majeure record overlapping
    [start_ms, end_ms), effective or not, sorted by (start_ms, name). Spans are not clipped to
    the range (the caller clips)."""
    if end_ms <= start_ms:
        return []
    out: list[ExcludedSpan] = []
    for w in list_windows(store, include_removed=True):
        if w.created_ts > as_of_ms or (w.removed_ts is not None and w.removed_ts <= as_of_ms):
            continue
        approvals = tuple(a for a in w.approvals if a.ts_ms <= as_of_ms)
        spec = w.spec
        rec = w.created_ts
        # Enumerating from the recording on keeps a year of a weekly window to its own weeks.
        lo = max(start_ms, rec) if spec.recurring else start_ms
        for occ in occurrences(spec, tz, lo, end_ms):
            s = max(occ.start_ms, rec) if spec.recurring else occ.start_ms
            if s >= occ.end_ms:
                continue
            out.append(
                ExcludedSpan(
                    "maintenance",
                    w.name,
                    s,
                    occ.end_ms,
                    tuple(spec.systems),
                    tuple(spec.checks),
                    spec.reason,
                    spec.ticket,
                    rec,
                    w.created_by,
                    approvals,
                    rec > occ.start_ms,
                )
            )
    for x in list_all(store, include_removed=True):
        if x.created_ts > as_of_ms or (x.removed_ts is not None and x.removed_ts <= as_of_ms):
            continue
        if not (x.start_ms < end_ms and x.end_ms > start_ms):
            continue
        out.append(
            ExcludedSpan(
                "force_majeure",
                x.record.name,
                x.start_ms,
                x.end_ms,
                x.record.systems,
                (),
                x.record.reason,
                None,
                x.created_ts,
                x.created_by,
                tuple(a for a in x.approvals if a.ts_ms <= as_of_ms),
                x.late,
            )
        )
    out.sort(key=lambda sp: (sp.start_ms, sp.name))
    return out
