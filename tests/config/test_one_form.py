"""One form of the configuration: the pydantic models are what every command and the daemon run on.

The models carry their run-time behaviour as methods (a site's zone, a check's threshold rules, a
window's schedule), so no second form of them exists. These tests hold what that promises: the
runtime answers come from the models, a window read back from the store is the same model and
schedules the same, and no mirror machinery is left in the tree.
"""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent.config.schema import CheckCommon, Config, load
from agent.config.windows import WindowSpec
from agent.store.db import Store
from agent.windows.ledger import add_window, list_windows, sync_config_windows
from agent.windows.maintenance import MaintenanceSchedule
from probes.thresholds import Threshold
from tests.conftest import REPO

RICH = """
site: {name: 测试医院, timezone: Asia/Shanghai}
storage: {path: var/s.db, evidence_key: "${SENTINEL_TEST_KEY}"}
systems:
  - name: HIS
    schedule: {sat: [], sun: ["08:00-12:00"]}
checks:
  - name: web
    kind: http
    system: HIS
    url: http://127.0.0.1:1/healthz
    interval: 30s
    timeout: 5s
    json_assertions:
      - {path: "$.status", equals: "UP"}
      - {path: "$.missing", exists: false}
    thresholds:
      latency_ms: {warn: 300, crit: 900}
  - name: port
    kind: tcp
    host: 127.0.0.1
    port: 1
    send: "\\x0bMSH|\\x1c\\r"
    expect: "MSA"
  - name: self
    kind: host
    processes: [{name: python, match: python}]
reports:
  daily_time: "06:45"
  schedule: {kinds: [daily, monthly]}
faults:
  working_hours: {spans: ["08:00-12:00", "14:00-18:00"]}
maintenance:
  - name: 周日升级
    systems: [HIS]
    weekly: {days: [sun], at: "02:00", duration: 2h}
    reason: 例行升级
    approvals: {甲方: 信息科, 乙方: 张工}
  - name: 机房断电
    checks: [port]
    start: "2026-12-01 22:00"
    end: "2026-12-02 02:00"
    reason: 机房改造
    approvals: {甲方: 院办, 乙方: 张工}
availability:
  force_majeure:
    - {name: 电网停电, start: "2026-10-01 01:00", end: "2026-10-01 03:00", reason: 供电局,
       approvals: {甲方: 院办, 乙方: 张工}}
"""


@pytest.fixture()
def rich(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SENTINEL_TEST_KEY", "k" * 32)
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "sentinel.yaml"
    path.write_text(RICH, encoding="utf-8")
    return path


def test_the_models_carry_the_runtime_behaviour(rich: Path) -> None:
    config = load(rich)
    assert isinstance(config, Config)
    assert str(config.site.tz) == "Asia/Shanghai"
    web = config.check_map["web"]
    assert isinstance(web, CheckCommon) and web.kind == "http"
    assert web.threshold_rules()["latency_ms"] == Threshold(300.0, 900.0, False)
    assert config.system("HIS") is config.systems[0] and config.system("nope") is None
    # Saturday has no planned time, Sunday 08:00-12:00, other days the whole day.
    his = config.systems[0].schedule
    assert his is not None
    assert his.minutes(5) == [] and his.minutes(6) == [(480, 720)] and his.minutes(0) == [(0, 1440)]
    assert config.faults.working_hours.minutes() == ((480, 720), (840, 1080))
    assert config.reports.daily_at.strftime("%H:%M") == "06:45"
    assert config.reports.effective_schedule().daily_time == "06:45"
    assert [w.recurring for w in config.maintenance] == [True, False]


def test_a_stored_window_is_the_same_model_and_schedules_the_same(rich: Path, tmp_path: Path) -> None:
    model = load(rich)
    store = Store(tmp_path / "ledger.db")
    sync_config_windows(store, list(model.maintenance), 1_000)
    log_rows = store.db.execute("SELECT count(*) FROM maintenance_log").fetchone()[0]
    # The daemon syncs its windows at every start: unchanged windows log nothing.
    sync_config_windows(store, list(load(rich).maintenance), 2_000)
    assert store.db.execute("SELECT count(*) FROM maintenance_log").fetchone()[0] == log_rows == 2
    # A window added from the CLI comes back from its stored JSON as the validated model, and
    # schedules exactly like it.
    spec = WindowSpec.model_validate(
        {"name": "cli", "checks": ["web"], "cron": "30 1 * * 1-5", "duration": "45m", "reason": "r",
         "valid_from": "2026-11-01"}
    )  # fmt: skip
    add_window(store, spec, "乙方", "张工", "tester", 3_000)
    stored = [w.spec for w in list_windows(store) if w.source == "cli"]
    assert stored == [spec] and isinstance(stored[0], WindowSpec)
    tz = model.site.tz
    lo = int(datetime(2026, 11, 1, tzinfo=UTC).timestamp() * 1000)
    hi = lo + 30 * 86_400_000
    a = MaintenanceSchedule([spec], tz).windows(lo, hi, None, "web")
    b = MaintenanceSchedule(stored, tz).windows(lo, hi, None, "web")
    # Weekdays 2-30 November 2026 (21) and Tuesday 1 December, before 08:00 local = the range end.
    assert a == b and len(a) == 22
    store.close()


@pytest.mark.parametrize(
    "needle", ["to_plain", "Plain(", "Methods", "plain_from_fields", "configload", "handoff"]
)
def test_no_mirror_machinery_is_left(needle: str) -> None:
    """The second form of the configuration (mirror objects, mixins, the exec hand-off) is gone."""
    found = subprocess.run(
        ["git", "grep", "-n", "-F", needle, "--", "agent", "probes"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    assert found == "", found
