"""Reading files the same way on this machine and on a remote one over SFTP.

`backup_files` and `log` only need a handful of operations: list a directory, expand a glob,
stat a path, read a byte range from an open file (so the identity and the bytes come from
the same file even while it is being rotated), and the free space of a volume. This module
offers them behind one small interface with two implementations:

- `LocalAccess`: plain os calls (works on Windows Server too: glob and paths are the OS's).
- `SftpAccess`: a paramiko SFTPClient from the SSH session; every request is bounded by the
  probe's deadline through the channel timeout. SFTP carries no inode numbers, so `FileInfo.ino`
  is None there and callers fall back to a fingerprint of the file's first bytes. SFTP has no
  statvfs in paramiko either, so free space comes from `df -P -B1` over the session's `run()`
  (None when the account may not run commands, e.g. an sftp-only chroot).

Errors: a problem with one file is an `OSError` (FileNotFoundError, PermissionError, ...);
a broken or stalled connection is `AccessError`, which ends the whole run.
"""

from __future__ import annotations

import glob as _glob
import os
import posixpath
import shlex
import stat as _stat
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any, Protocol

from probes.base import ProbeContext
from probes.ssh.settings import SshSettings

if TYPE_CHECKING:
    import paramiko

__all__ = [
    "AccessError",
    "FileAccess",
    "FileInfo",
    "LocalAccess",
    "OpenFile",
    "SftpAccess",
    "open_access",
    "parse_df",
]


class AccessError(Exception):
    """The remote side cannot be reached or stopped answering: nothing more can be read."""


@dataclass(frozen=True, slots=True)
class FileInfo:
    path: str
    size: int
    mtime: float
    ino: int | None = None
    dev: int | None = None
    is_dir: bool = False

    @property
    def name(self) -> str:
        return _basename(self.path)


def _basename(path: str) -> str:
    return path.replace("\\", "/").rsplit("/", 1)[-1]


class OpenFile(Protocol):
    def info(self) -> FileInfo:
        """Size, mtime and identity of the open file (fstat), not of whatever the path names now."""
        ...

    def read_at(self, offset: int, size: int) -> bytes:
        """Up to `size` bytes from `offset`; fewer only at the end of the file."""
        ...


class FileAccess(Protocol):
    where: str
    """'本机' or 'user@host:port', for findings."""
    sep: str

    def listdir(self, directory: str) -> list[FileInfo]:
        """Direct children (files and directories, `is_dir` set); OSError if unreadable."""
        ...

    def glob(self, pattern: str) -> list[str]:
        """Existing regular files matching a path pattern (wildcards in any component), sorted."""
        ...

    def stat(self, path: str) -> FileInfo | None:
        """None when nothing exists at `path`."""
        ...

    def open(self, path: str) -> AbstractContextManager[OpenFile]: ...

    def free_bytes(self, directory: str) -> int | None:
        """Bytes available to the agent's user on the volume holding `directory`; None if unknown."""
        ...

    def join(self, directory: str, name: str) -> str: ...

    def dirname(self, path: str) -> str: ...


# ---------------------------------------------------------------------------- local


class _LocalFile:
    __slots__ = ("_fd", "_path")

    def __init__(self, fd: int, path: str) -> None:
        self._fd = fd
        self._path = path

    def info(self) -> FileInfo:
        return _local_info(self._path, os.fstat(self._fd))

    def read_at(self, offset: int, size: int) -> bytes:
        chunks: list[bytes] = []
        while size > 0:
            if hasattr(os, "pread"):
                chunk = os.pread(self._fd, size, offset)
            else:  # Windows has no pread
                os.lseek(self._fd, offset, os.SEEK_SET)
                chunk = os.read(self._fd, size)
            if not chunk:
                break
            chunks.append(chunk)
            offset += len(chunk)
            size -= len(chunk)
        return b"".join(chunks)


def _local_info(path: str, st: os.stat_result) -> FileInfo:
    # On Windows st_ino is the NTFS file index (non-zero since Python 3.5) and st_dev the volume
    # serial, so rotation by rename is detected there as well.
    return FileInfo(
        path=path,
        size=st.st_size,
        mtime=st.st_mtime,
        ino=st.st_ino or None,
        dev=st.st_dev or None,
        is_dir=_stat.S_ISDIR(st.st_mode),
    )


