#!/usr/bin/env python3
"""Monthly report benchmark (issue 5): 200 checks in 20 business systems, November 2026 at
1-minute samples (DB checks every 5 minutes), rendered to HTML and PDF; prints the time.

    python bench/report_monthly.py                 # seeds /tmp/sentinel-bench-report.db once
    python bench/report_monthly.py --reseed        # rebuild the store first
    python bench/report_monthly.py --limit 10      # exit 1 when HTML + PDF take longer

The store is written with the same tables and shapes the daemon writes (results with metric
JSON and details, hourly roll-ups, state intervals, agent runs, faults), in large
transactions so seeding 8.6 million results takes about a minute instead of hours. What is
timed is exactly `sentinel report monthly --pdf`: building the figures from the store,
rendering the charts, the HTML and the PDF, and writing the archive.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SH = ZoneInfo("Asia/Shanghai")
MIN = 60_000
HOUR = 60 * MIN
SYSTEMS = 20
PER_SYSTEM = 10  # 2 critical endpoints, 1 host, 1 database, 6 other checks
GIB = float(1 << 30)


def ms(month: int, day: int, hh: int = 0, year: int = 2026) -> int:
    return int(datetime(year, month, day, hh, tzinfo=SH).timestamp() * 1000)


START, END = ms(11, 1), ms(12, 1)
IV_SQL = "INSERT INTO intervals(check_id, state, start_ts, end_ts, summary, run_id) VALUES(?,?,?,?,?,?)"
NOW = ms(12, 2, 8)


def config_text(db: Path, out: Path) -> str:
    lines = [
        "site: {name: 基准测试医院, timezone: Asia/Shanghai}",
        f"storage: {{path: {db}}}",
        f"reports: {{output_dir: {out}}}",
        "systems:",
    ]
    lines += [f"  - {{name: 系统{s:02d}, campus: 院区{s % 3}}}" for s in range(SYSTEMS)]
    lines.append("checks:")
    for s in range(SYSTEMS):
        for i in range(PER_SYSTEM):
            name = f"s{s:02d}-c{i}"
            if i == 2:
                lines.append(f"  - {{name: {name}, kind: host, system: 系统{s:02d}}}")
            else:
                crit = "true" if i < 2 else "false"
                lines.append(
                    f"  - {{name: {name}, kind: tcp, system: 系统{s:02d}, host: 127.0.0.1, port: 1, "
                    f"availability_critical: {crit}}}"
                )
    return "\n".join(lines) + "\n"


def _iso(t: int) -> str:
    return datetime.fromtimestamp(t / 1000, SH).isoformat()


def seed(db: Path, config: object) -> None:
    from agent.store.db import Store

    rnd = random.Random(7)
    store = Store(db)
    checks = [c for c in config.checks]  # type: ignore[attr-defined]
    store.sync_checks(((c.name, c.kind, c.system) for c in checks), START - HOUR)
    ids = {c.name: store.check_id(c.name) for c in checks}
    run = store.begin_run(START - HOUR, 1, "bench", "bench")
    db_ = store.db
    # Outages: each critical check fails 0-3 times for 2-40 minutes.
    down: dict[str, list[tuple[int, int]]] = {}
    for c in checks:
        if c.availability_critical:
            spells = []
            for _ in range(rnd.randint(0, 3)):
                s = START + rnd.randrange(0, 30 * 24 * 60) * MIN
                spells.append((s, s + rnd.randint(2, 40) * MIN))
            down[c.name] = sorted(spells)
    db_.execute("BEGIN")
    for c in checks:
        cid = ids[c.name]
        t0, state = START - HOUR, 0
        for s, e in down.get(c.name, []):
            db_.execute(
                IV_SQL,
                (cid, state, t0, s, "正常", run),
            )
            db_.execute(
                IV_SQL,
                (cid, 2, s, e, "连接被拒绝", run),
            )
            t0 = e
        db_.execute(
            IV_SQL,
            (cid, state, t0, None, "正常", run),
        )
    db_.execute("COMMIT")
    batch: list[tuple[object, ...]] = []
    rollups: dict[tuple[int, str, int], list[float]] = {}

    def flush() -> None:
        db_.execute("BEGIN")
        db_.executemany(
            "INSERT INTO results(check_id, ts, status, duration_ms, summary, metrics, details, run_id) "
            "VALUES(?,?,?,?,?,?,?,?)",
            batch,
        )
        db_.execute("COMMIT")
        batch.clear()

    for c in checks:
        cid = ids[c.name]
        is_db = c.name.endswith("-c3")
        step = 5 * MIN if is_db else MIN
        spells = down.get(c.name, [])
        for t in range(START, END, step):
            status = 2 if any(s <= t < e for s, e in spells) else 0
            if c.kind == "host":
                used = 60 + 25 * (t - START) / (END - START) + (hash(c.name) % 10)
                metrics = [
                    ["cpu.pct", 20.0, "%"],
                    ["mem.pct", 55.0, "%"],
                    ["disk:/data.used_pct", round(used, 2), "%"],
                    ["disk:/.used_pct", 35.0, "%"],
                ]
            elif is_db:
                metrics = [["login_ms", 12.0, "ms"], ["database.hisdb.used_pct", 60.0, "%"]]
            else:
                metrics = [["connect_ms", 2.0, "ms"], ["response_ms", 3.0, "ms"]]
            details = None
            if is_db:
                local = datetime.fromtimestamp(t / 1000, SH)
                due = int(datetime(local.year, local.month, local.day, 2, tzinfo=SH).timestamp() * 1000)
                details = json.dumps(
                    {
                        "version": "16.4",
                        "findings": [],
                        "facts": {
                            "backup": {
                                "backups_expected": [
                                    {
                                        "database": "hisdb",
                                        "type": "full",
                                        "schedule": "daily 02:00",
                                        "due": _iso(due),
                                        "met": t >= due + 40 * MIN or t < due,
                                        "last": _iso(due - 86_400_000),
                                    }
                                ]
                            }
                        },
                    }
                )
            batch.append(
                (
                    cid,
                    t,
                    status,
                    30,
                    "正常" if status == 0 else "连接被拒绝",
                    json.dumps(metrics, separators=(",", ":")),
                    details,
                    run,
                )
            )
            if status == 0:
                hour = t - t % HOUR
                for name, value, _ in metrics:
                    r = rollups.setdefault((cid, name, hour), [0, value, value, 0.0, value])
                    r[0] += 1
                    r[1] = min(r[1], value)
                    r[2] = max(r[2], value)
                    r[3] += value
                    r[4] = value
            if len(batch) >= 200_000:
                flush()
    flush()
    db_.execute("BEGIN")
    db_.executemany(
        "INSERT INTO rollups(check_id, metric, hour_ts, n, vmin, vmax, vsum, vlast, unit) "
        "VALUES(?,?,?,?,?,?,?,?,'')",
        [(cid, m, h, *v) for (cid, m, h), v in rollups.items()],
    )
    n = 0
    for c in checks:
        for s, e in down.get(c.name, []):
            n += 1
            number = f"GZ-{datetime.fromtimestamp(s / 1000, SH):%Y%m%d}-{n:03d}"
            db_.execute(
                "INSERT INTO faults(number, system, campus, level, level_initial, type, description, impact, "
                "start_ts, detected_ts, respond_deadline_ts, restore_deadline_ts, acked_ts, recovered_ts, "
                "cause) "
                "VALUES(?,?,?,1,1,'核心系统类',?,?,?,?,?,?,?,?,?)",
                (
                    number,
                    c.system,
                    None,
                    f"{c.name}: 连接被拒绝",
                    f"{c.system} 不可用",
                    s,
                    s + MIN,
                    s + 10 * MIN,
                    s + 30 * MIN,
                    s + rnd.randint(1, 15) * MIN,
                    e,
                    rnd.choice(["网络抖动", "中间件内存溢出", None]),
                ),
            )
            db_.execute(
                "INSERT INTO fault_checks(fault_id, check_name, first_failed_ts, recovered_ts, last_summary) "
                "VALUES(last_insert_rowid(), ?, ?, ?, '连接被拒绝')",
                (c.name, s, e),
            )
    for d in range(1, 31):
        db_.execute(
            "INSERT INTO report_runs(kind, period, generated_ts, path) VALUES('daily', ?, ?, 'x')",
            (f"2026-11-{d:02d}", ms(11, d, 7)),
        )
    db_.execute("COMMIT")
    store.heartbeat(run, NOW)
    store.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", type=Path, default=Path(tempfile.gettempdir()) / "sentinel-bench-report.db")
    ap.add_argument("--reseed", action="store_true")
    ap.add_argument("--limit", type=float, default=10.0, help="seconds allowed for HTML + PDF (default 10)")
    args = ap.parse_args(argv)
    from agent.clock.periods import parse_period
    from agent.config.schema import parse
    from agent.reports.archive import publish
    from agent.reports.periodic import build_periodic
    from agent.store.db import Store

    out = args.db.with_suffix(".reports")
    config = parse(config_text(args.db, out), base_dir=args.db.parent)
    if args.reseed and args.db.exists():
        for p in args.db.parent.glob(args.db.name + "*"):
            p.unlink()
    if not args.db.exists():
        t = time.perf_counter()
        seed(args.db, config)
        print(f"seeded {args.db} in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    store = Store(args.db, readonly=True)
    rows = store.db.execute("SELECT count(*) FROM results").fetchone()[0]
    t0 = time.perf_counter()
    data = build_periodic(config, store, "monthly", parse_period("2026-11", config.site.tz), NOW)
    t1 = time.perf_counter()
    archived = publish(config, data, pdf=True)
    t2 = time.perf_counter()
    store.close()
    assert archived.pdf_path is not None
    total = t2 - t0
    print(f"monthly report: {len(config.checks)} checks, {len(config.systems)} systems, {rows:,} results")
    print(
        f"  figures {t1 - t0:.2f} s, charts + HTML + PDF + archive {t2 - t1:.2f} s, total {total:.2f} s "
        f"(limit {args.limit:g} s)"
    )
    print(
        f"  HTML {archived.html_path.stat().st_size / 1024:.0f} KiB, "
        f"PDF {archived.pdf_path.stat().st_size / 1024:.0f} KiB: {archived.pdf_path}"
    )
    return 0 if total <= args.limit else 1


if __name__ == "__main__":
    sys.exit(main())
