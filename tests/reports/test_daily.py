"""Daily inspection report: figures from a seeded store, the rendered HTML, and Chromium's view.

The seeded day is 2026-11-20 in Asia/Shanghai: [2026-11-19 16:00Z, 2026-11-20 16:00Z).
Every check is sampled every 5 minutes by a first agent run (from 23:00 local the evening
before until 10:00 local), the agent is down 10:00-10:30 local, and a second run samples from
10:30 local until the report is generated at 07:30 local the next morning (now_ms).
Results go through CheckState.observe and Store.write_batch exactly as agent/recorder.py does.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from agent.clock.timeutil import day_bounds
from agent.config.schema import Config, parse
from agent.reports.daily import build_daily, percentile, render_daily, write_daily
from agent.state.machine import CheckState
from agent.store.db import Store
from probes.base import CheckResult, Metric, Status
from tests.reports.test_screenshots import png_info

DAY = date(2026, 11, 20)
MIN = 60_000
HOUR = 60 * MIN
STEP = 5 * MIN
GIB = float(1 << 30)
MIB = float(1 << 20)

CONFIG_YAML = """
site:
  name: 测试市人民医院
  timezone: Asia/Shanghai
systems:
  - name: HIS
    availability_target: 99.5
  - name: 集成平台
checks:
  - name: his-db-host
    kind: host
    system: HIS
    interval: 5m
  - name: his-web
    kind: http
    system: HIS
    url: http://127.0.0.1:18080/his/login
    interval: 5m
    confirmations: 3
    availability_critical: true
  - name: portal
    kind: http
    system: 集成平台
    url: https://127.0.0.1:18443/
    interval: 5m
    cert_expiry_warn_days: 14
  - name: hl7-mllp
    kind: tcp
    system: 集成平台
    host: 127.0.0.1
    port: 12575
    interval: 5m
reports:
  output_dir: out
