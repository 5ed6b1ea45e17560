"""The acceptance report shows its working (issue 13, scope 7): unknown time itemised with its
cause, every exclusion with both parties' approvals, its recording and whether it counted (late
ones marked 事后补录), the configuration versions in force, the time before monitoring began,
the liveness grace and the contract year of the verdict.

A store is seeded the way the daemon and the CLI write it (runs, heartbeats, results through
the state machine, configuration versions, the ledgers with their approvals); the report is
made by `sentinel report acceptance` in a subprocess with no period given (the last complete
service period), and read back as its reader sees it: the HTML's visible text, the JSON, the
plain-text body and the PDF.

The month (Asia/Shanghai), one service period 2026-11-01..2026-11-30, NOW 2026-12-02 09:00:
- monitoring begins 11-03 00:00 (configuration version 1): 11-01..11-03 is before monitoring;
- the agent stops cleanly 11-10 00:00 and starts 11-10 01:00 with version 2 (a check added):
  1 h unknown, agent down;
- web UNKNOWN 11-15 08:00-08:20: unknown, the probe could not run;
- web CRIT 11-20 10:00-11:00; window 机房改造 over it recorded 11-20 12:00 by 乙方 alone: late,
  pending, excludes nothing (the outage counts);
- web CRIT 11-25 20:00-20:30; force majeure 市电中断 recorded 11-26 09:00 by 乙方, approved by
  甲方 11-26 10:00: late, both approved, 30 min excluded;
- the agent is killed after its heartbeat of 11-28 12:00 and restarts 11-28 13:00 (same
  configuration): unknown from 12:00:30 (heartbeat + 30 s grace) to 13:00, agent down.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from agent.availability.gather import CAUSE_ZH
from agent.clock.periods import service_period
from agent.config.schema import Config, parse
from agent.config.windows import WindowSpec
from agent.reports import archive
from agent.reports.acceptance import build_acceptance
from agent.state.machine import CheckState
from agent.store.db import Store
from agent.text import i18n
from agent.windows import exclusions, ledger
from probes.base import CheckResult, Status
from tests.conftest import REPO, need

SH = ZoneInfo("Asia/Shanghai")


def ms(month: int, day: int, hh: int = 0, mm: int = 0, ss: int = 0, year: int = 2026) -> int:
    return int(datetime(year, month, day, hh, mm, ss, tzinfo=SH).timestamp() * 1000)


NOW = ms(12, 2, 9)
RUN1 = (ms(11, 3), ms(11, 10))
RUN2 = (ms(11, 10, 1), ms(11, 28, 12))  # killed: last heartbeat 11-28 12:00, no stop recorded
RUN3 = (ms(11, 28, 13), NOW)

CONFIG = """
site: {{name: 测试市第一人民医院, timezone: Asia/Shanghai}}
storage: {{path: {db}}}
contract:
  service_periods:
    - {{start: 2026-11-01, end: 2026-11-30, name: 第一服务期}}
systems:
  - {{name: HIS, campus: 总院, availability_target: 99.5}}
checks:
  - {{name: web, kind: http, system: HIS, url: "http://127.0.0.1:1/", availability_critical: true,
      confirmations: 1}}
{extra}reports:
  output_dir: {out}
