"""Every report kind on the seeded year of tests/report_seed.py: exact figures (availability to
0.001 %, counts, durations) asserted on the archived JSON and on the rendered HTML."""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from agent.cli import reports as cli_reports
from agent.clock.periods import parse_period
from agent.reports import archive, common
from agent.reports.acceptance import build_acceptance
from agent.reports.daily import build_daily
from agent.reports.inspection import build_inspection
from agent.reports.periodic import build_periodic
from agent.store.db import Store
from probes.base import CheckResult, Metric, Status
from tests.conftest import need
from tests.helpers import report_seed as rs


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> rs.Seeded:
    return rs.seed(tmp_path_factory.mktemp("kinds"))


@pytest.fixture(scope="module")
def store(seeded: rs.Seeded) -> Iterator[Store]:
    s = Store(seeded.db, readonly=True)
    yield s
    s.close()


def text_of(html: str) -> str:
    """Visible text: <style> dropped, tags as spaces, whitespace collapsed."""
    html = re.sub(r"<style.*?</style>", " ", html, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).replace("&nbsp;", " ")


def by(rows: list[dict[str, Any]], key: str, value: Any) -> dict[str, Any]:
    return next(r for r in rows if r[key] == value)


def published(
    seeded: rs.Seeded, data: dict[str, Any], **kw: Any
) -> tuple[dict[str, Any], str, archive.ArchivedReport]:
    """Publish, then read back what a reader of the archive sees: the JSON and the HTML text."""
    a = archive.publish(seeded.config, data, **kw)
    return json.loads(a.json_path.read_text(encoding="utf-8")), text_of(a.html_path.read_text("utf-8")), a


def assert_figures(e: dict[str, Any], want: dict[str, int], planned: int, policy_pct: float) -> None:
    f = e["figures"]
    assert f["planned_ms"] == planned
    for k, v in want.items():
        assert f[f"{k}_ms"] == v, k
    assert e["availability_pct"] == pytest.approx(policy_pct, abs=1e-9)


# ------------------------------------------------------------------------------ monthly


@pytest.fixture(scope="module")
def monthly(seeded: rs.Seeded, store: Store) -> tuple[dict[str, Any], str, archive.ArchivedReport]:
    data = build_periodic(
        seeded.config, store, "monthly", parse_period("2026-11", seeded.config.site.tz), rs.NOW
    )
    return published(seeded, data, pdf=True, recorder=None)


def test_monthly_availability_exact(monthly: tuple[dict[str, Any], str, archive.ArchivedReport]) -> None:
    data, text, _ = monthly
    his = by(data["availability"], "subject", "HIS")
    # 2 579 400 s available of 2 592 000 - 5 400 s excluded = 99.72164...%
    his_pct = rs.pct(rs.HIS_NOV["available"], rs.NOV_PLANNED, 5_400_000)
    assert round(his_pct, 3) == 99.722
    assert_figures(his, rs.HIS_NOV, rs.NOV_PLANNED, his_pct)
    assert his["passed"] is True
    lis = by(data["availability"], "subject", "LIS")
    lis_pct = rs.pct(rs.LIS_NOV["available"], rs.NOV_PLANNED, 0)
    assert round(lis_pct, 3) == 99.884
    assert_figures(lis, rs.LIS_NOV, rs.NOV_PLANNED, lis_pct)
    assert by(data["availability"], "subject", "集成平台")["figures"] is None
    # System, availability, target, verdict, down, unknown, coverage, excluded, outages, year so far.
    assert "HIS 总院 99.722% 99.5% ✔ 达标 1:30:00 0:30:00 99.930% 1:30:00 2 " in text
    assert "LIS 分院 99.884% 99.0% ✔ 达标 0:20:00 0:30:00 99.931% 0:00:00 1 " in text


