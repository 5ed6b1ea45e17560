"""`sentinel exclusions add|list|remove`: the force-majeure ledger (不可抗力) availability excludes.
A withdrawn record stays in the ledger; every change is appended to a log nobody can edit."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from agent.cli.output import (
    actor,
    fmt_time,
    iso,
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
    from agent.store.db import Store
    from agent.windows.exclusions import StoredExclusion


def add_parser(sub: Any) -> None:
    e = sub.add_parser(
        "exclusions",
        help="force-majeure ledger (不可抗力): add, list, remove",
        description="Agreed force majeure is excluded from availability. Records are never deleted: "
        "a withdrawn one stays in the ledger with who withdrew it and why.",
    )
    es = e.add_subparsers(dest="exclusions_command", metavar="ACTION", required=True)
    add = es.add_parser("add", help="record agreed force majeure (excluded from availability)")
    add.add_argument("--name", required=True, help="the record's name, e.g. 市电中断-1110")
    add.add_argument("--start", required=True, help="'YYYY-MM-DD HH:MM' site time")
    add.add_argument("--end", required=True, help="'YYYY-MM-DD HH:MM' site time")
    add.add_argument(
        "--system", action="append", default=[], help="affected system (repeatable; default: all)"
    )
    add.add_argument("--reason", required=True, help="what happened (e.g. 市电中断，供电局计划外停电)")
    add.add_argument("--approved-by", required=True, help="who agreed, both parties (甲方：…；乙方：…)")
    add.add_argument("--by", help="who records it (default: the login name)")
    add.add_argument("--json", action="store_true", help="print the recorded entry (or the problems) as JSON")
    lst = es.add_parser("list", help="list the ledger")
    lst.add_argument("--all", action="store_true", help="include withdrawn records and the change log")
    lst.add_argument("--json", action="store_true", help="print JSON instead of a table")
    rm = es.add_parser("remove", help="withdraw a record (it stays in the ledger)")
    rm.add_argument("name", metavar="NAME", help="the record's name")
    rm.add_argument("--reason", required=True, help="why it is withdrawn")
    rm.add_argument("--by", help="who withdraws it (default: the login name)")
    rm.add_argument("--json", action="store_true", help="print the withdrawn entry as JSON")


def exclusion_json(x: StoredExclusion, tz: ZoneInfo) -> dict[str, Any]:
    return {
        "name": x.record.name,
        "start_at": iso(x.start_ms, tz),
        "end_at": iso(x.end_ms, tz),
        "systems": list(x.record.systems),
        "reason": x.record.reason,
        "approved_by": x.record.approved_by,
        "source": x.source,
        "created_at": iso(x.created_ts, tz),
        "created_by": x.created_by,
        "removed_at": iso(x.removed_ts, tz),
        "removed_by": x.removed_by,
        "removed_reason": x.removed_reason,
    }


def _withdrawn(x: StoredExclusion, tz: ZoneInfo) -> str:
    if not x.removed_ts:
        return "-"
    return f"{fmt_time(x.removed_ts, tz)} {x.removed_by}: {x.removed_reason}"


def _find(store: Store, name: str, tz: ZoneInfo) -> dict[str, Any] | None:
    """The entry just recorded or withdrawn, as `list --json` shows it (the newest of that name)."""
    from agent.windows import exclusions

    matches = [x for x in exclusions.list_all(store, include_removed=True) if x.record.name == name]
    return exclusion_json(max(matches, key=lambda x: x.id), tz) if matches else None


def run(config: Config, args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from agent.config.schema import ForceMajeure
    from agent.windows import exclusions

    store = writer(config)
    tz = config.site.tz
    try:
        action = args.exclusions_command
        if action == "add":
            try:
                rec = ForceMajeure.model_validate(
                    {
                        "name": args.name,
                        "start": args.start,
                        "end": args.end,
                        "systems": args.system,
                        "reason": args.reason,
                        "approved_by": args.approved_by,
                    }
                )
            except ValidationError as exc:
                if args.json:
                    print_json({"added": False, "problems": validation_problems(exc, "record")})
                print_validation_errors(exc, "record")
                return 2
            missing = [s for s in rec.systems if config.system(s) is None]
            if missing:
                print(f"sentinel: not in the configuration: {', '.join(missing)}", file=sys.stderr)
                return 2
            exclusions.add(store, rec, tz, actor(args), now_ms())
            if args.json:
                print_json(_find(store, rec.name, tz))
            else:
                print(f"force majeure {rec.name!r} recorded")
            return 0
        if action == "remove":
            exclusions.remove(store, args.name, actor(args), args.reason, now_ms())
            if args.json:
                print_json(_find(store, args.name, tz))
            else:
                print(f"force majeure {args.name!r} withdrawn (kept in the ledger)")
            return 0
        rows = exclusions.list_all(store, include_removed=args.all)
        if args.json:
            print_json([exclusion_json(x, tz) for x in rows])
            return 0
        print_table(
            ["NAME", "FROM", "TO", "SYSTEMS", "REASON", "APPROVED BY", "RECORDED", "WITHDRAWN"],
            [
                [
                    x.record.name,
                    fmt_time(x.start_ms, tz),
                    fmt_time(x.end_ms, tz),
                    ",".join(x.record.systems) or "全部",
                    x.record.reason,
                    x.record.approved_by,
                    f"{fmt_time(x.created_ts, tz)} {x.created_by} ({x.source})",
                    _withdrawn(x, tz),
                ]
                for x in rows
            ],
        )
        if args.all:
            from agent.store.windows import exclusion_log

            print_change_log(exclusion_log(store.db), lambda ts: fmt_time(ts, tz))
        return 0
    except exclusions.ExclusionError as exc:
        print(f"sentinel: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
