"""`sentinel inspect`: real checks against local sockets, the real inspection report, real SMTP."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.cli import inspect as cli_inspect
from agent.config.schema import parse
from agent.runtime.checks import run_checks_now
from agent.store.db import Store, acquire_lock
from probes.base import Status
from tests.conftest import free_port, need
from tests.helpers.smtp import SmtpServer


@pytest.fixture
def listening() -> Iterator[int]:
    """A port that accepts connections (the kernel completes them from the backlog)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield int(s.getsockname()[1])


def closed_port() -> int:
    return free_port()


def make_config(tmp_path: Path, ok_port: int, down_port: int, smtp_port: int | None = None) -> Any:
    channels = ""
    if smtp_port is not None:
        channels = f"""
notifications:
  channels:
    ops-mail: {{type: email, host: 127.0.0.1, port: {smtp_port}, security: none, timeout: 5s,
               sender: "HIS Sentinel <sentinel@hospital.local>", to: [ops@hospital.local]}}
"""
    return parse(f"""
site: {{name: 测试医院, timezone: Asia/Shanghai}}
storage: {{path: {tmp_path / "sentinel.db"}}}
reports: {{output_dir: {tmp_path / "reports"}}}
systems:
  - {{name: HIS}}
checks:
  - {{name: his-db-port, kind: tcp, host: 127.0.0.1, port: {ok_port}, system: HIS, timeout: 2s}}
  - {{name: lis-mllp, kind: tcp, host: 127.0.0.1, port: {down_port}, system: HIS, timeout: 2s}}
{channels}""")


def args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="sentinel")
    sub = p.add_subparsers(dest="command", required=True)
    cli_inspect.add_parser(sub)
    return p.parse_args(["inspect", *argv])


def have_archive() -> bool:
    return importlib.util.find_spec("agent.reports.archive") is not None


def test_run_checks_now_runs_the_named_checks_and_reports_each(tmp_path: Path, listening: int) -> None:
    config = make_config(tmp_path, listening, closed_port())
    rows = run_checks_now(config, [])
    assert [n for n, _ in rows] == ["his-db-port", "lis-mllp"]
    statuses = dict((n, r.status) for n, r in rows)
    assert statuses == {"his-db-port": Status.OK, "lis-mllp": Status.CRIT}
    only = run_checks_now(config, ["his-db-port"])
    assert [n for n, _ in only] == ["his-db-port"]
    with pytest.raises(KeyError):
        run_checks_now(config, ["no-such-check"])


def test_unknown_check_name_exits_3_like_sentinel_check(
    tmp_path: Path, listening: int, capsys: pytest.CaptureFixture[str]
) -> None:
    config = make_config(tmp_path, listening, closed_port())
    assert cli_inspect.run(config, args("--reason", "国庆节前巡检", "--check", "nope")) == 3
    assert "nope" in capsys.readouterr().err


def test_inspection_report_is_archived_and_exit_code_is_the_worst_status(
    tmp_path: Path, listening: int, capsys: pytest.CaptureFixture[str]
) -> None:
    need(have_archive(), "agent.reports.archive (the report kinds) is not in this tree yet")
    config = make_config(tmp_path, listening, closed_port())
    rc = cli_inspect.run(config, args("--reason", "国庆节前巡检", "--json", "--holiday", "2026-10-01"))
    assert rc == 2  # lis-mllp refused: CRIT
    doc = json.loads(capsys.readouterr().out)
    assert doc["worst"] == "CRIT" and doc["reason"] == "国庆节前巡检"
    html = Path(doc["report"]["files"]["html"])
    text = html.read_text(encoding="utf-8")
    assert "国庆节前巡检" in text and "lis-mllp" in text and "his-db-port" in text
    assert Path(doc["report"]["files"]["json"]).is_file()
    store = Store(config.storage.path, readonly=True)
    assert store.report_done("inspection", "2026-10-01")  # the scheduler sees it as done
    # Only the OK check: exit 0.
    assert cli_inspect.run(config, args("--reason", "重大活动保障巡检", "--check", "his-db-port")) == 0


def test_send_delivers_now_when_no_agent_runs_and_queues_when_one_does(
    tmp_path: Path, listening: int, capsys: pytest.CaptureFixture[str]
) -> None:
    need(have_archive(), "agent.reports.archive (the report kinds) is not in this tree yet")
    smtp = SmtpServer(free_port())
    smtp.start()
    try:
        base = make_config(tmp_path, listening, closed_port(), smtp.port)
        # reports.recipients as the lead adds it to agent.config (model_copy does not validate,
        # so this also runs before that field exists).
        reports = base.reports.model_copy(update={"recipients": {"inspection": ("ops-mail",)}})
        config = base.model_copy(update={"reports": reports})
        rc = cli_inspect.run(config, args("--reason", "春节前巡检", "--send", "--check", "his-db-port"))
        assert rc == 0
        assert "已发送" in capsys.readouterr().out
        [mail] = smtp.inbox.messages
        assert "春节前巡检" in mail["Subject"]
        # With an agent holding the store the row is left to it.
        fd = acquire_lock(config.storage.path)
        try:
            cli_inspect.run(config, args("--reason", "国庆节前巡检", "--send", "--check", "his-db-port"))
        finally:
            os.close(fd)
        assert "由运行中的监测程序发送" in capsys.readouterr().out
        assert len(smtp.inbox.messages) == 1
    finally:
        smtp.stop()