"""

START, END = day_bounds(DAY, ZoneInfo("Asia/Shanghai"))
# 00:00 local on the day is 16:00 UTC the evening before: Asia/Shanghai is UTC+8 all year.
assert int(datetime(2026, 11, 19, 16, tzinfo=UTC).timestamp() * 1000) == START

RUN1_START = START - HOUR  # 23:00 local the evening before
GAP_START = START + 10 * HOUR  # 10:00 local = 02:00 UTC
GAP_END = START + 10 * HOUR + 30 * MIN  # 10:30 local
OUTAGE_START = START + 14 * HOUR  # 14:00 local: first failing sample
OUTAGE_END = START + 14 * HOUR + 45 * MIN  # 14:45 local: first good sample again
BLIP = START + 8 * HOUR  # 08:00 local: one UNKNOWN sample, absorbed by confirmations
TCP_WARN = START + 22 * HOUR  # 22:00 local: hl7-mllp slows down and stays WARN
NOW = END + 7 * HOUR + 30 * MIN  # 07:30 local the next morning


def _disk_used(t: int) -> float:
    # /data grows by 64 MiB every 5 minutes from 880 GiB at 00:00 local.
    return 880 * GIB + (t - START) / STEP * 64 * MIB


@dataclass
class Seeded:
    config: Config
    store: Store
    in_day_latencies: list[float] = field(default_factory=list)


def _host_result(t: int) -> CheckResult:
    in_day = START <= t < END
    used = _disk_used(t)
    total = 1024 * GIB
    metrics = (
        # After the day the host looks very different: the report must use the day's last sample.
        Metric("cpu.pct", 23.5 if in_day else 99.0, "%"),
        Metric("load5.per_core", 0.42 if in_day else 3.9, ""),
        Metric("mem.pct", 61.2, "%"),
        Metric("swap.pct", 1.5, "%"),
        Metric("uptime.s", 3 * 86400 + (t - START) / 1000, "s"),
        Metric("disk:/.used_pct", 40.0, "%"),
        Metric("disk:/.used_bytes", 40 * GIB, "B"),
        Metric("disk:/.total_bytes", 100 * GIB, "B"),
        Metric("disk:/.inode_pct", 5.0, "%"),
        Metric("disk:/data.used_pct", round(used / total * 100, 2), "%"),
        Metric("disk:/data.used_bytes", used, "B"),
        Metric("disk:/data.total_bytes", total, "B"),
        Metric("disk:/data.inode_pct", 12.0, "%"),
        Metric("disk:/data.days_to_full", 12.5, "d"),
    )
    pct = used / total * 100
    return CheckResult(Status.WARN, f"磁盘 /data 已用 {pct:.1f}%", metrics)


def _seed(tmp: Path) -> Seeded:
    config = parse(CONFIG_YAML, base_dir=tmp)
    store = Store(tmp / "sentinel.db")
    store.sync_checks(((c.name, c.kind, c.system) for c in config.checks), RUN1_START)
    confirmations = {c.name: c.confirmations for c in config.checks}
    seeded = Seeded(config, store)
    ok_index = 0

    def results_at(t: int) -> dict[str, CheckResult]:
        nonlocal ok_index
        out: dict[str, CheckResult] = {"his-db-host": _host_result(t)}
        if OUTAGE_START <= t < OUTAGE_END:
            out["his-web"] = CheckResult(Status.CRIT, "连接被拒绝 (connection refused)")
        elif t == BLIP:
            out["his-web"] = CheckResult(
                Status.UNKNOWN, "probe error: TimeoutError", (Metric("latency_ms", 9999.0, "ms"),)
            )
        else:
            if START <= t < END:
                # 50, 60, ... 240 ms in turn over the day's OK samples; outside the day 999 ms,
                # which would show in p95 if the report leaked across the day's bounds.
                lat = 50.0 + (ok_index % 20) * 10
                ok_index += 1
                seeded.in_day_latencies.append(lat)
            else:
                lat = 999.0
            out["his-web"] = CheckResult(
                Status.OK,
                f"HTTP 200 in {lat:.0f} ms",
                (Metric("latency_ms", lat, "ms"), Metric("status_code", 200)),
            )
        out["portal"] = CheckResult(
            Status.OK,
            "HTTP 200 in 30 ms",
            (
                Metric("latency_ms", 30.0, "ms"),
                Metric("status_code", 200),
                Metric("cert_days_left", 20.0, "d"),
            ),
        )
        if t >= TCP_WARN:
            out["hl7-mllp"] = CheckResult(
                Status.WARN,
                "应答 1500 ms，超过警告阈值 1000 ms",
                (Metric("connect_ms", 2.0, "ms"), Metric("response_ms", 1500.0, "ms")),
            )
        else:
            out["hl7-mllp"] = CheckResult(
                Status.OK,
                "expected reply in 3 ms",
                (Metric("connect_ms", 2.0, "ms"), Metric("response_ms", 3.0, "ms")),
            )
        return out

    def run(run_id: int, states: dict[str, CheckState], t0: int, t_end: int) -> None:
        t = t0
        while t < t_end:
            batch = []
            for name, proto in results_at(t).items():
                res = replace(proto, started_at=datetime.fromtimestamp(t / 1000, UTC))
                state = states.setdefault(name, CheckState())
                changes = state.observe(t, res.status, res.summary, confirmations[name])
                batch.append((name, res, changes, state))
            store.write_batch(run_id, batch)
            store.heartbeat(run_id, t)
            t += STEP

    run1 = store.begin_run(RUN1_START, 1001, "his-mon-01", "0.1.0")
    run(run1, {}, RUN1_START, GAP_START)  # last sample 09:55 local
    store.end_run(run1, GAP_START)
    run2 = store.begin_run(GAP_END, 1002, "his-mon-01", "0.1.0")
    run(run2, store.load_states(), GAP_END, NOW + 1)  # up to and including 07:30 next morning
    store.heartbeat(run2, NOW)
    return seeded


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    tmp = tmp_path_factory.mktemp("daily")
    s = _seed(tmp)
    s.store.close()
    # The report reads through its own read-only connection, as the CLI does.
    s.store = Store(tmp / "sentinel.db", readonly=True)
    yield s
    s.store.close()


@pytest.fixture(scope="module")
def data(seeded: Seeded) -> dict[str, Any]:
    return build_daily(seeded.config, seeded.store, DAY, now_ms=NOW)


@pytest.fixture(scope="module")
def html(seeded: Seeded, data: dict[str, Any]) -> str:
    return render_daily(seeded.config, data)


def _text(html: str) -> str:
    """Visible text with tags dropped and whitespace collapsed, for phrase assertions."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).replace("&nbsp;", " ")