def test_monthly_outages_and_faults(monthly: tuple[dict[str, Any], str, archive.ArchivedReport]) -> None:
    data, text, _ = monthly
    assert [(o["system"], o["start_ms"], o["duration_ms"], o["fault"]) for o in data["outages"]] == [
        ("HIS", rs.ms(11, 5, 8), 1_800_000, "GZ-20261105-001"),
        ("LIS", rs.ms(11, 15, 9), 1_200_000, "GZ-20261115-001"),
        ("HIS", rs.ms(11, 20, 14), 3_600_000, "GZ-20261120-001"),
    ]
    assert (
        "HIS 2026-11-20 14:00:00 2026-11-20 15:00:00 1:00:00 his-web GZ-20261120-001 中间件内存溢出" in text
    )
    f = data["faults"]
    assert f["total"] == 4
    assert [r["count"] for r in f["by_level"]] == [2, 1, 1, 0]
    assert {r["type"]: r["count"] for r in f["by_type"]} == {
        "核心系统类": 2,
        "硬件网络类": 1,
        "数据安全类": 1,
        "综合类": 0,
    }
    assert {r["campus"]: r["count"] for r in f["by_campus"]} == {"总院": 3, "分院": 1}
    # Response: only GZ-20261105-001 acked in time (08:05 < 08:10); 3 overdue -> 25 %.
    # Recovery: 1105 at its deadline and 1115 early on time; 1120 late, 1128 never -> 50 %.
    assert f["timeliness"]["response"] == {"on_time": 1, "overdue": 3, "pending": 0, "rate_pct": 25.0}
    assert f["timeliness"]["recovery"] == {"on_time": 2, "overdue": 2, "pending": 0, "rate_pct": 50.0}
    assert "响应 1 3 0 25.0% 恢复 2 2 0 50.0%" in text
    assert [(r["by"], r["key"], r["count"]) for r in f["repeats"]] == [
        ("cause", "中间件内存溢出", 2),
        ("check", "his-web", 2),
    ]
    assert "检查项 his-web 2 GZ-20261105-001、GZ-20261120-001" in text
    assert [(r["level"], r["overdue"], r["limit"]) for r in data["overdue"]["levels"]] == [
        (1, 1, 5),
        (2, 1, 10),
        (3, 1, None),
        (4, 0, None),
    ]
    assert "一级 1 5 否 二级 1 10 否" in text


def test_monthly_completion_capacity_risks(
    monthly: tuple[dict[str, Any], str, archive.ArchivedReport],
) -> None:
    data, text, _ = monthly
    c = data["completion"]
    daily, backups = c["tasks"]
    assert (daily["planned"], daily["done"], daily["missing"]) == (
        30,
        27,
        ["2026-11-10", "2026-11-11", "2026-11-12"],
    )
    assert (backups["planned"], backups["done"]) == (60, 59)
    assert backups["missing"][0]["target"] == "hisdb" and backups["missing"][0]["due_ms"] == rs.ms(11, 28, 2)
    assert (c["planned"], c["done"]) == (90, 86)
    assert round(c["rate_pct"], 1) == 95.6
    assert "合计 90 86 95.6%" in text
    data_disk = by(data["capacity"], "name", "/data")
    # 70 % on 11-01 00:00 to 84.875 % on 11-30 18:00: 0.5 %/day, (100 - 84.875) / 0.5 = 30.25 days.
    assert data_disk["first_pct"] == 70.0 and data_disk["last_pct"] == pytest.approx(84.875)
    assert data_disk["growth_pct_per_day"] == 0.5
    assert data_disk["days_to_full"] == pytest.approx(30.25, abs=0.06) and data_disk["days_estimated"]
    assert re.search(r"/data disk 70\.0% 84\.9% .* 0\.500% 30\.[23] 天（估）", text)
    kinds = [(r["rating"], r["kind"], r["object"]) for r in data["risks"]]
    assert ("高", "capacity", "host1 /data") in kinds
    assert ("高", "backup_missed", "pgdb") in kinds
    assert "host1 /data 已用 84.9%，预计 30.2 天后写满" in text or "预计 30.3 天后写满" in text


