"""`sentinel faults list|show|ack|resolve|close`: the fault records (故障记录) people work."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from agent.cli.output import (
    actor,
    fmt_time,
    iso,
    now_ms,
    period_ms,
    print_json,
    print_table,
    with_iso_times,
    writer,
)

if TYPE_CHECKING:
    from agent.config.schema import Config
    from agent.faults.records import Fault
    from agent.store.db import Store

EVENT_NAMES = {
    "opened": "故障开始",
    "check-joined": "检查项加入",
    "level-raised": "级别提升",
    "flapping": "抖动",
    "recovered": "恢复",
    "reopened": "重新打开",
    "acknowledged": "响应",
    "resolved": "记录原因",
    "closed": "关闭",
    "response-deadline-warning": "响应时限预警",
    "response-overdue": "响应超时",
    "restore-deadline-warning": "恢复时限预警",
    "restore-overdue": "恢复超时",
}
"""Event names as the fault history table shows them (unknown ones print as stored)."""

_DETAIL_NAMES = {
    "check": "检查项",
    "summary": "摘要",
    "cause": "原因",
    "measures": "处理措施",
    "maintenance": "维护窗口",
    "at": "时间",
    "deadline": "时限",
}
_DETAIL_INSTANTS = ("at", "deadline")


def add_parser(sub: Any) -> None:
    f = sub.add_parser(
        "faults",
        help="fault records (故障记录): list, show, ack, resolve, close",
        description="Fault records: opened by the agent when a failure is confirmed, acknowledged, "
        "resolved (cause and measures) and closed by people.",
    )
    fs = f.add_subparsers(dest="faults_command", metavar="ACTION", required=True)
    lst = fs.add_parser("list", help="list faults (with the contract year's overdue counts)")
    lst.add_argument("--open", action="store_true", help="only faults not closed yet")
    lst.add_argument("--level", type=int, choices=[1, 2, 3, 4], help="only this level (1 = 一级)")
    lst.add_argument(
        "--period",
        help="only faults that started in 2026, 2026-11, 2026-11-23, 2026-11-01..2026-11-30, "
        "service (the current service period) or service:2026",
    )
    lst.add_argument("--json", action="store_true", help="print JSON instead of a table")
    show = fs.add_parser("show", help="one fault with every field and its history")
    show.add_argument("fault", metavar="NUMBER", help="fault number (GZ-20261123-001) or id")
    show.add_argument("--json", action="store_true", help="print JSON (the fault and its events)")
    ack = fs.add_parser("ack", help="acknowledge (响应) a fault; response time = now - start")
    ack.add_argument("fault", metavar="NUMBER", help="fault number (GZ-20261123-001) or id")
    ack.add_argument("--by", required=True, help="engineer's name")
    ack.add_argument("--json", action="store_true", help="print the updated fault as JSON")
    res = fs.add_parser("resolve", help="record cause and measures (required before closing)")
    res.add_argument("fault", metavar="NUMBER", help="fault number (GZ-20261123-001) or id")
    res.add_argument("--cause", required=True, help="the cause (原因), as it goes into the fault report")
    res.add_argument("--measures", required=True, help="what was done (处理措施)")
    res.add_argument("--by", help="engineer's name (default: login name)")
    res.add_argument("--json", action="store_true", help="print the updated fault as JSON")
    cl = fs.add_parser("close", help="close a recovered fault that has a cause (sends the close notice)")
    cl.add_argument("fault", metavar="NUMBER", help="fault number (GZ-20261123-001) or id")
    cl.add_argument("--by", help="engineer's name (default: login name)")
    cl.add_argument("--json", action="store_true", help="print the closed fault as JSON")


def fault_json(fault: Fault, tz: ZoneInfo) -> dict[str, Any]:
    """A fault for --json: every field, instants as ISO 8601 (`start_ts` -> `start_at`)."""
    return dict(with_iso_times(fault.as_dict(), tz))


def _detail(raw: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except (TypeError, ValueError):
        return {"text": raw}
    return value if isinstance(value, dict) else {"value": value}


def event_json(ts: int, who: str, action: str, raw: str, tz: ZoneInfo) -> dict[str, Any]:
    detail = _detail(raw)
    for key in _DETAIL_INSTANTS:
        if isinstance(detail.get(key), int):
            detail[key] = iso(detail[key], tz)
    return {"at": iso(ts, tz), "actor": who, "action": action, "detail": detail}


def event_note(raw: str, tz: ZoneInfo) -> str:
    """An event's detail in a table cell: `检查项 his-web；摘要 …` (what a person reads)."""
    from agent.faults.records import LEVEL_NAMES

    detail = _detail(raw)
    parts: list[str] = []
    if "from" in detail and "to" in detail:
        was, now = detail["from"], detail["to"]
        parts.append(f"{LEVEL_NAMES.get(was, was)} → {LEVEL_NAMES.get(now, now)}")
    for key, value in detail.items():
        if key in ("from", "to") or value in (None, False, "", {}):
            continue
        if value is True:
            parts.append({"flapping": "抖动", "flapping_ended": "抖动结束"}.get(key, key))
            continue
        shown = fmt_time(value, tz) if key in _DETAIL_INSTANTS and isinstance(value, int) else value
        parts.append(f"{_DETAIL_NAMES.get(key, key)} {shown}")
    return "；".join(parts) or "—"