def _by(rows: list[dict[str, Any]], key: str, value: str) -> dict[str, Any]:
    return next(r for r in rows if r[key] == value)


# ------------------------------------------------------------------------------ data


def test_data_is_json_serialisable_and_labelled(data: dict[str, Any]) -> None:
    assert json.loads(json.dumps(data)) == data
    assert data["kind"] == "daily"
    assert data["day"] == "2026-11-20"
    assert (data["start_ms"], data["end_ms"]) == (START, END)
    assert data["generated_ms"] == NOW
    assert data["partial"] is False
    assert data["site"] == {"name": "测试市人民医院", "timezone": "Asia/Shanghai"}


def test_system_availability_counts_gap_as_unknown_not_available(data: dict[str, Any]) -> None:
    his = _by(data["systems"], "name", "HIS")
    av = his["availability"]
    f = av["figures"]
    # Day = 86 400 s. his-web was CRIT 14:00-14:45 = 2 700 s; the agent was down
    # 10:00-10:30 = 1 800 s (unknown). Available = 86 400 - 2 700 - 1 800 = 81 900 s.
    # Policy "unavailable" (the default): 81 900 / 86 400 = 94.79166...% -> 94.792 %;
    # policy "excluded": 81 900 / (86 400 - 1 800) = 96.80851...% -> 96.809 %.
    assert f["planned_ms"] == 86_400_000
    assert f["unavailable_ms"] == 2_700_000
    assert f["unknown_ms"] == 1_800_000
    assert f["available_ms"] == 81_900_000
    assert av["policy"] == "unavailable"
    assert round(av["availability_pct"], 3) == 94.792
    assert round(f["availability_excluded_pct"], 3) == 96.809
    assert av["passed"] is False  # target 99.5 %
    assert his["critical_checks"] == ["his-web"]
    assert [(o["start_ms"], o["end_ms"], o["duration_ms"], o["checks"]) for o in av["outages"]] == [
        (OUTAGE_START, OUTAGE_END, 2_700_000, ["his-web"])
    ]
    assert data["outages"][0]["system"] == "HIS"
    # The blip at 08:00 (one UNKNOWN sample) was absorbed by confirmations: no outage, no unknown.
    assert his["status"] == "WARN"  # his-db-host warns on /data; his-web is OK again


def test_system_without_critical_checks_has_no_figure(data: dict[str, Any]) -> None:
    integ = _by(data["systems"], "name", "集成平台")
    assert integ["critical_checks"] == []
    assert integ["availability"] is None
    assert integ["status"] == "WARN"


def test_agent_gap_is_listed(data: dict[str, Any]) -> None:
    cov = data["coverage"]
    assert cov["gaps"] == [{"start_ms": GAP_START, "end_ms": GAP_END, "duration_s": 1800.0}]
    assert cov["unmonitored_s"] == 1800
    assert round(cov["monitored_pct"], 3) == round(84_600 / 86_400 * 100, 3)
    assert [r["clean"] for r in cov["runs"]] == [True, False]  # run 2 is still going


