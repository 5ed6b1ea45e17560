"""`sentinel availability` and `sentinel exclusions` on a real store, numbers computed by hand.

The day 2026-11-10 (Asia/Shanghai), business system HIS:
- web (critical) CRIT 08:00-08:30                       -> 1800 s unavailable
- db (critical) CRIT 02:10-02:40, inside maintenance 02:00-03:00 for db
                                                        -> 3600 s maintenance (db's share)
- app1 CRIT 12:00-14:00, app2 CRIT 13:00-13:20, redundancy "1 of app1/app2"
                                                        -> 1200 s unavailable (both down)
- disk (health only) CRIT 15:00-16:00                   -> no effect
- agent stopped 10:00-10:10                              -> 600 s unknown
- force majeure 20:00-20:30 for HIS; web CRIT 20:10-20:20 inside -> 1800 s force majeure
planned 86400 = available 77400 + unavailable 3000 + unknown 600 + excluded 5400.
"""

from __future__ import annotations

import csv
import io
import json
import os
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from agent.cli.main import main
from agent.config.schema import load
from agent.state.machine import CheckState
from agent.store.db import Store
from agent.windows.ledger import sync_config_windows
from probes.base import CheckResult, Status

SH = ZoneInfo("Asia/Shanghai")

CONFIG = """
site: {{name: 测试医院, timezone: Asia/Shanghai}}
storage: {{path: {db}}}
systems:
  - name: HIS
    redundancy:
      - {{checks: [app1, app2], need: 1}}
  - name: LIS
checks:
  - {{name: web, kind: tcp, system: HIS, host: 127.0.0.1, port: 1, availability_critical: true}}
  - {{name: db, kind: tcp, system: HIS, host: 127.0.0.1, port: 1, availability_critical: true}}
  - {{name: app1, kind: tcp, system: HIS, host: 127.0.0.1, port: 1, availability_critical: true}}
  - {{name: app2, kind: tcp, system: HIS, host: 127.0.0.1, port: 1, availability_critical: true}}
  - {{name: disk, kind: tcp, system: HIS, host: 127.0.0.1, port: 1}}
maintenance:
  - name: 数据库补丁
    checks: [db]
    start: "2026-11-10 02:00"
    end: "2026-11-10 03:00"
    reason: 安装补丁
    approvals: {{甲方: 信息科 王工, 乙方: 张工}}
"""


def ms(day: int, hh: int, mm: int = 0) -> int:
    return int(datetime(2026, 11, day, hh, mm, tzinfo=SH).timestamp() * 1000)


def seed(path: Path) -> None:
    store = Store(path)
    names = ["web", "db", "app1", "app2", "disk"]
    store.sync_checks([(n, "tcp", "HIS") for n in names], 0)
    changes = {
        "web": [(ms(9, 23), Status.OK), (ms(10, 8), Status.CRIT), (ms(10, 8, 30), Status.OK),
                (ms(10, 20, 10), Status.CRIT), (ms(10, 20, 20), Status.OK)],
        "db": [(ms(9, 23), Status.OK), (ms(10, 2, 10), Status.CRIT), (ms(10, 2, 40), Status.OK)],
        "app1": [(ms(9, 23), Status.OK), (ms(10, 12), Status.CRIT), (ms(10, 14), Status.OK)],
        "app2": [(ms(9, 23), Status.OK), (ms(10, 13), Status.CRIT), (ms(10, 13, 20), Status.OK)],
        "disk": [(ms(9, 23), Status.OK), (ms(10, 15), Status.CRIT), (ms(10, 16), Status.OK)],
    }  # fmt: skip
    states = {n: CheckState() for n in names}
    run1 = store.begin_run(ms(9, 23), 1, "h", "t")
    run2: int | None = None
    events = sorted((ts, n, st) for n, seq in changes.items() for ts, st in seq)
    current: dict[str, Status] = {}

    def sample(run: int, ts: int, name: str, status: Status) -> None:
        r = CheckResult(status, status.name, started_at=datetime.fromtimestamp(ts / 1000, SH))
        st = states[name]
        store.write_batch(run, [(name, r, st.observe(ts, status, status.name, 1), st)])
        current[name] = status

    for ts, name, status in events:
        if ts >= ms(10, 10) and run2 is None:
            # The agent stops at 10:00 and is back at 10:10, as the daemon does it: states
            # reloaded, and every check's first sample after the restart opens a new interval.
            store.end_run(run1, ms(10, 10))
            run2 = store.begin_run(ms(10, 10, 10), 2, "h", "t")
            states = store.load_states()
            for n in names:
                sample(run2, ms(10, 10, 10), n, current[n])
        sample(run2 or run1, ts, name, status)
    assert run2 is not None
    store.end_run(run2, ms(11, 0, 50))
    store.db.execute(
        "INSERT INTO faults(number, system, level, level_initial, type, description, impact, start_ts, "
        "detected_ts, recovered_ts, cause) "
        "VALUES('GZ-20261110-001','HIS',3,3,'核心系统类','web down','',?,?,?,?)",
        (ms(10, 8), ms(10, 8, 2), ms(10, 8, 30), "中间件内存溢出"),
    )
    store.close()


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    db = tmp_path / "s.db"
    seed(db)
    p = tmp_path / "c.yaml"
    p.write_text(CONFIG.format(db=db), encoding="utf-8")
    # The agent records the file's windows when it first loads the configuration (here: at the
    # first run's start, before the window).
    store = Store(db)
    sync_config_windows(store, list(load(p).maintenance), ms(9, 23))
    store.close()
    # Recorded today, after the fact (事后补录), by one party; it counts once the other approves.
    assert main(["-c", str(p), "exclusions", "add", "--name", "市电中断", "--start", "2026-11-10 20:00",
                 "--end", "2026-11-10 20:30", "--system", "HIS", "--reason", "供电局计划外停电",
                 "--party", "乙方", "--by", "李经理"]) == 0  # fmt: skip
    assert main(["-c", str(p), "exclusions", "approve", "市电中断", "--party", "甲方", "--by", "张主任"]) == 0
    return p