def test_monthly_charts_archive_and_mail(monthly: tuple[dict[str, Any], str, archive.ArchivedReport]) -> None:
    data, _, a = monthly
    assert [c["filename"] for c in data["charts"]] == ["availability.png", "faults.png", "trend.png"]
    html = a.html_path.read_text("utf-8")
    assert html.count('src="data:image/png;base64,') == 3  # archive and PDF: embedded
    mail = a.mail_html()
    assert "data:image" not in mail
    for cid, path in a.images:
        assert f'src="cid:{cid}"' in mail
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<script" not in html.lower() and "<svg" not in html.lower()
    assert not re.search(r"""(src|href)\s*=\s*["']?https?://""", html)
    # Every file is listed with its SHA-256, and still matches it.
    assert set(a.sha256) == {p.name for p in a.html_path.parent.iterdir() if p.name != "index.json"}
    assert all(archive.verify(a).values())
    assert a.pdf_path is not None and a.pdf_path.read_bytes()[:5] == b"%PDF-"
    assert "月度巡检报告" in a.text_body and "HIS：99.722%" in a.text_body


# ------------------------------------------------------------------------------ other periods


def test_weekly(seeded: rs.Seeded, store: Store) -> None:
    # ISO week 46 = 2026-11-09 .. 11-15: the agent gap, the maintenance and the LIS outage.
    tz = seeded.config.site.tz
    data, text, _ = published(
        seeded, build_periodic(seeded.config, store, "weekly", parse_period("2026-W46", tz), rs.NOW)
    )
    week = 7 * 86_400_000
    his = by(data["availability"], "subject", "HIS")
    his_want = {"unavailable": 0, "maintenance": 3_600_000, "force_majeure": 0, "unknown": 1_800_000}
    # Maintenance leaves the denominator: 599 400 / (604 800 - 3 600) s = 99.70060 %.
    assert_figures(
        his, his_want | {"available": week - 5_400_000}, week, (week - 5_400_000) * 100 / (week - 3_600_000)
    )
    lis = by(data["availability"], "subject", "LIS")
    assert_figures(
        lis, {"unavailable": 1_200_000, "unknown": 1_800_000}, week, (week - 3_000_000) * 100 / week
    )
    assert "HIS 总院 99.701% 99.5% 0:00:00 0:30:00 99.701% 1:00:00 0" in text  # weekly: no verdict columns
    assert "LIS 分院 99.504% 99.0% 0:20:00 0:30:00 " in text
    assert data["faults"]["total"] == 1 and data["faults"]["faults"][0]["number"] == "GZ-20261115-001"
    assert "下期风险提示" in text and "巡检任务完成率" not in text and "年度可用率" not in text


def test_quarterly_with_improvement_plan(seeded: rs.Seeded, store: Store) -> None:
    tz = seeded.config.site.tz
    data, text, _ = published(
        seeded, build_periodic(seeded.config, store, "quarterly", parse_period("2026-Q4", tz), rs.NOW)
    )
    q = 92 * 86_400_000
    his = by(data["availability"], "subject", "HIS")
    want = {k: rs.HIS_NOV[k] for k in ("unavailable", "maintenance", "force_majeure", "unknown")}
    assert_figures(his, want | {"available": q - 12_600_000}, q, (q - 12_600_000) * 100 / (q - 5_400_000))
    assert round(his["availability_pct"], 3) == 99.909
    assert "HIS 总院 99.909% " in text
    assert "风险清单与整改计划" in text and "整改措施 责任人 完成期限 进度" in text
    assert all({"measure", "owner", "due", "progress"} <= set(r) for r in data["risks"])


