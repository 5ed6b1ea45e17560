"""The conventions every `sentinel` command keeps: where -c goes, --version, a reader that goes
away, --json with ISO 8601 times carrying the site's offset, help on every option, Nagios exit
codes for `check`, log lines in the site's zone, shell completion, and a daemon that shows as
`sentinel run` under its own PID."""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

import agent
from agent.cli.main import build_parser, main
from agent.runtime import logs
from agent.store.db import Store
from tests.cli.test_faults import CONFIG, seed_fault
from tests.conftest import REPO, free_port, need, wait_until

SENTINEL = Path(sys.executable).parent / "sentinel"
"""The console script as installed (pip install -e .), not `python -m agent`."""

ISO_SHANGHAI = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?\+08:00$")
BAD_CONFIG = "site: {name: 测试医院}\nchecks:\n  - {name: x, kind: no-such-kind}\n"


def sentinel(cwd: Path, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    need(SENTINEL.exists(), f"console script {SENTINEL} (pip install -e .)")
    return subprocess.run(
        [str(SENTINEL), *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False, **kw
    )


def parsers(p: argparse.ArgumentParser, path: tuple[str, ...] = ("sentinel",)) -> Iterator[
    tuple[tuple[str, ...], argparse.ArgumentParser]
]:  # fmt: skip
    """Every parser of the command tree with its command path."""
    yield path, p
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from parsers(sub, (*path, name))


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A configuration (Asia/Shanghai) with one fault in its store; the working directory."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SENTINEL_CONFIG", raising=False)
    seed_fault(tmp_path)
    return tmp_path


# ------------------------------------------------------------------------- -c / --config


def test_config_option_goes_before_or_after_the_command(
    site: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = str(site / "s.yaml")
    (site / "bad.yaml").write_text(BAD_CONFIG, encoding="utf-8")
    for argv in (
        ["-c", cfg, "config", "validate"],
        ["config", "validate", "-c", cfg],
        ["config", "-c", cfg, "validate"],
        ["faults", "list", "-c", cfg],
        ["-c", cfg, "status"],
        ["status", "--config", cfg],
        ["maintenance", "list", "--config", cfg],
        # The one nearest the end wins, as a later option does everywhere else.
        ["-c", "bad.yaml", "notifications", "list", "-c", cfg],
    ):
        assert main(argv) == 0, argv
    capsys.readouterr()
    assert main(["-c", cfg, "status", "-c", "bad.yaml"]) == 2
    assert "no-such-kind" in capsys.readouterr().err
    # Without -c: $SENTINEL_CONFIG, else the example configuration.
    monkeypatch.setenv("SENTINEL_CONFIG", cfg)
    assert main(["config", "validate"]) == 0
    assert cfg in capsys.readouterr().out
    monkeypatch.delenv("SENTINEL_CONFIG")
    monkeypatch.chdir(REPO)
    assert main(["config", "validate"]) == 0
    assert "config/sentinel.example.yaml: valid" in capsys.readouterr().out


def test_every_command_and_action_takes_the_config_option() -> None:
    for path, parser in parsers(build_parser()):
        options = {s for a in parser._actions for s in a.option_strings}
        assert {"-c", "--config"} <= options, path


# ------------------------------------------------------------------------- --version, help


def test_version(tmp_path: Path) -> None:
    done = sentinel(tmp_path, "--version")
    assert done.returncode == 0 and done.stdout.strip() == f"sentinel {agent.__version__}"


def test_every_option_and_positional_has_help() -> None:
    missing = []
    for path, parser in parsers(build_parser()):
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            if isinstance(action, argparse._SubParsersAction):
                missing += [(path, c.dest) for c in action._choices_actions if not (c.help or "").strip()]
                continue
            if not (action.help or "").strip():
                missing.append((path, action.option_strings or action.dest))
    assert missing == []


def test_help_prints_percent_signs_once(tmp_path: Path) -> None:
    for path, parser in parsers(build_parser()):
        text = parser.format_help()  # a lone '%' in an argument's help raises here
        assert "%%" not in text, path
    shown = sentinel(tmp_path, "availability", "--help")
    assert shown.returncode == 0 and "× 100 %." in shown.stdout and "%%" not in shown.stdout


# ------------------------------------------------------------------------- pipes


def many_faults(site: Path, n: int) -> None:
    store = Store(site / "var/s.db")
    with store.tx() as db:
        db.executemany(
            "INSERT INTO faults(number, system, level, level_initial, type, description, impact, start_ts, "
            "detected_ts) VALUES(?, 'HIS', 3, 3, '综合类', ?, '', ?, ?)",
            [(f"GZ-20261110-{i:04d}", "接口超时 " * 20, 1_794_300_000_000 + i, 1_794_300_000_000 + i)
             for i in range(n)],
        )  # fmt: skip
    store.close()


@pytest.mark.parametrize("form", [["--json"], []], ids=["json", "table"])
def test_a_reader_that_goes_away_leaves_no_traceback(site: Path, form: list[str]) -> None:
    # Far more than a pipe buffer (64 KiB): the command is still writing when the reader leaves.
    many_faults(site, 3000)
    need(SENTINEL.exists(), f"console script {SENTINEL}")
    proc = subprocess.Popen(
        [str(SENTINEL), "faults", "list", "-c", "s.yaml", *form],
        cwd=site,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    head = proc.stdout.read(10)  # `| head -c 10`
    proc.stdout.close()
    err = proc.stderr.read().decode()
    rc = proc.wait(60)
    assert head and err == ""
    assert rc == 141  # 128 + SIGPIPE, as the shell reports a tool stopped by the pipe


def test_output_read_to_the_end_exits_0(site: Path) -> None:
    done = sentinel(site, "status", "--json", "-c", "s.yaml")
    assert done.returncode == 0 and done.stderr == ""
    assert json.loads(done.stdout)["checks"][0]["check"] == "his-web"


# ------------------------------------------------------------------------- --json


def instants(doc: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every value that names an instant, and every key that looks like raw epoch ms."""
    if isinstance(doc, dict):
        for k, v in doc.items():
            here = f"{path}.{k}"
            if k.endswith("_ts") or k in ("start_ms", "end_ms", "generated_ms", "computed_at_ms"):
                yield here, "raw epoch key"
            elif k.endswith("_at") or k in ("at", "since", "deadline"):
                yield here, v
            else:
                yield from instants(v, here)
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from instants(v, f"{path}[{i}]")


def run_json(capsys: pytest.CaptureFixture[str], *argv: str, rc: int = 0) -> Any:
    capsys.readouterr()
    assert main([*argv, "--json"]) == rc, argv
    out = capsys.readouterr().out
    return json.loads(out)


def test_json_everywhere_with_iso_times_in_the_site_zone(
    site: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SENTINEL_CONFIG", "s.yaml")
    closed = f"  - {{name: closed-port, kind: tcp, host: 127.0.0.1, port: {free_port()}}}\n"
    text = CONFIG.replace("maintenance:\n", closed + "maintenance:\n")
    (site / "s.yaml").write_text(text, encoding="utf-8")
    number = run_json(capsys, "faults", "list")[0]["number"]
    docs: dict[str, Any] = {}
    docs["status"] = run_json(capsys, "status")
    docs["check"] = run_json(capsys, "check", "closed-port", rc=2)
    docs["faults list"] = run_json(capsys, "faults", "list")
    docs["faults ack"] = run_json(capsys, "faults", "ack", number, "--by", "张工")
    docs["faults resolve"] = run_json(
        capsys, "faults", "resolve", number, "--cause", "闪断", "--measures", "重启"
    )
    docs["faults close"] = run_json(capsys, "faults", "close", number)
    docs["faults show"] = run_json(capsys, "faults", "show", number)
    docs["notifications list"] = run_json(capsys, "notifications", "list")
    docs["notifications retry"] = run_json(capsys, "notifications", "retry")
    docs["maintenance add"] = run_json(
        capsys, "maintenance", "add", "升级", "--system", "HIS", "--start", "2026-12-01 22:00",
        "--end", "2026-12-02 02:00", "--reason", "HIS 升级", "--party", "甲方", "--by", "王主任",
    )  # fmt: skip
    docs["maintenance list"] = run_json(capsys, "maintenance", "list", "--all")
    docs["maintenance remove"] = run_json(capsys, "maintenance", "remove", "升级")
    docs["exclusions add"] = run_json(
        capsys, "exclusions", "add", "--name", "停电", "--start", "2026-11-10 20:00", "--end",
        "2026-11-10 20:30", "--reason", "市电中断", "--party", "乙方", "--by", "张工",
    )  # fmt: skip
    docs["exclusions list"] = run_json(capsys, "exclusions", "list")
    docs["exclusions remove"] = run_json(capsys, "exclusions", "remove", "停电", "--reason", "录错")
    docs["availability"] = run_json(capsys, "availability", "--period", "2026-11")
    docs["report list"] = run_json(capsys, "report", "list")
    docs["config validate"] = run_json(capsys, "config", "validate")
    docs["verify"] = run_json(capsys, "verify")

    seen = 0
    for command, doc in docs.items():
        for where, value in instants(doc):
            assert value != "raw epoch key", f"{command}: {where} is epoch milliseconds"
            assert value is None or ISO_SHANGHAI.match(value), f"{command}: {where} = {value!r}"
            seen += value is not None
    assert seen > 30
    assert docs["notifications retry"] == {"requeued": 0}
    assert docs["maintenance add"]["spec"]["start"] == "2026-12-01T22:00:00+08:00"
    assert docs["maintenance remove"]["removed_at"] is not None
    assert docs["exclusions add"]["start_at"] == "2026-11-10T20:00:00+08:00"
    assert docs["exclusions remove"]["removed_reason"] == "录错"
    assert docs["faults close"]["closed_by"] and docs["faults show"]["events"][-1]["action"] == "closed"
    assert docs["check"][0]["status"] == "CRIT"
    assert docs["config validate"]["valid"] is True


def test_config_validate_json_lists_the_problems(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD_CONFIG, encoding="utf-8")
    doc = run_json(capsys, "config", "validate", "-c", str(bad), rc=2)
    assert doc["valid"] is False and doc["file"] == str(bad)
    (problem,) = doc["problems"]
    assert problem["path"].startswith("checks[0]") and problem["line"] == 3
    assert "no-such-kind" in problem["message"]


# ------------------------------------------------------------------------- exit codes


def test_check_answers_a_configuration_error_with_unknown(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(BAD_CONFIG, encoding="utf-8")
    check = sentinel(tmp_path, "check", "-c", "bad.yaml")
    assert check.returncode == 3 and "no-such-kind" in check.stderr  # UNKNOWN, not CRIT
    assert sentinel(tmp_path, "check", "-c", "missing.yaml").returncode == 3
    assert sentinel(tmp_path, "status", "-c", "bad.yaml").returncode == 2
    assert sentinel(tmp_path, "config", "validate", "-c", "bad.yaml").returncode == 2


# ------------------------------------------------------------------------- logs


def test_log_lines_carry_the_site_zone_and_offset(tmp_path: Path) -> None:
    # Kathmandu (+05:45) cannot be mistaken for the machine's zone or UTC by accident.
    tz = ZoneInfo("Asia/Kathmandu")
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        logs.setup("INFO", tmp_path / "text.log", False, tz)
        before = datetime.now(tz)
        logging.getLogger("agent.test").info("文本行")
        logs.setup("INFO", tmp_path / "json.log", True, tz)
        logging.getLogger("agent.test").warning("JSON 行")
        after = datetime.now(tz)
    finally:
        for h in root.handlers:
            h.close()
        root.handlers[:], root.level = saved[0], saved[1]
    text = (tmp_path / "text.log").read_text(encoding="utf-8").strip()
    m = re.match(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}\+05:45) INFO    agent\.test: 文本行$", text)
    assert m, text
    stamp = datetime.fromisoformat(m.group(1))
    assert before - timedelta(seconds=1) <= stamp <= after
    line = json.loads((tmp_path / "json.log").read_text(encoding="utf-8"))
    assert line["ts"].endswith("+05:45") and line["msg"] == "JSON 行" and line["level"] == "WARNING"
    assert before - timedelta(seconds=1) <= datetime.fromisoformat(line["ts"]) <= after


# ------------------------------------------------------------------------- completion


def test_completion_scripts_are_generated_from_the_parser(tmp_path: Path) -> None:
    bash = sentinel(tmp_path, "completion", "bash")
    assert bash.returncode == 0
    assert re.search(r"_subparsers=\(run check status config report faults .*completion\)", bash.stdout)
    assert "_shtab_sentinel_faults_subparsers=(list show ack resolve close)" in bash.stdout
    assert "_shtab_compgen_files" in bash.stdout  # -c completes file names
    need(shutil.which("bash") is not None, "bash")
    # The script loads in bash and completes a command name.
    script = tmp_path / "sentinel.bash"
    script.write_text(bash.stdout, encoding="utf-8")
    probe = subprocess.run(
        ["bash", "-c", f'source {script}; COMP_WORDS=(sentinel main); COMP_CWORD=1; '
         'COMP_LINE="sentinel main"; COMP_POINT=${#COMP_LINE}; _shtab_sentinel; echo "${COMPREPLY[@]}"'],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert probe.stdout.split() == ["maintenance"], probe.stderr
    zsh = sentinel(tmp_path, "completion", "zsh")
    assert zsh.returncode == 0 and "#compdef sentinel" in zsh.stdout and "faults" in zsh.stdout


# ------------------------------------------------------------------------- the daemon


def test_running_agent_keeps_its_pid_and_is_found_as_sentinel_run(tmp_path: Path) -> None:
    need(shutil.which("pgrep") is not None, "pgrep (procps)")
    need(SENTINEL.exists(), f"console script {SENTINEL}")
    (tmp_path / "s.yaml").write_text(
        "site: {name: 测试医院, timezone: Asia/Kathmandu}\n"
        "agent: {heartbeat: 1s}\n"
        "checks:\n"
        f"  - {{name: port, kind: tcp, host: 127.0.0.1, port: {free_port()}, interval: 2s, timeout: 1s}}\n",
        encoding="utf-8",
    )
    log = tmp_path / "agent.log"
    with log.open("w", encoding="utf-8") as out:
        proc = subprocess.Popen(
            [str(SENTINEL), "run", "-c", "s.yaml"], cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT,
            env={k: v for k, v in os.environ.items() if k != "SENTINEL_CONFIG"},
        )  # fmt: skip
    try:
        wait_until(
            lambda: proc.poll() is not None or "agent started" in log.read_text(encoding="utf-8"),
            30,
            "the agent to start",
        )
        assert proc.poll() is None, log.read_text(encoding="utf-8")
        found = subprocess.run(["pgrep", "-f", "sentinel run"], capture_output=True, text=True, check=False)
        assert proc.pid in {int(p) for p in found.stdout.split()}, found.stdout
        lines = log.read_text(encoding="utf-8").splitlines()
        started = next(line for line in lines if "agent started" in line)
        assert started.endswith(f"pid {proc.pid}")  # validated in its own process: no hand-off
        assert re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}\+05:45 INFO ", started), started
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        assert "agent stopped cleanly" in log.read_text(encoding="utf-8")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
