"""`sentinel exclusions add|approve|list|remove`: the force-majeure ledger (不可抗力) availability
excludes. A record carries the approval of each party (甲方 the hospital, 乙方 the vendor) and
excludes time only once both approved (经双方认定). A withdrawn record stays in the ledger;
every change is appended to a log nobody can edit."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from agent.cli.maintenance import EFFECTIVE, LATE, PENDING, approval_lines, approvals_json
from agent.cli.output import (
    actor,
    fmt_time,
    iso,
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
    from agent.store.db import Store
    from agent.windows.exclusions import StoredExclusion

_SOURCES = {"config": "配置文件", "cli": "命令行"}


def add_parser(sub: Any) -> None:
    e = sub.add_parser(
        "exclusions",
        help="force-majeure ledger (不可抗力): add, approve, list, remove",
        description="Agreed force majeure is excluded from availability once both parties (甲方 the "
        "hospital, 乙方 the vendor) approved it (经双方认定). Records are never deleted: a withdrawn "
        "one stays in the ledger with who withdrew it and why.",
    )
    es = e.add_subparsers(dest="exclusions_command", metavar="ACTION", required=True)
    add = es.add_parser("add", help="record force majeure with your party's approval")
    add.add_argument("--name", required=True, help="the record's name, e.g. 市电中断-1110")
    add.add_argument("--start", required=True, help="'YYYY-MM-DD HH:MM' site time")
    add.add_argument("--end", required=True, help="'YYYY-MM-DD HH:MM' site time")
    add.add_argument(
        "--system", action="append", default=[], help="affected system (repeatable; default: all)"
    )
    add.add_argument("--reason", required=True, help="what happened (e.g. 市电中断，供电局计划外停电)")
    _approval_args(add)
    add.add_argument("--json", action="store_true", help="print the recorded entry (or the problems) as JSON")
    ap = es.add_parser("approve", help="the other party's approval of a record")
    ap.add_argument("name", metavar="NAME", help="the record's name")
    _approval_args(ap)
    ap.add_argument("--json", action="store_true", help="print the record as JSON")
    lst = es.add_parser("list", help="list the ledger with the approvals")
    lst.add_argument("--all", action="store_true", help="include withdrawn records and the change log")
    lst.add_argument("--json", action="store_true", help="print JSON instead of text")
    rm = es.add_parser("remove", help="withdraw a record (it stays in the ledger)")
    rm.add_argument("name", metavar="NAME", help="the record's name")
    rm.add_argument("--reason", required=True, help="why it is withdrawn")
    rm.add_argument("--by", help="who withdraws it (default: the login name)")
    rm.add_argument("--json", action="store_true", help="print the withdrawn entry as JSON")


def _approval_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--party",
        required=True,
        choices=PARTIES,
        help="the approving party: 甲方 (hospital) or 乙方 (vendor)",
    )
    p.add_argument("--by", required=True, metavar="NAME", help="the person who approves for that party")


def exclusion_json(x: StoredExclusion, tz: ZoneInfo) -> dict[str, Any]:
    doc = {
        "name": x.record.name,
        "start_at": iso(x.start_ms, tz),
        "end_at": iso(x.end_ms, tz),
        "systems": list(x.record.systems),
        "reason": x.record.reason,
        "status": EFFECTIVE if x.effective else PENDING,
        "effective": x.effective,
        "late": x.late,
        "approvals": approvals_json(x.approvals, tz),
        "source": x.source,
        "created_at": iso(x.created_ts, tz),
        "created_by": x.created_by,
        "removed_at": iso(x.removed_ts, tz),
        "removed_by": x.removed_by,
        "removed_reason": x.removed_reason,
    }
    if x.legacy_approved_by:
        doc["legacy_approved_by"] = x.legacy_approved_by
    return doc


def exclusion_text(x: StoredExclusion, tz: ZoneInfo) -> list[str]:
    marks = [EFFECTIVE if x.effective else PENDING]
    if x.late:
        marks.append(LATE)
    if x.removed_ts is not None:
        marks.append("已撤销")
    lines = [
        f"{x.record.name}  [{' · '.join(marks)}]",
        f"  时间  {fmt_time(x.start_ms, tz)} → {fmt_time(x.end_ms, tz)}",
        f"  系统  {', '.join(x.record.systems) or '全部'}",
        f"  原因  {x.record.reason}",
        f"  录入  {fmt_time(x.created_ts, tz)}  {x.created_by}（{_SOURCES.get(x.source, x.source)}）",
        *approval_lines(x.approvals, tz),
    ]
    if x.legacy_approved_by:
        lines.append(f"  旧记录批准人（单方，不计）  {x.legacy_approved_by}")
    if x.removed_ts is not None:
        lines.append(f"  撤销  {fmt_time(x.removed_ts, tz)}  {x.removed_by}: {x.removed_reason}")
    return lines


def _find(store: Store, name: str, tz: ZoneInfo) -> dict[str, Any] | None:
    """The entry just recorded or withdrawn, as `list --json` shows it (the newest of that name)."""
    from agent.windows import exclusions

    matches = [x for x in exclusions.list_all(store, include_removed=True) if x.record.name == name]
    return exclusion_json(max(matches, key=lambda x: x.id), tz) if matches else None


def run(config: Config, args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from agent.windows import exclusions
    from agent.windows.approvals import ApprovalError, os_user

    store = writer(config)
    tz = config.site.tz
    try:
        action = args.exclusions_command
        if action == "add":
            try:
                rec = exclusions.NewRecord.model_validate(
                    {
                        "name": args.name,
                        "start": args.start,
                        "end": args.end,
                        "systems": args.system,
                        "reason": args.reason,
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
            exclusions.add(store, rec, tz, args.party, args.by, os_user(), now_ms())
            if args.json:
                print_json(_find(store, rec.name, tz))
            else:
                other = next(p for p in PARTIES if p != args.party)
                print(f"force majeure {rec.name!r} recorded with {args.party}'s approval; "
                      f"it excludes time once {other} approves too")  # fmt: skip
            return 0
        if action == "approve":
            exclusions.approve(store, args.name, args.party, args.by, os_user(), now_ms())
            if args.json:
                print_json(_find(store, args.name, tz))
            else:
                found = [x for x in exclusions.list_all(store) if x.record.name == args.name]
                state = EFFECTIVE if found and found[0].effective else PENDING
                print(f"force majeure {args.name!r} approved by {args.party} {args.by.strip()}: {state}")
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
        if not rows:
            print("no force-majeure records")
        for i, x in enumerate(rows):
            if i:
                print()
            print("\n".join(exclusion_text(x, tz)))
        if args.all:
            from agent.store.windows import exclusion_log

            print_change_log(exclusion_log(store.db), lambda ts: fmt_time(ts, tz))
        return 0
    except (exclusions.ExclusionError, ApprovalError) as exc:
        print(f"sentinel: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