def test_yearly(seeded: rs.Seeded, store: Store) -> None:
    tz = seeded.config.site.tz
    data, text, _ = published(
        seeded, build_periodic(seeded.config, store, "yearly", parse_period("2026", tz), rs.NOW)
    )
    his = by(data["availability"], "subject", "HIS")
    y = rs.YEAR_PLANNED
    assert his["figures"]["available_ms"] == y - 12_600_000
    assert round(his["availability_pct"], 3) == 99.977
    assert data["faults"]["total"] == 4
    assert "HIS 总院 99.977% 99.5% ✔ 达标 1:30:00 0:30:00 99.994% 1:30:00 2 99.977% ✔ 达标" in text
    assert data["faults_over_time"]["unit"] == "month" and len(data["faults_over_time"]["buckets"]) == 12


# ------------------------------------------------------------------------------ acceptance


def test_acceptance(seeded: rs.Seeded, store: Store) -> None:
    tz = seeded.config.site.tz
    data, text, a = published(
        seeded, build_acceptance(seeded.config, store, parse_period("2026", tz), rs.NOW), pdf=True
    )
    his = by(data["availability"], "subject", "HIS")
    assert his["denominator_ms"] == rs.YEAR_PLANNED - 5_400_000
    assert (
        "= 31,523,400 s ÷ (31,536,000 s − 5,400 s) × 100% = 31,523,400 s ÷ 31,530,600 s × 100% = 99.977%"
        in text
    )
    assert "计划运行时间 8760:00:00 31,536,000 s" in text
    assert "未知时间 0:30:00 监测覆盖率 99.994%" in text
    assert "另一口径为“未知时间不计入”：99.983%。" in text  # 31 523 400 / 31 528 800
    # Every exclusion with approver and reason; every outage with its fault.
    # Each exclusion with both approvals (who, when, which OS user), when and by whom it was
    # recorded, whether it counts, and lateness.
    assert (
        "计划维护 数据库补丁 工单 CHG-1112 原因：安装补丁 2026-11-12 02:00:00 至 2026-11-12 03:00:00 "
        "时长 1:00:00 甲方 信息科 王工 2025-12-31 23:00:00 · 系统用户 his-ops 乙方 张工 2025-12-31 23:00:00 "
        "· 系统用户 his-ops 2025-12-31 23:00:00 登记人 配置文件 ✔ 已生效"
    ) in text
    assert (
        "不可抗力 市电中断 原因：供电局计划外停电 2026-11-25 20:00:00 至 2026-11-25 20:30:00 时长 0:30:00 "
        "甲方 张主任 2026-11-26 10:00:00 · 系统用户 tester 乙方 李经理 2026-11-26 09:00:00 · 系统用户 tester "
        "2026-11-26 09:00:00 登记人 tester ✔ 已生效 ⚠ 事后补录"
    ) in text
    assert [x["approved_by"] for x in his["exclusions"]] == [
        "甲方 信息科 王工；乙方 张工",
        "乙方 李经理；甲方 张主任",
    ]
    assert [o["fault"] for o in his["outages"]] == ["GZ-20261105-001", "GZ-20261120-001"]
    assert "2026-11-05 08:00:00 2026-11-05 08:30:00 0:30:00 his-web GZ-20261105-001 中间件内存溢出" in text
    assert his["passed"] is True and re.search(r"可用性结论： ?✔ 达标", text)
    assert [r["overdue"] for r in data["overdue"]["levels"]] == [1, 1, 1, 0]
    assert text.count("签字：") == 2 and text.count("日期：") == 2
    head = common.chain_head(store)
    assert data["chain_head"] == head
    assert (head["digest_hex"] if head else "证据链头：尚未建立") in text
    assert a.chain_head == (head["digest_hex"] if head else None)
    assert a.pdf_path is not None
    if shutil.which("pdftotext"):
        pdf_text = subprocess.run(
            ["pdftotext", "-layout", str(a.pdf_path), "-"], capture_output=True, text=True, check=True
        ).stdout
        assert "99.977%" in pdf_text and "测试市第一人民医院" in pdf_text
        assert re.search(r"第 1 页，共 \d+ 页", pdf_text)


