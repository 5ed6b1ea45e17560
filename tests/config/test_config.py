from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.config.schema import ConfigError, load, parse
from tests.conftest import REPO

MINIMAL = """
site: {name: 测试医院}
checks:
  - {name: h, kind: host}
"""


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_example_config_is_valid() -> None:
    cfg = load(REPO / "config/sentinel.example.yaml")
    kinds = {c.kind for c in cfg.checks}
    assert {"host", "http", "tcp"} <= kinds
    assert cfg.site.timezone == "Asia/Shanghai"
    assert cfg.storage.path.is_absolute()


def test_defaults() -> None:
    cfg = parse(MINIMAL)
    c = cfg.checks[0]
    assert (cfg.site.timezone, c.interval, c.timeout, c.confirmations, c.fault_level) == (
        "Asia/Shanghai",
        60.0,
        10.0,
        3,
        3,
    )
    assert cfg.storage.raw_retention == 31 * 86400
    assert c.threshold_rules()["disk:*.used_pct"].crit == 95  # kind defaults merged


def test_five_mistakes_reported_together_with_paths_and_lines(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        """site:
  timezone: Asia/Shanghai
systems:
  - name: HIS
checks:
  - name: web
    kind: http
    url: https://his.example/login
    intervall: 30s
    confirmations: three
    basic_auth:
      username: monitor
      password: hunter2-secret
  - name: port
    kind: tcp
    host: 127.0.0.1
    port: 1521
    timeout: 5 parsecs
    system: HSI
""",
        encoding="utf-8",
    )
    p = run_cli("-c", str(bad), "config", "validate")
    assert p.returncode == 2, p.stderr
    err = p.stderr
    assert "Traceback" not in err and "hunter2-secret" not in err + p.stdout
    expected = [
        ("site.name (line 1)", "required key is missing"),
        ("checks[0].intervall (line 9)", "unknown key 'intervall' (did you mean 'interval'?)"),
        ("checks[0].confirmations (line 10)", "valid integer"),
        ("checks[0].basic_auth.password (line 13)", "may not be written inline"),
        ("checks[1].timeout (line 18)", "invalid duration '5 parsecs'"),
        ("checks[1].system (line 19)", "did you mean 'HIS'"),
    ]
    for path, message in expected:
        line = next((ln for ln in err.splitlines() if path in ln), None)
        assert line is not None, f"{path} missing in:\n{err}"
        assert message in line, line
    assert "6 problems" in err


def test_unknown_kind_and_bad_types() -> None:
    with pytest.raises(ConfigError) as e:
        parse("""
site: {name: x, timezone: Mars/Olympus}
storage: {raw_retention: -5}
checks:
  - {name: a, kind: htp, url: http://x}
  - {name: b, kind: host, interval: 10s, timeout: 20s}
  - {name: b, kind: host}
""")
    text = e.value.render()
    assert "site.timezone (line 2): unknown time zone 'Mars/Olympus'" in text
    assert "storage.raw_retention (line 3): a duration must be greater than zero" in text
    assert "checks[0].kind (line 5): unknown kind 'htp' (did you mean 'http'?)" in text
    assert "timeout (20 s) must be shorter than interval (10 s)" in text
    assert "duplicate check name 'b'" in text


def test_yaml_syntax_error_has_line() -> None:
    with pytest.raises(ConfigError) as e:
        parse("site:\n  name: [unclosed\n")
    assert "not valid YAML" in e.value.render() and "(line" in e.value.render()


