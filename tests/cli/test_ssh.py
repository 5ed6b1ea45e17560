"""`sentinel ssh trust` against a real sshd: shows the fingerprint, asks, records, refuses changes."""

from __future__ import annotations

import argparse
import io
import os
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from agent.cli import ssh as cli_ssh
from probes.base import ProbeContext
from probes.ssh.conn import SshError, ssh_session
from probes.ssh.settings import SshSettings
from tests.conftest import free_port
from tests.helpers.sshd import Sshd, running_sshd, sshd_fixture  # noqa: F401


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="sentinel")
    cli_ssh.add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def trust(argv: list[str], stdin: TextIO | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    rc = cli_ssh.run(parse(["ssh", "trust", *argv]), stdin or io.StringIO(""), out, err)
    return rc, out.getvalue(), err.getvalue()


@contextmanager
def tty_answering(answer: str) -> Iterator[TextIO]:
    """A real pseudo-terminal as stdin with `answer` already typed."""
    master, slave = os.openpty()
    try:
        os.write(master, answer.encode())
        with os.fdopen(os.dup(slave), "r", encoding="utf-8") as fh:
            yield fh
    finally:
        os.close(master)
        os.close(slave)


def can_log_in(server: Sshd, known_hosts: Path) -> bool:
    st = SshSettings(
        address="127.0.0.1",
        port=server.port,
        user=server.user,
        password=server.password_ref,
        known_hosts=str(known_hosts),
    )
    with ssh_session(st, ProbeContext("t", 5.0), time.monotonic() + 5) as s:
        return s.run("true", 3.0).exit_code == 0


def test_trust_with_yes_records_the_key_without_logging_in(sshd: Sshd, tmp_path: Path) -> None:
    path = tmp_path / "var" / "keys" / "ssh_known_hosts"
    mark = sshd.mark()
    rc, out, err = trust(["127.0.0.1", "--port", str(sshd.port), "--known-hosts", str(path), "--yes"])
    assert rc == 0, err
    assert f"ssh-ed25519 {sshd.host_fingerprint()}" in out
    assert path.read_text() == sshd.host_key_line() + "\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    # The server logs the end of the connection after anything it logged for it.
    sshd.wait_log(r"^Connection (?:closed|reset) by 127\.0\.0\.1 port \d+.*\[preauth\]", mark)
    assert sshd.auth_attempts(mark) == []  # trust never logs in
    assert can_log_in(sshd, path)

    rc, out, _ = trust(["127.0.0.1", "--port", str(sshd.port), "--known-hosts", str(path), "--yes"])
    assert rc == 0 and "already trusted" in out
    assert path.read_text().count("\n") == 1


def test_without_yes_a_tty_is_asked_and_a_pipe_is_refused(sshd: Sshd, tmp_path: Path) -> None:
    path = tmp_path / "kh"
    args = ["127.0.0.1", "--port", str(sshd.port), "--known-hosts", str(path)]
    rc, _, err = trust(args, io.StringIO("y\n"))
    assert rc == 1 and "--yes" in err and not path.exists()
    with tty_answering("n\n") as tty:
        rc, out, _ = trust(args, tty)
    assert rc == 1 and "[y/N]" in out and not path.exists()
    with tty_answering("y\n") as tty:
        rc, out, _ = trust(args, tty)
    assert rc == 0 and sshd.host_fingerprint() in out
    assert path.read_text() == sshd.host_key_line() + "\n"


def test_a_changed_key_is_refused_unless_replaced(tmp_path: Path) -> None:
    path = tmp_path / "kh"
    with running_sshd() as server:
        other = (
            "[10.0.0.9]:22 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHkV2pKq7wY8b0hX1z5m8m1v6Jf4y4cYk2lV0o9hQm7f"
        )
        path.write_text(other + "\n" + server.host_key_line())  # no final newline: hand-edited
        old = server.host_fingerprint()
        server.rotate_host_key()
        new = server.host_fingerprint()
        args = ["127.0.0.1", "--port", str(server.port), "--known-hosts", str(path), "--yes"]
        rc, _, err = trust(args)
        assert rc == 1
        assert "host key changed" in err and old in err and new in err
        assert not can_log_in_or_refused(server, path)

        rc, out, err = trust([*args, "--replace"])
        assert rc == 0, err
        lines = path.read_text().splitlines()
        assert lines == [other, server.host_key_line()]
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert can_log_in(server, path)


def can_log_in_or_refused(server: Sshd, path: Path) -> bool:
    try:
        return can_log_in(server, path)
    except SshError:
        return False


def test_an_unreachable_host_is_an_error(tmp_path: Path) -> None:
    rc, _, err = trust(
        ["127.0.0.1", "--port", str(free_port()), "--known-hosts", str(tmp_path / "kh"), "--yes"]
    )
    assert rc == 1 and "connection refused" in err
    assert not (tmp_path / "kh").exists()