"""
# Version 2 adds a check that is not critical: the figures do not change, the version does.
EXTRA = """  - {name: api, kind: tcp, system: HIS, host: 127.0.0.1, port: 1, confirmations: 1}
"""

# (check, status, from, to) of every spell that is not OK.
SPELLS = (
    (Status.UNKNOWN, ms(11, 15, 8), ms(11, 15, 8, 20)),
    (Status.CRIT, ms(11, 20, 10), ms(11, 20, 11)),
    (Status.CRIT, ms(11, 25, 20), ms(11, 25, 20, 30)),
)


@dataclass
class Made:
    config: Config
    db: Path
    html: str
    """The visible text of the HTML report."""
    data: dict[str, Any]
    text: str
    """The plain-text body."""
    pdf: Path
    versions: list[str]
    """SHA-256 of configuration versions 1 and 2."""


def text_of(html: str) -> str:
    """Visible text: <style> dropped, tags as spaces, whitespace collapsed."""
    html = re.sub(r"<style.*?</style>", " ", html, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).replace("&nbsp;", " ")


def _write(store: Store, run: int, states: dict[str, CheckState], ts: int, status: Status) -> None:
    r = replace(
        CheckResult(status, "正常" if status is Status.OK else "连接被拒绝"),
        started_at=datetime.fromtimestamp(ts / 1000, UTC),
    )
    st = states["web"]
    store.write_batch(run, [("web", r, st.observe(ts, r.status, r.summary, 1), st)])
    store.heartbeat(run, ts)


def seed(tmp: Path) -> tuple[Path, list[str]]:
    db, out = tmp / "sentinel.db", tmp / "reports"
    v1 = parse(CONFIG.format(db=db, out=out, extra=""), base_dir=tmp)
    v2_text = CONFIG.format(db=db, out=out, extra=EXTRA)
    v2 = parse(v2_text, base_dir=tmp)
    (tmp / "s.yaml").write_text(v2_text, encoding="utf-8")
    store = Store(db)
    store.sync_checks([("web", "http", "HIS")], RUN1[0])

    run = store.begin_run(RUN1[0], 1, "his-mon-01", "0.1.0")
    store.record_config(RUN1[0], run, *v1.canonical())
    states = {"web": CheckState()}
    _write(store, run, states, RUN1[0], Status.OK)
    store.end_run(run, RUN1[1])

    run = store.begin_run(RUN2[0], 2, "his-mon-01", "0.1.0")
    store.record_config(RUN2[0], run, *v2.canonical())
    store.sync_checks([("web", "http", "HIS"), ("api", "tcp", "HIS")], RUN2[0])
    states = store.load_states()
    _write(store, run, states, RUN2[0], Status.OK)
    for status, start, end in SPELLS:
        _write(store, run, states, start, status)
        _write(store, run, states, end, Status.OK)
    _write(store, run, states, RUN2[1], Status.OK)  # its last heartbeat; then kill -9

    # The window over the outage of 11-20, recorded afterwards by the vendor alone.
    spec = WindowSpec.model_validate(
        {
            "name": "机房改造",
            "systems": ["HIS"],
            "start": "2026-11-20 10:00",
            "end": "2026-11-20 11:00",
            "reason": "更换 UPS",
            "ticket": "CHG-1120",
        }
    )
    ledger.add_window(store, spec, "乙方", "张工", "vendor", ms(11, 20, 12))
    # The power cut of 11-25, recorded the next morning by the vendor, approved by the hospital.
    rec = exclusions.NewRecord(
        name="市电中断",
        start="2026-11-25 20:00",
        end="2026-11-25 20:30",
        systems=("HIS",),
        reason="供电局计划外停电",
    )
    exclusions.add(store, rec, SH, "乙方", "李经理", "vendor", ms(11, 26, 9))
    exclusions.approve(store, "市电中断", "甲方", "张主任", "hospital", ms(11, 26, 10))

    run = store.begin_run(RUN3[0], 3, "his-mon-01", "0.1.0", grace_ms=v2.agent.grace_ms)
    store.record_config(RUN3[0], run, *v2.canonical())
    states = store.load_states()
    _write(store, run, states, RUN3[0], Status.OK)
    store.end_run(run, RUN3[1])
    store.close()
    return tmp / "s.yaml", [v1.canonical()[1], v2.canonical()[1]]


def report(tmp: Path, cfg: Path, *args: str) -> list[Path]:
    """`sentinel report acceptance` in a subprocess; the files it printed."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "agent",
            "-c",
            str(cfg),
            "report",
            "acceptance",
            "--at",
            "2026-12-02 09:00",
            *args,
        ],
        cwd=tmp,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return [Path(p) for p in done.stdout.split()]


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Made:
    tmp = tmp_path_factory.mktemp("acceptance")
    cfg, versions = seed(tmp)
    files = report(tmp, cfg)
    html, pdf = (next(p for p in files if p.suffix == s) for s in (".html", ".pdf"))
    data = json.loads(html.with_suffix(".json").read_text(encoding="utf-8"))
    config = parse(cfg.read_text(encoding="utf-8"), base_dir=tmp)
    return Made(
        config,
        tmp / "sentinel.db",
        text_of(html.read_text(encoding="utf-8")),
        data,
        html.with_suffix(".txt").read_text(encoding="utf-8"),
        pdf,
        versions,
    )


