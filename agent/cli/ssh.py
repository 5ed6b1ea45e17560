"""`sentinel ssh trust HOST`: record a server's SSH host key after showing its fingerprint.

The SSH probes never accept an unknown key by themselves; this command is the only way a key
gets into the known_hosts file, and only after a person compared the fingerprint (on a TTY)
or said --yes. Nothing is authenticated: the key is read during key exchange.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, TextIO

from probes.ssh.conn import (
    DEFAULT_KNOWN_HOSTS,
    SshError,
    fetch_host_key,
    fingerprint,
    known_hosts_name,
    load_known_hosts,
    recorded_keys,
)

EXIT_OK = 0
EXIT_REFUSED = 1


def add_parser(subparsers: Any) -> None:
    ssh = subparsers.add_parser("ssh", help="SSH helpers for remote checks (record host keys)")
    actions = ssh.add_subparsers(dest="ssh_command", metavar="ACTION", required=True)
    t = actions.add_parser(
        "trust",
        help="show a server's SSH host key fingerprint and record it in the known_hosts file",
        description="Connect to HOST, read its host key without logging in, print the key type and "
        "SHA256 fingerprint, and after confirmation (a TTY prompt, or --yes) append it to the "
        "known_hosts file used by ssh_host, ssh_command and SFTP checks. Compare the fingerprint "
        "with `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` run on the server itself.",
    )
    t.add_argument(
        "host", metavar="HOST", help="host name or IP address, as written in the check's ssh.address"
    )
    t.add_argument("--port", type=int, default=22, help="SSH port (default: %(default)s)")
    t.add_argument(
        "--known-hosts",
        default=DEFAULT_KNOWN_HOSTS,
        help="known_hosts file, relative to the working directory (default: %(default)s)",
    )
    t.add_argument("--yes", action="store_true", help="record without asking (for scripts)")
    t.add_argument(
        "--replace",
        action="store_true",
        help="replace a different key already recorded for HOST (after a verified server reinstall)",
    )
    t.add_argument("--timeout", type=float, default=10.0, help="seconds to connect and read the key")


def run(
    args: argparse.Namespace,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    if args.ssh_command != "trust":
        raise ValueError(f"unknown ssh action {args.ssh_command!r}")
    return trust(args, stdin or sys.stdin, stdout or sys.stdout, stderr or sys.stderr)


def trust(args: argparse.Namespace, stdin: TextIO, out: TextIO, err: TextIO) -> int:
    host = str(args.host).strip("[]")
    name = known_hosts_name(host, args.port)
    path = Path(args.known_hosts)
    try:
        key = fetch_host_key(host, args.port, args.timeout)
        known = load_known_hosts(str(path))
    except SshError as exc:
        print(f"sentinel: {exc.message}", file=err)
        return EXIT_REFUSED
    shown = f"{key.get_name()} {fingerprint(key)}"
    print(f"{name} 的 SSH 主机密钥: {shown}", file=out)

    recorded = recorded_keys(known, host, args.port)
    same_type = recorded.get(key.get_name())
    if same_type is not None and same_type.asbytes() == key.asbytes():
        print(f"已信任 (already trusted): {path} 中已记录同一密钥，无需改动", file=out)
        return EXIT_OK
    if recorded and not args.replace:
        before = "; ".join(f"{k.get_name()} {fingerprint(k)}" for k in recorded.values())
        if same_type is not None:
            print(
                f"sentinel: {name} 的主机密钥已变更 (host key changed)！记录为 {before}，现为 {shown}。"
                "可能是服务器重装，也可能是中间人攻击：向服务器管理员核实新指纹后再用 --replace 替换",
                file=err,
            )
            return EXIT_REFUSED
        print(f"{path} 已记录 {name} 的其他类型密钥: {before}；将追加 {key.get_name()}", file=out)

    if not args.yes:
        if not stdin.isatty():
            print("sentinel: 非交互运行时须加 --yes 才会记录 (not a TTY; use --yes)", file=err)
            return EXIT_REFUSED
        out.write("请在服务器上核对此指纹。确认信任并记录? [y/N] ")
        out.flush()
        answer = stdin.readline().strip().lower()
        if answer not in ("y", "yes", "是"):
            print("未记录 (not recorded)", file=out)
            return EXIT_REFUSED

    line = f"{name} {key.get_name()} {key.get_base64()}\n"
    if recorded and args.replace:
        _rewrite_without(path, host, args.port, line)
        print(f"已替换 {name} 的主机密钥 → {path}", file=out)
    else:
        _append(path, line)
        print(f"已记录 {name} {shown} → {path}", file=out)
    return EXIT_OK


def _ensure_dir(path: Path) -> None:
    if path.parent != Path():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)


def _append(path: Path, line: str) -> None:
    _ensure_dir(path)
    # A hand-edited file may lack its last newline; the new entry must not join that line.
    needs_newline = path.exists() and path.stat().st_size > 0 and not path.read_bytes().endswith(b"\n")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "a", encoding="ascii") as fh:
        fh.write(("\n" if needs_newline else "") + line)


def _names_match(entry_names: list[str], name: str) -> bool:
    import paramiko

    for n in entry_names:
        if n == name:
            return True
        if n.startswith("|1|") and paramiko.HostKeys.hash_host(name, n) == n:
            return True
    return False


def _rewrite_without(path: Path, host: str, port: int, new_line: str) -> None:
    """Drop every line for this host (plain or hashed), add the new one; atomic replace, 0600."""
    import paramiko

    name = known_hosts_name(host, port)
    kept: list[str] = []
    for raw in path.read_text(encoding="ascii", errors="replace").splitlines(keepends=True):
        stripped = raw.strip()
        entry = None
        if stripped and not stripped.startswith("#"):
            try:
                entry = paramiko.hostkeys.HostKeyEntry.from_line(stripped)
            except (paramiko.SSHException, ValueError):
                entry = None  # a line paramiko cannot read stays as it was
        if entry is not None and _names_match(entry.hostnames, name):
            continue
        kept.append(raw if raw.endswith("\n") else raw + "\n")
    kept.append(new_line)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".known_hosts.")
    try:
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.writelines(kept)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