class LocalAccess:
    where = "本机"
    sep = os.sep

    def listdir(self, directory: str) -> list[FileInfo]:
        out: list[FileInfo] = []
        with os.scandir(directory) as entries:
            for entry in entries:
                try:
                    st = entry.stat()
                except FileNotFoundError:
                    continue  # removed while listing
                out.append(_local_info(entry.path, st))
        return out

    def glob(self, pattern: str) -> list[str]:
        return sorted(p for p in _glob.glob(pattern) if os.path.isfile(p))

    def stat(self, path: str) -> FileInfo | None:
        try:
            return _local_info(path, os.stat(path))
        except FileNotFoundError:
            return None

    @contextmanager
    def open(self, path: str) -> Iterator[OpenFile]:
        # O_NONBLOCK: a FIFO at a log path must not block the probe on open; regular files ignore it.
        flags = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_NONBLOCK", 0)
        fd = os.open(path, flags)
        try:
            yield _LocalFile(fd, path)
        finally:
            os.close(fd)

    def free_bytes(self, directory: str) -> int | None:
        if hasattr(os, "statvfs"):
            st = os.statvfs(directory)
            return st.f_bavail * st.f_frsize
        import shutil  # Windows: no statvfs

        return shutil.disk_usage(directory).free

    def join(self, directory: str, name: str) -> str:
        return os.path.join(directory, name)

    def dirname(self, path: str) -> str:
        return os.path.dirname(path)


# ---------------------------------------------------------------------------- SFTP


Runner = Callable[[str, float], Any]
"""`SshSession.run(command, timeout_s)` -> probes.ssh.conn.CommandResult, or None if it failed."""


def parse_df(output: str) -> int | None:
    """Available bytes from `df -P -B1 DIR` output (the column before 'Capacity')."""
    lines = [line for line in output.splitlines() if line.strip()]
    if len(lines) < 2:
        return None
    fields = lines[-1].split()
    # The file system name and the mount point may contain spaces; the capacity column
    # ("42%") is the one anchor that cannot be confused.
    for i, token in enumerate(fields):
        if i >= 1 and token.endswith("%") and token[:-1].isdigit():
            try:
                return int(fields[i - 1])
            except ValueError:
                return None
    return None


_SFTP_REQUEST = 32768
"""paramiko's largest read request."""
_PIPELINE_BYTES = 256 * 1024


class _SftpFile:
    __slots__ = ("_owner", "_fh", "_path")

    def __init__(self, owner: SftpAccess, fh: paramiko.SFTPFile, path: str) -> None:
        self._owner = owner
        self._fh = fh
        self._path = path

    def info(self) -> FileInfo:
        with self._owner.guard():
            attrs = self._fh.stat()
        return _sftp_info(self._path, attrs)

    def read_at(self, offset: int, size: int) -> bytes:
        chunks: list[bytes] = []
        with self._owner.guard():
            if size >= _PIPELINE_BYTES:
                # One request at a time costs a round trip per 32 KiB (about 11 MB/s even on
                # loopback); readv keeps them all in flight. It must not ask past the end.
                end = min(offset + size, int(self._fh.stat().st_size or 0))
                if end <= offset:
                    return b""
                ranges = [(o, min(_SFTP_REQUEST, end - o)) for o in range(offset, end, _SFTP_REQUEST)]
                try:
                    return b"".join(self._fh.readv(ranges))
                except EOFError:
                    pass  # truncated meanwhile: read what is there one request at a time
            self._fh.seek(offset)
            while size > 0:
                self._owner.arm()
                chunk = self._fh.read(size)
                if not chunk:
                    break
                chunks.append(chunk)
                size -= len(chunk)
        return b"".join(chunks)


def _sftp_info(path: str, attrs: Any) -> FileInfo:
    mode = attrs.st_mode or 0
    return FileInfo(
        path=path,
        size=int(attrs.st_size or 0),
        mtime=float(attrs.st_mtime or 0),
        is_dir=_stat.S_ISDIR(mode),
    )


