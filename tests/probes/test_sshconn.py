"""probes.sshconn against a real OpenSSH server: host-key checks, auth, bounded steps, the pool."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from probes.base import ProbeContext, Status
from probes.ssh.conn import SshError, SshPool, fetch_host_key, fingerprint, ssh_session
from probes.ssh.settings import SshSettings
from tests.conftest import free_port
from tests.helpers.servers import silent_tcp_server
from tests.helpers.sshd import WRONG_PASSWORD, Sshd, known_fixture, running_sshd, sshd_fixture  # noqa: F401


def settings(sshd: Sshd, known_hosts: Path | str, **over: object) -> SshSettings:
    """Validated, as the daemon hands them to ssh_session."""
    base: dict[str, object] = {
        "address": "127.0.0.1",
        "port": sshd.port,
        "user": sshd.user,
        "password": sshd.password_ref,
        "known_hosts": str(known_hosts),
        "connect_timeout": 3.0,
    }
    base.update(over)
    return SshSettings.model_validate({k: v for k, v in base.items() if v is not None})


def stalled(port: int, tmp_path: Path, connect_timeout: float = 5.0) -> SshSettings:
    """Settings for a server that accepts TCP and never speaks."""
    return SshSettings(
        address="127.0.0.1",
        port=port,
        user="x",
        password="${HOME}",
        known_hosts=str(tmp_path / "kh"),
        connect_timeout=connect_timeout,
    )


def ctx(pool: SshPool | None = None) -> ProbeContext:
    return ProbeContext("ssh", 5.0, shared={"ssh": pool} if pool is not None else {})


def soon(seconds: float = 5.0) -> float:
    return time.monotonic() + seconds


# --- authentication ---------------------------------------------------------------------------


def test_password_login_runs_a_command(sshd: Sshd, known: Path) -> None:
    with ssh_session(settings(sshd, known), ctx(), soon()) as s:
        r = s.run("echo out; echo err >&2; exit 3", 3.0)
    assert (r.exit_code, r.stdout, r.stderr, r.timed_out) == (3, b"out\n", b"err\n", False)
    assert r.first_output_at is not None and r.first_output_at >= r.sent_at


def test_key_login_plain_and_encrypted(sshd: Sshd, known: Path) -> None:
    for key, phrase in ((sshd.client_key, None), (sshd.client_key_encrypted, sshd.key_passphrase_ref)):
        mark = sshd.mark()
        st = settings(sshd, known, password=None, key_file=str(key), key_passphrase=phrase)
        with ssh_session(st, ctx(), soon()) as s:
            assert s.run_args(["id", "-un"], 3.0).stdout == b"sentinel-test\n"
        sshd.wait_log(r"^Accepted publickey for sentinel-test", mark)


def test_encrypted_key_without_passphrase_is_unknown(sshd: Sshd, known: Path) -> None:
    st = settings(sshd, known, password=None, key_file=str(sshd.client_key_encrypted))
    with pytest.raises(SshError) as err, ssh_session(st, ctx(), soon()):
        pass
    assert err.value.status is Status.UNKNOWN
    assert "key_passphrase" in str(err.value)


def test_wrong_password_is_crit_and_never_shown(sshd: Sshd, known: Path) -> None:
    mark = sshd.mark()
    st = settings(sshd, known, password=sshd.wrong_password_ref)
    with pytest.raises(SshError) as err, ssh_session(st, ctx(), soon()):
        pass
    assert err.value.status is Status.CRIT
    assert "认证失败" in err.value.message and "authentication failed" in err.value.message
    assert WRONG_PASSWORD not in str(err.value) and WRONG_PASSWORD not in repr(err.value)
    assert err.value.__cause__ is None and err.value.__suppress_context__
    sshd.wait_log(r"^Failed password for sentinel-test", mark)


def test_unresolvable_secret_is_unknown(sshd: Sshd, known: Path) -> None:
    st = settings(sshd, known, password="${SENTINEL_TEST_NO_SUCH_VAR}")
    with pytest.raises(SshError) as err, ssh_session(st, ctx(), soon()):
        pass
    assert err.value.status is Status.UNKNOWN
    assert "SENTINEL_TEST_NO_SUCH_VAR" in str(err.value)


def test_settings_need_a_credential_and_reject_inline_secrets() -> None:
    with pytest.raises(ValidationError, match="password"):
        SshSettings.model_validate({"address": "h", "user": "u"})
    with pytest.raises(ValidationError) as err:
        SshSettings.model_validate({"address": "h", "user": "u", "password": "hunter2-inline"})
    assert "hunter2-inline" not in str(err.value)
    with pytest.raises(ValidationError, match="extra"):
        SshSettings.model_validate({"address": "h", "user": "u", "key_file": "/k", "host": "x"})


# --- host keys --------------------------------------------------------------------------------


def test_unknown_host_key_is_unknown_with_fingerprint_and_no_auth(sshd: Sshd, tmp_path: Path) -> None:
    mark = sshd.mark()
    st = settings(sshd, tmp_path / "missing_known_hosts")
    with pytest.raises(SshError) as err, ssh_session(st, ctx(), soon()):
        pytest.fail("a session must not open for an unknown host key")
    assert err.value.status is Status.UNKNOWN
    assert sshd.host_fingerprint() in err.value.message  # same text as `ssh-keygen -l`
    assert "unknown host key" in err.value.message and "sentinel ssh trust" in err.value.message
    # The server saw the key exchange but never an authentication request.
    # The server logs the end of the connection after anything it logged for it.
    sshd.wait_log(r"^Connection (?:closed|reset) by 127\.0\.0\.1 port \d+.*\[preauth\]", mark)
    assert sshd.auth_attempts(mark) == []
    assert not (tmp_path / "missing_known_hosts").exists()  # never auto-added


def test_changed_host_key_is_crit_with_both_fingerprints(tmp_path: Path) -> None:
    with running_sshd() as server:
        known_hosts = server.write_known_hosts(tmp_path / "known_hosts")
        old = server.host_fingerprint()
        server.rotate_host_key()
        new = server.host_fingerprint()
        assert old != new
        mark = server.mark()
        with pytest.raises(SshError) as err, ssh_session(settings(server, known_hosts), ctx(), soon()):
            pytest.fail("a session must not open for a changed host key")
        assert server.auth_attempts(mark) == []
    assert err.value.status is Status.CRIT
    assert "主机密钥已变更" in err.value.message and "host key changed" in err.value.message
    assert old in err.value.message and new in err.value.message
    assert known_hosts.read_text().count("\n") == 1  # the old key stays recorded


def test_fetch_host_key_matches_ssh_keygen(sshd: Sshd) -> None:
    mark = sshd.mark()
    key = fetch_host_key("127.0.0.1", sshd.port, 3.0)
    assert fingerprint(key) == sshd.host_fingerprint()
    assert key.get_name() == "ssh-ed25519"
    # The server logs the end of the connection after anything it logged for it.
    sshd.wait_log(r"^Connection (?:closed|reset) by 127\.0\.0\.1 port \d+.*\[preauth\]", mark)
    assert sshd.auth_attempts(mark) == []


def test_hashed_known_hosts_entry_is_accepted(sshd: Sshd, tmp_path: Path) -> None:
    import paramiko

    line = sshd.host_key_line().split()
    hashed = paramiko.HostKeys.hash_host(line[0])
    path = tmp_path / "known_hosts"
    path.write_text(f"{hashed} {line[1]} {line[2]}\n")
    with ssh_session(settings(sshd, path), ctx(), soon()) as s:
        assert s.run("true", 3.0).exit_code == 0


# --- bounded steps ------------------------------------------------------------------------------


def test_silent_server_fails_within_connect_timeout(tmp_path: Path) -> None:
    with silent_tcp_server() as port:
        st = stalled(port, tmp_path, 1.0)
        t0 = time.monotonic()
        with pytest.raises(SshError) as err, ssh_session(st, ctx(), soon(10)):
            pass
        elapsed = time.monotonic() - t0
    assert elapsed < 2.0, elapsed
    assert err.value.status is Status.CRIT
    assert "banner" in err.value.message


def test_total_deadline_cuts_the_banner_wait(tmp_path: Path) -> None:
    with silent_tcp_server() as port:
        st = stalled(port, tmp_path)
        t0 = time.monotonic()
        with pytest.raises(SshError), ssh_session(st, ctx(), soon(0.7)):
            pass
    assert time.monotonic() - t0 < 1.5


def test_refused_port_is_crit() -> None:
    st = SshSettings(address="127.0.0.1", port=free_port(), user="x", password="${HOME}")
    with pytest.raises(SshError) as err, ssh_session(st, ctx(), soon()):
        pass
    assert err.value.status is Status.CRIT
    assert "connection refused" in err.value.message


def test_command_timeout_returns_partial_output(sshd: Sshd, known: Path) -> None:
    with ssh_session(settings(sshd, known), ctx(), soon()) as s:
        t0 = time.monotonic()
        r = s.run("echo started; sleep 30", 0.6)
        elapsed = time.monotonic() - t0
        assert r.timed_out and r.exit_code == -1 and r.stdout == b"started\n"
        assert elapsed < 1.5
        # The connection is still usable after a timed-out command.
        assert s.run("echo again", 3.0).stdout == b"again\n"


def test_output_is_capped_and_stdin_is_closed(sshd: Sshd, known: Path) -> None:
    with ssh_session(settings(sshd, known), ctx(), soon()) as s:
        big = s.run("head -c 300000 /dev/zero; echo done >&2", 10.0, max_bytes=1000)
        waits_for_stdin = s.run("cat; echo eof", 3.0)
    assert big.exit_code == 0 and big.truncated and len(big.stdout) == 1000 and big.stderr == b"done\n"
    assert waits_for_stdin.stdout == b"eof\n" and not waits_for_stdin.timed_out


def test_sftp_reads_a_file(sshd: Sshd, known: Path) -> None:
    with (
        ssh_session(settings(sshd, known), ctx(), soon()) as s,
        s.sftp().open(str(sshd.dir / "authorized_keys")) as fh,
    ):
        assert fh.read().startswith(b"ssh-ed25519 ")


# --- pool ------------------------------------------------------------------------------------


def test_pool_reuses_one_connection_for_checks_of_one_host(sshd: Sshd, known: Path) -> None:
    pool = SshPool()
    mark = sshd.mark()
    try:
        for _ in range(3):
            with ssh_session(settings(sshd, known), ctx(pool), soon()) as s:
                assert s.run("true", 3.0).exit_code == 0
        assert pool.stats() == {"connects": 1, "open": 1, "idle": 1}
        assert sshd.connections(mark) == 1
        assert len(sshd.auth_attempts(mark)) == 1
    finally:
        pool.close_all()
    assert pool.stats()["open"] == 0


def test_pool_limits_connections_per_host_and_never_shares_one(sshd: Sshd, known: Path) -> None:
    pool = SshPool(max_per_host=2)
    mark = sshd.mark()
    inside = threading.Semaphore(0)
    release = threading.Event()
    seen: list[int] = []
    lock = threading.Lock()

    def check() -> None:
        with ssh_session(settings(sshd, known), ctx(pool), soon(10)) as s:
            with lock:
                seen.append(id(s.transport))
            inside.release()
            release.wait(10)
            s.run("true", 3.0)

    threads = [threading.Thread(target=check) for _ in range(3)]
    try:
        for t in threads:
            t.start()
        assert inside.acquire(timeout=5) and inside.acquire(timeout=5)
        # Two sessions hold both slots; the third waits rather than opening a third connection.
        assert not inside.acquire(timeout=0.3)
        assert len(set(seen)) == 2
        release.set()
        assert inside.acquire(timeout=5)
        for t in threads:
            t.join(10)
        assert pool.stats()["connects"] == 2 and sshd.connections(mark) == 2
    finally:
        release.set()
        pool.close_all()


def test_pool_waiting_for_a_busy_host_gives_up_at_the_deadline(sshd: Sshd, known: Path) -> None:
    pool = SshPool(max_per_host=1)
    try:
        with ssh_session(settings(sshd, known), ctx(pool), soon()):
            t0 = time.monotonic()
            with pytest.raises(SshError) as err, ssh_session(settings(sshd, known), ctx(pool), soon(0.3)):
                pass
            assert time.monotonic() - t0 < 1.0
        assert err.value.status is Status.UNKNOWN
    finally:
        pool.close_all()


def test_slow_host_does_not_delay_another_host(sshd: Sshd, known: Path, tmp_path: Path) -> None:
    pool = SshPool()
    with silent_tcp_server() as port:
        slow_host = stalled(port, tmp_path, 1.5)
        started = threading.Event()
        outcome: list[BaseException] = []

        def slow() -> None:
            started.set()
            try:
                with ssh_session(slow_host, ctx(pool), soon()):
                    pass
            except SshError as exc:
                outcome.append(exc)

        t = threading.Thread(target=slow)
        t.start()
        try:
            assert started.wait(2)
            time.sleep(0.1)  # the slow connect is now inside its banner wait
            t0 = time.monotonic()
            with ssh_session(settings(sshd, known), ctx(pool), soon()) as s:
                assert s.run("true", 3.0).exit_code == 0
            fast = time.monotonic() - t0
            assert t.is_alive(), "the stalled connect should still be waiting"
            assert fast < 1.5, fast
        finally:
            t.join(10)
            pool.close_all()
    assert outcome and isinstance(outcome[0], SshError)


def test_broken_connection_is_discarded(sshd: Sshd, known: Path) -> None:
    pool = SshPool()
    try:
        with ssh_session(settings(sshd, known), ctx(pool), soon()) as s:
            first = s.transport
        first.close()  # the server went away between rounds
        with ssh_session(settings(sshd, known), ctx(pool), soon()) as s:
            assert s.transport is not first and s.run("true", 3.0).exit_code == 0
        with pytest.raises(RuntimeError), ssh_session(settings(sshd, known), ctx(pool), soon()) as s:
            second = s.transport
            raise RuntimeError("probe failed half-way")
        assert not second.is_active()  # an exception in the block discards the connection
        assert pool.stats() == {"connects": 2, "open": 0, "idle": 0}
    finally:
        pool.close_all()


def test_idle_connections_expire(sshd: Sshd, known: Path) -> None:
    now = [1000.0]
    pool = SshPool(max_idle_s=60.0, clock=lambda: now[0])
    try:
        with ssh_session(settings(sshd, known), ctx(pool), soon()) as s:
            transport = s.transport
        now[0] += 30
        pool.close_idle()
        assert transport.is_active()
        now[0] += 31
        pool.close_idle()
        assert not transport.is_active()
        assert pool.stats() == {"connects": 1, "open": 0, "idle": 0}
    finally:
        pool.close_all()


def test_private_connection_is_closed_without_a_pool(sshd: Sshd, known: Path) -> None:
    with ssh_session(settings(sshd, known), ctx(), soon()) as s:
        transport = s.transport
        assert not s.reused
    assert not transport.is_active()
