#!/usr/bin/env python3
"""Availability year (issue 4): a synthetic year of 1-minute results for 200 checks in 20 systems
(105 million samples), written through the store's bulk path with the evidence chain on and the
default retention (raw results older than 31 days pruned behind checkpoints, as the daemon does;
intervals, runs and roll-ups kept). Prints:

  - the time to write the year (results + intervals + roll-ups + links, pruning included),
  - the store size at the end (target < 2 GB),
  - `verify`'s rows per second over one month of raw results (~8.6 M rows, target < 30 s),
  - the time to compute every system's yearly availability (target < 1 s),
  - what sealing adds to one 200-check round written through Store.write_batch.

    python3 bench/availability_year.py                     # the full year, ~20-30 min on 2 cores
    python3 bench/availability_year.py --days 40 --checks 50   # a quick scaled run

Not a test: it prints figures (and a JSON line at the end). The store is written to
bench/results/avyear-<UTC time>/ (ignored by git) unless --out is given; --keep keeps it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from agent.state.machine import Change, CheckState  # noqa: E402
from agent.store import evidence as E  # noqa: E402
from agent.store.db import Store  # noqa: E402
from probes.base import CheckResult, Metric, Status  # noqa: E402

TZ = ZoneInfo("Asia/Shanghai")
MIN = 60_000
DAY = 86_400_000
YEAR_START = int(datetime(2025, 1, 1, tzinfo=TZ).timestamp() * 1000)
RUN_EVERY_DAYS = 30  # the agent is restarted (upgrade, reboot) about once a month
RESTART_GAP = 5 * MIN


def config_yaml(db: Path, n_checks: int, n_systems: int) -> str:
    per = n_checks // n_systems
    lines = ["site: {name: 基准医院, timezone: Asia/Shanghai}", f"storage: {{path: {db}}}", "systems:"]
    for s in range(n_systems):
        lines.append(f"  - name: SYS{s:02d}")
        if per >= 3:
            lines.append(f"    redundancy: [{{checks: [c{s:02d}-001, c{s:02d}-002], need: 1}}]")
    lines.append("checks:")
    for s in range(n_systems):
        for i in range(per):
            crit = "true" if i < 5 else "false"  # 5 availability-critical, the rest health only
            lines.append(
                f"  - {{name: c{s:02d}-{i:03d}, kind: tcp, system: SYS{s:02d}, host: 127.0.0.1, port: 1, "
                f"availability_critical: {crit}, confirmations: 1}}"
            )
    return "\n".join(lines) + "\n"


def outages(rng: random.Random, days: int) -> list[tuple[int, int]]:
    """About two failures a week, 2 to 40 minutes each, on whole minutes."""
    out = []
    t = YEAR_START
    end = YEAR_START + days * DAY
    while True:
        t += int(rng.expovariate(2 / (7 * DAY)))
        t -= t % MIN
        if t >= end:
            return out
        d = rng.randint(2, 40) * MIN
        out.append((t, t + d))
        t += d


def write_year(store: Store, names: list[str], days: int, retention_days: int) -> dict[str, float]:
    rng = random.Random(4)
    ids = [store.check_id(n) for n in names]
    plan = {cid: outages(rng, days) for cid in ids}
    summary_ok = "连接成功，耗时 12 ms"
    summary_crit = "连接失败：Connection refused"
    metrics_ok = '[["time",0.012,"s"]]'
    t_write = t_prune = t_store = 0.0
    rows_total = 0
    run_id: int | None = None
    current: dict[int, Status | None] = {}
    for day in range(days):
        d0 = YEAR_START + day * DAY
        if day % RUN_EVERY_DAYS == 0:
            if run_id is not None:
                store.end_run(run_id, d0)
            run_id = store.begin_run(d0 + RESTART_GAP, 4242, "his-mon", "bench")
            current = dict.fromkeys(ids)  # every check reopens an interval after a restart
        first = d0 + (RESTART_GAP if day % RUN_EVERY_DAYS == 0 else 0)
        results = []
        changes: list[tuple[int, Change]] = []
        rollups = []
        t0 = time.perf_counter()
        for cid in ids:
            spans = [s for s in plan[cid] if s[1] > d0 and s[0] < d0 + DAY]
            down = set()
            for a, b in spans:
                down.update(range(max(a, first), min(b, d0 + DAY), MIN))
            for ts in range(first, d0 + DAY, MIN):
                crit = ts in down
                st = Status.CRIT if crit else Status.OK
                if current[cid] is not st:
                    changes.append((cid, Change(st, ts, current[cid], summary_crit if crit else summary_ok)))
                    current[cid] = st
                results.append(
                    (
                        cid,
                        ts,
                        2 if crit else 0,
                        12,
                        summary_crit if crit else summary_ok,
                        None if crit else metrics_ok,
                    )
                )
            for h in range(first - first % 3_600_000, d0 + DAY, 3_600_000):
                rollups.append((cid, "time", h, 60, 0.011, 0.013, 0.72, 0.012, "s"))
        changes.sort(key=lambda c: (c[1].at_ms, c[0]))
        results.sort(key=lambda r: (r[1], r[0]))  # one round at a time, as the recorder writes
        # Sealed per 10-minute slice so one transaction stays the size the daemon would see
        # in a burst; the whole day in one transaction would hold ~300k rows in memory.
        slice_ms = 10 * MIN
        ci = lo = 0
        for s0 in range(d0, d0 + DAY, slice_ms):
            hi = lo
            while hi < len(results) and results[hi][1] < s0 + slice_ms:
                hi += 1
            cj = ci
            while cj < len(changes) and changes[cj][1].at_ms < s0 + slice_ms:
                cj += 1
            s_t0 = time.perf_counter()
            store.append_bulk(run_id, results[lo:hi], changes[ci:cj], rollups if s0 == d0 else ())
            t_store += time.perf_counter() - s_t0
            lo, ci = hi, cj
        t_write += time.perf_counter() - t0
        rows_total += len(results)
        t0 = time.perf_counter()
        cutoff = d0 + DAY - retention_days * DAY
        while store.prune_results(cutoff, limit=5000, now_ms=d0 + DAY) > 0:
            pass
        t_prune += time.perf_counter() - t0
        if day % 10 == 9 or day == days - 1:
            print(
                f"  day {day + 1:3d}/{days}: {rows_total / 1e6:6.1f} M results written, "
                f"write {t_write:7.1f} s, prune {t_prune:6.1f} s",
                flush=True,
            )
    assert run_id is not None
    store.heartbeat(run_id, YEAR_START + days * DAY)
    return {"write_s": t_write, "store_s": t_store, "prune_s": t_prune, "results": rows_total}


def round_cost(path: Path, n: int = 200, rounds: int = 30) -> dict[str, float]:
    """CPU of writing one 200-check round through write_batch, with and without sealing."""
    out = {}
    for label, seal in (("sealed", True), ("unsealed", False)):
        p = path / f"round-{label}.db"
        store = Store(p)
        if not seal:
            store._seal = lambda db, now_ms: None  # type: ignore[method-assign]
        names = [f"r{i:03d}" for i in range(n)]
        store.sync_checks([(x, "http", "S") for x in names], 0)
        run = store.begin_run(YEAR_START, 1, "h", "t")
        states = {x: CheckState() for x in names}
        cpu = 0.0
        for r in range(rounds):
            ts = YEAR_START + r * 30_000
            batch = []
            for x in names:
                res = CheckResult(
                    Status.OK,
                    "HTTP 200，耗时 12 ms",
                    (Metric("time", 0.012, "s"), Metric("size", 1234, "B")),
                    started_at=datetime.fromtimestamp(ts / 1000, UTC),
                )
                batch.append((x, res, states[x].observe(ts, res.status, res.summary, 1), states[x]))
            c0 = time.process_time()
            store.write_batch(run, batch)
            cpu += time.process_time() - c0
        store.close()
        out[label] = cpu / rounds
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--checks", type=int, default=200)
    ap.add_argument("--systems", type=int, default=20)
    ap.add_argument("--retention-days", type=int, default=31)
    ap.add_argument("--out", type=Path, help="directory for the store (default bench/results/avyear-<time>)")
    ap.add_argument("--keep", action="store_true", help="keep the store afterwards")
    args = ap.parse_args()
    out = args.out or HERE / "results" / f"avyear-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    out.mkdir(parents=True, exist_ok=True)
    db = out / "year.db"
    for suffix in ("", "-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    cfg_path = out / "year.yaml"
    cfg_path.write_text(config_yaml(db, args.checks, args.systems), encoding="utf-8")
    from agent.config.schema import load

    config = load(str(cfg_path))
    names = [c.name for c in config.checks]
    samples = len(names) * args.days * 1440
    print(
        f"availability year: {len(names)} checks in {len(config.systems)} systems, {args.days} days "
        f"of 1-minute results ({samples / 1e6:.1f} M samples), retention {args.retention_days} days"
    )

    cost = round_cost(out)
    extra = (cost["sealed"] - cost["unsealed"]) * 1000
    print(
        f"write_batch CPU per 200-check round: {cost['sealed'] * 1000:.1f} ms with the evidence chain, "
        f"{cost['unsealed'] * 1000:.1f} ms without (+{extra:.1f} ms)"
    )

    store = Store(db)
    store.sync_checks([(c.name, c.kind, c.system) for c in config.checks], YEAR_START)
    t0 = time.perf_counter()
    w = write_year(store, names, args.days, args.retention_days)
    wall = time.perf_counter() - t0
    store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = db.stat().st_size + (
        Path(str(db) + "-wal").stat().st_size if Path(str(db) + "-wal").exists() else 0
    )
    page = store.db.execute("PRAGMA page_size").fetchone()[0]
    free = store.db.execute("PRAGMA freelist_count").fetchone()[0] * page
    counts = {
        t: store.db.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
        for t in ("results", "intervals", "interval_log", "rollups", "evidence", "evidence_checkpoints")
    }
    print(f"wrote the year in {wall:.0f} s (generating + storing {w['write_s']:.0f} s, of which the store "
          f"{w['store_s']:.0f} s; pruning {w['prune_s']:.0f} s); "
          f"store {size / 2**30:.2f} GiB ({free / 2**20:.0f} MiB free pages); rows: {counts}")  # fmt: skip
    store.close()

    now = YEAR_START + args.days * DAY
    reader = Store(db, readonly=True)
    month_end = now
    month_start = now - 30 * DAY
    t0 = time.perf_counter()
    rep = E.verify(reader.db, None, month_start, month_end)
    vt = time.perf_counter() - t0
    res = next(t for t in rep.tables if t.table == "results")
    print(f"verify over the last 30 days: {rep.rows / 1e6:.2f} M rows ({res.rows / 1e6:.2f} M raw results) "
          f"in {vt:.1f} s = {rep.rows / vt:,.0f} rows/s; ok={rep.ok}")  # fmt: skip
    t0 = time.perf_counter()
    full = E.verify(reader.db, None)
    ft = time.perf_counter() - t0
    print(f"verify of the whole store: {full.rows / 1e6:.2f} M rows in {ft:.1f} s; ok={full.ok}; "
          f"{sum(t.pruned for t in full.tables) / 1e6:.1f} M pruned rows behind "
          f"{sum(t.checkpoints for t in full.tables)} checkpoints")  # fmt: skip

    from agent.availability.gather import system_figures

    t0 = time.perf_counter()
    figs = system_figures(reader, config, YEAR_START, now, now, with_verdict=False)
    at = time.perf_counter() - t0
    pcts = [f.availability() for f in figs if f.figures is not None]
    print(f"yearly availability of {len(figs)} systems in {at:.2f} s "
          f"(min {min(pcts):.3f} %, max {max(pcts):.3f} %)")  # fmt: skip
    head = E.head(reader.db)
    reader.close()
    summary = {
        "checks": len(names),
        "systems": len(config.systems),
        "days": args.days,
        "samples": w["results"],
        "write_s": round(wall, 1),
        "store_write_s": round(w["store_s"], 1),
        "prune_s": round(w["prune_s"], 1),
        "store_bytes": size,
        "verify_month_rows": rep.rows,
        "verify_month_s": round(vt, 2),
        "verify_rows_per_s": round(rep.rows / vt),
        "availability_s": round(at, 3),
        "round_ms_sealed": round(cost["sealed"] * 1000, 2),
        "round_ms_unsealed": round(cost["unsealed"] * 1000, 2),
        "head": head.digest_hex if head else None,
    }
    print(json.dumps(summary))
    if not args.keep:
        for suffix in ("", "-wal", "-shm"):
            Path(str(db) + suffix).unlink(missing_ok=True)
        if args.out is None:
            shutil.rmtree(out, ignore_errors=True)
    return 0 if rep.ok and full.ok else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