def run(config: Config, args: argparse.Namespace) -> int:
    from agent.clock.timeutil import fmt_duration
    from agent.faults import records as F

    tz = config.site.tz
    store = writer(config)
    action = args.faults_command
    try:
        if action == "list":
            start, end = period_ms(args.period, tz, config)
            rows = F.list_faults(store.db, args.open, args.level, start, end)
            if args.json:
                print_json([fault_json(r, tz) for r in rows])
                return 0
            _overdue_line(config, store)
            print_table(
                ["NUMBER", "LEVEL", "SYSTEM", "START", "ACKED", "RECOVERED", "CLOSED", "DESCRIPTION"],
                [
                    [
                        r.number,
                        r.level_name + ("·抖动" if r.flapping else "") + ("·维护" if r.maintenance else ""),
                        r.system or "-",
                        fmt_time(r.start_ts, tz),
                        fmt_time(r.acked_ts, tz),
                        fmt_time(r.recovered_ts, tz),
                        fmt_time(r.closed_ts, tz),
                        r.description,
                    ]
                    for r in rows
                ],
            )
            return 0
        key: int | str = int(args.fault) if args.fault.isdigit() else args.fault
        now = now_ms()
        if action == "show":
            fault = F.get_fault(store.db, key)
            if fault is None:
                raise F.FaultError(f"no fault {args.fault}")
            events = F.fault_events(store.db, fault.id)
            if args.json:
                history = [event_json(ts, who, act, d, tz) for ts, who, act, d in events]
                print_json(fault_json(fault, tz) | {"events": history})
                return 0
            _print_fault(fault, tz)
            print("\n历史：")
            print_table(
                ["时间", "事件", "操作人", "说明"],
                [
                    [fmt_time(ts, tz), EVENT_NAMES.get(act, act), who, event_note(d, tz)]
                    for ts, who, act, d in events
                ],
            )
            return 0
        if action == "ack":
            fault = F.acknowledge(store, key, args.by, now)
            if args.json:
                print_json(fault_json(fault, tz))
                return 0
            print(
                f"{fault.number} acknowledged by {args.by}; "
                f"response time {fmt_duration(fault.response_s or 0)}"
                + (" (overdue)" if fault.response_overdue else "")
            )
            return 0
        if action == "resolve":
            fault = F.resolve(store, key, actor(args), args.cause, args.measures, now)
            if args.json:
                print_json(fault_json(fault, tz))
                return 0
            state = "recovered" if fault.recovered_ts else "not recovered yet"
            print(
                f"{fault.number}: cause recorded ({state}); "
                f"close it with `sentinel faults close {fault.number}`"
            )
            return 0
        if action == "close":
            from agent.faults.notices import enqueue_closed

            fault = F.close(store, key, actor(args), now)
            enqueue_closed(config, store, fault, now)
            if args.json:
                print_json(fault_json(fault, tz))
                return 0
            print(f"{fault.number} closed")
            return 0
    except F.FaultError as exc:
        print(f"sentinel: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
    return 2


def _print_fault(fault: Fault, tz: ZoneInfo) -> None:
    from agent.clock.timeutil import fmt_duration

    fields = [
        ("故障编号", fault.number),
        ("级别", fault.level_name),
        ("类型", fault.type),
        ("系统", fault.system or "—"),
        ("院区", fault.campus or "—"),
        ("开始时间", fmt_time(fault.start_ts, tz)),
        ("故障描述", fault.description),
        ("影响范围", fault.impact),
        ("检查项", "、".join(fault.checks)),
        ("响应时限", fmt_time(fault.respond_deadline_ts, tz)),
        (
            "响应",
            f"{fmt_time(fault.acked_ts, tz)} {fault.acked_by or ''}".rstrip()
            + (f"（{fmt_duration(fault.response_s)}）" if fault.response_s is not None else "")
            + ("  超时" if fault.response_overdue else ""),
        ),
        ("恢复时限", fmt_time(fault.restore_deadline_ts, tz)),
        (
            "恢复",
            fmt_time(fault.recovered_ts, tz)
            + (f"（{fmt_duration(fault.recovery_s)}）" if fault.recovery_s is not None else "")
            + ("  超时" if fault.restore_overdue else ""),
        ),
        ("原因", fault.cause or "—"),
        ("处理措施", fault.measures or "—"),
        ("关闭", f"{fmt_time(fault.closed_ts, tz)} {fault.closed_by or ''}".rstrip()),
        ("维护窗口", fault.maintenance or "—"),
        ("抖动", "是" if fault.flapping else "否"),
    ]
    if fault.calendar_note:
        fields.append(("日历", fault.calendar_note))
    for k, v in fields:
        print(f"{k}：{v}")


def _overdue_line(config: Config, store: Store) -> None:
    """The contract year's overdue faults (the service period containing now, else this calendar
    year) against its limits (a major breach when reached)."""
    from agent.clock.periods import contract_year
    from agent.faults import records as F

    period = contract_year(config.contract, config.site.tz, now_ms())
    counts = F.overdue_counts(store.db, period.start_ms, period.end_ms)
    limits = period.limits_or(config.faults.yearly_limits)
    parts = []
    for level in sorted(set(limits) | set(counts)):
        n = counts.get(level, 0)
        limit = limits.get(level)
        text = f"{F.LEVEL_NAMES[level]} {n}" + (f"/{limit}" if limit else "")
        if limit and n >= limit:
            text += " 已达重大违约上限"
        parts.append(text)
    # "2026 年" as before; a service period by its label; a calendar year cut by one, by its days.
    head = (
        f"{period.year} 年"
        if period.label.isdigit()
        else (period.label if period.service else period.describe()) + " "
    )
    print(f"{head}超时故障：" + ("，".join(parts) if parts else "无"))