def test_secret_references(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    tmpl = """
site: {{name: x}}
checks:
  - name: web
    kind: http
    url: http://127.0.0.1:1/
    basic_auth: {{username: u, password: "{ref}"}}
"""
    secret.chmod(0o644)
    with pytest.raises(ConfigError) as e:
        parse(tmpl.format(ref=f"file:{secret}"))
    assert "accessible by group or others (mode 0644)" in e.value.render()
    secret.chmod(0o600)
    cfg = parse(tmpl.format(ref=f"file:{secret}"))
    pw = cfg.checks[0].basic_auth.password
    assert pw.reveal() == "s3cret" and "s3cret" not in repr(cfg)

    monkeypatch.delenv("SENTINEL_TEST_PW", raising=False)
    with pytest.raises(ConfigError) as e:
        parse(tmpl.format(ref="${SENTINEL_TEST_PW}"))
    assert "environment variable SENTINEL_TEST_PW is not set" in e.value.render()
    monkeypatch.setenv("SENTINEL_TEST_PW", "envpw")
    assert parse(tmpl.format(ref="${SENTINEL_TEST_PW}")).checks[0].basic_auth.password.reveal() == "envpw"


def test_schedule_validation() -> None:
    cfg = parse("""
site: {name: x}
systems:
  - name: OA
    schedule: {mon: ["08:00-12:00", "13:30-17:30"], sat: [], sun: []}
""")
    sched = cfg.systems[0].schedule
    assert sched.minutes(0) == [(480, 720), (810, 1050)]
    assert sched.minutes(5) == [] and sched.minutes(2) == [(0, 1440)]
    with pytest.raises(ConfigError, match="must run forward"):
        parse("site: {name: x}\nsystems:\n  - {name: OA, schedule: {mon: ['18:00-08:00']}}\n")


def test_config_validate_ok_exit_zero() -> None:
    p = run_cli("-c", "config/sentinel.example.yaml", "config", "validate")
    assert p.returncode == 0 and "valid" in p.stdout


def test_fault_notification_and_maintenance_sections(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DT_URL", "https://oapi.dingtalk.com/robot/send?access_token=abc")
    cfg = parse("""
site: {name: x}
systems: [{name: HIS}]
checks: [{name: web, kind: http, url: "http://127.0.0.1/", system: HIS}]
faults:
  levels: {三级: {restore: 8h}}
notifications:
  channels:
    ding: {type: dingtalk, webhook: "${DT_URL}"}
  routes:
    - {channels: [ding], levels: [1, 2]}
    - {channels: [ding], events: [warning, escalation]}
maintenance:
  - {name: w, systems: [HIS], cron: "0 2 * * 0", duration: 2h, reason: 例行维护,
     approvals: {甲方: 王主任, 乙方: 张工}}
""")
    assert cfg.faults.levels[3].restore == 8 * 3600 and cfg.faults.levels[3].respond == 3600  # merged
    assert cfg.faults.levels[1].respond == 600
    assert cfg.notifications.routes[1].events == ("warning", "escalation")
    assert cfg.maintenance[0].name == "w"

    with pytest.raises(ConfigError) as e:
        parse("""
site: {name: x}
systems: [{name: HIS}]
notifications:
  channels: {}
  routes: [{channels: [mail]}]
maintenance:
  - {name: w, systems: [EMR], start: "2026-12-01 22:00", end: "2026-12-01 21:00", reason: r,
     approvals: {甲方: a, 乙方: b}}
""")
    text = e.value.render()
    assert "channel 'mail' is not defined" in text
    assert "maintenance[0].systems[0] (line 8): system 'EMR' is not defined under systems" in text
    assert "maintenance[0]" in text and "end" in text


def test_event_like_kinds_confirm_on_the_first_sample_unless_set() -> None:
    from agent.config.schema import parse

    text = """
site: {name: x}
checks:
  - {name: alert-log, kind: log, files: [/var/log/x.log], patterns: ["ORA-"]}
  - {name: alert-log-3, kind: log, files: [/var/log/x.log], patterns: ["ORA-"], confirmations: 3}
  - {name: web, kind: tcp, host: 127.0.0.1, port: 1}
"""
    c = parse(text).check_map
    assert c["alert-log"].confirmations == 1
    assert c["alert-log-3"].confirmations == 3
    assert c["web"].confirmations == 3
