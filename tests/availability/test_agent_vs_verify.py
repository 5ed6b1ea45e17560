"""Property: over random timelines — agent runs that stop, crash or fall silent, state changes of
several checks, configuration versions that change the critical set, redundancy and planned
hours, maintenance windows and force-majeure records recorded late or early with one, two or
late approvals — the agent's figures and the exported archive's standalone verify.py agree to
the millisecond, and the archive's chain verifies.
"""

from __future__ import annotations

import json
import zipfile
from datetime import datetime
from pathlib import Path
from tempfile import TemporaryDirectory
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.config.schema import Config, load
from agent.config.windows import WindowSpec
from agent.reports.export import export
from agent.state.machine import CheckState
from agent.store import verify_standalone as V
from agent.store.db import Store
from agent.windows import exclusions as fm
from agent.windows import ledger
from probes.base import CheckResult, Status

SH = ZoneInfo("Asia/Shanghai")
DAY0 = int(datetime(2026, 11, 9, 22, tzinfo=SH).timestamp() * 1000)
HORIZON = 8 * 3_600_000
CHECKS = ("a", "b", "c")
GRACE = 2_000


def config_text(db: Path, critical: frozenset[str], redundant: bool, office_hours: bool) -> str:
    lines = [
        "site: {name: 测试医院, timezone: Asia/Shanghai}",
        f"storage: {{path: {db}}}",
        "agent: {heartbeat: 1s, liveness_grace: 2s}",
        "systems:",
        "  - name: S",
    ]
    if office_hours:
        lines.append("    schedule: {mon: ['00:30-03:00', '08:00-18:00'], tue: ['08:00-18:00']}")
    if redundant and {"a", "b"} <= critical:
        lines.append("    redundancy: [{checks: [a, b], need: 1}]")
    lines.append("checks:")
    for c in CHECKS:
        crit = "true" if c in critical else "false"
        lines.append(
            f"  - {{name: {c}, kind: tcp, system: S, host: 127.0.0.1, port: 1, "
            f"availability_critical: {crit}}}"
        )
    return "\n".join(lines) + "\n"


instants = st.integers(min_value=0, max_value=HORIZON)
statuses = st.sampled_from([Status.OK, Status.WARN, Status.CRIT, Status.UNKNOWN])


@st.composite
def scenarios(draw: st.DrawFn) -> dict:
    offset = draw(st.integers(0, 999))  # instants to the millisecond
    cuts = sorted(draw(st.lists(instants, min_size=2, max_size=6, unique=True)))
    runs = []
    for i in range(0, len(cuts) - 1, 2):
        end_how = draw(st.sampled_from(["stop", "crash", "silent"]))
        runs.append(
            {
                "start": cuts[i],
                "end": cuts[i + 1],
                "how": end_how,
                "version": draw(st.integers(0, 2)),
                "changes": sorted(
                    draw(
                        st.lists(
                            st.tuples(st.integers(cuts[i], cuts[i + 1]), st.sampled_from(CHECKS), statuses),
                            max_size=8,
                        )
                    )
                ),
            }
        )
    versions = [
        {
            "critical": frozenset(draw(st.sets(st.sampled_from(CHECKS)))),
            "redundant": draw(st.booleans()),
            "office_hours": draw(st.booleans()),
        }
        for _ in range(3)
    ]
    windows = []
    for k in range(draw(st.integers(0, 3))):
        s = draw(instants)
        windows.append(
            {
                "name": f"w{k}",
                "kind": draw(st.sampled_from(["maintenance", "force_majeure"])),
                "start": s,
                "end": s + draw(st.integers(1, 3 * 3_600_000)),
                "recorded": draw(instants),
                "target": draw(st.sampled_from(["a", "b", "c", "S"])),
                "second": draw(st.one_of(st.none(), instants)),
            }
        )
    now = max(cuts) + draw(st.integers(1, 600_000))
    return {"offset": offset, "runs": runs, "versions": versions, "windows": windows, "now": now}


