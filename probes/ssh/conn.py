"""SSH transport for probes: verified host keys, bounded steps, a per-round connection pool.

Host keys are checked against a known_hosts file *before* any authentication: an unknown key
ends the attempt (UNKNOWN, with its fingerprint, so an engineer can compare it and record it
with `sentinel ssh trust`), a changed key is CRIT. Nothing is ever added silently.

Every blocking step has its own bound, each also cut by the caller's deadline
(time.monotonic()): TCP connect, SSH banner + key exchange, authentication, channel opening
and command output. A server that accepts TCP and then says nothing cannot hold a probe.

paramiko is imported inside functions: most agents never speak SSH, and the configuration
imports the modules of every kind it names.
"""

from __future__ import annotations

import base64
import hashlib
import os
import select
import shlex
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from probes.base import ProbeContext, Status
from probes.ssh.settings import DEFAULT_KNOWN_HOSTS, SshSettings
from probes.tcp.probe import open_connection
from probes.values import SecretError, hostport

if TYPE_CHECKING:
    import paramiko

__all__ = [
    "DEFAULT_KNOWN_HOSTS",
    "CommandResult",
    "SshError",
    "SshPool",
    "SshSession",
    "fetch_host_key",
    "fingerprint",
    "known_hosts_name",
    "ssh_session",
]

_READ_CHUNK = 65536


