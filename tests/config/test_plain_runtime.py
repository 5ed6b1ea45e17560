"""The monitoring process runs on plain configuration: no pydantic, no YAML, same answers.

`sentinel run` and `sentinel check` get the validated configuration from a helper process
(agent.configload) as `probes.plain` objects. These tests hold the three promises that makes:
the plain form says exactly what the pydantic models say, errors still come with every key
path, and the daemon and a check round really never load pydantic or YAML.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from agent.config.schema import load, parse
from agent.config.errors import ConfigError
from agent.config.handoff import load_plain
from agent.windows.ledger import add_window, list_windows, sync_config_windows
from agent.windows.maintenance import MaintenanceSchedule
from agent.windows.spec import WindowSpec
from agent.store.db import Store
from probes import registry
from probes.plain import Plain, to_plain
from probes.values import Secret
from tests.helpers.agent_proc import AgentProcess
from tests.conftest import REPO
from tests.helpers.servers import http_server

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
    approved_by: 信息科
  - name: 机房断电
    checks: [port]
    start: "2026-12-01 22:00"
    end: "2026-12-02 02:00"
    reason: 机房改造
    approved_by: 院办
availability:
  force_majeure:
    - {name: 电网停电, start: "2026-10-01 01:00", end: "2026-10-01 03:00", reason: 供电局, approved_by: 院办}
"""


