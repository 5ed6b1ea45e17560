"""CLI commands for people working faults, the notification queue and maintenance windows."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent.store.db import Store



def _now_ms() -> int:
    return int(datetime.now(UTC).timestamp() * 1000)


def _actor(args: argparse.Namespace) -> str:
    return getattr(args, "by", None) or getpass.getuser()


def _period(config: Any, text: str | None) -> tuple[int | None, int | None]:
    """A period (see agent.periods) in the site's zone -> UTC ms; (None, None) when not given."""
    if not text:
        return None, None
    from agent.clock.periods import parse_period

    p = parse_period(text, config.site.tz)
    return p.start_ms, p.end_ms


def print_validation_errors(exc: Any, what: str) -> None:
    """A CLI record that fails validation: one line per problem, with its field, no traceback."""
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or what
        print(f"sentinel: {loc}: {err['msg'].removeprefix('Value error, ')}", file=sys.stderr)


def print_change_log(store: Store, log_table: str, when: Any) -> None:
    """The append-only change log of a ledger (maintenance_log, exclusions_log), oldest first."""
    print("\nchange log:")
    for ts, actor, act, name in store.db.execute(
        f"SELECT ts, actor, action, name FROM {log_table} ORDER BY id"
    ):
        print(f"  {when(ts)}  {actor}  {act}  {name}")


def add_parsers(sub: Any) -> None:
    f = sub.add_parser("faults", help="fault records (故障记录): list, show, ack, resolve, close")
    fs = f.add_subparsers(dest="faults_command", metavar="ACTION", required=True)
    lst = fs.add_parser("list", help="list faults")
    lst.add_argument("--open", action="store_true", help="only faults not closed yet")
    lst.add_argument("--level", type=int, choices=[1, 2, 3, 4], help="only this level (1 = 一级)")
    lst.add_argument("--period", help="2026, 2026-11, 2026-11-23 or 2026-11-01..2026-11-30 (start time)")
    lst.add_argument("--json", action="store_true")
    show = fs.add_parser("show", help="one fault with its history")
    show.add_argument("fault", help="fault number (GZ-20261123-001) or id")
    show.add_argument("--json", action="store_true")
    ack = fs.add_parser("ack", help="acknowledge (响应) a fault; response time = now - start")
    ack.add_argument("fault")
    ack.add_argument("--by", required=True, help="engineer's name")
    res = fs.add_parser("resolve", help="record cause and measures (required before closing)")
    res.add_argument("fault")
    res.add_argument("--cause", required=True)
    res.add_argument("--measures", required=True)
    res.add_argument("--by", help="engineer's name (default: login name)")
    cl = fs.add_parser("close", help="close a recovered fault that has a cause")
    cl.add_argument("fault")
    cl.add_argument("--by", help="engineer's name (default: login name)")

    n = sub.add_parser("notifications", help="the notification outbox")
    ns = n.add_subparsers(dest="notifications_command", metavar="ACTION", required=True)
    nl = ns.add_parser("list", help="queued, failed and delivered notifications (newest first)")
    nl.add_argument("--failed", action="store_true", help="only those not delivered after an attempt")
    nl.add_argument("--json", action="store_true")
    ns.add_parser("retry", help="queue permanently failed notifications again (after fixing a channel)")

    m = sub.add_parser("maintenance", help="maintenance windows: add, list, remove")
    ms = m.add_subparsers(dest="maintenance_command", metavar="ACTION", required=True)
    ma = ms.add_parser("add", help="add a window (one-off with --start/--end, or --cron with --duration)")
    ma.add_argument("name")
    ma.add_argument("--system", action="append", default=[], help="system covered (repeatable)")
    ma.add_argument("--check", action="append", default=[], help="check covered (repeatable)")
    ma.add_argument("--start", help="'YYYY-MM-DD HH:MM' in the site's time zone")
    ma.add_argument("--end", help="'YYYY-MM-DD HH:MM' in the site's time zone")
    ma.add_argument("--cron", help="recurring: 'm h dom mon dow'")
    ma.add_argument("--duration", help="with --cron: e.g. 2h")
    ma.add_argument("--reason", required=True)
    ma.add_argument("--approved-by", required=True)
    ma.add_argument("--ticket")
    ma.add_argument("--by", help="who records it (default: login name)")
    ml = ms.add_parser("list", help="windows (with --all also removed ones and the change log)")
    ml.add_argument("--all", action="store_true")
    ml.add_argument("--json", action="store_true")
    mr = ms.add_parser("remove", help="remove a CLI-added window (kept in the log)")
    mr.add_argument("name")
    mr.add_argument("--by", help="who removes it (default: login name)")


def _writer(config: Any) -> Store:
    from agent.store.db import Store

    return Store(config.storage.path)


def _fmt(config: Any, ms: int | None) -> str:
    from agent.clock.timeutil import fmt_local

    return fmt_local(ms, config.site.tz) if ms else "—"


