"""A store with a known year for the report tests (Asia/Shanghai), built the way the daemon
builds it: Store.begin_run/end_run, CheckState.observe + Store.write_batch, the faults
tables, the force-majeure ledger, report_runs.

The agent runs from 2025-12-31 23:00 to 2026-11-10 10:00 and again from 10:30 until NOW
(2027-01-04 09:00). Every check is OK except:

HIS (target 99.5 %, 总院; critical his-web, his-db)
- his-web CRIT 11-05 08:00-08:30 -> 1 800 s down; fault GZ-20261105-001 一级, acked 08:05,
  recovered 08:30 (both on time), cause 中间件内存溢出
- his-db CRIT 11-12 02:10-02:40 inside the maintenance window 02:00-03:00 -> 3 600 s maintenance
- his-web CRIT 11-20 14:00-15:00 -> 3 600 s down; fault GZ-20261120-001 一级, acked 14:30 (late),
  recovered 15:00 (late), cause 中间件内存溢出 (a repeat: same check, same cause)
- force majeure 11-25 20:00-20:30 (his-web CRIT 20:10-20:20 inside) -> 1 800 s excluded
- agent down 11-10 10:00-10:30 -> 1 800 s unknown
LIS (target 99.0 %, 分院; critical lis-app)
- lis-app CRIT 11-15 09:00-09:20 -> 1 200 s down; fault GZ-20261115-001 二级, never acked
  (response overdue), recovered 09:20 (on time)
pgdb (HIS, DB-probe details): a full backup of hisdb due 02:00 daily, judged at 03:30;
  missed on 11-28 only; fault GZ-20261128-001 三级 数据安全类 still open at NOW.
bak (LIS, backup-file details): set his-dump due 04:00 daily, judged at 04:30, always met.
host1 (HIS): /data grows linearly 70 % -> 85 % over November (0.5 %/day), / stays at 40 %.
Daily reports recorded for every November day except 11-10, 11-11 and 11-12.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from agent.config.schema import Config, parse
from agent.state.machine import CheckState
from agent.store.db import Store
from agent.windows import exclusions, ledger
from probes.base import CheckResult, Metric, Status

SH = ZoneInfo("Asia/Shanghai")
GIB = float(1 << 30)


def ms(month: int, day: int, hh: int = 0, mm: int = 0, year: int = 2026) -> int:
    return int(datetime(year, month, day, hh, mm, tzinfo=SH).timestamp() * 1000)


RUN1_START = ms(12, 31, 23, year=2025)
GAP = (ms(11, 10, 10), ms(11, 10, 10, 30))
NOW = ms(1, 4, 9, year=2027)

CONFIG = """
site: {{name: 测试市第一人民医院, timezone: Asia/Shanghai}}
storage: {{path: {db}}}
systems:
  - {{name: HIS, campus: 总院, availability_target: 99.5}}
  - {{name: LIS, campus: 分院, availability_target: 99.0}}
  - {{name: 集成平台}}
checks:
  - {{name: his-web, kind: http, system: HIS, url: "http://127.0.0.1:1/", availability_critical: true,
      confirmations: 1}}
  - {{name: his-db, kind: tcp, system: HIS, host: 127.0.0.1, port: 1, availability_critical: true,
      confirmations: 1}}
  - {{name: lis-app, kind: tcp, system: LIS, host: 127.0.0.1, port: 1, availability_critical: true,
      confirmations: 1}}
  - {{name: host1, kind: host, system: HIS, confirmations: 1}}
  - {{name: pgdb, kind: postgres, system: HIS, host: 127.0.0.1, port: 1, user: monitor, sslmode: disable,
      confirmations: 1, fault_type: 数据安全类}}
  - {{name: bak, kind: backup_files, system: LIS, confirmations: 1, fault_type: 数据安全类,
      sets: [{{name: his-dump, directory: /backup/his, pattern: "*.dmp", schedule: "daily 04:00"}}]}}