@pytest.fixture()
def his(made: Made) -> dict[str, Any]:
    (e,) = made.data["availability"]
    assert e["subject"] == "HIS"
    return e


def section(text: str, title: str, until: str) -> str:
    """The visible text from a heading to the next one."""
    start = text.index(title)
    return text[start : text.index(until, start + len(title))]


# ------------------------------------------------------------------------------ the period


def test_default_period_is_the_last_complete_service_period(made: Made, his: dict[str, Any]) -> None:
    assert made.data["period"]["label"] == "第一服务期"
    assert "统计期间：2026-11-01 至 2026-11-30" in made.html
    # The verdict's contract year is that service period, stated.
    assert his["year_label"] == made.data["basis"]["year_label"] == "第一服务期"
    assert "年度结论所属期间 第一服务期（2026-11-01 至 2026-11-30） contract.service_periods" in made.html


# ------------------------------------------------------------------------------ unknown time


def test_unknown_time_is_itemised_with_its_cause(made: Made, his: dict[str, Any]) -> None:
    rows = [(u["start_ms"], u["end_ms"], u["cause"]) for u in his["unknown"]]
    assert rows == [
        (ms(11, 10), ms(11, 10, 1), "agent_down"),
        (ms(11, 15, 8), ms(11, 15, 8, 20), "probe"),
        (ms(11, 28, 12, 0, 30), ms(11, 28, 13), "agent_down"),  # last heartbeat + 30 s grace
    ]
    total = 3_600_000 + 1_200_000 + 3_570_000
    assert his["figures"]["unknown_ms"] == total == sum(u["duration_ms"] for u in his["unknown"])
    part = section(made.html, "未知时间明细", "排除记录")
    assert "共 3 段，合计 2:19:30：监控代理未运行 2 段 1:59:30；检查未能执行或无数据 1 段 0:20:00" in part
    assert "2026-11-10 00:00:00 2026-11-10 01:00:00 1:00:00 监控代理未运行" in part
    assert "2026-11-15 08:00:00 2026-11-15 08:20:00 0:20:00 检查未能执行或无数据" in part
    assert "2026-11-28 12:00:30 2026-11-28 13:00:00 0:59:30 监控代理未运行" in part
    # The grace that decided where the agent's silence became unknown.
    assert made.data["basis"]["liveness_grace_ms"] == his["liveness_grace_ms"] == 30_000
    assert "代理心跳宽限 30秒（超过后计为未知时间：监控代理未运行） agent.liveness_grace" in made.html
    assert "- HIS：监控代理未运行 2 段 1:59:30；检查未能执行或无数据 1 段 0:20:00" in made.text


def test_time_before_monitoring_began_is_shown_with_its_policy(made: Made, his: dict[str, Any]) -> None:
    assert his["before_monitoring"] == {"start_ms": ms(11, 1), "end_ms": ms(11, 3)}
    assert his["figures"]["before_monitoring_ms"] == 48 * 3_600_000
    # Policy "excluded" (the default): not planned time, and not unknown time either.
    assert his["figures"]["planned_ms"] == 28 * 86_400_000
    assert "监控开始时间 2026-11-03 00:00:00" in made.html
    assert (
        "监控开始前的时间 未监控：监控开始前：该时段不计入计划运行时间 "
        "本期 2026-11-01 00:00:00 至 2026-11-03 00:00:00（48:00:00）；各系统其中的计划运行时间见各系统一节 "
        "availability.before_monitoring: excluded" in made.html
    )
    part = section(made.html, "业务系统 HIS", "未知时间明细")
    assert (
        "未监控：监控开始前：2026-11-01 00:00:00 至 2026-11-03 00:00:00，其中计划运行时间 48:00:00"
        "（该时段不计入计划运行时间， availability.before_monitoring: excluded ）" in part
    )