def test_endpoint_latency_percentiles_and_failures(seeded: Seeded, data: dict[str, Any]) -> None:
    web = _by(data["endpoints"], "check", "his-web")
    # In-day samples: run 1 00:00-09:55 = 120, run 2 10:30-23:55 = 162, total 282.
    # Failures: 9 CRIT samples (14:00 ... 14:40) + the UNKNOWN blip at 08:00 = 10.
    assert web["results"] == 282
    assert web["failures"] == 10
    # Latencies come from the 272 OK samples (the UNKNOWN sample's 9 999 ms is left out, and
    # so are the 999 ms samples outside the day): values 50, 60, ... 240 ms in turn, so
    # 50..160 occur 14 times and 170..240 13 times. Nearest rank: p50 = rank ceil(136) = 136,
    # and 10 values x 14 reach 140 -> 140 ms; p95 = rank ceil(258.4) = 259: 12 x 14 = 168 up
    # to 160, then +13 each: 170->181 ... 230->259 -> 230 ms.
    assert len(seeded.in_day_latencies) == 272
    assert web["p50_ms"] == 140.0
    assert web["p95_ms"] == 230.0
    assert round(web["availability"]["availability_pct"], 3) == 94.792

    tcp = _by(data["endpoints"], "check", "hl7-mllp")
    assert tcp["status"] == "WARN"
    assert tcp["failures"] == 0
    # WARN counts as available; the agent gap is unknown: 84 600 / 86 400 under the default policy.
    assert tcp["availability"]["figures"]["availability_excluded_pct"] == 100.0
    assert tcp["availability"]["figures"]["unknown_ms"] == 1_800_000
    assert round(tcp["availability"]["availability_pct"], 3) == 97.917
    assert tcp["p50_ms"] == 5.0  # connect 2 + response 3


def test_percentile_nearest_rank() -> None:
    assert percentile([], 50) is None
    assert percentile([7.0], 95) == 7.0
    assert percentile([1, 2, 3, 4], 50) == 2
    assert percentile([1, 2, 3, 4], 95) == 4
    assert percentile(list(range(1, 101)), 95) == 95


def test_host_figures_from_last_sample_of_the_day(data: dict[str, Any]) -> None:
    (host,) = data["hosts"]
    assert host["sample_ts"] == END - STEP  # 23:55 local, not the 07:30 sample of the next day
    figures = (host["cpu_pct"], host["load_per_core"], host["mem_pct"], host["swap_pct"])
    assert figures == (23.5, 0.42, 61.2, 1.5)
    disks = {d["mount"]: d for d in host["disks"]}
    assert set(disks) == {"/", "/data"}
    assert disks["/"]["days_to_full"] is None
    d = disks["/data"]
    # 23:55 is 287 steps after 00:00: 880 GiB + 287 x 64 MiB = 897.9375 GiB of 1 024 GiB.
    assert d["used_bytes"] == _disk_used(END - STEP)
    assert d["growth_bytes"] == 287 * 64 * MIB
    assert d["used_pct"] == round(897.9375 / 1024 * 100, 2) == 87.69
    assert (d["inode_pct"], d["days_to_full"]) == (12.0, 12.5)


SERVERS_YAML = """
site: {name: 测试市人民医院, timezone: Asia/Shanghai}
systems: [{name: PACS}]
checks:
  - {name: mon-local, kind: host, interval: 5m}
  - name: pacs-db-01
    kind: ssh_host
    system: PACS
    interval: 5m
    ssh: {address: 10.0.0.21, user: monitor, key_file: /etc/sentinel/id_ed25519}
  - {name: pacs-web, kind: http, system: PACS, url: "http://10.0.0.22/", interval: 5m}
reports: {output_dir: out}
"""


