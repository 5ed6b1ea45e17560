"""`sentinel maintenance add|approve|list|remove`: maintenance windows added by people, kept
with who recorded them, when and why, and the approval of each party (甲方 the hospital, 乙方
the vendor). A window mutes alerts from its recording on (one approval); it excludes time from
availability only once both parties approved. Removing one keeps it, and every change is in an
append-only log."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from agent.cli.output import (
    actor,
    fmt_time,
    iso,
    iso_dt,
    now_ms,
    print_change_log,
    print_json,
    print_validation_errors,
    validation_problems,
    writer,
)
from agent.config.windows import PARTIES

if TYPE_CHECKING:
    from agent.config.schema import Config
    from agent.config.windows import WindowSpec
    from agent.store.db import Store
    from agent.windows.approvals import Approval
    from agent.windows.ledger import StoredWindow

EFFECTIVE, PENDING, LATE = "生效", "待批准", "事后补录"

_SOURCES = {"config": "配置文件", "cli": "命令行"}


def add_parser(sub: Any) -> None:
    m = sub.add_parser(
        "maintenance",
        help="maintenance windows: add, approve, list, remove",
        description="Maintenance windows silence notifications for what they cover from the moment "
        "they are recorded, and count as maintenance, not downtime, once both parties (甲方 the "
        "hospital, 乙方 the vendor) approved them (经双方认定). Windows from the configuration file "
        "are listed too.",
    )
    ms = m.add_subparsers(dest="maintenance_command", metavar="ACTION", required=True)
    ma = ms.add_parser(
        "add",
        help="record a window with your party's approval (one-off with --start/--end, or --cron "
        "with --duration)",
    )
    ma.add_argument("name", metavar="NAME", help="the window's name (unique among current windows)")
    ma.add_argument("--system", action="append", default=[], help="system covered (repeatable)")
    ma.add_argument("--check", action="append", default=[], help="check covered (repeatable)")
    ma.add_argument("--start", help="'YYYY-MM-DD HH:MM' in the site's time zone")
    ma.add_argument("--end", help="'YYYY-MM-DD HH:MM' in the site's time zone")
    ma.add_argument("--cron", help="recurring: 'm h dom mon dow' in the site's time zone")
    ma.add_argument("--duration", help="with --cron: how long each window lasts, e.g. 2h")
    ma.add_argument("--reason", required=True, help="why the window is needed (printed in reports)")
    _approval_args(ma)
    ma.add_argument("--ticket", help="change ticket number, e.g. CHG-002")
    ma.add_argument("--json", action="store_true", help="print the added window (or the problems) as JSON")
    mp = ms.add_parser("approve", help="the other party's approval of a window")
    mp.add_argument("name", metavar="NAME", help="the window's name")
    _approval_args(mp)
    mp.add_argument("--json", action="store_true", help="print the window as JSON")
    ml = ms.add_parser(
        "list", help="windows with their approvals (with --all also removed ones and the change log)"
    )
    ml.add_argument("--all", action="store_true", help="include removed windows and the change log")
    ml.add_argument("--json", action="store_true", help="print JSON instead of text")
    mr = ms.add_parser("remove", help="remove a CLI-added window (kept in the log)")
    mr.add_argument("name", metavar="NAME", help="the window's name")
    mr.add_argument("--by", help="who removes it (default: login name)")
    mr.add_argument("--json", action="store_true", help="print the removed window as JSON")


def _approval_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--party",
        required=True,
        choices=PARTIES,
        help="the approving party: 甲方 (hospital) or 乙方 (vendor)",
    )
    p.add_argument("--by", required=True, metavar="NAME", help="the person who approves for that party")


def approvals_json(approvals: tuple[Approval, ...], tz: ZoneInfo) -> dict[str, Any]:
    """{party: {approver, approved_at, os_user} or None} for both parties."""
    given = {a.party: a for a in approvals}
    return {
        p: (
            {"approver": a.approver, "approved_at": iso(a.ts_ms, tz), "os_user": a.os_user}
            if (a := given.get(p)) is not None
            else None
        )
        for p in PARTIES
    }


def approval_lines(approvals: tuple[Approval, ...], tz: ZoneInfo) -> list[str]:
    """One line per party: who approved, when (site time with offset) and the OS user."""
    given = {a.party: a for a in approvals}
    out = []
    for p in PARTIES:
        a = given.get(p)
        if a is None:
            out.append(f"  {p}  —  未批准")
        else:
            out.append(f"  {p}  {a.approver}  {fmt_time(a.ts_ms, tz)}  （系统用户 {a.os_user}）")
    return out


def window_json(w: StoredWindow, tz: ZoneInfo) -> dict[str, Any]:
    from agent.windows.ledger import is_late

    spec = w.spec.model_dump(mode="json", exclude={"approvals"})
    # One-off windows are site wall time (naive); give them their offset like every instant.
    spec["start"] = iso_dt(w.spec.start, tz)
    spec["end"] = iso_dt(w.spec.end, tz)
    late = is_late(w, tz)
    return {
        "name": w.name,
        "source": w.source,
        "spec": spec,
        "status": EFFECTIVE if w.effective else PENDING,
        "effective": w.effective,
        "late": late,
        "approvals": approvals_json(w.approvals, tz),
        "created_at": iso(w.created_ts, tz),
        "created_by": w.created_by,
        "removed_at": iso(w.removed_ts, tz),
        "removed_by": w.removed_by,
    }


def window_text(w: StoredWindow, tz: ZoneInfo) -> list[str]:
    from agent.windows.ledger import is_late

    marks = [EFFECTIVE if w.effective else PENDING]
    if is_late(w, tz):
        marks.append(LATE)
    if w.removed_ts is not None:
        marks.append("已删除")
    lines = [
        f"{w.name}  [{' · '.join(marks)}]",
        f"  时间  {_when(w.spec, tz)}" + ("（自录入时起适用，此前的周期不计）" if w.spec.recurring else ""),
        f"  范围  {', '.join(w.spec.systems + w.spec.checks)}",
        f"  原因  {w.spec.reason}" + (f"  工单 {w.spec.ticket}" if w.spec.ticket else ""),
        f"  录入  {fmt_time(w.created_ts, tz)}  {w.created_by}（{_SOURCES.get(w.source, w.source)}）",
        *approval_lines(w.approvals, tz),
    ]
    if w.removed_ts is not None:
        lines.append(f"  删除  {fmt_time(w.removed_ts, tz)}  {w.removed_by or ''}")
    return lines


def run(config: Config, args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from agent.config.windows import WindowSpec
    from agent.windows.approvals import ApprovalError, os_user
    from agent.windows.ledger import WindowError, add_window, approve_window, list_windows, remove_window

    tz = config.site.tz
    store = writer(config)
    try:
        action = args.maintenance_command
        if action == "add":
            raw: dict[str, Any] = {
                "name": args.name,
                "systems": args.system,
                "checks": args.check,
                "reason": args.reason,
                "ticket": args.ticket,
            }
            for key in ("start", "end", "cron", "duration"):
                if getattr(args, key):
                    raw[key] = getattr(args, key)
            try:
                spec = WindowSpec.model_validate(raw)
            except ValidationError as exc:
                if args.json:
                    print_json({"added": False, "problems": validation_problems(exc, "window")})
                print_validation_errors(exc, "window")
                return 2
            unknown = [s for s in spec.systems if config.system(s) is None]
            unknown += [c for c in spec.checks if c not in config.check_map]
            if unknown:
                print(f"sentinel: not in the configuration: {', '.join(unknown)}", file=sys.stderr)
                return 2
            add_window(store, spec, args.party, args.by, os_user(), now_ms())
            if args.json:
                print_json(_find(store, spec.name, tz))
            else:
                print(f"maintenance window {spec.name!r} recorded with {args.party}'s approval; "
                      f"it excludes time once {_other(args.party)} approves too")  # fmt: skip
            return 0
        if action == "approve":
            approve_window(store, args.name, args.party, args.by, os_user(), now_ms())
            if args.json:
                print_json(_find(store, args.name, tz))
            else:
                found = [w for w in list_windows(store) if w.name == args.name]
                state = EFFECTIVE if found and found[0].effective else PENDING
                print(f"maintenance window {args.name!r} approved by {args.party} {args.by.strip()}: {state}")
            return 0
        if action == "remove":
            remove_window(store, args.name, actor(args), now_ms())
            if args.json:
                print_json(_find(store, args.name, tz, removed=True))
            else:
                print(f"maintenance window {args.name!r} removed (kept in the log)")
            return 0
        windows = list_windows(store, include_removed=args.all)
        if args.json:
            print_json([window_json(w, tz) for w in windows])
            return 0
        if not windows:
            print("no maintenance windows")
        for i, w in enumerate(windows):
            if i:
                print()
            print("\n".join(window_text(w, tz)))
        if args.all:
            from agent.store.windows import window_log

            print_change_log(window_log(store.db), lambda ts: fmt_time(ts, tz))
        return 0
    except (WindowError, ApprovalError) as exc:
        print(f"sentinel: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()


def _other(party: str) -> str:
    return next(p for p in PARTIES if p != party)


def _find(store: Store, name: str, tz: ZoneInfo, removed: bool = False) -> dict[str, Any] | None:
    """The window just added or removed, as `list --json` shows it (the newest of that name)."""
    from agent.windows.ledger import list_windows

    matches = [w for w in list_windows(store, include_removed=removed) if w.name == name]
    return window_json(matches[-1], tz) if matches else None


def _when(spec: WindowSpec, tz: ZoneInfo) -> str:
    if spec.start is not None and spec.end is not None:
        offset = iso_dt(spec.start, tz) or ""
        return f"{spec.start:%Y-%m-%d %H:%M} → {spec.end:%Y-%m-%d %H:%M}{offset[-6:]}"
    if spec.cron:
        return f"cron {spec.cron} / {spec.duration or 0:g}s"
    if spec.weekly is not None:
        return f"weekly {spec.weekly}"
    if spec.monthly is not None:
        return f"monthly {spec.monthly}"
    return "?"