def test_under_policy_unknown_the_time_before_monitoring_is_an_unknown_span(made: Made) -> None:
    text = (made.db.parent / "s.yaml").read_text(encoding="utf-8")
    config = parse(text + "availability: {before_monitoring: unknown}\n", base_dir=made.db.parent)
    store = Store(made.db, readonly=True)
    try:
        data = build_acceptance(config, store, service_period(config.contract.service_periods[0], SH), NOW)
    finally:
        store.close()
    (his,) = data["availability"]
    first = his["unknown"][0]
    assert (first["start_ms"], first["end_ms"], first["cause"]) == (ms(11, 1), ms(11, 3), "before_monitoring")
    html = text_of(archive.render_html(config, data, "zh", None))
    part = section(html, "未知时间明细", "排除记录")
    assert "2026-11-01 00:00:00 2026-11-03 00:00:00 48:00:00 未监控：监控开始前" in part
    assert "监控开始前的时间 未监控：监控开始前：该时段计为未知时间" in html


# ------------------------------------------------------------------------------ exclusions


def test_a_late_window_with_one_approval_is_marked_and_excludes_nothing(
    made: Made, his: dict[str, Any]
) -> None:
    (w,) = [x for x in his["exclusions"] if x["name"] == "机房改造"]
    assert (w["late"], w["effective"], w["recorded_ms"], w["recorded_by"]) == (
        True,
        False,
        ms(11, 20, 12),
        "vendor",
    )
    assert his["figures"]["maintenance_ms"] == 0
    # The outage under it still counts.
    assert [(o["start_ms"], o["end_ms"]) for o in his["outages"]][0] == (ms(11, 20, 10), ms(11, 20, 11))
    part = section(made.html, "排除记录", "停机记录")
    assert (
        "计划维护 机房改造 工单 CHG-1120 原因：更换 UPS "
        "2026-11-20 10:00:00 至 2026-11-20 11:00:00 时长 1:00:00 "
        "甲方 未批准 乙方 张工 2026-11-20 12:00:00 · 系统用户 vendor "
        "2026-11-20 12:00:00 登记人 vendor ✖ 待双方批准，不排除 ⚠ 事后补录" in part
    )
    assert (
        "- HIS 计划维护 机房改造 2026-11-20 10:00:00 至 2026-11-20 11:00:00：待双方批准，不排除，事后补录"
        in made.text
    )


def test_a_late_record_both_parties_approved_counts_and_shows_both_approvers(
    made: Made, his: dict[str, Any]
) -> None:
    (x,) = [x for x in his["exclusions"] if x["name"] == "市电中断"]
    assert (x["late"], x["effective"]) == (True, True)
    assert {a["party"]: (a["approver"], a["ts_ms"], a["os_user"]) for a in x["approvals"]} == {
        "乙方": ("李经理", ms(11, 26, 9), "vendor"),
        "甲方": ("张主任", ms(11, 26, 10), "hospital"),
    }
    assert his["figures"]["force_majeure_ms"] == 1_800_000
    part = section(made.html, "排除记录", "停机记录")
    assert (
        "不可抗力 市电中断 原因：供电局计划外停电 "
        "2026-11-25 20:00:00 至 2026-11-25 20:30:00 时长 0:30:00 "
        "甲方 张主任 2026-11-26 10:00:00 · 系统用户 hospital "
        "乙方 李经理 2026-11-26 09:00:00 · 系统用户 vendor "
        "2026-11-26 09:00:00 登记人 vendor ✔ 已生效 ⚠ 事后补录" in part
    )
    assert (
        "市电中断 2026-11-25 20:00:00 至 2026-11-25 20:30:00：已生效，事后补录（乙方 李经理；甲方 张主任）"
        in made.text
    )