def test_servers_checked_over_ssh_are_in_the_host_table(tmp_path: Path) -> None:
    """An ssh_host check reports the same host figures as a local one, so it has its row."""
    config = parse(SERVERS_YAML, base_dir=tmp_path)
    store = Store(tmp_path / "sentinel.db")
    store.sync_checks(((c.name, c.kind, c.system) for c in config.checks), START)
    run = store.begin_run(START, 2001, "his-mon-01", "0.1.0")
    states: dict[str, CheckState] = {}
    for t in range(START + 8 * HOUR, START + 9 * HOUR, STEP):
        remote = _host_result(t)
        remote = replace(remote, metrics=(*remote.metrics, Metric("clock.offset_s", 0.2, "s")))
        results = {
            "mon-local": _host_result(t),
            "pacs-db-01": remote,
            "pacs-web": CheckResult(Status.OK, "HTTP 200", (Metric("latency_ms", 40.0, "ms"),)),
        }
        batch = []
        for name, proto in results.items():
            res = replace(proto, started_at=datetime.fromtimestamp(t / 1000, UTC))
            state = states.setdefault(name, CheckState())
            batch.append((name, res, state.observe(t, res.status, res.summary, 1), state))
        store.write_batch(run, batch)
        store.heartbeat(run, t)
    store.end_run(run, START + 9 * HOUR)

    built = build_daily(config, store, DAY, now_ms=NOW)
    store.close()
    assert [h["check"] for h in built["hosts"]] == ["mon-local", "pacs-db-01"]
    remote_row = _by(built["hosts"], "check", "pacs-db-01")
    assert remote_row["system"] == "PACS" and remote_row["sample_ts"] == START + 9 * HOUR - STEP
    assert (remote_row["cpu_pct"], remote_row["mem_pct"]) == (23.5, 61.2)
    assert {d["mount"] for d in remote_row["disks"]} == {"/", "/data"}
    assert [e["check"] for e in built["endpoints"]] == ["pacs-web"]

    page = render_daily(config, built)
    hosts_section = page[page.index("主机资源") : page.index("数据库", page.index("主机资源"))]
    assert re.search(r"<h3>pacs-db-01（PACS）", hosts_section)
    assert "/data" in _text(hosts_section) and "未配置主机检查" not in hosts_section


def test_state_changes_of_the_day(data: dict[str, Any]) -> None:
    rows = [(c["check"], c["from"], c["to"], c["start_ms"], c["end_ms"]) for c in data["changes"]]
    assert rows == [
        # After the gap every check opens a new interval; what came before is unknown.
        ("his-db-host", None, "WARN", GAP_END, None),
        ("his-web", None, "OK", GAP_END, OUTAGE_START),
        ("hl7-mllp", None, "OK", GAP_END, TCP_WARN),
        ("portal", None, "OK", GAP_END, None),
        ("his-web", "OK", "CRIT", OUTAGE_START, OUTAGE_END),
        ("his-web", "CRIT", "OK", OUTAGE_END, None),
        ("hl7-mllp", "OK", "WARN", TCP_WARN, None),
    ]
    outage = data["changes"][4]
    assert outage["duration_s"] == 2700.0 and outage["ongoing"] is False
    assert outage["system"] == "HIS"
    assert data["changes"][-1]["ongoing"] is True


def test_summary_counts(data: dict[str, Any]) -> None:
    assert data["summary"]["current"] == {"OK": 2, "WARN": 2, "CRIT": 0, "UNKNOWN": 0}
    assert data["summary"]["worst"] == {"OK": 1, "WARN": 2, "CRIT": 1, "UNKNOWN": 0}


def test_attention_items(data: dict[str, Any]) -> None:
    items = [(a["type"], a["level"], a.get("check"), a.get("mount")) for a in data["attention"]]
    assert items == [
        ("check", "WARN", "his-db-host", None),
        ("check", "WARN", "hl7-mllp", None),
        ("disk", "WARN", "his-db-host", "/data"),
        ("cert", "WARN", "portal", None),
        ("gap", "UNKNOWN", None, None),
    ]
    cert = data["attention"][3]
    assert cert["days_left"] == 20.0