def cmd_faults(config: Any, args: argparse.Namespace) -> int:
    from agent.faults import records as F
    from agent.cli.main import _print_table
    from agent.clock.timeutil import fmt_duration

    store = _writer(config)
    action = args.faults_command
    try:
        if action == "list":
            start, end = _period(config, args.period)
            rows = F.list_faults(store.db, args.open, args.level, start, end)
            if args.json:
                print(json.dumps([r.as_dict() for r in rows], ensure_ascii=False, indent=2, default=str))
                return 0
            _overdue_line(config, store)
            _print_table(
                ["NUMBER", "LEVEL", "SYSTEM", "START", "ACKED", "RECOVERED", "CLOSED", "DESCRIPTION"],
                [
                    [
                        r.number,
                        r.level_name + ("·抖动" if r.flapping else "") + ("·维护" if r.maintenance else ""),
                        r.system or "-",
                        _fmt(config, r.start_ts),
                        _fmt(config, r.acked_ts),
                        _fmt(config, r.recovered_ts),
                        _fmt(config, r.closed_ts),
                        r.description,
                    ]
                    for r in rows
                ],
            )
            return 0
        key: int | str = int(args.fault) if args.fault.isdigit() else args.fault
        now = _now_ms()
        if action == "show":
            fault = F.get_fault(store.db, key)
            if fault is None:
                raise F.FaultError(f"no fault {args.fault}")
            events = F.fault_events(store.db, fault.id)
            if args.json:
                print(
                    json.dumps(
                        {
                            **fault.as_dict(),
                            "events": [
                                {"ts": ts, "actor": a, "action": act, "detail": json.loads(d)}
                                for ts, a, act, d in events
                            ],
                        },
                        ensure_ascii=False,
                        indent=2,
                        default=str,
                    )
                )
                return 0
            fields = [
                ("故障编号", fault.number),
                ("级别", fault.level_name),
                ("类型", fault.type),
                ("系统", fault.system or "—"),
                ("院区", fault.campus or "—"),
                ("开始时间", _fmt(config, fault.start_ts)),
                ("故障描述", fault.description),
                ("影响范围", fault.impact),
                ("检查项", "、".join(fault.checks)),
                ("响应时限", _fmt(config, fault.respond_deadline_ts)),
                (
                    "响应",
                    f"{_fmt(config, fault.acked_ts)} {fault.acked_by or ''}"
                    + (f"（{fmt_duration(fault.response_s)}）" if fault.response_s is not None else "")
                    + ("  超时" if fault.response_overdue else ""),
                ),
                ("恢复时限", _fmt(config, fault.restore_deadline_ts)),
                (
                    "恢复",
                    _fmt(config, fault.recovered_ts)
                    + (f"（{fmt_duration(fault.recovery_s)}）" if fault.recovery_s is not None else "")
                    + ("  超时" if fault.restore_overdue else ""),
                ),
                ("原因", fault.cause or "—"),
                ("处理措施", fault.measures or "—"),
                ("关闭", f"{_fmt(config, fault.closed_ts)} {fault.closed_by or ''}"),
                ("维护窗口", fault.maintenance or "—"),
                ("抖动", "是" if fault.flapping else "否"),
            ]
            if fault.calendar_note:
                fields.append(("日历", fault.calendar_note))
            for k, v in fields:
                print(f"{k}：{v}")
            print("\n历史：")
            for ts, actor, act, detail in events:
                print(f"  {_fmt(config, ts)}  {actor}  {act}  {detail}")
            return 0
        if action == "ack":
            fault = F.acknowledge(store, key, args.by, now)
            print(
                f"{fault.number} acknowledged by {args.by}; "
                f"response time {fmt_duration(fault.response_s or 0)}"
                + (" (overdue)" if fault.response_overdue else "")
            )
            return 0
        if action == "resolve":
            fault = F.resolve(store, key, _actor(args), args.cause, args.measures, now)
            state = "recovered" if fault.recovered_ts else "not recovered yet"
            print(
                f"{fault.number}: cause recorded ({state}); "
                f"close it with `sentinel faults close {fault.number}`"
            )
            return 0
        if action == "close":
            fault = F.close(store, key, _actor(args), now)
            _enqueue_closed(config, store, fault, now)
            print(f"{fault.number} closed")
            return 0
    except F.FaultError as exc:
        print(f"sentinel: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
    return 2


def _overdue_line(config: Any, store: Store) -> None:
    """This year's overdue faults against the contract's limits (a major breach when reached)."""
    from agent.faults import records as F

    year = datetime.now(config.site.tz).year
    start, end = _period(config, str(year))
    counts = F.overdue_counts(store.db, start or 0, end or 0)
    limits = config.faults.yearly_limits
    parts = []
    for level in sorted(set(limits) | set(counts)):
        n = counts.get(level, 0)
        limit = limits.get(level)
        text = f"{F.LEVEL_NAMES[level]} {n}" + (f"/{limit}" if limit else "")
        if limit and n >= limit:
            text += " 已达重大违约上限"
        parts.append(text)
    print(f"{year} 年超时故障：" + ("，".join(parts) if parts else "无"))


def _enqueue_closed(config: Any, store: Store, fault: Any, now: int) -> None:
    """The close notice goes through the outbox like every other: the daemon delivers it."""
    if not config.notifications.routes or fault.maintenance is not None:
        return
    from agent.faults.notices import AlertPlanner

    with store.tx() as db:
        for channel, key, payload in AlertPlanner(config)("closed", fault, {}):
            db.execute(
                "INSERT OR IGNORE INTO outbox(created_ts, dedup_key, channel, event, fault_id, message, "
                "next_attempt_ts) VALUES(?,?,?,?,?,?,?)",
                (now, key, channel, "closed", fault.id, payload, now),
            )


def cmd_notifications(config: Any, args: argparse.Namespace) -> int:
    from agent.cli.main import _print_table
    from agent.notify.outbox import list_rows, retry_failed

    store = _writer(config)
    try:
        if args.notifications_command == "retry":
            n = retry_failed(store, _now_ms())
            print(f"{n} notification(s) queued again")
            return 0
        rows = list_rows(store, failed_only=args.failed)
        if args.json:
            print(
                json.dumps(
                    [
                        r.__dict__
                        if hasattr(r, "__dict__")
                        else {k: getattr(r, k) for k in r.__dataclass_fields__}
                        for r in rows
                    ],
                    ensure_ascii=False,
                    indent=2,
                )
            )
            return 0
        _print_table(
            [
                "ID",
                "CREATED",
                "CHANNEL",
                "EVENT",
                "STATUS",
                "TRIES",
                "NEXT/DELIVERED",
                "SUBJECT / LAST ERROR",
            ],
            [
                [
                    str(r.id),
                    _fmt(config, r.created_ts),
                    r.channel,
                    r.event,
                    r.status,
                    str(r.attempts),
                    _fmt(config, r.delivered_ts if r.status == "delivered" else r.next_attempt_ts),
                    r.subject if r.status == "delivered" or not r.last_error else r.last_error,
                ]
                for r in rows
            ],
        )
        return 0
    finally:
        store.close()


def cmd_maintenance(config: Any, args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from agent.cli.main import _print_table
    from agent.windows.ledger import WindowError, add_window, list_windows, remove_window
    from agent.config.windows import WindowSpec

    store = _writer(config)
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
                print_validation_errors(exc, "window")
                return 2
            unknown = [s for s in spec.systems if config.system(s) is None]
            unknown += [c for c in spec.checks if c not in config.check_map]
            if unknown:
                print(f"sentinel: not in the configuration: {', '.join(unknown)}", file=sys.stderr)
                return 2
            add_window(store, spec, _actor(args), _now_ms())
            print(f"maintenance window {spec.name!r} added")
            return 0
        if action == "remove":
            remove_window(store, args.name, _actor(args), _now_ms())
            print(f"maintenance window {args.name!r} removed (kept in the log)")
            return 0
        windows = list_windows(store, include_removed=args.all)
        if args.json:
            print(
                json.dumps(
                    [
                        {
                            "name": w.name,
                            "source": w.source,
                            "spec": json.loads(w.spec.model_dump_json()),
                            "created": w.created_ts,
                            "created_by": w.created_by,
                            "removed": w.removed_ts,
                            "removed_by": w.removed_by,
                        }
                        for w in windows
                    ],
                    ensure_ascii=False,
                    indent=2,
                )
            )
            return 0
        _print_table(
            ["NAME", "SOURCE", "WHEN", "COVERS", "REASON", "APPROVED BY", "ADDED", "REMOVED"],
            [
                [
                    w.name,
                    w.source,
                    _when(w.spec),
                    ",".join(w.spec.systems + w.spec.checks),
                    w.spec.reason,
                    w.spec.approved_by,
                    f"{_fmt(config, w.created_ts)} {w.created_by}",
                    f"{_fmt(config, w.removed_ts)} {w.removed_by or ''}" if w.removed_ts else "-",
                ]
                for w in windows
            ],
        )
        if args.all:
            print_change_log(store, "maintenance_log", lambda ts: _fmt(config, ts))
        return 0
    except WindowError as exc:
        print(f"sentinel: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()


def _when(spec: Any) -> str:
    if spec.start is not None:
        return f"{spec.start:%Y-%m-%d %H:%M} → {spec.end:%Y-%m-%d %H:%M}"
    if spec.cron:
        return f"cron {spec.cron} / {spec.duration:g}s"
    if spec.weekly is not None:
        return f"weekly {spec.weekly}"
    if spec.monthly is not None:
        return f"monthly {spec.monthly}"
    return "?"
