"""`sentinel verify` and `sentinel evidence export`: prove the stored history is intact, and hand
the committee an archive they can check without the agent."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from agent.cli.output import at_ms, fmt_time, iso, key_text, print_json

if TYPE_CHECKING:
    from agent.config.schema import Config

EXIT_BROKEN = 1


def add_parser(sub: Any) -> None:
    v = sub.add_parser(
        "verify",
        help="recompute the evidence hash chain; name the first broken link (exit 1)",
        description="Recompute every evidence chain (results, interval and run logs, fault events, "
        "maintenance and exclusion ledgers, approvals, configuration versions, pruning checkpoints) "
        "and check that the intervals and agent runs availability reads agree with their logs. Every "
        "write seals what it wrote, so a row without a link is named too. Uses storage.evidence_key "
        "or the key file next to the store (<store>.key). Exit 0 intact, 1 broken.",
    )
    v.add_argument(
        "--period",
        help="only rows of this period: 2026, 2026-11, 2026-Q4, 2026-11-23, FROM..TO, service, service:2026",
    )
    v.add_argument("--json", action="store_true", help="print the result as JSON")
    e = sub.add_parser("evidence", help="evidence for the acceptance committee")
    es = e.add_subparsers(dest="evidence_command", metavar="ACTION", required=True)
    x = es.add_parser(
        "export",
        help="write a self-contained archive (data + stdlib-only verify.py) for a period",
        description="Write a zip with the period's chained rows, what availability is computed from, "
        "the agent's figures, a README (中文/English) and verify.py (Python standard library only).",
    )
    x.add_argument(
        "--period",
        required=True,
        help="2026, 2026-11, 2026-Q4, 2026-11-23, FROM..TO, service or service:2026",
    )
    x.add_argument("--out", type=Path, required=True, help="archive to write, e.g. evidence-2026.zip")
    x.add_argument("--at", help="compute the figures as of this local time 'YYYY-MM-DD HH:MM' (default: now)")
    x.add_argument("--json", action="store_true", help="print what was written as JSON")


class Progress:
    """A bar on a terminal; otherwise a plain line per table and every 10 %."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self._last: tuple[str, int] = ("", -1)
        self._t0 = time.monotonic()

    def __call__(self, table: str, done: int, total: int) -> None:
        pct = 100 if total <= 0 else min(100, done * 100 // total)
        step = pct if self.tty else pct // 10 * 10
        if (table, step) == self._last:
            return
        self._last = (table, step)
        rate = done / max(time.monotonic() - self._t0, 1e-6)
        if self.tty:
            bar = "#" * (pct // 4) + "-" * (25 - pct // 4)
            self.stream.write(f"\r  {table:22} [{bar}] {pct:3d}%  {done:,}/{total:,} rows  {rate:,.0f}/s")
            if pct == 100:
                self.stream.write("\n")
        else:
            self.stream.write(f"  verify {table}: {pct}% ({done}/{total} rows)\n")
        self.stream.flush()
        if pct == 100:
            self._t0 = time.monotonic()


def _period(config: Config, text: str | None) -> Span:
    if not text:
        return None, None, None
    from agent.cli.output import now_ms
    from agent.clock.periods import resolve_period

    p = resolve_period(text, config.site.tz, config.contract, now_ms())
    return p.label, p.start_ms, p.end_ms


def run(config: Config, args: argparse.Namespace) -> int:
    try:
        period = _period(config, args.period)
    except ValueError as exc:
        print(f"sentinel: {exc}", file=sys.stderr)
        return 2
    if args.command == "verify":
        return _verify(args, config, period)
    if args.command == "evidence" and args.evidence_command == "export":
        return _export(args, config, period)
    raise ValueError(f"not an evidence command: {args.command}")


def _key(config: Config) -> bytes | None:
    """The key the store's writers use (configured, or the key file next to the store); a
    reader never creates one."""
    from agent.store.evidence import evidence_key

    return evidence_key(config.storage, create=False)


Span = tuple[str | None, int | None, int | None]
"""A period's label, start and end (UTC ms); all None when no period was given."""


def _verify(args: argparse.Namespace, config: Config, period: Span) -> int:
    from agent.store import evidence as E
    from agent.store.db import Store

    label, start, end = period
    store = Store(config.storage.path, readonly=True)
    t0 = time.monotonic()
    rep = E.verify(store.db, _key(config), start, end, None if args.json else Progress(sys.stderr))
    elapsed = time.monotonic() - t0
    rate = rep.rows / elapsed if elapsed > 0 else 0.0
    head = rep.head
    if args.json:
        print_json(
            {
                "ok": rep.ok,
                "period": label,
                "keyed": rep.keyed,
                "key_id": rep.key_id,
                "legacy_keyless": rep.legacy_keyless,
                "head": head.digest_hex if head else None,
                "head_sealed_at": iso(head.sealed_at_ms, config.site.tz) if head else None,
                "rows_checked": rep.rows,
                "seconds": round(elapsed, 3),
                "tables": [
                    {
                        "table": t.table,
                        "rows": t.rows,
                        "sealed": t.sealed,
                        "unsealed": t.unsealed,
                        "pruned": t.pruned,
                        "checkpoints": t.checkpoints,
                    }
                    for t in rep.tables
                ],
                "problems": [vars(p) for p in rep.problems],
            }
        )
        return 0 if rep.ok else EXIT_BROKEN
    print(f"证据链核验 / evidence chain{f' — {label}' if label else ''}")
    print(f"{'TABLE':22} {'ROWS':>10} {'LINKED':>10} {'UNSEALED':>9} {'PRUNED':>10}")
    for t in rep.tables:
        print(f"{t.table:22} {t.rows:>10} {t.sealed:>10} {t.unsealed:>9} {t.pruned:>10}")
    print(f"{rep.rows} rows in {elapsed:.1f} s ({rate:,.0f} rows/s)")
    print(f"密钥指纹 / key id: {key_text(rep.key_id)}")
    if head is not None:
        print(
            f"链头 / chain head: {head.digest_hex} "
            f"(sealed {fmt_time(head.sealed_at_ms, config.site.tz)}, {head.rows} rows)"
        )
    if rep.ok:
        print("结论 / result: 完整 INTACT")
        return 0
    for p in rep.problems:
        print(f"首个断链 / first broken link: {p.text()}")
    print("结论 / result: 已被改动 BROKEN")
    return EXIT_BROKEN


def _export(args: argparse.Namespace, config: Config, period: Span) -> int:
    from agent.reports.export import export
    from agent.store.db import Store
    from agent.store.evidence import key_path, stored_key_id

    label, start, end = period
    assert label is not None and start is not None and end is not None
    try:
        now = at_ms(args.at, config.site.tz)
    except ValueError as exc:
        print(f"sentinel: --at: {exc}", file=sys.stderr)
        return 2
    store = Store(config.storage.path, readonly=True)
    done = export(store, config, label, start, end, now, args.out)
    kid = stored_key_id(store.db)
    if args.json:
        print_json(
            {
                "path": str(done.path),
                "period": label,
                "rows": done.rows,
                "tables": dict(done.tables),
                "head": done.head.digest_hex if done.head is not None else None,
                "key_id": kid,
                "computed_at": iso(now, config.site.tz),
            }
        )
        return 0
    print(
        f"wrote {done.path}: {done.rows} rows ({', '.join(f'{k} {v}' for k, v in done.tables.items() if v)})"
    )
    print(f"链头 / chain head: {done.head.digest_hex if done.head is not None else '尚未建立'}")
    print(f"密钥指纹 / key id: {key_text(kid)}")
    if kid:
        where = (
            "FILE (storage.evidence_key)" if config.storage.evidence_key else key_path(config.storage.path)
        )
        print(f"the chain is HMAC-keyed: its key holder adds --key-file {where} to verify.py")
    print(f"check it anywhere with: unzip {done.path.name} -d evidence && python3 -I evidence/verify.py")
    return 0