def test_stale_results_make_current_status_unknown(seeded: Seeded) -> None:
    # Two hours after the last result the agent (heartbeat silent) can no longer vouch for it.
    later = NOW + 2 * HOUR
    d = build_daily(seeded.config, seeded.store, DAY, now_ms=later)
    assert d["summary"]["current"]["UNKNOWN"] == 4
    assert all(c["stale"] for c in d["checks"])
    # The day itself is complete, so its figures do not change.
    assert round(_by(d["systems"], "name", "HIS")["availability"]["availability_pct"], 3) == 94.792


def test_partial_day_counts_only_time_so_far(seeded: Seeded) -> None:
    d = build_daily(seeded.config, seeded.store, DAY, now_ms=START + 12 * HOUR)
    assert d["partial"] is True
    f = _by(d["systems"], "name", "HIS")["availability"]["figures"]
    assert f["planned_ms"] == 12 * 3_600_000
    assert f["unknown_ms"] == 1_800_000
    assert f["unavailable_ms"] == 0


def test_day_before_monitoring_began_is_neither_available_nor_unknown(seeded: Seeded) -> None:
    d = build_daily(seeded.config, seeded.store, date(2026, 11, 10), now_ms=NOW)
    av = _by(d["systems"], "name", "HIS")["availability"]
    # The agent first ran on the 19th: the 10th is 未监控：监控开始前, its own category, not a
    # day of unknown time held against the vendor (availability.before_monitoring: excluded).
    assert av["availability_pct"] is None and av["figures"] is None
    assert av["before_monitoring"] == {"start_ms": START - 10 * 86_400_000, "end_ms": END - 10 * 86_400_000}
    assert "监控开始前" in av["note"]
    assert d["coverage"]["monitored_pct"] == 0.0
    html = render_daily(seeded.config, d)
    assert "当日无状态变化" in html


# ------------------------------------------------------------------------------ HTML


def test_html_contents(html: str) -> None:
    text = _text(html)
    assert "日常巡检报告" in text
    assert "测试市人民医院" in text
    assert "巡检日期：2026-11-20（星期五）" in text
    assert "生成时间：2026-11-21 07:30:00" in text
    # Availability to 0.001 % under the configured policy, the other policy beside it, and
    # the outage with its duration.
    assert "94.792%" in text
    assert "系统 HIS：另一口径为“未知时间不计入”：96.809%。" in text
    assert re.search(r"HIS 2026-11-20 14:00:00 2026-11-20 14:45:00 0:45:00 his-web", text)
    # Percentiles and counts of his-web.
    assert re.search(r"his-web HTTP · 关键 HIS ✔ 正常 140\.0 ms 230\.0 ms 282 10 94\.792%", text)
    # Status words, never colour alone.
    for word in ("正常", "警告", "严重", "未知"):
        assert word in text
    assert "未配置可用性关键检查项" in text


def test_html_times_are_local(html: str) -> None:
    text = _text(html)
    # The gap starts at 02:00 UTC, which is 10:00 in Asia/Shanghai.
    assert "监控中断 监控代理 10:00:00 至 10:30:00（30分）" in text
    assert "2026-11-20 10:00:00 2026-11-20 10:30:00 30分" in text
    assert "02:00:00" not in text
    assert "Asia/Shanghai（UTC+08:00）" in text


def test_html_state_changes_and_attention(html: str) -> None:
    text = _text(html)
    assert "14:00:00 his-web HIS ✔ 正常 → ✖ 严重 14:45:00 45分 连接被拒绝" in text
    assert "14:45:00 his-web HIS ✖ 严重 → ✔ 正常 持续中" in text
    assert "22:00:00 hl7-mllp 集成平台 ✔ 正常 → ▲ 警告 持续中" in text
    assert "无数据 → ✔ 正常" in text
    assert "已用 87.7%，按增长趋势约 12.5 天后写满" in text
    assert "证书剩余 20.0 天到期" in text
    assert "应答 1500 ms，超过警告阈值 1000 ms" in text
    assert "+17.9 GiB" in text  # /data grew 287 x 64 MiB during the day