@pytest.fixture()
def rich(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SENTINEL_TEST_KEY", "k" * 32)
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "sentinel.yaml"
    path.write_text(RICH, encoding="utf-8")
    return path


def _same(model: Any, plain: Any, where: str = "config") -> None:
    """Every field of every model equals the plain form's, recursively."""
    if hasattr(type(model), "__pydantic_fields__"):
        assert isinstance(plain, Plain), where
        assert plain.model_fields_set == model.model_fields_set, where
        for name in type(model).__pydantic_fields__:
            _same(getattr(model, name), getattr(plain, name), f"{where}.{name}")
    elif isinstance(model, tuple | list):
        assert type(plain) is type(model) and len(plain) == len(model), where
        for i, (m, p) in enumerate(zip(model, plain, strict=True)):
            _same(m, p, f"{where}[{i}]")
    elif isinstance(model, dict):
        assert list(plain) == list(model), where
        for k in model:
            _same(model[k], plain[k], f"{where}[{k!r}]")
    else:
        assert plain == model and type(plain) is type(model), where


def test_plain_form_has_every_field_and_the_runtime_methods(rich: Path) -> None:
    model = load(rich)
    plain = load_plain(rich)  # through the real helper process
    _same(model, plain)
    assert "pydantic" not in type(plain).__module__
    # Behaviour shared through the Methods mixins answers the same in both forms.
    assert plain.site.tz == model.site.tz and str(plain.site.tz) == "Asia/Shanghai"
    assert plain.system("HIS").schedule.minutes(6) == model.system("HIS").schedule.minutes(6) == [(480, 720)]
    assert plain.system("HIS").schedule.minutes(5) == []
    assert plain.system("nope") is None
    assert plain.check_map["web"].url == "http://127.0.0.1:1/healthz"
    for name in ("web", "port", "self"):
        assert plain.check_map[name].threshold_rules() == model.check_map[name].threshold_rules()
    assert plain.reports.daily_at == model.reports.daily_at
    assert plain.faults.working_hours.minutes() == ((480, 720), (840, 1080))
    assert [w.recurring for w in plain.maintenance] == [True, False]
    # Secrets cross the process boundary as references only.
    key = plain.storage.evidence_key
    assert isinstance(key, Secret) and key.ref == "${SENTINEL_TEST_KEY}" and key.reveal() == "k" * 32


def test_plain_objects_are_read_only_copyable_and_picklable(rich: Path) -> None:
    plain = to_plain(load(rich))
    with pytest.raises(AttributeError, match="read-only"):
        plain.site.name = "x"
    moved = plain.storage.model_copy(update={"path": Path("/srv/s.db")})
    assert moved.path == Path("/srv/s.db") and moved.raw_retention == plain.storage.raw_retention
    assert "path" in moved.model_fields_set and plain.storage.path == Path("var/s.db").resolve()
    again = pickle.loads(pickle.dumps(plain))
    assert again == plain
    assert again.site.tz == plain.site.tz  # the cached zone is rebuilt, not carried along
    assert plain != to_plain(parse(RICH.replace("测试医院", "别的医院"), base_dir=Path.cwd()))
    with pytest.raises(TypeError, match="JSON is kept only"):
        plain.site.model_dump_json()


def test_window_json_is_pydantics_own_and_the_ledger_stays_quiet(rich: Path, tmp_path: Path) -> None:
    model = load(rich)
    plain = load_plain(rich)
    for m, p in zip(model.maintenance, plain.maintenance, strict=True):
        assert p.model_dump_json() == m.model_dump_json()
    store = Store(tmp_path / "ledger.db")
    sync_config_windows(store, list(model.maintenance), 1_000)
    log_rows = store.db.execute("SELECT count(*) FROM maintenance_log").fetchone()[0]
    # The daemon syncs its plain windows at every start: unchanged windows log nothing.
    sync_config_windows(store, list(plain.maintenance), 2_000)
    assert store.db.execute("SELECT count(*) FROM maintenance_log").fetchone()[0] == log_rows == 2
    # A window added from the CLI comes back from its stored JSON without pydantic, and schedules
    # exactly like the validated model.
    spec = WindowSpec.model_validate(
        {"name": "cli", "checks": ["web"], "cron": "30 1 * * 1-5", "duration": "45m", "reason": "r",
         "approved_by": "a", "valid_from": "2026-11-01"}
    )  # fmt: skip
    add_window(store, spec, "tester", 3_000)
    stored = [w.spec for w in list_windows(store) if w.source == "cli"]
    assert isinstance(stored[0], Plain) and stored[0].model_dump_json() == spec.model_dump_json()
    tz = model.site.tz
    lo = int(datetime(2026, 11, 1, tzinfo=UTC).timestamp() * 1000)
    hi = lo + 30 * 86_400_000
    a = MaintenanceSchedule([spec], tz).windows(lo, hi, None, "web")
    b = MaintenanceSchedule(stored, tz).windows(lo, hi, None, "web")
    # Weekdays 2-30 November 2026 (21) and Tuesday 1 December, before 08:00 local = the range end.
    assert a == b and len(a) == 22
    store.close()


def test_config_errors_come_back_from_the_helper_with_every_key_path(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        textwrap.dedent("""
        site: {name: X, timezone: Mars/Base}
        checks:
          - {name: a, kind: tcp, host: h, port: x}
          - {name: b, kind: htp}
        """),
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as plain_err:
        load_plain(bad)
    with pytest.raises(ConfigError) as model_err:
        load(bad)
    assert plain_err.value.problems == model_err.value.problems
    paths = {p.path for p in plain_err.value.problems}
    assert {"site.timezone", "checks[0].port", "checks[1].kind"} <= paths


def test_cli_check_reports_config_errors_with_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "site: {name: X}\nchecks:\n  - {name: a, kind: tcp, host: h, port: 70000}\n", encoding="utf-8"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "agent", "-c", str(bad), "check"],
        check=False, capture_output=True, text=True, cwd=tmp_path, timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert proc.returncode == 2
    assert "checks[0].port" in proc.stderr and "Traceback" not in proc.stderr


_LEAN_PROBE = """
import json, sys
from agent.cli import main
rc = main(sys.argv[1:])
heavy = sorted(m for m in ("pydantic", "pydantic_core", "yaml", "jinja2", "matplotlib") if m in sys.modules)
print(json.dumps({"rc": rc, "heavy": heavy}))
"""


def test_the_command_validates_in_the_same_process_and_runs_the_checks(tmp_path: Path) -> None:
    """`python -m agent check`: the process becomes the validator and then the agent again."""
    with http_server() as srv:
        path = tmp_path / "one.yaml"
        path.write_text(
            f"site: {{name: X}}\nchecks:\n  - {{name: web, kind: http, url: 'http://127.0.0.1:{srv.server_port}/'}}\n"
            "  - {name: gone, kind: tcp, host: 127.0.0.1, port: 1}\n",
            encoding="utf-8",
        )
        proc = subprocess.run(
            [sys.executable, "-m", "agent", "-c", str(path), "check", "--json"],
            check=False, capture_output=True, text=True, cwd=tmp_path, timeout=60,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )  # fmt: skip
    rows = {r["check"]: r["status"] for r in json.loads(proc.stdout)}
    assert rows == {"web": "OK", "gone": "CRIT"}
    assert proc.returncode == 2  # the worst status, Nagios-style


def test_a_check_round_loads_neither_pydantic_nor_yaml(rich: Path, tmp_path: Path) -> None:
    with http_server() as srv:
        cfg = RICH.replace("http://127.0.0.1:1/healthz", f"http://127.0.0.1:{srv.server_port}/")
        path = tmp_path / "lean.yaml"
        path.write_text(cfg, encoding="utf-8")
        proc = subprocess.run(
            [sys.executable, "-c", _LEAN_PROBE, "-c", str(path), "check", "--json"],
            check=False, capture_output=True, text=True, cwd=tmp_path, timeout=120,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )  # fmt: skip
    lines = proc.stdout.strip().splitlines()
    verdict = json.loads(lines[-1])
    results = json.loads("\n".join(lines[:-1]))
    assert {r["check"] for r in results} == {"web", "port", "self"}
    assert next(r for r in results if r["check"] == "web")["status"] in ("OK", "WARN", "CRIT")
    assert verdict["heavy"] == [], proc.stderr


def test_every_probe_runtime_module_is_free_of_pydantic() -> None:
    modules = sorted(set(registry.KINDS.values()))
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "import agent.daemon, agent.checks, agent.reports.schedule, agent.reports.delivery\n"
        "print(sorted(m for m in ('pydantic', 'yaml') if m in sys.modules))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
    # Each kind still has its validating settings model next to the runtime module.
    for kind in registry.KINDS:
        assert hasattr(registry.settings_model(kind), "model_validate"), kind


def _mapped_libraries(pid: int) -> set[str]:
    return {line.split()[-1] for line in Path(f"/proc/{pid}/maps").read_text().splitlines() if ".so" in line}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/<pid>/maps")
def test_the_running_daemon_never_maps_pydantic_or_yaml(tmp_path: Path) -> None:
    with http_server() as srv:
        config = textwrap.dedent(f"""
        site: {{name: 测试医院}}
        agent: {{heartbeat: 1s, workers: 4}}
        maintenance:
          - {{name: nightly, checks: [web], weekly: {{days: [sun], at: "02:00", duration: 1h}},
              reason: r, approved_by: a}}
        checks:
          - {{name: web, kind: http, url: "http://127.0.0.1:{srv.server_port}/", interval: 1s,
              timeout: 500ms, confirmations: 1}}
          - {{name: port, kind: tcp, host: 127.0.0.1, port: {srv.server_port}, interval: 1s,
              timeout: 500ms}}
          - {{name: self, kind: host, interval: 2s, timeout: 1s}}
        """)
        agent = AgentProcess(tmp_path, config)
        try:
            proc = agent.start()
            agent.wait_results(6, 60)
            libs = _mapped_libraries(proc.pid)
            # One process: the validator replaced itself by the agent (same PID), no helper left.
            children = "".join(p.read_text() for p in Path(f"/proc/{proc.pid}/task").glob("*/children"))
            cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().split(b"\0")
            rc, _took = agent.stop()
        finally:
            agent.kill()
    assert rc == 0, agent.text_log()
    assert children.strip() == ""
    assert cmdline[1:3] == [b"-m", b"agent"] and b"run" in cmdline
    assert any("_sqlite3" in lib for lib in libs)  # the probe of the maps file works
    heavy = [lib for lib in libs if "pydantic_core" in lib or "_yaml" in lib]
    assert heavy == [], heavy
    store = Store(agent.db_path, readonly=True)
    checks = {
        r[0]
        for r in store.db.execute("SELECT DISTINCT c.name FROM results r JOIN checks c ON c.id = r.check_id")
    }
    assert checks == {"web", "port", "self"}
    windows = store.db.execute("SELECT name, source FROM maintenance").fetchall()
    assert windows == [("nightly", "config")]
    store.close()


def test_no_methods_mixin_declares_fields() -> None:
    """pydantic takes a mixin's class annotations for fields of the model: a mixin must have none
    at run time (type hints for checkers go under `if TYPE_CHECKING:`)."""
    import importlib
    import pkgutil

    import agent
    import probes
    from probes.plain import Methods

    for pkg in (agent, probes):
        for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
            if not info.name.endswith(("__main__", "evidence_verify_standalone")):
                importlib.import_module(info.name)

    def subclasses(cls: type) -> list[type]:
        out = []
        for sub in cls.__subclasses__():
            out += [sub, *subclasses(sub)]
        return out

    mixins = [
        c for c in subclasses(Methods) if not issubclass(c, Plain) and not hasattr(c, "__pydantic_fields__")
    ]
    assert len(mixins) >= 10
    assert [c.__qualname__ for c in mixins if vars(c).get("__annotations__")] == []