def build(root: Path, sc: dict) -> tuple[Store, Config, int]:
    base = DAY0 + sc["offset"]
    db = root / "s.db"
    configs = []
    for i, v in enumerate(sc["versions"]):
        p = root / f"c{i}.yaml"
        p.write_text(config_text(db, v["critical"], v["redundant"], v["office_hours"]), encoding="utf-8")
        configs.append(load(p))
    store = Store(db)
    store.sync_checks([(c, "tcp", "S") for c in CHECKS], base + sc["runs"][0]["start"])
    # Ledger entries are written at their recording instant, interleaved with the runs.
    events: list[tuple[int, int, str, dict]] = []
    for w in sc["windows"]:
        events.append((base + w["recorded"], 0, "record", w))
        if w["second"] is not None:
            events.append((base + max(w["second"], w["recorded"]), 1, "approve", w))
    pending = sorted(events, key=lambda e: (e[0], e[1]))

    def ledger_until(ts: int) -> None:
        while pending and pending[0][0] <= ts:
            at, _, what, w = pending.pop(0)
            _ledger(store, w, base, at, what)

    for run_i, r in enumerate(sc["runs"]):
        start = base + r["start"]
        ledger_until(start)
        run = store.begin_run(start, 100 + run_i, "h", "t", GRACE)
        cfg = configs[r["version"]]
        store.record_config(start, run, *cfg.canonical())
        states = store.load_states()
        for c in CHECKS:
            states.setdefault(c, CheckState())
        for ts, check, status in r["changes"]:
            at = base + ts
            ledger_until(at)
            result = CheckResult(status, status.name, started_at=datetime.fromtimestamp(at / 1000, SH))
            st_ = states[check]
            store.write_batch(run, [(check, result, st_.observe(at, status, status.name, 1), st_)])
        end = base + r["end"]
        if r["how"] == "stop":
            store.end_run(run, end)
        else:
            store.heartbeat(run, end)  # crash or silence: the last heartbeat, no stop
    ledger_until(base + sc["now"])
    return store, configs[sc["runs"][-1]["version"]], base + sc["now"]


def _ledger(store: Store, w: dict, base: int, at: int, what: str) -> None:
    start = datetime.fromtimestamp((base + w["start"]) / 1000, SH)
    end = datetime.fromtimestamp((base + w["end"]) / 1000, SH)
    if w["kind"] == "maintenance":
        if what == "record":
            target = {"systems": ["S"]} if w["target"] == "S" else {"checks": [w["target"]]}
            spec = WindowSpec(name=w["name"], reason="演练", start=start, end=end, **target)
            ledger.add_window(store, spec, "乙方", "张工", "tester", at)
        else:
            ledger.approve_window(store, w["name"], "甲方", "王主任", "tester", at)
    elif what == "record":
        rec = fm.NewRecord(name=w["name"], start=start, end=end, reason="市电中断", systems=("S",))
        fm.add(store, rec, SH, "乙方", "张工", "tester", at)
    else:
        fm.approve(store, w["name"], "甲方", "王主任", "tester", at)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_agent_and_standalone_verify_agree_to_the_millisecond(sc: dict) -> None:
    with TemporaryDirectory() as tmp:
        root = Path(tmp)
        store, config, now = build(root, sc)
        start = DAY0 - 3_600_000
        end = DAY0 + HORIZON + 3_600_000
        out = root / "e.zip"
        export(store, config, "p", start, end, now, out)
        store.close()
        arch = root / "arch"
        with zipfile.ZipFile(out) as z:
            z.extractall(arch)
        lines, problems, manifest = V.verify_archive(str(arch), None)
        assert not problems, [p.text() for p in problems]
        av_lines, differ = V.recompute(str(arch), manifest)
        assert not differ, av_lines
        systems = json.loads((arch / "availability" / "systems.json").read_text(encoding="utf-8"))
        (s,) = systems
        if s["agent_figures"] is not None:
            f = s["agent_figures"]
            assert f["planned_ms"] == sum(
                f[k]
                for k in (
                    "available_ms",
                    "unavailable_ms",
                    "unknown_ms",
                    "maintenance_ms",
                    "force_majeure_ms",
                )
            )


