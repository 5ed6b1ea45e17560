"""The yearly availability acceptance report (验收报告) for the acceptance committee.

Per business system: the formula with the actual numbers, planned time, every exclusion
(maintenance occurrence or force-majeure record) with both parties' approvals, its recording
time and whether it counted, unknown time itemised with its cause, every outage, the verdict;
the basis of the computation (both policies, the liveness grace, when monitoring began, the
contract year of the verdict, the configuration versions in force); then overdue counts against
the contract's limits, the evidence chain head the figures were computed from, and blank
signature lines for both parties. PDF is its primary form.

The report shows its working: everything listed comes from the same engine run as the figures
(`agent.availability.gather`), so the committee can add up what it is shown.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agent.clock.periods import Period, contract_year
from agent.config.schema import Config
from agent.reports import avail, common, faultstats
from agent.reports.avail import Progress
from agent.store.db import Store

UNKNOWN_ROWS = 200
"""Unknown spans listed per system in the HTML and PDF (in time order); the totals per cause
cover all of them and the JSON data file keeps every one. A year of flapping probes would
otherwise make a PDF of thousands of pages."""


def by_cause(unknown: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Unknown time per cause: [{cause, cause_zh, count, duration_ms}], in the engine's order
    of causes (agent down, probe, before monitoring)."""
    out: dict[str, dict[str, Any]] = {}
    for u in unknown:
        row = out.setdefault(
            u["cause"], {"cause": u["cause"], "cause_zh": u["cause_zh"], "count": 0, "duration_ms": 0}
        )
        row["count"] += 1
        row["duration_ms"] += u["duration_ms"]
    order = ("agent_down", "probe", "before_monitoring")
    return sorted(out.values(), key=lambda r: order.index(r["cause"]) if r["cause"] in order else len(order))


def config_versions(store: Store, systems: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The configuration versions the engine used over the period, over every system: version
    id, SHA-256, when it was recorded (the agent start that put it in force), and the part of
    the measured period it governed. Version id None: no version was recorded, the
    configuration file given was used."""
    spans: dict[tuple[int | None, str | None], dict[str, Any]] = {}
    for e in systems:
        for v in e["config_versions"]:
            key = (v["version_id"], v["hash"])
            row = spans.setdefault(key, dict(v))
            row["start_ms"] = min(row["start_ms"], v["start_ms"])
            row["end_ms"] = max(row["end_ms"], v["end_ms"])
    recorded = {v.id: v for v in store.config_versions()}
    out = []
    for row in spans.values():
        rec = recorded.get(row["version_id"]) if row["version_id"] is not None else None
        out.append(row | {"recorded_ms": rec.ts if rec else None, "run_id": rec.run_id if rec else None})
    return sorted(out, key=lambda r: (r["start_ms"], r["end_ms"]))


def basis(
    config: Config, store: Store, systems: Sequence[dict[str, Any]], period: Period, now_ms: int
) -> dict[str, Any]:
    """What the figures rest on, stated once for the report (the engine's values, which are the
    same for every system; the configuration's when there is no system)."""
    first = systems[0] if systems else None
    monitoring_start = store.monitoring_start()
    # The contract year of the verdict (the engine's label; its dates for a named service period).
    year = contract_year(config.contract, config.site.tz, period.start_ms)
    before: dict[str, int] | None
    if first is not None:
        before = first["before_monitoring"]
    else:
        hi = min(period.end_ms, monitoring_start if monitoring_start is not None else now_ms, now_ms)
        before = {"start_ms": period.start_ms, "end_ms": hi} if hi > period.start_ms else None
    return {
        "unknown_policy": config.availability.unknown_policy,
        "before_monitoring_policy": first["before_monitoring_policy"]
        if first is not None
        else config.availability.before_monitoring,
        "before_monitoring": before,
        "monitoring_start_ms": monitoring_start,
        "liveness_grace_ms": first["liveness_grace_ms"] if first is not None else config.agent.grace_ms,
        "year_label": first["year_label"] if first is not None and first["year_label"] else year.label,
        "year_describe": year.describe(),
        "config_versions": config_versions(store, systems),
        "unknown_rows": UNKNOWN_ROWS,
    }


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
    for e in systems:
        e["unknown_by_cause"] = by_cause(e["unknown"])
    fstats = faultstats.stats(store.db, config, start, end, now_ms)
    data.update(
        availability=systems,
        outages=avail.all_outages(systems),
        overdue=faultstats.overdue_vs_limits(store.db, config, start, now_ms),
        faults={k: v for k, v in fstats.items() if k != "faults"},
        all_passed=all(e["passed"] for e in systems if e["figures"] is not None) if systems else None,
        basis=basis(config, store, systems, period, now_ms),
    )
    return data
