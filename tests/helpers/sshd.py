"""A real OpenSSH server for tests: Debian's /usr/sbin/sshd on a free port of 127.0.0.1.

Each server gets its own temp dir with a generated Ed25519 host key, sshd_config, client key
pair, password files (secret references) and a log file (`sshd -D -e`, LogLevel VERBOSE): tests
count connections and authentication attempts in that log. The login is a local system user
(`sentinel-test`, created once, fixed password) because sshd authenticates against the system.

Use it from a test module by importing the module-scoped fixtures `sshd` (the server) and
`known` (a known_hosts file trusting it):

    from tests.sshd import known_fixture, sshd_fixture  # noqa: F401 - pytest fixtures

`running_sshd()` calls need(): without sshd (or without root) the tests skip, under CI=true
they fail.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import free_port, need

SSHD = "/usr/sbin/sshd"
SSH_KEYGEN = "/usr/bin/ssh-keygen"
TEST_USER = "sentinel-test"
TEST_PASSWORD = "Sntl-test-4Qw9-pass"
"""Fixed so that concurrent test runs (several helpers' files) agree on it."""
WRONG_PASSWORD = "Wr0ng-Pa55-Zq7x-never-show"
START_TIMEOUT_S = 10.0


def sshd_missing_reason() -> str | None:
    if not os.path.exists(SSHD):
        return f"{SSHD} not installed (apt-get install openssh-server)"
    if not os.path.exists(SSH_KEYGEN):
        return f"{SSH_KEYGEN} not installed"
    if os.geteuid() != 0:
        return "the sshd fixture needs root (system test user, privilege separation)"
    return None


def ensure_test_user() -> None:
    """Create the system user once and (re)set its password; safe to run concurrently."""
    for _ in range(20):
        if subprocess.run(["id", "-u", TEST_USER], check=False, capture_output=True).returncode != 0:
            # Exit 9 = already exists (another run won the race), 10 = /etc/passwd locked: retry.
            subprocess.run(
                ["useradd", "--system", "--create-home", "--home-dir", f"/var/lib/{TEST_USER}",
                 "--shell", "/bin/sh", TEST_USER],
                check=False,
                capture_output=True,
            )  # fmt: skip
            continue
        done = subprocess.run(
            ["chpasswd"], check=False, input=f"{TEST_USER}:{TEST_PASSWORD}\n", capture_output=True, text=True
        )
        if done.returncode == 0:
            return
        time.sleep(0.1)  # chpasswd lost the /etc/shadow lock to a concurrent run
    raise RuntimeError(f"could not create or set the password of {TEST_USER}")


def _write_secret(path: Path, value: str) -> str:
    path.write_text(value + "\n", encoding="utf-8")
    path.chmod(0o600)
    return f"file:{path}"


def _keygen(path: Path, passphrase: str = "") -> None:
    subprocess.run(
        [SSH_KEYGEN, "-q", "-t", "ed25519", "-N", passphrase, "-C", "sentinel-test", "-f", str(path)],
        check=True,
        capture_output=True,
    )


@dataclass
class Sshd:
    dir: Path
    port: int
    user: str = TEST_USER
    password: str = TEST_PASSWORD
    proc: subprocess.Popen[bytes] | None = None
    host: str = "127.0.0.1"

    @property
    def host_key(self) -> Path:
        return self.dir / "host_ed25519"

    @property
    def client_key(self) -> Path:
        """Ed25519 private key authorised for the test user (no passphrase)."""
        return self.dir / "client_ed25519"

    @property
    def client_key_encrypted(self) -> Path:
        """Authorised key protected by the passphrase in `key_passphrase_ref`."""
        return self.dir / "client_enc_ed25519"

    @property
    def log_path(self) -> Path:
        return self.dir / "sshd.log"

    @property
    def password_ref(self) -> str:
        return f"file:{self.dir / 'password'}"

    @property
    def wrong_password_ref(self) -> str:
        return f"file:{self.dir / 'wrong_password'}"

    @property
    def key_passphrase_ref(self) -> str:
        return f"file:{self.dir / 'key_passphrase'}"

    # --- host keys ---------------------------------------------------------------------------

    def host_key_line(self) -> str:
        """The known_hosts line for this server: `[127.0.0.1]:port ssh-ed25519 AAAA...`."""
        pub = (self.dir / "host_ed25519.pub").read_text(encoding="ascii").split()
        return f"[{self.host}]:{self.port} {pub[0]} {pub[1]}"

    def host_fingerprint(self) -> str:
        out = subprocess.run(
            [SSH_KEYGEN, "-l", "-E", "sha256", "-f", str(self.dir / "host_ed25519.pub")],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        return out.split()[1]

    def write_known_hosts(self, path: Path | None = None) -> Path:
        """A known_hosts file that trusts this server's current key."""
        target = path or self.dir / f"known_hosts_{time.monotonic_ns()}"
        target.write_text(self.host_key_line() + "\n", encoding="ascii")
        return target

    def rotate_host_key(self) -> None:
        """Replace the host key and restart sshd on the same port (a reinstalled server)."""
        self.stop()
        for name in ("host_ed25519", "host_ed25519.pub"):
            (self.dir / name).unlink()
        _keygen(self.host_key)
        self.start()

    # --- log ----------------------------------------------------------------------------

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def mark(self) -> int:
        """Log position; pass it to connections()/auth_attempts() to count what follows."""
        return self.log_path.stat().st_size

    def _log_since(self, mark: int) -> str:
        with self.log_path.open("rb") as fh:
            fh.seek(mark)
            return fh.read().decode("utf-8", "replace")

    def connections(self, mark: int = 0) -> int:
        return len(re.findall(r"^Connection from 127\.0\.0\.1 port \d+", self._log_since(mark), re.M))

    def auth_attempts(self, mark: int = 0) -> list[str]:
        """Every authentication the server saw (accepted, failed, postponed), one line each."""
        pattern = r"^(?:Accepted|Failed|Postponed|Partial) \S+ for .*$|^userauth_\S+.*$|^Invalid user.*$"
        return re.findall(pattern, self._log_since(mark), re.M)

    def wait_log(self, pattern: str, mark: int = 0, timeout: float = 5.0) -> str:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            m = re.search(pattern, self._log_since(mark), re.M)
            if m:
                return m.group(0)
            time.sleep(0.05)
        raise AssertionError(f"sshd log never showed {pattern!r}; log:\n{self._log_since(mark)[-2000:]}")

    # --- process ----------------------------------------------------------------------------

    def start(self) -> None:
        mark = self.mark() if self.log_path.exists() else 0
        log = self.log_path.open("ab")
        try:
            self.proc = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", str(self.dir / "sshd_config")],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        finally:
            log.close()
        end = time.monotonic() + START_TIMEOUT_S
        while f"Server listening on {self.host} port {self.port}" not in self._log_since(mark):
            if self.proc.poll() is not None or time.monotonic() > end:
                tail = self._log_since(mark)[-2000:]
                self.stop()
                raise RuntimeError(f"sshd did not start on port {self.port}:\n{tail}")
            time.sleep(0.05)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        # The whole session: the listener and any per-connection children it forked.
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def _config(d: Path, port: int) -> str:
    return f"""\
Port {port}
ListenAddress 127.0.0.1
HostKey {d}/host_ed25519
PidFile {d}/sshd.pid
UsePAM no
StrictModes no
PermitRootLogin no
AllowUsers {TEST_USER}
PasswordAuthentication yes
PubkeyAuthentication yes
KbdInteractiveAuthentication no
AuthorizedKeysFile {d}/authorized_keys
LogLevel VERBOSE
UseDNS no
MaxStartups 100
MaxSessions 20
MaxAuthTries 6
LoginGraceTime 30
PrintMotd no
Subsystem sftp internal-sftp
"""


@contextmanager
def running_sshd() -> Iterator[Sshd]:
    reason = sshd_missing_reason()
    need(reason is None, reason or "")
    ensure_test_user()
    # sshd refuses to start without its privilege-separation directory.
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    d = Path(tempfile.mkdtemp(prefix="sentinel-sshd-"))
    # The test user must be able to traverse to its home-less files (authorized_keys is read
    # as the user after privilege drop with StrictModes off).
    d.chmod(0o755)
    server = Sshd(dir=d, port=free_port())
    try:
        _keygen(server.host_key)
        _keygen(server.client_key)
        _keygen(server.client_key_encrypted, "Key-Pass-8Rt2")
        authorized = "".join(
            (d / f"{k.name}.pub").read_text(encoding="ascii")
            for k in (server.client_key, server.client_key_encrypted)
        )
        (d / "authorized_keys").write_text(authorized, encoding="ascii")
        (d / "authorized_keys").chmod(0o644)
        _write_secret(d / "password", TEST_PASSWORD)
        _write_secret(d / "wrong_password", WRONG_PASSWORD)
        _write_secret(d / "key_passphrase", "Key-Pass-8Rt2")
        (d / "sshd_config").write_text(_config(d, server.port), encoding="ascii")
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module", name="sshd")
def sshd_fixture() -> Iterator[Sshd]:
    with running_sshd() as server:
        yield server


@pytest.fixture(scope="module", name="known")
def known_fixture(sshd: Sshd) -> Path:
    return sshd.write_known_hosts()
