"""`sentinel availability`: the contract figure (可用率) with its formula, its numbers and every
outage and exclusion behind it (the ledger itself is `sentinel exclusions`, agent/cli/exclusions.py)."""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, TextIO
from zoneinfo import ZoneInfo

from agent.cli.output import at_ms, evidence_stamp, key_text, print_json, with_iso_times

if TYPE_CHECKING:
    from agent.availability.gather import SubjectFigures
    from agent.clock.periods import Period
    from agent.config.schema import Config
    from agent.store.db import Store


POLICY_ZH = {"unavailable": "未知时间计为不可用", "excluded": "未知时间不计入"}


def add_parser(sub: Any) -> None:
    a = sub.add_parser(
        "availability",
        help="availability (可用率) per business system or check, with the formula and outages",
        description="Availability = available time ÷ (planned operating time − maintenance − force "
        "majeure) × 100 %. Unknown time (agent down, probe could not run) is shown separately and "
        "enters the figure by availability.unknown_policy; both figures are always printed.",
    )
    a.add_argument("--system", action="append", help="only this business system (repeatable)")
    a.add_argument("--check", help="one check's own availability instead of the systems'")
    a.add_argument(
        "--period",
        help="2026, 2026-11, 2026-Q4, 2026-W48, 2026-11-23, FROM..TO in the site's time zone, "
        "service (the current service period) or service:2026 "
        "(default: the current service period, or this year where none is configured)",
    )
    a.add_argument("--policy", choices=["unavailable", "excluded"], help="override unknown_policy")
    a.add_argument("--at", help="compute as of this local time 'YYYY-MM-DD HH:MM' (default: now)")
    fmt = a.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print JSON")
    fmt.add_argument("--csv", action="store_true", help="print every outage and exclusion as CSV")


# ------------------------------------------------------------------------- formatting


def hms(ms: int) -> str:
    """Hours may exceed 24: '720:00:00' is what a planned month looks like."""
    s = ms // 1000
    sign = "-" if s < 0 else ""
    s = abs(s)
    return f"{sign}{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _secs(ms: int) -> str:
    return f"{ms / 1000:,.0f} s" if ms % 1000 == 0 else f"{ms / 1000:,.3f} s"


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{v:.3f}%"


def _local(ms: int, tz: ZoneInfo) -> str:
    return datetime.fromtimestamp(ms / 1000, tz).strftime("%Y-%m-%d %H:%M:%S")


def render_text(
    items: Sequence[SubjectFigures], period: Period, tz: ZoneInfo, now_ms: int, head: str | None
) -> str:
    from agent.availability.gather import CAUSE_ZH

    out: list[str] = []
    for it in items:
        title = "业务系统" if it.kind == "system" else "检查项"
        out.append(f"{title} {it.subject}（目标 {it.target_pct:g}%）  期间 {period.describe()}（{tz.key}）")
        if it.redundancy:
            groups = "；".join(f"{'/'.join(c)} 中至少 {k} 个" for c, k in it.redundancy)
            out.append(f"  冗余组: {groups}")
        if it.figures is None:
            out.append(f"  {it.note or '期间内没有可计算的数据'}")
            out.append("")
            continue
        f = it.figures
        out += [
            f"  计划运行时间  {hms(f.planned_ms):>12}  ({_secs(f.planned_ms)})",
            f"  排除时间      {hms(f.excluded_ms):>12}  (计划维护 {hms(f.maintenance_ms)}，"
            f"不可抗力 {hms(f.force_majeure_ms)})",
            f"  可用时间      {hms(f.available_ms):>12}",
            f"  不可用时间    {hms(f.unavailable_ms):>12}",
            f"  未知时间      {hms(f.unknown_ms):>12}  (监测覆盖率 {_pct(f.coverage_pct)})",
        ]
        den = f.accountable_ms if it.policy == "unavailable" else f.accountable_ms - f.unknown_ms
        minus_unknown = "" if it.policy == "unavailable" else " − 未知时间"
        out += [
            f"  可用率 = 可用时间 ÷ (计划运行时间 − 排除时间{minus_unknown}) × 100%",
            f"         = {_secs(f.available_ms)} ÷ {_secs(den)} × 100% = {_pct(it.availability())}",
            f"  两种口径: 未知计为不可用 {_pct(f.availability_pct)}；未知不计入 "
            f"{_pct(f.availability_excluded_pct)}（本报告采用: {POLICY_ZH[it.policy]}）",
        ]
        bm = f.before_monitoring_ms
        if it.before_monitoring is not None:
            a, b = it.before_monitoring
            how = "不计入计划运行时间" if it.before_policy == "excluded" else "计为未知时间"
            out.append(
                f"  未监控：监控开始前 {_local(a, tz)} ~ {_local(b, tz)}，其中计划时间 {hms(bm)}"
                f"（{how}，availability.before_monitoring: {it.before_policy}）"
            )
        v = it.verdict
        year = it.year_label or "日历年"
        if v is not None:
            status = "—" if v.passed is None else ("达标" if v.passed else "未达标")
            out.append(
                f"  年度结论（{year}）: {status}（至今 {_pct(v.availability_pct)}，目标 {v.target_pct:g}%）"
            )
            line = (
                f"  可用时间余量: 全期允许 {hms(v.allowed_ms)}，已用 {hms(v.used_ms)}，"
                f"剩余 {hms(v.remaining_ms)}"
            )
            if v.exhausted:
                line += "（已用尽）"
            elif v.exhaust_date is not None:
                line += f"，按当前速率将于 {v.exhaust_date:%Y-%m-%d} 用尽"
            out.append(line)
        out.append(f"  停机记录（{len(it.outages)} 次）:")
        for o in it.outages:
            fault = f"  故障 {o.fault}" if o.fault else ""
            cause = f"  原因: {o.cause}" if o.cause else ""
            out.append(
                f"    {_local(o.start_ms, tz)} ~ {_local(o.end_ms, tz)}  {hms(o.duration_ms)}  "
                f"{','.join(o.checks)}{fault}{cause}"
            )
        out.append(f"  未知时间明细（{len(it.unknown)} 段，代理心跳宽限 {it.grace_ms / 1000:g} 秒）:")
        for u in it.unknown:
            out.append(
                f"    {_local(u.start_ms, tz)} ~ {_local(u.end_ms, tz)}  {hms(u.duration_ms)}  "
                f"{CAUSE_ZH[u.cause]}"
            )
        out.append(f"  排除记录（{len(it.exclusions)} 条）:")
        for x in it.exclusions:
            kind = "计划维护" if x.kind == "maintenance" else "不可抗力"
            state = "已生效" if x.effective else "待双方批准，不排除"
            late = "  事后补录" if x.late else ""
            recorded = f"  登记 {_local(x.recorded_ms, tz)} {x.recorded_by or ''}" if x.recorded_ms else ""
            out.append(
                f"    {kind} {x.name}  {_local(x.start_ms, tz)} ~ {_local(x.end_ms, tz)}  "
                f"原因: {x.reason}  批准: {x.approved_by}  [{state}]{late}{recorded}"
            )
        if it.versions:
            shown = "；".join(
                f"版本 {r.version_id if r.version_id is not None else '（当前文件）'}"
                f"{' ' + r.hash[:12] if r.hash else ''} {_local(r.start_ms, tz)} ~ {_local(r.end_ms, tz)}"
                for r in it.versions
            )
            out.append(f"  生效配置: {shown}")
        out.append("")
    out.append(f"计算时间 {_local(now_ms, tz)}" + (f"；证据链头 {head}" if head else ""))
    return "\n".join(out)