class SshError(Exception):
    """A connection that could not be made or used. The text never contains a secret."""

    def __init__(self, status: Status, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class CommandResult:
    exit_code: int
    """-1 when the command was killed by a signal, timed out or the channel closed without status."""
    stdout: bytes
    stderr: bytes
    timed_out: bool = False
    truncated: bool = False
    """More than max_bytes arrived on stdout or stderr; the rest was read and dropped."""
    sent_at: float = 0.0
    """time.monotonic() when the command was sent."""
    first_output_at: float | None = None
    """time.monotonic() when the first stdout byte arrived (for clock offsets)."""


# --- host keys -------------------------------------------------------------------------------


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's format: SHA256:<base64 without padding> of the public key blob."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


def known_hosts_name(address: str, port: int) -> str:
    """The host field OpenSSH writes: bare for port 22, `[host]:port` otherwise."""
    return address if port == 22 else f"[{address}]:{port}"


def load_known_hosts(path: str) -> paramiko.HostKeys:
    """A missing file is an empty one (every key unknown); an unreadable one is an error."""
    import paramiko

    keys = paramiko.HostKeys()
    if not os.path.exists(path):
        return keys
    try:
        keys.load(path)
    except (OSError, paramiko.SSHException, ValueError) as exc:
        raise SshError(Status.UNKNOWN, f"known_hosts 文件 {path} 无法读取: {_reason(exc)}") from None
    return keys


def recorded_keys(known: paramiko.HostKeys, address: str, port: int) -> dict[str, paramiko.PKey]:
    found = known.lookup(known_hosts_name(address, port))
    return dict(found) if found is not None else {}


def _key_type_order(recorded: dict[str, paramiko.PKey], offered: list[str]) -> list[str]:
    """Ask the server for a key type we have on record first (as OpenSSH does), so a host
    with RSA and Ed25519 keys is not reported as 'changed' for showing the other one."""
    wanted: list[str] = []
    for kt in recorded:
        wanted += ["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"] if kt == "ssh-rsa" else [kt]
    first = [k for k in wanted if k in offered]
    return first + [k for k in offered if k not in first]


def verify_host_key(settings: SshSettings, known: paramiko.HostKeys, key: paramiko.PKey) -> None:
    name = known_hosts_name(settings.address, settings.port)
    recorded = recorded_keys(known, settings.address, settings.port)
    actual = fingerprint(key)
    if not recorded:
        raise SshError(
            Status.UNKNOWN,
            f"SSH 主机密钥未知 (unknown host key): {name} {key.get_name()} {actual}；"
            f"未尝试登录。核实指纹后运行 `sentinel ssh trust {settings.address} --port {settings.port}"
            f" --known-hosts {settings.known_hosts}` 记录",
        )
    same_type = recorded.get(key.get_name())
    if same_type is not None and same_type.asbytes() == key.asbytes():
        return
    before = ", ".join(f"{k.get_name()} {fingerprint(k)}" for k in recorded.values())
    raise SshError(
        Status.CRIT,
        f"SSH 主机密钥已变更 (host key changed): {name} 记录为 {before}，现为 {key.get_name()} {actual}；"
        "可能是服务器重装或中间人攻击，未登录。核实后用 `sentinel ssh trust --replace` 更新",
    )


# --- connecting ------------------------------------------------------------------------------


def _reason(exc: BaseException) -> str:
    text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return text or type(exc).__name__


def _step_deadline(settings: SshSettings, deadline: float) -> float:
    return min(deadline, time.monotonic() + settings.connect_timeout)


def _remaining(until: float) -> float:
    return max(until - time.monotonic(), 0.001)


def _open_socket(address: str, port: int, until: float, timeout_s: float) -> socket.socket:
    try:
        return open_connection(address, port, until)
    except socket.gaierror as exc:
        raise SshError(Status.CRIT, f"DNS 解析失败 {address}: {exc.strerror or exc}") from None
    except ConnectionRefusedError:
        raise SshError(
            Status.CRIT, f"SSH 端口拒绝连接 (connection refused): {hostport(address, port)}"
        ) from None
    except TimeoutError:
        raise SshError(Status.CRIT, f"{timeout_s:.1f} 秒内无法连接 {hostport(address, port)}") from None
    except OSError as exc:
        raise SshError(Status.CRIT, f"无法连接 {hostport(address, port)}: {_reason(exc)}") from None


def _start_transport(
    sock: socket.socket,
    address: str,
    port: int,
    until: float,
    key_types: Callable[[list[str]], list[str]] | None,
) -> paramiko.Transport:
    """Banner and key exchange, bounded by `until`. The caller owns closing the transport."""
    import paramiko

    t = paramiko.Transport(sock)
    budget = _remaining(until)
    t.banner_timeout = budget
    t.handshake_timeout = budget
    if key_types is not None:
        opts = t.get_security_options()
        opts.key_types = key_types(list(opts.key_types))
    done = threading.Event()
    try:
        t.start_client(event=done)
    except paramiko.SSHException as exc:
        t.close()
        raise SshError(Status.CRIT, f"SSH 握手失败 {hostport(address, port)}: {_reason(exc)}") from None
    # start_client(timeout=...) returns silently on timeout; waiting on our own event does not.
    done.wait(_remaining(until))
    if not done.is_set() or not t.is_active():
        failure = t.get_exception()
        t.close()
        where = hostport(address, port)
        if failure is None or "banner" in str(failure).lower():
            raise SshError(Status.CRIT, f"{where} 未在时限内完成 SSH 握手 (无 SSH 协议标识/banner)") from None
        raise SshError(Status.CRIT, f"SSH 握手失败 {where}: {_reason(failure)}") from None
    return t


def fetch_host_key(address: str, port: int, timeout_s: float) -> paramiko.PKey:
    """The server's host key, after key exchange and without any authentication."""
    until = time.monotonic() + timeout_s
    sock = _open_socket(address, port, until, timeout_s)
    t = _start_transport(sock, address, port, until, None)
    try:
        return t.get_remote_server_key()
    finally:
        t.close()


def _load_key(settings: SshSettings) -> paramiko.PKey:
    import paramiko

    assert settings.key_file is not None
    passphrase = settings.key_passphrase.reveal().encode() if settings.key_passphrase is not None else None
    try:
        # bytes, as cryptography (which reads the key) wants them; the stub says str.
        return paramiko.PKey.from_path(settings.key_file, passphrase)  # type: ignore[arg-type]
    except (paramiko.PasswordRequiredException, TypeError):
        # cryptography signals a missing passphrase with TypeError, paramiko with its own class.
        raise SshError(Status.UNKNOWN, f"私钥 {settings.key_file} 已加密，需要 key_passphrase") from None
    except (OSError, paramiko.SSHException, ValueError) as exc:
        # Never the passphrase: paramiko's texts name the file and the problem only.
        raise SshError(Status.UNKNOWN, f"私钥 {settings.key_file} 无法读取: {_reason(exc)}") from None


def _authenticate(t: paramiko.Transport, settings: SshSettings, until: float) -> None:
    import paramiko

    tried: list[str] = []
    t.auth_timeout = _remaining(until)
    try:
        if settings.key_file is not None:
            key = _load_key(settings)
            tried.append("publickey")
            try:
                t.auth_publickey(settings.user, key)
                return
            except paramiko.AuthenticationException:
                if settings.password is None:
                    raise
        if settings.password is not None:
            password = settings.password.reveal()
            tried.append("password")
            t.auth_timeout = _remaining(until)
            t.auth_password(settings.user, password)
            return
    except SecretError as exc:
        raise SshError(Status.UNKNOWN, f"SSH 凭据无法读取: {exc}") from None
    except paramiko.BadAuthenticationType as exc:
        allowed = ", ".join(exc.allowed_types) or "无"
        raise SshError(Status.CRIT, f"SSH 认证失败 {settings.where}: 服务器只接受 {allowed}") from None
    except paramiko.AuthenticationException:
        raise SshError(
            Status.CRIT, f"SSH 认证失败 (authentication failed) {settings.where}，方式: {'+'.join(tried)}"
        ) from None
    except paramiko.SSHException as exc:
        text = _reason(exc)
        if time.monotonic() >= until or "timeout" in text.lower():
            raise SshError(Status.CRIT, f"SSH 认证超时 {settings.where}") from None
        raise SshError(Status.CRIT, f"SSH 认证出错 {settings.where}: {text}") from None
    if not t.is_authenticated():
        raise SshError(Status.CRIT, f"SSH 认证失败 {settings.where}")


def connect(settings: SshSettings, deadline: float) -> paramiko.Transport:
    """An authenticated transport, or SshError. No authentication before the host key is trusted."""
    known = load_known_hosts(settings.known_hosts)
    recorded = recorded_keys(known, settings.address, settings.port)
    sock = _open_socket(
        settings.address, settings.port, _step_deadline(settings, deadline), settings.connect_timeout
    )
    t = _start_transport(
        sock,
        settings.address,
        settings.port,
        _step_deadline(settings, deadline),
        (lambda offered: _key_type_order(recorded, offered)) if recorded else None,
    )
    try:
        verify_host_key(settings, known, t.get_remote_server_key())
        _authenticate(t, settings, _step_deadline(settings, deadline))
    except BaseException:
        t.close()
        raise
    return t


# --- sessions ----------------------------------------------------------------------------------


@dataclass(eq=False)
class _Conn:
    key: tuple[Any, ...]
    host: tuple[str, int, str]
    transport: paramiko.Transport
    created_at: float
    last_used: float
    sftp_client: paramiko.SFTPClient | None = None
    broken: bool = False
    uses: int = field(default=0)

    def alive(self) -> bool:
        return not self.broken and self.transport.is_active() and self.transport.is_authenticated()

    def close(self) -> None:
        if self.sftp_client is not None:
            try:
                self.sftp_client.close()
            except (OSError, EOFError):
                pass  # the transport below is closed next either way
        self.transport.close()


class SshSession:
    """One authenticated connection, exclusively held until the `with` block ends."""

    def __init__(self, conn: _Conn, deadline: float) -> None:
        self._conn = conn
        self.deadline = deadline
        self.reused = conn.uses > 1
        """True when the connection came from the pool (already used by an earlier check)."""

    @property
    def transport(self) -> paramiko.Transport:
        return self._conn.transport

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def run(self, command: str, timeout_s: float, max_bytes: int = 1 << 20) -> CommandResult:
        """Run `command` (a shell command line: build it with shlex.join) and collect its output.

        Output beyond max_bytes per stream is read and dropped so the remote side never blocks.
        On timeout the channel is closed (the remote sshd then hangs up the command's session)
        and whatever arrived is returned with timed_out=True.
        """
        import paramiko

        until = min(self.deadline, time.monotonic() + timeout_s)
        try:
            chan = self.transport.open_session(timeout=_remaining(until))
        except (paramiko.SSHException, OSError, EOFError) as exc:
            self._conn.broken = True
            raise SshError(Status.CRIT, f"SSH 通道无法打开: {_reason(exc)}") from None
        out = bytearray()
        err = bytearray()
        truncated = False
        first_output_at: float | None = None
        try:
            chan.settimeout(_remaining(until))
            chan.fileno()  # a pipe that becomes readable on stdout or stderr data, or on close
            sent_at = time.monotonic()
            chan.exec_command(command)
            chan.shutdown_write()  # commands that read stdin see EOF instead of waiting forever
            while True:
                while chan.recv_ready():
                    chunk = chan.recv(_READ_CHUNK)
                    if first_output_at is None and chunk:
                        first_output_at = time.monotonic()
                    truncated |= _append(out, chunk, max_bytes)
                while chan.recv_stderr_ready():
                    truncated |= _append(err, chan.recv_stderr(_READ_CHUNK), max_bytes)
                if chan.exit_status_ready() and not chan.recv_ready() and not chan.recv_stderr_ready():
                    break
                left = until - time.monotonic()
                if left <= 0:
                    return CommandResult(
                        -1, bytes(out), bytes(err), True, truncated, sent_at, first_output_at
                    )
                select.select([chan], [], [], min(left, 1.0))
            return CommandResult(
                chan.recv_exit_status(), bytes(out), bytes(err), False, truncated, sent_at, first_output_at
            )
        except (paramiko.SSHException, OSError, EOFError) as exc:
            self._conn.broken = True
            raise SshError(Status.CRIT, f"SSH 命令执行中断: {_reason(exc)}") from None
        finally:
            chan.close()

    def run_args(self, args: list[str], timeout_s: float, max_bytes: int = 1 << 20) -> CommandResult:
        """Run a command given as arguments; each is quoted, none is interpreted by the shell."""
        return self.run(shlex.join(args), timeout_s, max_bytes)

    def sftp(self) -> paramiko.SFTPClient:
        """The connection's SFTP client (opened on first use, kept with a pooled connection).
        Each call re-arms its channel timeout to the time left before the deadline."""
        import paramiko

        conn = self._conn
        if conn.sftp_client is None:
            try:
                chan = conn.transport.open_session(timeout=_remaining(self.deadline))
                chan.settimeout(_remaining(self.deadline))
                chan.invoke_subsystem("sftp")
                conn.sftp_client = paramiko.SFTPClient(chan)
            except (paramiko.SSHException, OSError, EOFError) as exc:
                conn.broken = True
                raise SshError(Status.CRIT, f"SFTP 无法打开: {_reason(exc)}") from None
        channel = conn.sftp_client.get_channel()
        if channel is not None:
            channel.settimeout(_remaining(self.deadline))
        return conn.sftp_client


def _append(buf: bytearray, chunk: bytes, max_bytes: int) -> bool:
    room = max_bytes - len(buf)
    if room > 0:
        buf += chunk[:room]
    return len(chunk) > room


# --- pool ----------------------------------------------------------------------------------------


def _pool_key(settings: SshSettings) -> tuple[Any, ...]:
    # Everything that decides whether a connection would be made the same way: a check with
    # another key file or known_hosts file must not borrow a connection verified differently.
    return (
        settings.address,
        settings.port,
        settings.user,
        settings.password,
        settings.key_file,
        settings.key_passphrase,
        os.path.abspath(settings.known_hosts),
    )


class SshPool:
    """Connections shared by checks of one round, at most `max_per_host` per (address, port, user).

    A connection is held by one session at a time. Connecting happens outside the pool's lock,
    so a slow or dead host only delays checks that wait for a slot on that same host.
    """

    def __init__(
        self, max_idle_s: float = 60.0, max_per_host: int = 2, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if max_per_host < 1:
            raise ValueError("max_per_host must be at least 1")
        self.max_idle_s = max_idle_s
        self.max_per_host = max_per_host
        self._clock = clock
        self._cond = threading.Condition()
        self._idle: dict[tuple[Any, ...], list[_Conn]] = {}
        self._count: dict[tuple[str, int, str], int] = {}
        self._closed = False
        self.connects = 0
        """Connections opened so far (for tests and the agent's own metrics)."""

    def acquire(self, settings: SshSettings, deadline: float) -> _Conn:
        key = _pool_key(settings)
        host = (settings.address, settings.port, settings.user)
        to_close: list[_Conn] = []
        conn: _Conn | None = None
        with self._cond:
            while True:
                if self._closed:
                    raise SshError(Status.UNKNOWN, "SSH 连接池已关闭 (agent stopping)")
                to_close += self._expire_locked()
                idle = self._idle.get(key, [])
                while idle and conn is None:
                    candidate = idle.pop()
                    if candidate.alive():
                        conn = candidate
                    else:
                        self._count[candidate.host] -= 1
                        to_close.append(candidate)
                if conn is not None:
                    break
                if self._count.get(host, 0) < self.max_per_host:
                    self._count[host] = self._count.get(host, 0) + 1  # reserve the slot
                    break
                if not self._evict_other_idle_locked(host, key, to_close):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        self._close_all(to_close)
                        raise SshError(
                            Status.UNKNOWN,
                            f"{settings.where} 的 {self.max_per_host} 个 SSH 连接都在使用中，时限内未空出",
                        )
                    self._cond.wait(left)
        self._close_all(to_close)
        if conn is None:
            try:
                transport = connect(settings, deadline)
            except BaseException:
                with self._cond:
                    self._count[host] -= 1
                    self._cond.notify_all()
                raise
            now = self._clock()
            conn = _Conn(key, host, transport, now, now)
            with self._cond:
                self.connects += 1
        conn.uses += 1
        return conn

    def release(self, conn: _Conn) -> None:
        with self._cond:
            if self._closed or not conn.alive():
                self._count[conn.host] -= 1
                drop = True
            else:
                conn.last_used = self._clock()
                self._idle.setdefault(conn.key, []).append(conn)
                drop = False
            self._cond.notify_all()
        if drop:
            conn.close()

    def close_idle(self) -> None:
        """Close connections idle for longer than max_idle_s (call it between rounds)."""
        with self._cond:
            expired = self._expire_locked()
            self._cond.notify_all()
        self._close_all(expired)

    def close_all(self) -> None:
        """Close every idle connection now; busy ones are closed when released. Final."""
        with self._cond:
            self._closed = True
            idle = [c for conns in self._idle.values() for c in conns]
            self._idle.clear()
            for c in idle:
                self._count[c.host] -= 1
            self._cond.notify_all()
        self._close_all(idle)

    def stats(self) -> dict[str, int]:
        with self._cond:
            return {
                "connects": self.connects,
                "open": sum(self._count.values()),
                "idle": sum(len(v) for v in self._idle.values()),
            }

    def _expire_locked(self) -> list[_Conn]:
        now = self._clock()
        expired: list[_Conn] = []
        for key, conns in list(self._idle.items()):
            keep = [c for c in conns if now - c.last_used <= self.max_idle_s and c.alive()]
            expired += [c for c in conns if c not in keep]
            if keep:
                self._idle[key] = keep
            else:
                del self._idle[key]
        for c in expired:
            self._count[c.host] -= 1
        return expired

    def _evict_other_idle_locked(
        self, host: tuple[str, int, str], key: tuple[Any, ...], out: list[_Conn]
    ) -> bool:
        """The host is at its limit but an idle connection of another login setting to it
        exists: close that one to make room rather than wait for nothing."""
        for other, conns in self._idle.items():
            if other != key and conns and conns[0].host == host:
                victim = conns.pop()
                if not conns:
                    del self._idle[other]
                self._count[host] -= 1
                out.append(victim)
                return True
        return False

    @staticmethod
    def _close_all(conns: list[_Conn]) -> None:
        for c in conns:
            c.close()


@contextmanager
def ssh_session(settings: SshSettings, ctx: ProbeContext, deadline: float) -> Iterator[SshSession]:
    """An authenticated session until the block ends; `deadline` is a time.monotonic() value.

    Uses the agent's pool (ctx.shared["ssh"]) when there is one, else a private connection
    closed at exit. An exception inside the block discards the connection: whatever went wrong
    may have left it half-used.
    """
    pool = ctx.shared.get("ssh")
    if not isinstance(pool, SshPool):
        transport = connect(settings, deadline)
        now = time.monotonic()
        conn = _Conn(
            _pool_key(settings), (settings.address, settings.port, settings.user), transport, now, now, uses=1
        )
        try:
            yield SshSession(conn, deadline)
        finally:
            conn.close()
        return
    conn = pool.acquire(settings, deadline)
    try:
        yield SshSession(conn, deadline)
    except BaseException:
        conn.broken = True
        raise
    finally:
        pool.release(conn)