maintenance:
  - name: 数据库补丁
    checks: [his-db]
    start: "2026-11-12 02:00"
    end: "2026-11-12 03:00"
    reason: 安装补丁
    approvals: {{甲方: 信息科 王工, 乙方: 张工}}
    ticket: CHG-1112
reports:
  output_dir: {out}
"""

CHECKS = ("his-web", "his-db", "lis-app", "host1", "pgdb", "bak")

# (check, start, end) of every CRIT spell.
CRIT = (
    ("his-web", ms(11, 5, 8), ms(11, 5, 8, 30)),
    ("his-db", ms(11, 12, 2, 10), ms(11, 12, 2, 40)),
    ("his-web", ms(11, 20, 14), ms(11, 20, 15)),
    ("his-web", ms(11, 25, 20, 10), ms(11, 25, 20, 20)),
    ("lis-app", ms(11, 15, 9), ms(11, 15, 9, 20)),
)

# Hand-computed November figures (ms).
NOV_PLANNED = 30 * 86_400_000
HIS_NOV = {
    "unavailable": 5_400_000,
    "maintenance": 3_600_000,
    "force_majeure": 1_800_000,
    "unknown": 1_800_000,
}
HIS_NOV["available"] = NOV_PLANNED - sum(HIS_NOV.values())  # 2 579 400 s
LIS_NOV = {"unavailable": 1_200_000, "maintenance": 0, "force_majeure": 0, "unknown": 1_800_000}
LIS_NOV["available"] = NOV_PLANNED - sum(LIS_NOV.values())  # 2 589 000 s
YEAR_PLANNED = 365 * 86_400_000


def pct(available: int, planned: int, excluded: int) -> float:
    return available * 100 / (planned - excluded)


@dataclass
class Seeded:
    config: Config
    db: Path
    out: Path


def _disk_pct(t: int) -> float:
    return 70.0 + 15.0 * (t - ms(11, 1)) / (30 * 86_400_000)


def _host(t: int) -> CheckResult:
    p = _disk_pct(t)
    return CheckResult(
        Status.OK,
        f"/data 已用 {p:.1f}%",
        (
            Metric("cpu.pct", 20.0, "%"),
            Metric("mem.pct", 50.0, "%"),
            Metric("disk:/data.used_pct", p, "%"),
            Metric("disk:/data.used_bytes", p / 100 * 1000 * GIB, "B"),
            Metric("disk:/data.total_bytes", 1000 * GIB, "B"),
            Metric("disk:/.used_pct", 40.0, "%"),
        ),
    )


def _iso(t: int) -> str:
    return datetime.fromtimestamp(t / 1000, UTC).isoformat()


def pg_details(due: int, met: bool, last: int | None, *, space: bool = False) -> dict[str, Any]:
    """The shape probes/db/engine.py run_db_probe puts into CheckResult.details."""
    facts: dict[str, Any] = {
        "backup": {
            "backups": [
                {
                    "database": "hisdb",
                    "type": "full",
                    "finished_at": _iso(last) if last else None,
                    "age_s": None,
                }
            ],
            "backups_expected": [
                {
                    "database": "hisdb",
                    "type": "full",
                    "schedule": "daily 02:00",
                    "due": _iso(due),
                    "met": met,
                    "last": _iso(last) if last else None,
                }
            ],
        },
    }
    if space:
        facts["space"] = {
            "space": [
                {
                    "kind": "database",
                    "name": "hisdb",
                    "size_bytes": 120 * GIB,
                    "limit_bytes": 200 * GIB,
                    "used_pct": 60.0,
                    "growth_bytes_per_day": 1.5 * GIB,
                    "days_to_full": 53.3,
                },
                {
                    "kind": "tablespace",
                    "name": "pg_default",
                    "size_bytes": 8 * GIB,
                    "limit_bytes": None,
                    "used_pct": None,
                    "growth_bytes_per_day": None,
                    "days_to_full": None,
                },
            ]
        }
    findings = (
        []
        if met
        else [
            {
                "status": "CRIT",
                "text": "hisdb 的全量备份未按计划完成（每天 02:00 前）",
                "category": "数据安全类",
                "obj": "hisdb",
                "item": "backup",
            }
        ]
    )
    if space:
        findings.append(
            {
                "status": "WARN",
                "text": "会话 4711 的事务已持续 1 小时",
                "category": "综合类",
                "obj": "4711",
                "item": "long_transactions",
            }
        )
    return {
        "host": "127.0.0.1",
        "port": 5432,
        "user": "monitor",
        "version": "16.4",
        "findings": findings,
        "facts": facts,
        "skipped": [],
    }


def bak_details(due: int, newest: int) -> dict[str, Any]:
    exp = {"due": _iso(due), "deadline": _iso(due + 1_800_000), "met": True, "schedule": "daily 04:00"}
    return {
        "sets": {
            "his-dump": {
                "directory": "/backup/his",
                "pattern": "*.dmp",
                "schedule": "daily 04:00",
                "expected": exp,
                "copies": 7,
                "newest": {"file": "his-20261101.dmp", "mtime": _iso(newest), "size_bytes": 52 * GIB},
            }
        },
        "findings": [],
        "backups_expected": [{"set": "his-dump", **exp}],
    }


def _samples() -> list[tuple[int, str, CheckResult]]:
    out: list[tuple[int, str, CheckResult]] = []
    for name in CHECKS:
        out.append((RUN1_START, name, CheckResult(Status.OK, "正常")))
        out.append((GAP[1], name, CheckResult(Status.OK, "正常")))  # first sample after the restart
    for name, s, e in CRIT:
        out.append((s, name, CheckResult(Status.CRIT, "连接被拒绝")))
        out.append((e, name, CheckResult(Status.OK, "正常")))
    t = ms(11, 1)
    while t < ms(12, 1):
        if t != GAP[1]:
            out.append((t, "host1", _host(t)))
        t += 6 * 3_600_000
    for day in range(1, 31):
        due = ms(11, day, 2)
        met = day != 28
        last = ms(11, day, 2, 40) if met else ms(11, 27, 2, 40)
        st = Status.OK if met else Status.CRIT
        sp = (
            Metric("database.hisdb.size_bytes", 120 * GIB, "B"),
            Metric("database.hisdb.used_pct", 60.0, "%"),
        )
        out.append(
            (
                ms(11, day, 3, 30),
                "pgdb",
                CheckResult(st, "正常" if met else "备份未完成", sp, pg_details(due, met, last)),
            )
        )
        out.append(
            (
                ms(11, day, 4, 30),
                "bak",
                CheckResult(Status.OK, "备份正常", (), bak_details(ms(11, day, 4), ms(11, day, 3, 50))),
            )
        )
    # The evening of 11-28: space figures of the day, the backup still missing.
    out.append(
        (
            ms(11, 28, 23, 30),
            "pgdb",
            CheckResult(
                Status.CRIT, "备份未完成", (), pg_details(ms(11, 28, 2), False, ms(11, 27, 2, 40), space=True)
            ),
        )
    )
    return sorted(out, key=lambda x: (x[0], x[1]))


# fmt: off
FAULTS = (
    # number, system, campus, level, type, start, acked, recovered, closed, cause, checks,
    # (respond deadline, restore deadline)
    ("GZ-20261105-001", "HIS", "总院", 1, "核心系统类", ms(11, 5, 8), ms(11, 5, 8, 5), ms(11, 5, 8, 30),
     ms(11, 5, 10), "中间件内存溢出", ("his-web",), (ms(11, 5, 8, 10), ms(11, 5, 8, 30))),
    ("GZ-20261115-001", "LIS", "分院", 2, "硬件网络类", ms(11, 15, 9), None, ms(11, 15, 9, 20),
     None, None, ("lis-app",), (ms(11, 15, 9, 30), ms(11, 15, 11))),
    ("GZ-20261120-001", "HIS", "总院", 1, "核心系统类", ms(11, 20, 14), ms(11, 20, 14, 30), ms(11, 20, 15),
     ms(11, 21, 9), "中间件内存溢出", ("his-web",), (ms(11, 20, 14, 10), ms(11, 20, 14, 30))),
    ("GZ-20261128-001", "HIS", "总院", 3, "数据安全类", ms(11, 28, 3, 30), None, None,
     None, None, ("pgdb",), (ms(11, 28, 10), ms(11, 28, 12))),
)
# fmt: on


def seed(tmp: Path) -> Seeded:
    db = tmp / "sentinel.db"
    out = tmp / "reports"
    config = parse(CONFIG.format(db=db, out=out), base_dir=tmp)
    store = Store(db)
    store.sync_checks(((c.name, c.kind, c.system) for c in config.checks), RUN1_START)
    states = {n: CheckState() for n in CHECKS}
    run = store.begin_run(RUN1_START, 1, "his-mon-01", "0.1.0")
    # What the daemon does at a start: record the configuration in force and the file's windows.
    store.record_config(RUN1_START, run, *config.canonical())
    ledger.sync_config_windows(store, list(config.maintenance), RUN1_START, "his-ops")
    restarted = False
    for ts, name, res in _samples():
        if ts >= GAP[0] and not restarted:
            store.end_run(run, GAP[0])
            run = store.begin_run(GAP[1], 2, "his-mon-01", "0.1.0")
            store.record_config(GAP[1], run, *config.canonical())
            states = store.load_states()
            restarted = True
        from dataclasses import replace

        r = replace(res, started_at=datetime.fromtimestamp(ts / 1000, UTC))
        st = states[name]
        store.write_batch(run, [(name, r, st.observe(ts, r.status, r.summary, 1), st)])
        store.heartbeat(run, ts)
    store.end_run(run, NOW)
    for number, system, campus, level, kind, start, acked, rec, closed, cause, checks, (rd, sd) in FAULTS:
        cur = store.db.execute(
            "INSERT INTO faults(number, system, campus, level, level_initial, type, description, impact, "
            "start_ts, detected_ts, respond_deadline_ts, restore_deadline_ts, acked_ts, acked_by, "
            "recovered_ts, closed_ts, cause) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                number,
                system,
                campus,
                level,
                level,
                kind,
                f"{checks[0]}: 连接被拒绝",
                f"{system} 不可用",
                start,
                start + 60_000,
                rd,
                sd,
                acked,
                "张工" if acked else None,
                rec,
                closed,
                cause,
            ),
        )
        for c in checks:
            store.db.execute(
                "INSERT INTO fault_checks(fault_id, check_name, first_failed_ts, recovered_ts, last_summary) "
                "VALUES(?,?,?,?,?)",
                (cur.lastrowid, c, start, rec, "连接被拒绝"),
            )
    # Recorded the morning after (事后补录) by the vendor, approved by the hospital an hour later.
    exclusions.add(
        store,
        exclusions.NewRecord(
            name="市电中断",
            start="2026-11-25 20:00",
            end="2026-11-25 20:30",
            systems=("HIS",),
            reason="供电局计划外停电",
        ),
        SH,
        "乙方",
        "李经理",
        "tester",
        ms(11, 26, 9),
    )
    exclusions.approve(store, "市电中断", "甲方", "张主任", "tester", ms(11, 26, 10))
    d = datetime(2026, 11, 1)
    while d.month == 11:
        if d.day not in (10, 11, 12):
            store.record_report("daily", d.date().isoformat(), ms(11, d.day, 7, 30) + 86_400_000, "x.html")
        d += timedelta(days=1)
    store.close()
    return Seeded(config, db, out)
