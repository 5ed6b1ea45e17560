"""`sentinel maintenance add|list|remove`: maintenance windows added by people, kept with who,
when and why; removing one keeps it, and every change is in an append-only log."""

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
    print_table,
    print_validation_errors,
    validation_problems,
    writer,
)

if TYPE_CHECKING:
    from agent.config.schema import Config
    from agent.config.windows import WindowSpec
    from agent.store.db import Store
    from agent.windows.ledger import StoredWindow


def add_parser(sub: Any) -> None:
    m = sub.add_parser(
        "maintenance",
        help="maintenance windows: add, list, remove",
        description="Maintenance windows silence notifications for what they cover and count as "
        "maintenance, not downtime. Windows from the configuration file are listed too.",
    )
    ms = m.add_subparsers(dest="maintenance_command", metavar="ACTION", required=True)
    ma = ms.add_parser("add", help="add a window (one-off with --start/--end, or --cron with --duration)")
    ma.add_argument("name", metavar="NAME", help="the window's name (unique among current windows)")
    ma.add_argument("--system", action="append", default=[], help="system covered (repeatable)")
    ma.add_argument("--check", action="append", default=[], help="check covered (repeatable)")
    ma.add_argument("--start", help="'YYYY-MM-DD HH:MM' in the site's time zone")
    ma.add_argument("--end", help="'YYYY-MM-DD HH:MM' in the site's time zone")
    ma.add_argument("--cron", help="recurring: 'm h dom mon dow' in the site's time zone")
    ma.add_argument("--duration", help="with --cron: how long each window lasts, e.g. 2h")
    ma.add_argument("--reason", required=True, help="why the window is needed (printed in reports)")
    ma.add_argument("--approved-by", required=True, help="who approved it (e.g. 信息科王主任)")
    ma.add_argument("--ticket", help="change ticket number, e.g. CHG-002")
    ma.add_argument("--by", help="who records it (default: login name)")
    ma.add_argument("--json", action="store_true", help="print the added window (or the problems) as JSON")
    ml = ms.add_parser("list", help="windows (with --all also removed ones and the change log)")
    ml.add_argument("--all", action="store_true", help="include removed windows and the change log")
    ml.add_argument("--json", action="store_true", help="print JSON instead of a table")
    mr = ms.add_parser("remove", help="remove a CLI-added window (kept in the log)")
    mr.add_argument("name", metavar="NAME", help="the window's name")
    mr.add_argument("--by", help="who removes it (default: login name)")
    mr.add_argument("--json", action="store_true", help="print the removed window as JSON")


def window_json(w: StoredWindow, tz: ZoneInfo) -> dict[str, Any]:
    spec = w.spec.model_dump(mode="json")
    # One-off windows are site wall time (naive); give them their offset like every instant.
    spec["start"] = iso_dt(w.spec.start, tz)
    spec["end"] = iso_dt(w.spec.end, tz)
    return {
        "name": w.name,
        "source": w.source,
        "spec": spec,
        "created_at": iso(w.created_ts, tz),
        "created_by": w.created_by,
        "removed_at": iso(w.removed_ts, tz),
        "removed_by": w.removed_by,
    }


def run(config: Config, args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from agent.config.windows import WindowSpec
    from agent.windows.ledger import WindowError, add_window, list_windows, remove_window

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
                "approved_by": args.approved_by,
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
            add_window(store, spec, actor(args), now_ms())
            if args.json:
                print_json(_find(store, spec.name, tz))
            else:
                print(f"maintenance window {spec.name!r} added")
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
        print_table(
            ["NAME", "SOURCE", "WHEN", "COVERS", "REASON", "APPROVED BY", "ADDED", "REMOVED"],
            [
                [
                    w.name,
                    w.source,
                    _when(w.spec, tz),
                    ",".join(w.spec.systems + w.spec.checks),
                    w.spec.reason,
                    w.spec.approved_by,
                    f"{fmt_time(w.created_ts, tz)} {w.created_by}",
                    f"{fmt_time(w.removed_ts, tz)} {w.removed_by or ''}" if w.removed_ts else "-",
                ]
                for w in windows
            ],
        )
        if args.all:
            from agent.store.windows import window_log

            print_change_log(window_log(store.db), lambda ts: fmt_time(ts, tz))
        return 0
    except WindowError as exc:
        print(f"sentinel: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()


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