# ------------------------------------------------------------------------------ daily and inspection


def test_daily_database_section_and_faults(seeded: rs.Seeded, store: Store) -> None:
    data, text, _ = published(seeded, build_daily(seeded.config, store, date(2026, 11, 28), rs.NOW))
    (db,) = data["databases"]
    assert db["check"] == "pgdb" and db["sample_ms"] == rs.ms(11, 28, 23, 30)
    space = by(db["space"], "name", "hisdb")
    assert (space["size_bytes"], space["limit_bytes"], space["used_pct"]) == (
        120 * rs.GIB,
        200 * rs.GIB,
        60.0,
    )
    # Backups of the night: the 03:30 result after the day says the 02:00 full backup ran at 02:40.
    (b,) = db["backups"]
    assert (b["database"], b["type"], b["met"]) == ("hisdb", "full", True)
    assert b["last_ms"] == rs.ms(11, 29, 2, 40) and db["backups_sample_ms"] == rs.ms(11, 29, 3, 30)
    assert [f["status"] for f in db["findings"]] == ["CRIT", "WARN"]
    assert "hisdb database 120.0 GiB 200.0 GiB 60.0% 1.5 GiB 53.3 天" in text
    assert "hisdb full 2026-11-29 02:40:00" in text and "daily 02:00 ✔ 是" in text
    assert "会话 4711 的事务已持续 1 小时" in text and "hisdb 的全量备份未按计划完成" in text
    (s,) = data["backup_sets"]
    assert (s["set"], s["met"], s["newest_ms"]) == ("his-dump", True, rs.ms(11, 29, 3, 50))
    assert "bak his-dump his-20261101.dmp 2026-11-29 03:50:00 52.0 GiB 7 daily 04:00 ✔ 是" in text
    assert [f["number"] for f in data["faults"]["opened"]] == ["GZ-20261128-001"]
    assert "GZ-20261128-001 三级 数据安全类 HIS 总院 2026-11-28 03:30:00" in text


def test_daily_faults_recovered(seeded: rs.Seeded, store: Store) -> None:
    data = build_daily(seeded.config, store, date(2026, 11, 20), rs.NOW)
    assert [f["number"] for f in data["faults"]["opened"]] == ["GZ-20261120-001"]
    assert [f["number"] for f in data["faults"]["recovered"]] == ["GZ-20261120-001"]
    his = by(data["systems"], "name", "HIS")["availability"]
    assert his["figures"]["unavailable_ms"] == 3_600_000
    assert round(his["availability_pct"], 3) == round(82_800 / 86_400 * 100, 3) == 95.833


def test_inspection(seeded: rs.Seeded, store: Store) -> None:
    cfg = seeded.config.check_map
    now = rs.ms(12, 30, 10)
    started = datetime.fromtimestamp(now / 1000, UTC)
    fresh = [
        (cfg["his-web"], CheckResult(Status.OK, "HTTP 200 in 80 ms", started_at=started)),
        ("lis-app", CheckResult(Status.CRIT, "连接被拒绝", started_at=started)),
        (
            cfg["host1"],
            CheckResult(
                Status.OK,
                "正常",
                (Metric("cpu.pct", 12.0, "%"), Metric("disk:/data.used_pct", 91.0, "%")),
                started_at=started,
            ),
        ),
        (
            cfg["pgdb"],
            CheckResult(
                Status.CRIT,
                "备份未完成",
                details=rs.pg_details(rs.ms(12, 30, 2), False, rs.ms(12, 28, 2, 40), space=True),
                started_at=started,
            ),
        ),
    ]
    data, text, a = published(seeded, build_inspection(seeded.config, store, fresh, "元旦节前巡检", now))
    assert data["reason"] == "元旦节前巡检" and data["summary"]["current"] == {
        "OK": 2,
        "WARN": 0,
        "CRIT": 2,
        "UNKNOWN": 0,
    }
    assert [(f["source"], f["object"]) for f in data["findings"][:3]] == [
        ("check", "lis-app"),
        ("check", "pgdb"),
        ("finding", "pgdb hisdb"),
    ]
    assert re.search(r"巡检原因： ?元旦节前巡检", text) and "/data 91.0%" in text
    assert data["hosts"][0]["disks"][0]["used_pct"] == 91.0
    assert data["databases"][0]["backups"][0]["met"] is False
    assert "GZ-20261128-001" in text  # still open
    # One archive per inspection, named by its local date and time (two a day do not collide).
    assert a.html_path.parent.name == "2026-12-30-100000" and a.kind == "inspection"