def test_html_is_self_contained(html: str) -> None:
    lower = html.lower()
    assert "<script" not in lower
    assert not re.search(r"""src\s*=\s*["']?\s*https?://""", lower)
    assert not re.search(r"""url\(\s*["']?\s*https?://""", lower)
    assert "<link" not in lower
    assert "@import" not in lower
    # No internal paths: the store location stays out of the report.
    assert "sentinel.db" not in html


def test_html_escapes_probe_text(seeded: Seeded, data: dict[str, Any]) -> None:
    evil = json.loads(json.dumps(data))
    evil["checks"][0]["summary"] = '<script>alert(1)</script><img src="http://x/y.png">'
    out = render_daily(seeded.config, evil)
    assert "<script" not in out.lower()
    assert "&lt;script&gt;" in out


def test_write_daily_writes_html_and_json(seeded: Seeded, tmp_path: Path) -> None:
    reports = seeded.config.reports.model_copy(update={"output_dir": tmp_path / "reports" / "daily"})
    cfg = seeded.config.model_copy(update={"reports": reports})
    path = write_daily(cfg, seeded.store, DAY, None, now_ms=NOW)
    assert path == tmp_path / "reports" / "daily" / "daily-2026-11-20.html"
    assert "94.792%" in path.read_text(encoding="utf-8")
    stored = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    assert stored["day"] == "2026-11-20"
    assert sorted(p.name for p in path.parent.iterdir()) == ["daily-2026-11-20.html", "daily-2026-11-20.json"]
    explicit = write_daily(cfg, seeded.store, DAY, tmp_path / "x" / "r.html", now_ms=NOW)
    assert explicit.is_file() and (tmp_path / "x" / "r.json").is_file()


# ------------------------------------------------------------------------------ Chromium

CHROMIUM = "/usr/bin/chromium"


def test_chromium_renders_report(html: str, tmp_path: Path) -> None:
    if not (os.path.exists(CHROMIUM) or shutil.which("chromium")):
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} is required under CI=true (apt-get install chromium fonts-noto-cjk)")
        pytest.skip(f"{CHROMIUM} is not installed")
    binary = CHROMIUM if os.path.exists(CHROMIUM) else str(shutil.which("chromium"))
    page = tmp_path / "daily.html"
    page.write_text(html, encoding="utf-8")
    png = tmp_path / "daily.png"
    cmd = [
        binary,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        f"--screenshot={png}",
        "--window-size=1200,2000",
        page.as_uri(),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert png.is_file(), f"no screenshot (exit {proc.returncode}): {proc.stderr[-2000:]}"
    width, height, distinct = png_info(png.read_bytes())
    assert (width, height) == (1200, 2000)
    assert distinct > 8, "the screenshot is blank"


# ------------------------------------------------------------------------------ templates


def test_templates_found_without_the_source_tree(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, seeded: Seeded, data: dict[str, Any]
) -> None:
    """An installed wheel has no top-level templates/: they come from agent.templates,
    possibly zipped (no real directory)."""
    import zipfile

    from agent.text import render

    src = render.templates_dir()
    assert src is not None and (src / "daily.html").is_file()
    archive = tmp_path / "wheel.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in src.iterdir():
            zf.write(f, f"agent/templates/{f.name}")
    monkeypatch.setattr(render, "templates_dir", lambda: None)
    monkeypatch.setattr(render.resources, "files", lambda _pkg: zipfile.Path(archive, "agent/templates/"))
    render.environment.cache_clear()
    try:
        assert "94.792%" in render_daily(seeded.config, data)
    finally:
        render.environment.cache_clear()