def as_json(
    items: Sequence[SubjectFigures], period: Period, tz: ZoneInfo, now_ms: int, head: str | None
) -> dict[str, Any]:
    """Durations stay milliseconds (`planned_ms`, …); instants are ISO 8601 with the site's offset
    (`start_at`), to the millisecond where the computation had one."""
    return dict(
        with_iso_times(
            {
                "period": {"label": period.label, "start_ms": period.start_ms, "end_ms": period.end_ms},
                "computed_at_ms": now_ms,
                "evidence_head": head,
                "subjects": [it.as_dict() for it in items],
            },
            tz,
        )
    )


def write_csv(items: Sequence[SubjectFigures], tz: ZoneInfo, stream: TextIO) -> None:
    w = csv.writer(stream)
    w.writerow(
        ["record", "subject", "start", "end", "duration_s", "checks", "fault", "kind", "name",
         "reason_or_cause", "approved_by", "availability_pct"]
    )  # fmt: skip
    for it in items:
        if it.figures is not None:
            w.writerow(
                ["summary", it.subject, "", "", it.figures.planned_ms / 1000, "", "", it.policy, "", "", "",
                 "" if it.availability() is None else f"{it.availability():.6f}"]
            )  # fmt: skip
        for o in it.outages:
            w.writerow(
                ["outage", it.subject, _local(o.start_ms, tz), _local(o.end_ms, tz), o.duration_ms / 1000,
                 " ".join(o.checks), o.fault or "", "", "", o.cause or "", "", ""]
            )  # fmt: skip
        for x in it.exclusions:
            w.writerow(
                ["exclusion", it.subject, _local(x.start_ms, tz), _local(x.end_ms, tz),
                 (x.end_ms - x.start_ms) / 1000, "", "", x.kind, x.name, x.reason, x.approved_by, ""]
            )  # fmt: skip


# ------------------------------------------------------------------------- commands


def run(config: Config, args: argparse.Namespace) -> int:
    from agent.availability.gather import check_figures, system_figures
    from agent.clock.periods import PeriodError, contract_year, resolve_period
    from agent.store.db import Store

    tz = config.site.tz
    try:
        now_ms = at_ms(args.at, tz)
        # Default: the contract year so far (the service period containing now, else this year).
        if args.period:
            period = resolve_period(args.period, tz, config.contract, now_ms)
        else:
            period = contract_year(config.contract, tz, now_ms)
    except (PeriodError, ValueError) as exc:
        print(f"sentinel: {exc}", file=sys.stderr)
        return 2
    unknown = [s for s in args.system or [] if config.system(s) is None]
    if args.check and args.check not in config.check_map:
        unknown.append(args.check)
    if unknown:
        print(f"sentinel: not in the configuration: {', '.join(unknown)}", file=sys.stderr)
        return 2
    store = Store(config.storage.path, readonly=True)
    try:
        if args.check:
            items = [
                check_figures(store, config, args.check, period.start_ms, period.end_ms, now_ms, args.policy)
            ]
        else:
            items = system_figures(
                store, config, period.start_ms, period.end_ms, now_ms, args.system, args.policy
            )
        head = _evidence_head(store)
        stamp = evidence_stamp(store)
    finally:
        store.close()
    if args.json:
        print_json(as_json(items, period, tz, now_ms, head) | {"evidence": stamp})
    elif args.csv:
        write_csv(items, tz, sys.stdout)
    else:
        print(render_text(items, period, tz, now_ms, head))
        print(f"证据链密钥指纹 {key_text(stamp['key_id'])}")  # the head is on the line above
    return 0


def _evidence_head(store: Store) -> str | None:
    """The evidence chain's head the figures were computed from (None before schema 4)."""
    from agent.store import evidence

    head = evidence.head(store.db)
    return None if head is None else head.digest_hex
