"""`sentinel evidence export`: a self-contained archive for the acceptance committee.

The archive holds the chained rows of the period (JSON Lines, one array per row: the
canonical columns then the row's link), the link each table's first exported row continues
from (`anchor_h`), the pruned-segment checkpoints, what availability needs (each system's
critical checks, redundancy groups, planned spans and exclusion spans, the agent runs), the
agent's own figures, a README (中文 / English) and `verify.py`, which uses only the Python
standard library to check the chain and recompute every system's availability.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from agent.config.schema import Config
from agent.store import evidence as E
from agent.store import export as X
from agent.store.db import Store
from agent.store.verify_standalone import genesis


@dataclass(frozen=True, slots=True)
class Exported:
    path: Path
    rows: int
    tables: dict[str, int]
    head: E.ChainHead | None


def _availability(
    store: Store, config: Config, start_ms: int, end_ms: int, now_ms: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Per system: what the stdlib script needs to recompute the figure, and the agent's own.

    A system is exported era by era (the configuration in force: its critical checks, redundancy
    groups, planned spans and the approved exclusion spans of each check), so verify.py applies
    the same configuration history the agent did without knowing it."""
    from agent.availability import compute as av
    from agent.availability import eras as eras_
    from agent.availability import gather as avs

    stop = min(end_ms, now_ms)
    src = avs.Sources(store, config, start_ms, end_ms, now_ms)
    figures = {
        f.subject: f for f in avs.system_figures(store, config, start_ms, end_ms, now_ms, with_verdict=False)
    }
    systems = []
    for name, fig in figures.items():
        eras = []
        for a, b, era in eras_.overlapping(src.eras, src.measured_from(start_ms), stop):
            view = era.systems.get(name)
            if view is None or not view.critical:
                continue
            eras.append(
                {
                    "start_ms": a,
                    "end_ms": b,
                    "config_version": era.version_id,
                    "config_hash": era.hash,
                    "checks": list(view.critical),
                    "groups": [{"checks": list(c), "need": k} for c, k in view.redundancy],
                    "schedule": view.schedule_json(),
                    "planned": [list(p) for p in av.planned_spans(view.schedule, config.site.tz, a, b)],
                    "exclusions": {
                        c: [[x.start_ms, x.end_ms, x.kind, x.name] for x in src.exclusions_for(name, c, a, b)]
                        for c in view.critical
                    },
                }
            )
        agent = fig.figures.as_dict() if fig.figures is not None else None
        if agent is not None:
            agent.pop("outages", None)
        systems.append(
            {
                "name": name,
                "target_pct": fig.target_pct,
                "checks": list(fig.checks),
                "eras": eras,
                "exclusion_records": [
                    {
                        "kind": x.kind,
                        "name": x.name,
                        "start_ms": x.start_ms,
                        "end_ms": x.end_ms,
                        "effective": x.effective,
                        "late": x.late,
                        "recorded_ms": x.recorded_ms,
                        "recorded_by": x.recorded_by,
                        "approvals": list(x.approvals),
                    }
                    for x in fig.exclusions
                ],
                "agent_figures": agent,
            }
        )
    runs = [
        {
            "id": r.id,
            "started_ts": r.started_ts,
            "heartbeat_ts": r.heartbeat_ts,
            "stopped_ts": r.stopped_ts,
            "clean": r.clean,
        }
        for r in store.runs()
    ]
    return systems, runs


def _figures_csv(systems: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    keys = (
        "planned_ms",
        "available_ms",
        "unavailable_ms",
        "unknown_ms",
        "maintenance_ms",
        "force_majeure_ms",
    )
    w.writerow(["system", *keys, "availability_pct", "availability_excluded_pct", "target_pct"])
    for s in systems:
        f = s["agent_figures"] or {}
        w.writerow(
            [
                s["name"],
                *(f.get(k) for k in keys),
                f.get("availability_pct"),
                f.get("availability_excluded_pct"),
            ]
            + [s["target_pct"]]
        )
    return buf.getvalue()


def _readme(manifest: dict[str, Any]) -> str:
    # The source tree's templates/ directory, or the same files shipped as agent.templates.
    source = Path(__file__).resolve().parent.parent / "templates" / "evidence_README.md"
    if source.is_file():
        text = source.read_text(encoding="utf-8")
    else:
        text = resources.files("agent.templates").joinpath("evidence_README.md").read_text(encoding="utf-8")
    return text.replace("{period}", str(manifest["period"])).replace("{head}", str(manifest["head"]))


def export(
    store: Store,
    config: Config,
    label: str,
    start_ms: int,
    end_ms: int,
    now_ms: int,
    out: Path,
) -> Exported:
    db = store.db
    head = E.head(store.db)
    manifest: dict[str, Any] = {
        "format": "his-sentinel-evidence/1",
        "period": label,
        "start_ms": start_ms,
        "end_ms": end_ms,
        "generated_ms": now_ms,
        "key_id": E.stored_key_id(db) or "",
        "head": head.digest_hex if head else None,
        "head_sealed_at_ms": head.sealed_at_ms if head else None,
        "tables": [],
    }
    files: dict[str, str] = {}
    counts: dict[str, int] = {}
    for t, rng in ((t, r) for t, r in zip(E.TABLES, X.ranges(db, start_ms, end_ms).values(), strict=True)):
        rows = X.chained_rows(db, t, *rng) if rng else []
        name = f"data/{t.name}.jsonl"
        files[name] = "".join(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n" for r in rows)
        sealed = [r for r in rows if r[-1] is not None]
        manifest["tables"].append(
            {
                "table": t.name,
                "file": name,
                "columns": [*t.columns, "h"],
                "first_id": rng[0] if rng else None,
                "anchor_h": X.anchor(db, t, rng[0]) if rng else genesis(t.name).hex(),
                "last_id": rows[-1][0] if rows else None,
                "last_h": sealed[-1][-1] if sealed else None,
                "rows": len(rows),
            }
        )
        counts[t.name] = len(rows)
    if config is not None and config.systems:
        systems, runs = _availability(store, config, start_ms, end_ms, now_ms)
        manifest["availability"] = {
            "start_ms": start_ms,
            "end_ms": end_ms,
            "grace_ms": config.agent.grace_ms,
            "before_monitoring": config.availability.before_monitoring,
        }
        files["availability/systems.json"] = json.dumps(systems, ensure_ascii=False, indent=1)
        files["availability/runs.json"] = json.dumps(runs, ensure_ascii=False, indent=1)
        files["availability/figures.csv"] = _figures_csv(systems)
    files["manifest.json"] = json.dumps(manifest, ensure_ascii=False, indent=1)
    files["README.md"] = _readme(manifest)
    files["verify.py"] = resources.files("agent.store").joinpath("verify_standalone.py").read_text("utf-8")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        for name, text in files.items():
            z.writestr(name, text)
    tmp.replace(out)
    return Exported(out, sum(counts.values()), counts, head)
