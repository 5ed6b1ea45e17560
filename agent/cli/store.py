"""`sentinel store backup` and `sentinel store restore FILE`: a verified copy of the store now,
and putting one back (docs/backup.md)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.cli.output import print_json

if TYPE_CHECKING:
    from agent.config.backup import StoreBackup
    from agent.config.schema import Config
    from agent.store.backup import CopyCheck

EXIT_FAILED = 1
EXIT_USAGE = 2


def add_parser(sub: Any) -> None:
    p = sub.add_parser("store", help="the store: backup, restore")
    ps = p.add_subparsers(dest="store_command", metavar="ACTION", required=True)
    b = ps.add_parser(
        "backup",
        help="make one verified copy of the store now (exit 1 if it fails)",
        description="Copy the store online (SQLite backup API; an agent may keep running), then "
        "check the copy: SQLite integrity check and the evidence chain. Only a verified copy is "
        "kept; copies beyond storage.backup.keep are then deleted, oldest first. "
        "Exit 0 done, 1 failed (the reason is printed), 2 nothing configured.",
    )
    b.add_argument(
        "--dir",
        type=Path,
        help="a local directory for this one copy instead of storage.backup (nothing is pruned there)",
    )
    b.add_argument("--json", action="store_true", help="print the result as JSON")
    r = ps.add_parser(
        "restore",
        help="put a copy back as the store (refused while an agent runs)",
        description="Verify FILE (integrity check and evidence chain with the store's key) and "
        "make it the store. Refused while an agent holds the store, and for a copy that does not "
        "verify. The replaced store is kept as <store>.before-restore-<time>. Exit 0 restored, "
        "1 refused.",
    )
    r.add_argument("file", type=Path, metavar="FILE", help="the copy to restore")
    r.add_argument("--json", action="store_true", help="print the result as JSON")


def run(config: Config, args: argparse.Namespace) -> int:
    if args.store_command == "backup":
        return _backup(config, args)
    if args.store_command == "restore":
        return _restore(config, args)
    raise ValueError(f"not a store command: {args.store_command}")


def _key(config: Config) -> bytes | None:
    """The key the store's writers use (as `sentinel verify`); a copy is checked with it."""
    from agent.store.evidence import evidence_key

    return evidence_key(config.storage, create=False)


def _key_file(config: Config, target: StoreBackup) -> Path | None:
    """The key file created next to the store, when it is to be kept with the copies."""
    from agent.store.evidence import key_path

    if not target.include_key or config.storage.evidence_key is not None:
        return None
    return key_path(config.storage.path)


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{n} B" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1024
    return f"{size:,.1f} TiB"


def _chain_line(check: CopyCheck) -> str:
    if check.chain == "ok":
        head = f", 链头 head {check.head[:16]}…" if check.head else ""
        return f"完整 INTACT ({check.rows} 行 rows{head})"
    return check.chain


def _backup(config: Config, args: argparse.Namespace) -> int:
    from agent.config.backup import StoreBackup
    from agent.store.backup import make_backup
    from agent.store.evidence import KeyFileError

    configured = config.storage.backup
    if args.dir is not None:
        target = StoreBackup(directory=str(args.dir.resolve()))
        if configured is not None:
            target = target.model_copy(update={"include_key": configured.include_key})
    elif configured is not None:
        target = configured
    else:
        print(
            "sentinel: storage.backup is not configured; set it (docs/backup.md) or give --dir DIR "
            "for a one-off copy",
            file=sys.stderr,
        )
        return EXIT_USAGE
    try:
        key = _key(config)
    except KeyFileError as exc:
        print(f"sentinel: {exc}", file=sys.stderr)
        return EXIT_FAILED
    out = make_backup(
        config.storage.path,
        target,
        key,
        key_file=_key_file(config, target),
        prune=args.dir is None,
    )
    if args.json:
        print_json(out.as_json())
        return 0 if out.ok else EXIT_FAILED
    if not out.ok:
        print(f"备份失败 / backup FAILED ({out.target}): {out.error}")
        return EXIT_FAILED
    assert out.check is not None
    print(f"备份完成 / backup done: {out.file}")
    print(f"  大小 / size:            {_size(out.size)} ({out.size:,} bytes), sha256 {out.sha256}")
    print(f"  完整性 / integrity:     {out.check.integrity}")
    print(f"  证据链 / evidence chain: {_chain_line(out.check)}")
    print(f"  用时 / took:            {out.seconds:.1f} s")
    for name in out.pruned:
        print(f"  已删除旧副本 / pruned:  {name}")
    if out.warning:
        print(f"  注意 / warning: {out.warning}")
    return 0


def _restore(config: Config, args: argparse.Namespace) -> int:
    from agent.store.backup import RestoreRefused, restore
    from agent.store.db import StoreLocked
    from agent.store.evidence import KeyFileError

    try:
        done = restore(config.storage.path, args.file, _key(config))
    except StoreLocked as exc:
        reason = f"{exc}; stop the agent first (systemctl stop sentinel)"
    except (RestoreRefused, KeyFileError) as exc:
        reason = str(exc)
    else:
        if args.json:
            print_json(
                {
                    "ok": True,
                    "source": str(done.source),
                    "store": str(done.store),
                    "integrity": done.check.integrity,
                    "chain": done.check.chain,
                    "rows": done.check.rows,
                    "head": done.check.head,
                    "kept_aside": str(done.aside) if done.aside else None,
                    "removed": list(done.removed),
                    "migrated_from": done.migrated_from,
                }
            )
            return 0
        print(f"已恢复 / restored: {done.source} → {done.store}")
        print(f"  完整性 / integrity:     {done.check.integrity}")
        print(f"  证据链 / evidence chain: {_chain_line(done.check)}")
        if done.migrated_from is not None:
            print(f"  存储格式 / schema:      v{done.migrated_from} → 当前版本 (migrated)")
        if done.aside is not None:
            print(f"  原存储已保留 / previous store kept as: {done.aside}")
        for name in done.removed:
            print(f"  已删除 / removed stale: {name}")
        return 0
    if args.json:
        print_json({"ok": False, "source": str(args.file), "error": reason})
    else:
        print(f"拒绝恢复 / restore REFUSED: {reason}", file=sys.stderr)
    return EXIT_FAILED
