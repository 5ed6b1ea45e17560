"""The yearly availability acceptance report (验收报告) for the acceptance committee.

Per business system: the formula with the actual numbers, planned time, every exclusion
with its approver and reason, unknown time and coverage, every outage, the verdict; then
overdue counts against the contract's limits, the evidence chain head the figures were
computed from, and blank signature lines for both parties. PDF is its primary form.
"""

from __future__ import annotations

from typing import Any

from agent.clock.periods import Period
from agent.config.schema import Config
from agent.reports import avail, common, faultstats
from agent.reports.avail import Progress
from agent.store.db import Store


def build_acceptance(
    config: Config,
    store: Store,
    period: Period,
    now_ms: int,
    *,
    late: bool = False,
    progress: Progress | None = None,
) -> dict[str, Any]:
    start, end = period.start_ms, period.end_ms
    data = common.header(
        config, store, "acceptance", period.label, start, end, now_ms, describe=period.describe(), late=late
    )
    systems = avail.systems(config, store, start, end, now_ms, progress=progress)
    fstats = faultstats.stats(store.db, config, start, end, now_ms)
    data.update(
        availability=systems,
        outages=avail.all_outages(systems),
        overdue=faultstats.overdue_vs_limits(store.db, config, period.year, now_ms),
        faults={k: v for k, v in fstats.items() if k != "faults"},
        all_passed=all(e["passed"] for e in systems if e["figures"] is not None) if systems else None,
    )
    return data