def run_json(cfg: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> dict:
    capsys.readouterr()
    assert main(["-c", str(cfg), "availability", "--period", "2026-11-10", "--json", *extra]) == 0
    return json.loads(capsys.readouterr().out)


def test_system_figures_to_the_second(cfg: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = run_json(cfg, capsys, "--system", "HIS")
    (his,) = out["subjects"]
    f = his["figures"]
    assert f["planned_ms"] == 86_400_000
    assert f["maintenance_ms"] == 3_600_000
    assert f["force_majeure_ms"] == 1_800_000
    assert f["unknown_ms"] == 600_000
    assert f["unavailable_ms"] == 3_000_000
    assert f["available_ms"] == 77_400_000
    assert his["availability_pct"] == pytest.approx(77_400 / 81_000 * 100)
    assert f["availability_excluded_pct"] == pytest.approx(77_400 / 80_400 * 100)
    assert f["coverage_pct"] == pytest.approx(80_400 / 81_000 * 100)
    # Instants are ISO 8601 in the site's zone with its offset; durations stay milliseconds.
    outages = [(o["start_at"], o["end_at"], o["checks"], o["fault"], o["cause"]) for o in his["outages"]]
    assert outages == [
        ("2026-11-10T08:00:00+08:00", "2026-11-10T08:30:00+08:00", ["web"], "GZ-20261110-001",
         "中间件内存溢出"),
        ("2026-11-10T13:00:00+08:00", "2026-11-10T13:20:00+08:00", ["app1", "app2"], None, None),
    ]  # fmt: skip
    assert [o["duration_ms"] for o in his["outages"]] == [30 * 60_000, 20 * 60_000]
    assert out["period"] == {
        "label": "2026-11-10", "start_at": "2026-11-10T00:00:00+08:00", "end_at": "2026-11-11T00:00:00+08:00"
    }  # fmt: skip
    kinds = sorted((x["kind"], x["name"], x["approved_by"]) for x in his["exclusions"])
    assert kinds == [
        ("force_majeure", "市电中断", "乙方 李经理；甲方 张主任"),
        ("maintenance", "数据库补丁", "甲方 信息科 王工；乙方 张工"),
    ]
    # Year budget: 0.5 % of the year's planned time less the exclusions known so far.
    v = his["verdict"]
    assert v["allowed_ms"] == (365 * 86_400 - 5_400) * 5
    assert v["passed"] is False  # Jan 1 .. Nov 9 had no data at all: unknown counts against


def test_policy_excluded_and_a_system_without_critical_checks(
    cfg: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = run_json(cfg, capsys, "--policy", "excluded")
    by = {s["subject"]: s for s in out["subjects"]}
    assert by["HIS"]["availability_pct"] == pytest.approx(77_400 / 80_400 * 100)
    assert by["LIS"]["figures"] is None and "availability_critical" in by["LIS"]["note"]


def test_check_figures_use_only_that_check(cfg: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = run_json(cfg, capsys, "--check", "app1")
    f = out["subjects"][0]["figures"]
    # app1: down 12:00-14:00; the agent gap and the force majeure apply to it too.
    assert f["unavailable_ms"] == 7_200_000
    assert f["force_majeure_ms"] == 1_800_000 and f["maintenance_ms"] == 0
    assert f["unknown_ms"] == 600_000


def test_text_shows_the_formula_with_the_numbers(cfg: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["-c", str(cfg), "availability", "--system", "HIS", "--period", "2026-11-10"]) == 0
    text = capsys.readouterr().out
    assert "计划运行时间      24:00:00  (86,400 s)" in text
    assert "= 77,400 s ÷ 81,000 s × 100% = 95.556%" in text
    assert "未知时间           0:10:00  (监测覆盖率 99.259%)" in text
    assert "2026-11-10 08:00:00 ~ 2026-11-10 08:30:00  0:30:00  web  故障 GZ-20261110-001" in text
    assert "不可抗力 市电中断" in text and "计划维护 数据库补丁" in text
    # The force-majeure record was entered today for a day in November: after the fact.
    line = next(x for x in text.splitlines() if "不可抗力 市电中断" in x)
    assert "事后补录" in line and "已生效" in line and "乙方 李经理；甲方 张主任" in line
    assert "监控代理未运行" in text  # the 10-minute stop, itemised with its cause


def test_csv_lists_every_outage_and_exclusion(cfg: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["-c", str(cfg), "availability", "--system", "HIS", "--period", "2026-11-10", "--csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["record"] for r in rows] == ["summary", "outage", "outage", "exclusion", "exclusion"]
    assert rows[1]["duration_s"] == "1800.0" and rows[1]["fault"] == "GZ-20261110-001"
    assert float(rows[0]["availability_pct"]) == pytest.approx(77_400 / 81_000 * 100)


def test_exclusion_ledger_keeps_who_when_why(cfg: Path, capsys: pytest.CaptureFixture[str]) -> None:
    c = ["-c", str(cfg), "exclusions"]
    with pytest.raises(SystemExit):  # --reason is required: a withdrawal must say why
        main([*c, "remove", "市电中断"])
    assert (
        main([*c, "remove", "市电中断", "--reason", "供电局确认为计划停电，已提前通知", "--by", "auditor"])
        == 0
    )
    capsys.readouterr()
    assert main([*c, "list", "--all", "--json"]) == 0
    (rec,) = json.loads(capsys.readouterr().out)
    assert rec["removed_by"] == "auditor"
    assert rec["removed_reason"].startswith("供电局确认")
    # The withdrawn record no longer excludes: the 30 minutes count again (web down 10 of them).
    out = run_json(cfg, capsys, "--system", "HIS")
    f = out["subjects"][0]["figures"]
    assert f["force_majeure_ms"] == 0 and f["unavailable_ms"] == 3_600_000
    # The ledger's log is append-only.
    db = Store(cfg.parent / "s.db")
    with pytest.raises(Exception, match="append-only"):
        db.db.execute("DELETE FROM exclusions_log")
    db.close()


def test_bad_input_is_a_clear_error(cfg: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["-c", str(cfg), "availability", "--period", "2026-13"]) == 2
    assert "month 13" in capsys.readouterr().err
    assert main(["-c", str(cfg), "availability", "--system", "HSI"]) == 2
    assert "HSI" in capsys.readouterr().err
    assert main(["-c", str(cfg), "exclusions", "add", "--name", "x", "--start", "2026-11-10 20:00",
                 "--end", "2026-11-10 19:00", "--reason", "r",
                 "--party", "乙方", "--by", "a"]) == 2  # fmt: skip
    assert "end must be after start" in capsys.readouterr().err


def test_config_force_majeure_counts_once_the_agent_recorded_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "s.db"
    seed(db)
    p = tmp_path / "c.yaml"
    text = CONFIG.format(db=db) + (
        "availability:\n  force_majeure:\n    - {name: 断网, start: '2026-11-10 08:00',"
        " end: '2026-11-10 08:30', reason: 运营商光缆中断, approvals: {甲方: 王主任, 乙方: 张工}}\n"
    )
    p.write_text(text, encoding="utf-8")
    os.environ.pop("SENTINEL_CONFIG", None)
    # Written in the file but not yet loaded by an agent: it excludes nothing (nor does the
    # maintenance window of the file, which no agent loaded either: db's 30 minutes count).
    f = run_json(p, capsys, "--system", "HIS")["subjects"][0]["figures"]
    assert f["force_majeure_ms"] == 0 and f["maintenance_ms"] == 0 and f["unavailable_ms"] == 5_400_000
    # The agent records it (both approvals from the file) when it loads the configuration.
    from agent.windows import exclusions as fm

    store = Store(db)
    fm.sync_config(store, load(p).availability.force_majeure, SH, ms(11, 9))
    store.close()
    out = run_json(p, capsys, "--system", "HIS")
    f = out["subjects"][0]["figures"]
    # web's 08:00-08:30 outage is excused; db (30 min), app1+app2 (20) and web at 20:10 (10) remain.
    assert f["force_majeure_ms"] == 1_800_000 and f["unavailable_ms"] == 3_600_000
    (rec,) = [x for x in out["subjects"][0]["exclusions"] if x["name"] == "断网"]
    assert rec["late"] is True and rec["effective"] is True


def test_a_weekly_window_recorded_today_excludes_no_past_week(
    cfg: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = run_json(cfg, capsys, "--system", "HIS")["subjects"][0]["figures"]
    c = ["-c", str(cfg), "maintenance"]
    # Every Tuesday 00:00 for 23 h — 2026-11-10 was a Tuesday; recorded today, approved by both.
    assert main([*c, "add", "每周二巡检", "--system", "HIS", "--cron", "0 0 * * 2", "--duration", "23h",
                 "--reason", "例行巡检", "--party", "乙方", "--by", "张工"]) == 0  # fmt: skip
    assert main([*c, "approve", "每周二巡检", "--party", "甲方", "--by", "王主任"]) == 0
    after = run_json(cfg, capsys, "--system", "HIS")["subjects"][0]
    assert after["figures"] == before
    assert not [x for x in after["exclusions"] if x["name"] == "每周二巡检"]
