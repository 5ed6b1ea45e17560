"""Overdue counts and their limits over the contract's service period (2026-04-14..2027-04-13),
in the report builders and through the command line (`sentinel report`, `sentinel faults list`)
in real subprocesses on a seeded store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from agent.config.schema import Config, parse
from agent.reports import faultstats
from agent.store import faults as stored
from agent.store.db import Store
from tests.conftest import REPO

SH = ZoneInfo("Asia/Shanghai")


def ms(y: int, m: int, d: int, hh: int = 0, mm: int = 0, ss: int = 0) -> int:
    return int(datetime(y, m, d, hh, mm, ss, tzinfo=SH).timestamp() * 1000)


START, END = ms(2026, 4, 14), ms(2027, 4, 14)

CONTRACT = """
contract:
  service_periods:
    - {{start: {start}, end: {end}, overdue_limits: {{一级: 2, 二级: 3}}}}
"""

CONFIG = """
site: {{name: 测试医院, timezone: Asia/Shanghai}}
storage: {{path: {db}}}
systems:
  - {{name: HIS}}
checks:
  - {{name: his-web, kind: http, url: "http://127.0.0.1:9/", system: HIS, availability_critical: true}}
reports: {{output_dir: {out}}}
"""

# (number, level, start, overdue, maintenance): A is the last instant before the service
# period, B its first (local midnight), D its last millisecond, E the first after it.
FAULTS = (
    ("GZ-A", 1, START - 1, "response", None),
    ("GZ-B", 1, START, "restore", None),
    ("GZ-C", 2, ms(2026, 12, 1, 10), "response", None),
    ("GZ-D", 1, END - 1, "restore", None),
    ("GZ-E", 1, END, "response", None),
    ("GZ-F", 1, ms(2026, 6, 1, 3), "response", "每周例行维护"),
    ("GZ-G", 2, ms(2026, 7, 1, 9), None, None),
)


def seed(tmp: Path, faults: tuple[tuple[str, int, int, str | None, str | None], ...] = FAULTS) -> Path:
    db = tmp / "var" / "s.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    store = Store(db)
    store.sync_checks([("his-web", "http", "HIS")], min(f[2] for f in faults))
    with store.tx() as conn:
        for number, level, start, overdue, maintenance in faults:
            fid = stored.insert(
                conn,
                number=number,
                system="HIS",
                campus=None,
                level=level,
                level_initial=level,
                type="核心系统类",
                description="his-web: 连接被拒绝",
                impact="HIS 不可用",
                start_ts=start,
                detected_ts=start,
                respond_deadline_ts=None,
                restore_deadline_ts=None,
                calendar_note=None,
                flapping=False,
                maintenance=maintenance,
            )
            if overdue is not None:
                stored.mark_overdue(conn, fid, overdue)  # type: ignore[arg-type]
    store.close()
    return db


def write_config(tmp: Path, contract: str = "") -> Config:
    text = CONFIG.format(db=tmp / "var" / "s.db", out=tmp / "reports") + contract
    (tmp / "s.yaml").write_text(text, encoding="utf-8")
    return parse(text, base_dir=tmp)


def with_contract(start: date = date(2026, 4, 14), end: date = date(2027, 4, 13)) -> str:
    return CONTRACT.format(start=start, end=end)


def levels(overdue: dict[str, object]) -> list[tuple[int, int, int | None, bool]]:
    rows = overdue["levels"]
    assert isinstance(rows, list)
    return [(r["level"], r["overdue"], r["limit"], r["reached"]) for r in rows]


# ------------------------------------------------------------------------- in process


def test_overdue_counted_over_the_service_period_with_its_limits(tmp_path: Path) -> None:
    db = seed(tmp_path)
    config = write_config(tmp_path, with_contract())
    store = Store(db, readonly=True)
    try:
        now = ms(2027, 5, 1)
        for at in (START, ms(2026, 11, 1), END - 1):
            o = faultstats.overdue_vs_limits(store.db, config, at, now)
            # B and D (一级), C (二级); not A (the day before), E (the day after), F (maintenance).
            assert levels(o) == [(1, 2, 2, True), (2, 1, 3, False), (3, 0, None, False), (4, 0, None, False)]
            assert o["service"] is True
            assert o["period"] == {
                "label": "服务期 2026-04-14 至 2027-04-13",
                "describe": "2026-04-14 至 2027-04-13",
                "start_ms": START,
                "end_ms": END,
                "service": True,
            }
        # Before the service period: the calendar year up to it, with faults.yearly_limits.
        before = faultstats.overdue_vs_limits(store.db, config, START - 1, now)
        assert levels(before)[:2] == [(1, 1, 5, False), (2, 0, 10, False)]
        assert before["service"] is False and before["period"]["label"] == "2026-01-01..2026-04-13"
        after = faultstats.overdue_vs_limits(store.db, config, END, now)
        assert levels(after)[:2] == [(1, 1, 5, False), (2, 0, 10, False)]
        assert after["period"]["label"] == "2027-04-14..2027-12-31"
    finally:
        store.close()


def test_without_service_periods_the_calendar_year_as_before(tmp_path: Path) -> None:
    db = seed(tmp_path)
    config = write_config(tmp_path)
    store = Store(db, readonly=True)
    try:
        o = faultstats.overdue_vs_limits(store.db, config, ms(2026, 11, 1), ms(2027, 5, 1))
        # 2026: A and B (一级), C (二级).
        assert levels(o)[:2] == [(1, 2, 5, False), (2, 1, 10, False)]
        assert o["year"] == 2026 and o["service"] is False and o["period"]["label"] == "2026"
    finally:
        store.close()


# ------------------------------------------------------------------------- command line


def cli(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", "-c", str(tmp / "s.yaml"), *args],
        cwd=tmp,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def report(tmp: Path, *args: str) -> tuple[dict[str, object], str, subprocess.CompletedProcess[str]]:
    done = cli(tmp, "report", *args, "--json")
    assert done.returncode == 0, done.stderr
    files = json.loads(done.stdout)["files"]
    data = json.loads(Path(files["json"]).read_text(encoding="utf-8"))
    return data, Path(files["html"]).read_text(encoding="utf-8"), done


def test_monthly_report_counts_overdue_over_the_service_period(tmp_path: Path) -> None:
    seed(tmp_path)
    write_config(tmp_path, with_contract())
    data, html, _ = report(tmp_path, "monthly", "--period", "2027-04", "--at", "2027-05-02 09:00")
    overdue = data["overdue"]
    assert isinstance(overdue, dict)
    assert levels(overdue)[:2] == [(1, 2, 2, True), (2, 1, 3, False)]
    assert "超时故障数与服务期上限" in html and "服务期上限" in html
    assert "超时数为服务期（2026-04-14 至 2027-04-13）累计" in html
    assert "超时故障数与年度上限" not in html and "全年（" not in html
    # The limit reached is a risk, worded for the service period.
    assert "一级超时故障 2 次，服务期上限 2 次" in html
    en, en_html, _ = report(
        tmp_path, "monthly", "--period", "2027-04", "--at", "2027-05-02 09:00", "--lang", "en"
    )
    assert "Overdue faults against the service period&#39;s limits" in en_html or (
        "Overdue faults against the service period's limits" in en_html
    )
    assert "Overdue counts are for the service period 2026-04-14 to 2027-04-13" in en_html


def test_monthly_report_without_a_contract_keeps_the_year_wording(tmp_path: Path) -> None:
    seed(tmp_path)
    write_config(tmp_path)
    data, html, _ = report(tmp_path, "monthly", "--period", "2026-11", "--at", "2026-12-02 09:00")
    overdue = data["overdue"]
    assert isinstance(overdue, dict)
    assert levels(overdue)[:2] == [(1, 2, 5, False), (2, 1, 10, False)]
    assert "超时故障数与年度上限" in html and "超时数为全年（2026 年）累计" in html
    assert "服务期" not in html


def test_service_period_selection_and_acceptance_default(tmp_path: Path) -> None:
    seed(tmp_path)
    write_config(tmp_path, with_contract())
    # After the service period ended: the acceptance report defaults to it.
    data, html, done = report(tmp_path, "acceptance", "--at", "2027-05-02 09:00")
    period = data["period"]
    assert isinstance(period, dict)
    assert (period["label"], period["start_ms"], period["end_ms"]) == (
        "服务期 2026-04-14 至 2027-04-13",
        START,
        END,
    )
    assert data["partial"] is False and "没有已结束的服务期" not in done.stderr
    assert levels(data["overdue"])[:2] == [(1, 2, 2, True), (2, 1, 3, False)]  # type: ignore[arg-type]
    assert "超时故障数与服务期上限" in html
    # The same period named explicitly, both ways.
    for text in ("service:2026", "service:2026-04-14"):
        named, _, _ = report(tmp_path, "acceptance", "--period", text, "--at", "2027-05-02 09:00")
        assert named["period"] == period
    # Inside the first service period, none is complete: the current one, said to be unfinished.
    cur, cur_html, done = report(tmp_path, "acceptance", "--at", "2026-12-02 09:00")
    assert cur["period"]["start_ms"] == START and cur["partial"] is True  # type: ignore[index]
    assert "没有已结束的服务期" in done.stderr and "统计期间尚未结束" in cur_html
    # `--period service` is the one containing --at.
    now_data, _, _ = report(tmp_path, "monthly", "--period", "service", "--at", "2026-12-02 09:00")
    assert now_data["period"]["start_ms"] == START  # type: ignore[index]
    bad = cli(tmp_path, "report", "monthly", "--period", "service:2030", "--at", "2026-12-02 09:00")
    assert bad.returncode == 2
    assert "no service period starts in 2030; configured: 2026-04-14..2027-04-13" in bad.stderr


def test_acceptance_default_without_a_contract_is_last_year(tmp_path: Path) -> None:
    seed(tmp_path)
    write_config(tmp_path)
    data, _, done = report(tmp_path, "acceptance", "--at", "2027-05-02 09:00")
    assert data["period"]["label"] == "2026"  # type: ignore[index]
    assert done.stderr.count("服务期") == 0
    bad = cli(tmp_path, "report", "acceptance", "--period", "service", "--at", "2027-05-02 09:00")
    assert bad.returncode == 2 and "contract.service_periods is empty" in bad.stderr


def test_faults_list_shows_the_service_periods_overdue_counts(tmp_path: Path) -> None:
    # `faults list` counts over the contract year containing the real now, so the service
    # period is placed around today; the faults sit just outside and just inside its start.
    today = datetime.now(SH).date()
    start, end = today - timedelta(days=30), today + timedelta(days=300)
    first = int(datetime(start.year, start.month, start.day, tzinfo=SH).timestamp() * 1000)
    seed(
        tmp_path,
        (
            ("GZ-before", 1, first - 1, "response", None),
            ("GZ-first", 1, first, "restore", None),
            ("GZ-second", 2, first + 86_400_000, "response", None),
        ),
    )
    write_config(tmp_path, with_contract(start, end))
    listing = cli(tmp_path, "faults", "list")
    assert listing.returncode == 0, listing.stderr
    label = f"服务期 {start} 至 {end}"
    assert f"{label} 超时故障：一级 1/2，二级 1/3" in listing.stdout
    # The period filter takes the service-period forms too.
    only = cli(tmp_path, "faults", "list", "--period", "service", "--json")
    assert only.returncode == 0, only.stderr
    assert sorted(f["number"] for f in json.loads(only.stdout)) == ["GZ-first", "GZ-second"]
    bad = cli(tmp_path, "faults", "list", "--period", f"service:{start.year - 1}")
    assert bad.returncode == 2 and f"no service period starts in {start.year - 1}" in bad.stderr
    # The on-demand inspection report shows the service period so far (exit 2: his-web is CRIT).
    inspected = cli(tmp_path, "inspect", "--reason", "节前巡检", "--json")
    assert inspected.returncode == 2, inspected.stderr
    html = Path(json.loads(inspected.stdout)["report"]["files"]["html"]).read_text(encoding="utf-8")
    assert "服务期可用率（截至目前）" in html and "年度可用率" not in html
    assert f"超时数为服务期（{start} 至 {end}）累计" in html


def test_faults_list_without_a_contract_keeps_the_calendar_year(tmp_path: Path) -> None:
    year = datetime.now(SH).year
    seed(tmp_path, (("GZ-now", 1, int(datetime.now(UTC).timestamp() * 1000) - 60_000, "response", None),))
    write_config(tmp_path)
    listing = cli(tmp_path, "faults", "list")
    assert listing.returncode == 0, listing.stderr
    assert f"{year} 年超时故障：一级 1/5，二级 0/10" in listing.stdout
    bad = cli(tmp_path, "faults", "list", "--period", "service")
    assert bad.returncode == 2 and "contract.service_periods is empty" in bad.stderr


SERVICE_SPAN = {
    "label": "服务期 2026-04-14 至 2027-04-13",
    "start_at": "2026-04-14T00:00:00+08:00",
    "end_at": "2027-04-14T00:00:00+08:00",
}


@pytest.mark.parametrize(
    ("contract", "args", "expected"),
    [
        (True, (), SERVICE_SPAN),
        (True, ("--period", "service"), SERVICE_SPAN),
        (True, ("--period", "2026"), {"label": "2026", "start_at": "2026-01-01T00:00:00+08:00",
                                      "end_at": "2027-01-01T00:00:00+08:00"}),
        (False, (), {"label": "2026", "start_at": "2026-01-01T00:00:00+08:00",
                     "end_at": "2027-01-01T00:00:00+08:00"}),
    ],
)  # fmt: skip
def test_availability_defaults_to_the_contract_year(
    tmp_path: Path, contract: bool, args: tuple[str, ...], expected: dict[str, str]
) -> None:
    seed(tmp_path)
    write_config(tmp_path, with_contract() if contract else "")
    done = cli(tmp_path, "availability", *args, "--at", "2026-12-02 09:00", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["period"] == expected
