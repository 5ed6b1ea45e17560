"""probes.ssh_command against a real sshd: exit codes, patterns, JSON fields, timeouts, the pool."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from probes.base import CheckResult, ProbeContext, Status
from probes.ssh.conn import SshPool
from probes.ssh_command.probe import Probe, json_lookup
from probes.ssh_command.settings import Settings
from probes.ssh_host import probe as ssh_host
from probes.ssh_host import settings as ssh_host_settings
from tests.helpers.servers import silent_tcp_server
from tests.helpers.sshd import WRONG_PASSWORD, Sshd, known_fixture, sshd_fixture  # noqa: F401

DOC = '{"queue": {"depth": 42}, "status": "UP", "ok": true, "items": [{"n": 1}, {"n": 7}]}'


def ssh_of(sshd: Sshd, known: Path, **over: object) -> dict[str, object]:
    ssh: dict[str, object] = {
        "address": "127.0.0.1",
        "port": sshd.port,
        "user": sshd.user,
        "password": sshd.password_ref,
        "known_hosts": str(known),
        "connect_timeout": 3.0,
    }
    ssh.update(over)
    return ssh


def run(
    sshd: Sshd,
    known: Path,
    command: list[str],
    pool: SshPool | None = None,
    timeout_s: float = 5.0,
    **over: Any,
) -> CheckResult:
    st = Settings.model_validate({"ssh": ssh_of(sshd, known), "command": command, **over})
    shared = {"ssh": pool} if pool is not None else {}
    return Probe(st).run(ProbeContext("cmd", timeout_s, shared=shared))


def printf(text: str) -> list[str]:
    return ["printf", "%s", text]


# --- exit codes ---------------------------------------------------------------------------------


def test_exit_zero_is_ok_with_excerpt_and_metrics(sshd: Sshd, known: Path) -> None:
    result = run(sshd, known, ["echo", "挂号系统 正常"])
    assert result.status is Status.OK, result.summary
    assert result.summary.startswith("`echo '挂号系统 正常'` 退出码 0")
    assert result.details["stdout_excerpt"] == "挂号系统 正常\n"
    assert result.metric("exit_code").value == 0  # type: ignore[union-attr]
    assert result.metric("command_ms").unit == "ms"  # type: ignore[union-attr]


def test_unexpected_exit_code_is_crit(sshd: Sshd, known: Path) -> None:
    result = run(sshd, known, ["sh", "-c", "echo boom >&2; exit 2"])
    assert result.status is Status.CRIT
    assert result.summary.startswith("退出码 2 (期望 0) | ")
    assert result.details["stderr_excerpt"] == "boom\n"
    assert run(sshd, known, ["sh", "-c", "exit 1"], expect_exit=[0, 1]).status is Status.OK


def test_arguments_are_never_interpreted_by_the_remote_shell(sshd: Sshd, known: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    tmp_path.chmod(0o777)
    hostile = f"a b; touch {marker}; $(touch {marker}) `touch {marker}` *"
    result = run(sshd, known, printf(hostile))
    assert result.status is Status.OK, result.summary
    assert result.details["stdout_excerpt"] == hostile
    assert not marker.exists()


# --- patterns -----------------------------------------------------------------------------------


def test_stdout_must_and_must_not_match(sshd: Sshd, known: Path) -> None:
    ok = run(
        sshd, known, printf("state=OPEN\nerrors=0\n"), stdout_match=[r"state=OPEN"], stdout_not_match=["ORA-"]
    )
    assert ok.status is Status.OK, ok.summary
    missing = run(sshd, known, printf("state=MOUNTED\n"), stdout_match=[r"state=OPEN"])
    assert missing.status is Status.CRIT and "stdout 未匹配 /state=OPEN/" in missing.summary
    found = run(sshd, known, printf("ok\nORA-01555: snapshot too old\n"), stdout_not_match=[r"ORA-\d{5}"])
    assert found.status is Status.CRIT and "stdout 出现 /ORA-\\d{5}/: 'ORA-01555'" in found.summary


def test_stderr_patterns(sshd: Sshd, known: Path) -> None:
    cmd = ["sh", "-c", "echo 'WARNING: disk slow' >&2"]
    assert run(sshd, known, cmd, stderr_match=["disk slow"]).status is Status.OK
    bad = run(sshd, known, cmd, stderr_not_match=["WARNING"])
    assert bad.status is Status.CRIT and bad.summary.startswith("stderr 出现 /WARNING/")


def test_gbk_output_is_decoded(sshd: Sshd, known: Path) -> None:
    # printf's octal escapes: "正常" in GBK, as a Chinese Windows tool would print it.
    result = run(sshd, known, ["printf", "\\325\\375\\263\\243"], encoding="gbk", stdout_match=["正常"])
    assert result.status is Status.OK, result.summary
    assert result.details["stdout_excerpt"] == "正常"


# --- JSON ----------------------------------------------------------------------------------------


def test_json_numeric_field_with_thresholds(sshd: Sshd, known: Path) -> None:
    warn = run(sshd, known, printf(DOC), json_field="queue.depth", json_warn=10, json_crit=100)
    assert warn.status is Status.WARN
    assert warn.summary.startswith("queue.depth=42 ≥ 10 | ")
    assert warn.metric("json.queue.depth").value == 42  # type: ignore[union-attr]
    crit = run(sshd, known, printf(DOC), json_field="items.1.n", json_warn=10, json_crit=8, json_below=True)
    assert crit.status is Status.CRIT and "items.1.n=7 ≤ 8" in crit.summary
    ok = run(sshd, known, printf(DOC), json_field="queue.depth", json_crit=100)
    assert ok.status is Status.OK and "queue.depth=42" in ok.summary


def test_json_equals(sshd: Sshd, known: Path) -> None:
    assert run(sshd, known, printf(DOC), json_field="status", json_equals="UP").status is Status.OK
    down = run(sshd, known, printf(DOC), json_field="status", json_equals="DOWN")
    assert down.status is Status.CRIT and '期望 "DOWN"' in down.summary
    assert run(sshd, known, printf(DOC), json_field="ok", json_equals=True).status is Status.OK
    # JSON true is not the number 1.
    assert run(sshd, known, printf(DOC), json_field="ok", json_equals=1).status is Status.CRIT


def test_json_missing_field_or_not_json_is_unknown(sshd: Sshd, known: Path) -> None:
    missing = run(sshd, known, printf(DOC), json_field="queue.size", json_crit=1)
    assert missing.status is Status.UNKNOWN and "queue.size" in missing.summary
    garbage = run(sshd, known, printf("<html>502</html>"), json_field="status", json_equals="UP")
    assert garbage.status is Status.UNKNOWN and "不是 JSON" in garbage.summary


def test_json_lookup_paths() -> None:
    doc = {"a": [{"b": 1}, {"b": 2}]}
    assert json_lookup(doc, "a.1.b") == 2
    assert json_lookup(doc, "a.-1.b") == 2
    with pytest.raises(LookupError, match="a.2"):
        json_lookup(doc, "a.2.b")


# --- timeouts, secrets, pool ------------------------------------------------------------------


def test_command_timeout_is_crit_in_time(sshd: Sshd, known: Path) -> None:
    t0 = time.monotonic()
    result = run(sshd, known, ["sleep", "30"], command_timeout=0.5)
    assert time.monotonic() - t0 < 2.0
    assert result.status is Status.CRIT and "未结束" in result.summary


def test_check_timeout_bounds_the_command_too(sshd: Sshd, known: Path) -> None:
    t0 = time.monotonic()
    result = run(sshd, known, ["sleep", "30"], timeout_s=1.0)
    assert time.monotonic() - t0 < 1.5
    assert result.status is Status.CRIT


def test_wrong_password_is_crit_and_hidden(sshd: Sshd, known: Path) -> None:
    st = Settings.model_validate(
        {"ssh": ssh_of(sshd, known, password=sshd.wrong_password_ref), "command": ["true"]}
    )
    result = Probe(st).run(ProbeContext("cmd", 5.0))
    assert result.status is Status.CRIT and "认证失败" in result.summary
    assert WRONG_PASSWORD not in repr(result)


def test_two_checks_of_one_host_share_one_connection_per_round(sshd: Sshd, known: Path) -> None:
    pool = SshPool()
    mark = sshd.mark()
    try:
        host_probe = ssh_host.Probe(ssh_host_settings.Settings.model_validate({"ssh": ssh_of(sshd, known)}))
        first = host_probe.run(ProbeContext("host", 8.0, shared={"ssh": pool}))
        second = run(sshd, known, ["true"], pool=pool)
    finally:
        pool.close_all()
    assert first.status is Status.OK and second.status is Status.OK
    assert second.details["connection_reused"] is True
    assert sshd.connections(mark) == 1
    assert len(sshd.auth_attempts(mark)) == 1


def test_a_stalled_host_does_not_delay_another_hosts_check(sshd: Sshd, known: Path, tmp_path: Path) -> None:
    pool = SshPool()
    results: dict[str, CheckResult] = {}
    with silent_tcp_server() as port:
        stalled = Settings.model_validate(
            {
                "ssh": {
                    "address": "127.0.0.1",
                    "port": port,
                    "user": "x",
                    "password": "${HOME}",
                    "known_hosts": str(tmp_path / "kh"),
                },
                "command": ["true"],
            }
        )

        def slow() -> None:
            results["slow"] = Probe(stalled).run(ProbeContext("slow", 1.2, shared={"ssh": pool}))

        t = threading.Thread(target=slow)
        t.start()
        try:
            time.sleep(0.1)  # the stalled check is now waiting for a banner
            t0 = time.monotonic()
            fast = run(sshd, known, ["true"], pool=pool)
            fast_s = time.monotonic() - t0
            assert t.is_alive()
        finally:
            t.join(5)
            pool.close_all()
    assert fast.status is Status.OK and fast_s < 1.0, fast_s
    assert results["slow"].status is Status.CRIT and "banner" in results["slow"].summary


def test_settings_validation() -> None:
    ssh = {"address": "h", "user": "u", "key_file": "/k"}
    with pytest.raises(ValidationError, match="command"):
        Settings.model_validate({"ssh": ssh, "command": []})
    with pytest.raises(ValidationError, match="json_field"):
        Settings.model_validate({"ssh": ssh, "command": ["x"], "json_crit": 1})
    with pytest.raises(ValidationError, match="encoding"):
        Settings.model_validate({"ssh": ssh, "command": ["x"], "encoding": "klingon"})
    with pytest.raises(ValidationError, match="regular expression"):
        Settings.model_validate({"ssh": ssh, "command": ["x"], "stdout_match": ["("]})
    with pytest.raises(ValidationError):
        Settings.model_validate({"ssh": ssh, "command": "rm -rf /"})  # a string is not a list of args
