"""Weekly, monthly, quarterly and yearly inspection reports: one builder, one template.

Weekly: availability per system, faults by level/type/system/campus, timeliness, repeat
faults, capacity trends, open findings, next week's risks. Monthly and larger add the
verdict per system, the outage list, overdue counts against the contract year's limits, the
inspection task completion rate and charts; quarterly and yearly add the improvement plan
fields to the risk list.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from agent.clock.periods import Period
from agent.config.schema import Config
from agent.reports import avail, capacity, common, completion, faultstats, risks
from agent.reports.avail import Progress
from agent.store.db import Store

PERIOD_KINDS = ("weekly", "monthly", "quarterly", "yearly")
HORIZON_DAYS = {"weekly": 7, "monthly": 31, "quarterly": 92, "yearly": 365}

SECTIONS = {
    "weekly": frozenset(),
    "monthly": frozenset({"verdict", "outages", "overdue", "completion", "charts"}),
    "quarterly": frozenset({"verdict", "outages", "overdue", "completion", "charts", "plan"}),
    "yearly": frozenset({"verdict", "outages", "overdue", "completion", "charts", "plan"}),
}


def faults_over_time(faults: list[dict[str, Any]], period: Period, tz: Any) -> dict[str, Any]:
    """New faults per bucket and level: days for up to two months, else calendar months."""
    days = (period.end - period.start).days
    by_month = days > 62
    buckets: list[str] = []
    cur = period.start.date()
    while cur < period.end.date():
        key = cur.strftime("%Y-%m") if by_month else cur.isoformat()
        if not buckets or buckets[-1] != key:
            buckets.append(key)
        cur += timedelta(days=1)
    counts: Counter[tuple[str, int]] = Counter()
    for f in faults:
        d = datetime.fromtimestamp(f["start_ms"] / 1000, tz).date()
        counts[(d.strftime("%Y-%m") if by_month else d.isoformat(), f["level"])] += 1
    return {
        "unit": "month" if by_month else "day",
        "buckets": buckets,
        "levels": {str(lv): [counts.get((b, lv), 0) for b in buckets] for lv in (1, 2, 3, 4)},
    }


def build_periodic(
    config: Config,
    store: Store,
    kind: str,
    period: Period,
    now_ms: int,
    *,
    late: bool = False,
    progress: Progress | None = None,
) -> dict[str, Any]:
    if kind not in PERIOD_KINDS:
        raise ValueError(f"not a periodic report kind: {kind!r}")
    tz = config.site.tz
    start, end = period.start_ms, period.end_ms
    data = common.header(
        config, store, kind, period.label, start, end, now_ms, describe=period.describe(), late=late
    )
    sections = SECTIONS[kind]
    systems = avail.systems(config, store, start, end, now_ms, progress=progress)
    fstats = faultstats.stats(store.db, config, start, end, now_ms)
    # The contract year containing the period's start, as the verdict's year (agent.availability).
    overdue = faultstats.overdue_vs_limits(store.db, config, start, now_ms)
    cap = capacity.trends(config, store, start, end)
    done = completion.completion(config, store, start, end, now_ms)
    horizon = HORIZON_DAYS[kind]
    open_faults = faultstats.still_open(store.db, config, now_ms)
    data.update(
        sections=sorted(sections),
        horizon_days=horizon,
        availability=systems,
        outages=avail.all_outages(systems),
        faults=fstats,
        faults_over_time=faults_over_time(fstats["faults"], period, tz),
        overdue=overdue,
        capacity=cap,
        open_findings=risks.open_findings(config, store, now_ms, open_faults),
        completion=done,
        risks=risks.risks(
            config,
            store,
            horizon_days=horizon,
            start_ms=start,
            end_ms=end,
            next_end=period.end.date() + timedelta(days=horizon),
            capacity=cap,
            availability=systems,
            overdue=overdue,
            repeats=fstats["repeats"],
            completion=done,
        ),
    )
    return data