# ------------------------------------------------------------------------------ English, CLI


def test_english_uses_the_same_template(seeded: rs.Seeded, store: Store) -> None:
    data = build_periodic(
        seeded.config, store, "monthly", parse_period("2026-11", seeded.config.site.tz), rs.NOW
    )
    _, text, a = published(seeded, data, lang="en")
    assert a.html_path.parent.name == "2026-11.en"
    assert "Monthly inspection report" in text and "Availability per business system" in text
    assert "HIS 总院 99.722% 99.5% ✔ Met 0:30:00" not in text  # hms columns come after the verdict
    assert "HIS 总院 99.722% 99.5% ✔ Met 1:30:00 0:30:00" in text
    labels = re.sub(
        r"测试市第一人民医院|总院|分院|集成平台|中间件内存溢出|[^\s]*连接被拒绝|备份未完成|"
        r"hisdb 的全量备份未按计划完成（每天 02:00 前）|会话 4711 的事务已持续 1 小时|"
        r"不可用",
        "",
        text,
    )
    leftover = re.findall(r"[\u4e00-\u9fff]+", labels)
    assert leftover == [], f"untranslated labels: {sorted(set(leftover))}"


def _cli(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="report_kind", required=True)
    cli_reports.add_parser(sub)
    return p.parse_args(argv)


def test_cli_writes_records_and_lists(
    seeded: rs.Seeded, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = seeded.config
    assert cli_reports.run(cfg, _cli("monthly", "--period", "2026-11", "--at", "2027-01-04 09:00")) == 0
    out = capsys.readouterr()
    html = Path(out.out.splitlines()[0])
    assert html.name == "monthly-2026-11.html" and "99.722%" in html.read_text("utf-8")
    s = Store(seeded.db, readonly=True)
    assert s.report_done("monthly", "2026-11")
    s.close()
    assert cli_reports.run(cfg, _cli("acceptance", "--year", "2026", "--at", "2027-01-04 09:00")) == 0
    assert capsys.readouterr().out.splitlines()[1].endswith("acceptance-2026.pdf")
    assert cli_reports.run(cfg, _cli("list", "--json")) == 0
    rows = json.loads(capsys.readouterr().out)
    mine = by([r for r in rows if r["kind"] == "acceptance"], "period", "2026")
    assert mine["pdf"].endswith(".pdf") and len(mine["sha256"]) >= 4
    assert cli_reports.run(cfg, _cli("daily", "--period", "2026-11", "--at", "2027-01-04 09:00")) == 2
    assert "one day" in capsys.readouterr().err
    assert cli_reports.default_period("quarterly", date(2027, 1, 4)) == "2026-Q4"
    assert cli_reports.default_period("weekly", date(2026, 11, 18)) == "2026-W46"
    assert cli_reports.default_period("monthly", date(2026, 12, 1)) == "2026-11"


def test_pdftoppm_and_chromium_tools_present() -> None:
    need(shutil.which("pdftoppm") is not None, "pdftoppm (apt-get install poppler-utils)")