def test_the_property_sees_each_rule() -> None:
    """The generator reaches the situations the property is about (so a pass means something)."""
    seen = {"late": 0, "pending": 0, "silent": 0, "versions": 0}

    @settings(max_examples=80, deadline=None, database=None)
    @given(scenarios())
    def probe(sc: dict) -> None:
        seen["late"] += any(w["recorded"] > w["start"] for w in sc["windows"])
        seen["pending"] += any(w["second"] is None for w in sc["windows"])
        seen["silent"] += any(r["how"] != "stop" for r in sc["runs"])
        seen["versions"] += len({r["version"] for r in sc["runs"]}) > 1

    probe()
    assert all(v > 0 for v in seen.values()), seen


FIXED = {
    "offset": 7,
    "runs": [
        {"start": 0, "end": 3_600_000, "how": "crash", "version": 0,
         "changes": [(10, "a", Status.OK), (20, "b", Status.OK), (30, "c", Status.OK),
                     (600_000, "c", Status.CRIT), (900_000, "c", Status.OK)]},
        {"start": 4_000_000, "end": 7_000_000, "how": "stop", "version": 1,
         "changes": [(4_000_010, "a", Status.OK), (4_000_020, "b", Status.OK),
                     (4_000_030, "c", Status.CRIT)]},
    ],
    "versions": [
        {"critical": frozenset({"a", "b"}), "redundant": True, "office_hours": False},
        {"critical": frozenset({"a", "c"}), "redundant": False, "office_hours": False},
        {"critical": frozenset({"a"}), "redundant": False, "office_hours": False},
    ],
    "windows": [
        {"name": "w0", "kind": "maintenance", "start": 4_500_000, "end": 5_000_000, "recorded": 6_000_000,
         "target": "c", "second": 6_500_000},
    ],
    "now": 7_200_000,
}  # fmt: skip


def _archive(tmp: Path) -> Path:
    store, config, now = build(tmp, FIXED)
    out = tmp / "e.zip"
    export(store, config, "p", DAY0 - 3_600_000, DAY0 + HORIZON, now, out)
    store.close()
    arch = tmp / "arch"
    with zipfile.ZipFile(out) as z:
        z.extractall(arch)
    return arch


def test_verify_checks_the_applied_configuration_and_approvals_against_the_chain(tmp_path: Path) -> None:
    arch = _archive(tmp_path)
    manifest = json.loads((arch / "manifest.json").read_text(encoding="utf-8"))
    lines, differ = V.recompute(str(arch), manifest)
    assert not differ, lines
    path = arch / "availability" / "systems.json"
    original = path.read_text(encoding="utf-8")
    systems = json.loads(original)
    eras = systems[0]["eras"]
    assert [e["checks"] for e in eras] == [["a", "b"], ["a", "c"]]  # version 0, then version 1

    # An era claiming another critical set than the chained configuration of that version.
    eras[1]["checks"] = ["a"]
    path.write_text(json.dumps(systems), encoding="utf-8")
    lines, differ = V.recompute(str(arch), manifest)
    assert differ and "critical checks differ" in " ".join(lines)

    # An exclusion whose second approval is not in the chained approvals ledger.
    path.write_text(original, encoding="utf-8")
    approvals = arch / "data" / "approvals.jsonl"
    rows = [r for r in approvals.read_text(encoding="utf-8").splitlines() if "甲方" not in r]
    approvals.write_text("\n".join(rows) + "\n", encoding="utf-8")
    lines, differ = V.recompute(str(arch), manifest)
    assert differ and "未经双方认定" in " ".join(lines)