# ------------------------------------------------------------------------------ configuration


def test_the_configuration_versions_in_force_are_listed(made: Made) -> None:
    v1, v2 = made.versions
    assert v1 != v2
    rows = [
        (v["version_id"], v["hash"], v["recorded_ms"], v["start_ms"], v["end_ms"])
        for v in made.data["basis"]["config_versions"]
    ]
    # Version 3 (the restart of 11-28) is version 2 again: one era.
    assert rows == [
        (1, v1, RUN1[0], ms(11, 3), ms(11, 10, 1)),
        (2, v2, RUN2[0], ms(11, 10, 1), ms(12, 1)),
    ]
    part = section(made.html, "期间内生效的配置版本", "业务系统 HIS")
    assert f"1 {v1[:12]} 2026-11-03 00:00:00 2026-11-03 00:00:00 2026-11-10 01:00:00" in part
    assert f"2 {v2[:12]} 2026-11-10 01:00:00 2026-11-10 01:00:00 2026-12-01 00:00:00" in part
    assert "sentinel config history ：列出各配置版本的时间及其改动内容。" in part
    assert f"版本 1 {v1[:12]} 2026-11-03 00:00:00 至 2026-11-10 01:00:00；版本 2 {v2[:12]}" in made.text


# ------------------------------------------------------------------------------ other forms


def test_the_pdf_carries_the_working(made: Made) -> None:
    need(shutil.which("pdftotext") is not None, "pdftotext (poppler-utils) is not installed")
    pdf = subprocess.run(["pdftotext", str(made.pdf), "-"], capture_output=True, text=True, check=True).stdout
    flat = re.sub(r"\s+", "", pdf)
    for words in (
        "未知时间明细",
        "检查未能执行或无数据",
        "待双方批准，不排除",
        "事后补录",
        "期间内生效的配置版本",
        made.versions[1][:12],
    ):
        assert words in flat, words


def test_english_report_translates_the_working(made: Made, tmp_path: Path) -> None:
    cfg = made.db.parent / "s.yaml"
    (html,) = [
        p for p in report(made.db.parent, cfg, "--lang", "en", "--out", str(tmp_path)) if p.suffix == ".html"
    ]
    text = text_of(html.read_text(encoding="utf-8"))
    for words in (
        "Agent not running",
        "Probe could not run or no data",
        "Not approved by both parties, not excluded",
        "Recorded after the fact",
        "Configuration versions in force",
        "Liveness grace",
    ):
        assert words in text, words
    # Every label of the working (basis to the last system) is English; what is left in Chinese
    # is the site's own data.
    working = section(text, "Basis of the figures", "Overdue faults")
    data = r"总院|第一服务期|机房改造|更换|市电中断|供电局计划外停电|张工|张主任|李经理"
    leftover = re.findall(r"[\u4e00-\u9fff]+", re.sub(data, "", working))
    assert leftover == [], f"untranslated labels: {sorted(set(leftover))}"


def test_labels_from_the_engine_have_english() -> None:
    # Shown through |tr: the causes of unknown time and the notes of a system without figures.
    notes = (
        "未配置可用性关键检查项（availability_critical），无法计算可用率",
        "期间内尚未开始监控（未监控：监控开始前）",
    )
    assert [x for x in (*CAUSE_ZH.values(), *notes) if x not in i18n.EN] == []


def test_a_long_unknown_list_is_cut_in_the_html_and_whole_in_the_json(made: Made) -> None:
    store = Store(made.db, readonly=True)
    try:
        data = build_acceptance(
            made.config, store, service_period(made.config.contract.service_periods[0], SH), NOW
        )
    finally:
        store.close()
    data["basis"]["unknown_rows"] = 1
    text = text_of(archive.render_html(made.config, data, "zh", None))
    part = section(text, "未知时间明细", "排除记录")
    assert "2026-11-10 00:00:00 2026-11-10 01:00:00" in part
    assert "2026-11-15 08:00:00" not in part
    assert "共 3 段，此处列出前 1 段；全部明细见同目录的 JSON 数据文件" in part