class SftpAccess:
    sep = "/"

    def __init__(
        self, sftp: paramiko.SFTPClient, where: str, deadline: float, run: Runner | None = None
    ) -> None:
        """`deadline` is a time.monotonic() instant; no request may wait past it."""
        self._sftp = sftp
        self._run = run
        self.where = where
        self.deadline = deadline

    def arm(self) -> None:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise AccessError("时间预算已用完")
        self._sftp.get_channel().settimeout(remaining)  # type: ignore[union-attr]

    @contextmanager
    def guard(self) -> Iterator[None]:
        """Turn transport failures into AccessError; per-file OSErrors pass through."""
        import paramiko

        self.arm()
        try:
            yield
        except TimeoutError:
            raise AccessError("SFTP 请求超时") from None
        except (EOFError, paramiko.SSHException) as exc:
            raise AccessError(f"SFTP 连接中断: {type(exc).__name__}") from None
        except OSError as exc:
            if exc.errno is None and "closed" in str(exc).lower():
                raise AccessError("SFTP 连接已关闭") from None
            raise

    def listdir(self, directory: str) -> list[FileInfo]:
        with self.guard():
            attrs = self._sftp.listdir_attr(directory)
        return [_sftp_info(posixpath.join(directory, a.filename), a) for a in attrs]

    def glob(self, pattern: str) -> list[str]:
        if not _has_magic(pattern):
            info = self.stat(pattern)
            return [pattern] if info is not None and not info.is_dir else []
        parts = pattern.split("/")
        bases = ["/" if pattern.startswith("/") else "."]
        for i, part in enumerate(p for p in parts if p):
            last = i == len([p for p in parts if p]) - 1
            nxt: list[str] = []
            for base in bases:
                if not _has_magic(part):
                    nxt.append(posixpath.join(base, part))
                    continue
                try:
                    entries = self.listdir(base)
                except (FileNotFoundError, PermissionError, NotADirectoryError):
                    continue
                for e in entries:
                    if fnmatchcase(e.name, part) and (last or e.is_dir) and not e.name.startswith("."):
                        nxt.append(e.path)
            bases = nxt
        files = []
        for path in bases:
            info = self.stat(path)
            if info is not None and not info.is_dir:
                files.append(path if pattern.startswith("/") else posixpath.normpath(path))
        return sorted(files)

    def stat(self, path: str) -> FileInfo | None:
        try:
            with self.guard():
                attrs = self._sftp.stat(path)
        except FileNotFoundError:
            return None
        return _sftp_info(path, attrs)

    @contextmanager
    def open(self, path: str) -> Iterator[OpenFile]:
        with self.guard():
            fh = self._sftp.open(path, "rb")
        try:
            yield _SftpFile(self, fh, path)
        finally:
            try:
                with self.guard():
                    fh.close()
            except (AccessError, OSError):
                pass  # the read result stands; the session is closed by its owner anyway

    def free_bytes(self, directory: str) -> int | None:
        if self._run is None:
            return None
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            return None
        # LC_ALL=C: fixed column headers; -P: one line per file system, never wrapped.
        result = self._run(f"LC_ALL=C df -P -B1 -- {shlex.quote(directory)}", remaining)
        if result is None or result.timed_out or result.exit_code != 0:
            return None
        return parse_df(result.stdout.decode("utf-8", errors="replace"))

    def join(self, directory: str, name: str) -> str:
        return posixpath.join(directory, name)

    def dirname(self, path: str) -> str:
        return posixpath.dirname(path)


def _has_magic(text: str) -> bool:
    return any(c in text for c in "*?[")


# ---------------------------------------------------------------------------- factory


@contextmanager
def open_access(ssh: SshSettings | None, ctx: ProbeContext, deadline: float) -> Iterator[FileAccess]:
    """Local access when `ssh` is None, else SFTP over one SSH session (pooled when the agent
    shares a pool in ctx.shared). `deadline` is a time.monotonic() instant.

    Connection failures surface as probes.ssh.conn.SshError (status and message), for the
    probe to turn into its result.
    """
    if ssh is None:
        yield LocalAccess()
        return
    from probes.ssh.conn import SshError, ssh_session

    with ssh_session(ssh, ctx, deadline) as session:
        sftp = session.sftp()

        def run(command: str, timeout_s: float) -> Any:
            try:
                return session.run(command, timeout_s)
            except SshError:
                return None  # no free space figure; the files themselves were still read

        yield SftpAccess(sftp, ssh.where, deadline, run)
