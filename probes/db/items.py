"""Declarative database inspection items and the pure helpers their evaluations share.

An engine module (postgres, mysql, oracle, mssql) is mostly a table of `Item`s: named
read-only queries plus a pure `evaluate` turning their rows into metrics and findings.
Nothing here does I/O, so every evaluation is testable on recorded rows.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, tzinfo
from types import MappingProxyType
from typing import Any, Protocol

from probes.base import History, Metric, Status
from probes.schedule import Expectation
from probes.thresholds import Threshold
from probes.trend import days_until_full, growth_per_day

__all__ = [
    "BackupSeen",
    "Evaluate",
    "Finding",
    "Item",
    "ItemContext",
    "ItemOutcome",
    "Row",
    "Rows",
    "SpaceEntry",
    "as_utc",
    "blocking_outcome",
    "fmt_bytes",
    "fmt_duration",
    "judge_backups",
    "limit_outcome",
    "long_transactions_outcome",
    "num",
    "one",
    "parse_size",
    "sessions_outcome",
    "space_outcome",
    "threshold_finding",
    "who",
]

Row = Mapping[str, Any]
"""One result row; column names lower-case."""
Rows = Sequence[Row]

_EMPTY: Mapping[str, Any] = MappingProxyType({})
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?i?b?)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4, "p": 1024**5}

CATEGORIES = ("核心系统类", "硬件网络类", "数据安全类", "综合类")


@dataclass(frozen=True, slots=True)
class Finding:
    status: Status
    text: str
    """简体中文, one line, e.g. "表空间 USERS 已用 96.2%（阈值 90%）"."""
    category: str = "综合类"
    obj: str = ""
    """What it is about: database, tablespace, job, login name."""
    item: str = ""
    """Set by the engine to the item's name."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status.name,
            "text": self.text,
            "category": self.category,
            "obj": self.obj,
            "item": self.item,
        }


@dataclass(frozen=True, slots=True)
class ItemOutcome:
    metrics: tuple[Metric, ...] = ()
    findings: tuple[Finding, ...] = ()
    """OK findings are allowed (e.g. "昨晚全备正常")."""
    facts: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    """JSON-able structured data for reports ({"space": [...]}, {"backups": [...]})."""
    memory: Mapping[str, Any] | None = None
    """This item's memory for the next run; None keeps the previous one."""


@dataclass(frozen=True, slots=True)
class ItemContext:
    now: datetime
    """Agent clock, aware UTC."""
    tz: tzinfo
    """Site time zone."""
    version: tuple[int, ...]
    thresholds: Mapping[str, Threshold]
    """The item's defaults overlaid with the configuration's overrides."""
    options: Mapping[str, Any]
    """Per-item options from the configuration, over the check-wide ones (databases, ...)."""
    history: History
    memory: Mapping[str, Any]
    """This item's memory from the last run ({} the first time)."""
    server_now: datetime | None = None
    """The server's clock, aware UTC, when the engine could read it."""

    def judge(self, key: str, value: float) -> Status:
        """Status of `value` against threshold `key`; OK when no threshold is configured."""
        rule = self.thresholds.get(key)
        return Status.OK if rule is None else rule.judge(value)

    def clock(self) -> datetime:
        """The server's clock when known (backup times are written by the server), else ours."""
        return self.server_now if self.server_now is not None else self.now


Evaluate = Callable[[Mapping[str, Rows], ItemContext], ItemOutcome]


@dataclass(frozen=True, slots=True)
class Item:
    name: str
    """The key used in the configuration's `items:`."""
    title: str
    """中文 title, e.g. "表空间使用率"."""
    queries: Mapping[str, str]
    """Query name -> one read-only statement; run in order."""
    evaluate: Evaluate
    grant: str
    """The exact privilege needed, e.g. "GRANT SELECT ON sys.dba_data_files TO <user>"."""
    category: str = "综合类"
    min_version: tuple[int, ...] = ()
    optional: bool = False
    """The feature may be absent (replica, pg_cron, ASM): a "missing" error skips it quietly."""
    thresholds: Mapping[str, Threshold] = field(default_factory=lambda: _EMPTY)


# --- formatting -------------------------------------------------------------------------


def parse_size(value: Any) -> float:
    """'50G', '512 MB', '2TiB' or a number of bytes -> bytes (binary units, > 0)."""
    if isinstance(value, bool):
        raise ValueError("a size is a number of bytes or a string like '50G'")
    if isinstance(value, int | float):
        size = float(value)
    elif isinstance(value, str) and (m := _SIZE.match(value)):
        unit = (m.group(2) or "").lower().rstrip("b").rstrip("i")
        size = float(m.group(1)) * _SIZE_UNITS[unit]
    else:
        raise ValueError(f"invalid size {value!r}: use bytes or a string like '50G', '512M'")
    if size <= 0:
        raise ValueError("a size must be greater than zero")
    return size


def fmt_bytes(n: float) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(value) < 1024 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def fmt_duration(seconds: float) -> str:
    """Chinese duration: '45 秒', '12 分钟', '3.5 小时', '2.0 天'."""
    s = max(float(seconds), 0.0)
    if s < 60:
        return f"{s:.0f} 秒"
    if s < 3600:
        return f"{s / 60:.0f} 分钟"
    if s < 86400:
        return f"{s / 3600:.1f} 小时"
    return f"{s / 86400:.1f} 天"


def _fmt_num(v: float) -> str:
    return f"{v:.0f}" if float(v).is_integer() else f"{v:.1f}"


def as_utc(value: datetime | None) -> datetime | None:
    """Aware UTC; a naive value is taken as UTC (drivers return naive UTC_TIMESTAMP())."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def threshold_finding(
    ictx: ItemContext,
    key: str,
    value: float,
    text: str,
    *,
    category: str = "综合类",
    obj: str = "",
    unit: str = "",
) -> Finding | None:
    """A finding when `value` breaches threshold `key`; `text` gets "（阈值 …）" appended."""
    status = ictx.judge(key, value)
    if status is Status.OK:
        return None
    rule = ictx.thresholds[key]
    limit = rule.crit if status is Status.CRIT else rule.warn
    op = "≤" if rule.below else "≥"
    suffix = f"（阈值 {op}{_fmt_num(limit)}{unit}）" if limit is not None else ""
    return Finding(status, f"{text}{suffix}", category, obj)


# --- space ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SpaceEntry:
    """One database / tablespace / filegroup: what it uses and, when known, its limit."""

    kind: str
    """Metric prefix and fact kind: "database", "tablespace", "filegroup"."""
    name: str
    used_bytes: float
    limit_bytes: float | None = None
    """Max size (autoextend maximum, a configured limit); None when unbounded."""
    label: str = ""
    """Chinese noun for texts: "数据库", "表空间"."""


def space_outcome(entries: Iterable[SpaceEntry], ictx: ItemContext) -> ItemOutcome:
    """Metrics, findings and facts for space use.

    Metrics per entry: `<kind>.<name>.size_bytes`, plus with a limit `used_pct`, and from
    the stored history of `size_bytes` `growth_bytes_per_day` and (with a limit)
    `days_to_full`. Thresholds: size_bytes, used_pct, growth_bytes_per_day, days_to_full.
    """
    now_s = ictx.now.timestamp()
    min_span = float(ictx.options.get("trend_min_span_s", 3600.0))
    metrics: list[Metric] = []
    findings: list[Finding] = []
    facts: list[dict[str, Any]] = []
    for e in entries:
        prefix = f"{e.kind}.{e.name}"
        label = e.label or e.kind
        used = float(e.used_bytes)
        metrics.append(Metric(f"{prefix}.size_bytes", used, "B"))
        samples = [*ictx.history.get(f"{prefix}.size_bytes", ()), (now_s, used)]
        growth = growth_per_day(samples, min_span)
        fact: dict[str, Any] = {
            "kind": e.kind,
            "name": e.name,
            "size_bytes": used,
            "limit_bytes": e.limit_bytes,
            "used_pct": None,
            "growth_bytes_per_day": None if growth is None else round(growth, 1),
            "days_to_full": None,
        }
        if growth is not None:
            metrics.append(Metric(f"{prefix}.growth_bytes_per_day", round(growth, 1), "B"))
            f = threshold_finding(
                ictx, "growth_bytes_per_day", growth,
                f"{label} {e.name} 日增长 {fmt_bytes(growth)}", obj=e.name, category="数据安全类",
            )  # fmt: skip
            if f:
                findings.append(f)
        f = threshold_finding(
            ictx, "size_bytes", used, f"{label} {e.name} 大小 {fmt_bytes(used)}", obj=e.name,
            category="数据安全类", unit=" B",
        )  # fmt: skip
        if f:
            findings.append(f)
        if e.limit_bytes is not None and e.limit_bytes > 0:
            pct = used / e.limit_bytes * 100.0
            metrics.append(Metric(f"{prefix}.used_pct", round(pct, 2), "%"))
            fact["used_pct"] = round(pct, 2)
            f = threshold_finding(
                ictx, "used_pct", pct,
                f"{label} {e.name} 已用 {pct:.1f}%（{fmt_bytes(used)} / {fmt_bytes(e.limit_bytes)}）",
                obj=e.name, category="数据安全类", unit="%",
            )  # fmt: skip
            if f:
                findings.append(f)
            days = days_until_full(samples, used, float(e.limit_bytes), min_span)
            if days is not None and math.isfinite(days):
                metrics.append(Metric(f"{prefix}.days_to_full", round(days, 1), "d"))
                fact["days_to_full"] = round(days, 1)
                f = threshold_finding(
                    ictx, "days_to_full", days, f"{label} {e.name} 预计 {days:.0f} 天后写满",
                    obj=e.name, category="数据安全类", unit=" 天",
                )  # fmt: skip
                if f:
                    findings.append(f)
        facts.append(fact)
    return ItemOutcome(tuple(metrics), tuple(findings), {"space": facts})


# --- sessions ---------------------------------------------------------------------------

MAX_FINDINGS = 5
"""Sessions named per item at most; the rest are in the facts."""
MAX_FACTS = 50
"""Sessions listed in an item's facts at most."""


def num(v: Any) -> float | None:
    return None if v is None else float(v)


def one(rows: Rows) -> Row:
    return rows[0] if rows else {}


def who(r: Row, prefix: str = "") -> str:
    parts = [
        f"用户 {r.get(prefix + 'user') or r.get('usename')}"
        if (r.get(prefix + "user") or r.get("usename"))
        else "",
        f"客户端 {r.get(prefix + 'client')}" if r.get(prefix + "client") else "",
        f"程序 {r.get(prefix + 'app')}" if r.get(prefix + "app") else "",
    ]
    return "，".join(p for p in parts if p)


def limit_outcome(
    kind: str, current: float, limit: float, ictx: ItemContext, *, noun: str, limit_noun: str, obj: str
) -> ItemOutcome:
    """A count against a server limit (sessions, processes): metrics `<kind>.count` and, with
    a limit, `<kind>.used_pct`, threshold `used_pct`."""
    metrics = [Metric(f"{kind}.count", current)]
    findings: list[Finding] = []
    if limit > 0:
        pct = current / limit * 100.0
        metrics.append(Metric(f"{kind}.used_pct", round(pct, 2), "%"))
        text = f"{noun} {current:.0f}，已用{limit_noun} {limit:.0f} 的 {pct:.1f}%"
        f = threshold_finding(ictx, "used_pct", pct, text, category="核心系统类", obj=obj, unit="%")
        if f:
            findings.append(f)
    return ItemOutcome(tuple(metrics), tuple(findings), {kind: current, "limit": limit})


def sessions_outcome(
    sessions: float, limit: float, extra: Sequence[Metric], ictx: ItemContext
) -> ItemOutcome:
    """Sessions against the server's limit: metrics sessions.count / used_pct plus `extra`,
    threshold `used_pct`."""
    out = limit_outcome(
        "sessions", sessions, limit, ictx, noun="会话数", limit_noun="连接上限", obj="max_connections"
    )
    return replace(out, metrics=(out.metrics[0], *extra, *out.metrics[1:]))


def _kept(r: Row, keep: Sequence[str]) -> dict[str, Any]:
    return {k: r.get(k) for k in keep}


def _in_db(r: Row) -> str:
    return f"库 {r.get('datname')}" if r.get("datname") is not None else ""


def blocking_outcome(rows: Rows, ictx: ItemContext, *, keep: Sequence[str] = ()) -> ItemOutcome:
    """Lock waits, one row per (waiting, blocking) pair with the columns waiting_pid, wait_s,
    blocking_pid, blocking_user, blocking_client, blocking_app, blocking_state, datname.
    One finding per blocking session (threshold `wait_s`), worst first. The columns named
    in `keep` (an engine's own: wait event, SQL id) go into the facts as they are."""
    waits: dict[int, float] = {}
    for r in rows:
        pid = int(r["waiting_pid"])
        waits[pid] = max(waits.get(pid, 0.0), num(r.get("wait_s")) or 0.0)
    worst = max(waits.values(), default=0.0)
    metrics = (Metric("blocked.count", len(waits)), Metric("blocked.max_wait_s", round(worst, 1), "s"))
    findings: list[Finding] = []
    # One finding per blocking session (its longest victim), worst first, at most a few.
    by_blocker: dict[Any, Row] = {}
    for r in rows:
        key = r.get("blocking_pid")
        if key not in by_blocker or (num(r.get("wait_s")) or 0) > (num(by_blocker[key].get("wait_s")) or 0):
            by_blocker[key] = r
    ranked = sorted(by_blocker.values(), key=lambda r: -(num(r.get("wait_s")) or 0))
    for r in ranked[:MAX_FINDINGS]:
        wait = num(r.get("wait_s")) or 0.0
        victims = sum(1 for x in rows if x.get("blocking_pid") == r.get("blocking_pid"))
        state = r.get("blocking_state")
        holder = who(r, "blocking_") + (f"，状态 {state}" if state else "")
        where = "，".join(p for p in (_in_db(r), holder) if p)
        text = f"会话 {r.get('blocking_pid')} 阻塞了 {victims} 个会话，最长等待 {wait:.0f} 秒"
        text += f"（{where}）" if where else ""
        f = threshold_finding(
            ictx, "wait_s", wait, text, category="核心系统类", obj=str(r.get("blocking_pid")), unit=" 秒"
        )
        if f:
            findings.append(f)
    facts = {
        "blocked": [
            {
                "waiting_pid": r.get("waiting_pid"),
                "blocking_pid": r.get("blocking_pid"),
                "wait_s": num(r.get("wait_s")),
                "blocking_user": r.get("blocking_user"),
                "blocking_state": r.get("blocking_state"),
                "database": r.get("datname"),
                **_kept(r, keep),
            }
            for r in rows[:MAX_FACTS]
        ]
    }
    return ItemOutcome(metrics, tuple(findings), facts)


def long_transactions_outcome(rows: Rows, ictx: ItemContext, *, keep: Sequence[str] = ()) -> ItemOutcome:
    """Open transactions with the columns pid, usename, datname, state, client, app, age_s.
    One finding per transaction over threshold `age_s`, oldest first. The columns named in
    `keep` (an engine's own: undo blocks) go into the facts as they are."""
    rows = [r for r in rows if r.get("age_s") is not None]
    oldest = max((float(r["age_s"]) for r in rows), default=0.0)
    metrics = (Metric("transactions.open", len(rows)), Metric("transactions.oldest_s", round(oldest, 1), "s"))
    findings: list[Finding] = []
    for r in sorted(rows, key=lambda x: -float(x["age_s"]))[:MAX_FINDINGS]:
        age = float(r["age_s"])
        holder = who(r) + (f"，状态 {r.get('state')}" if r.get("state") else "")
        where = "，".join(p for p in (f"会话 {r.get('pid')}", _in_db(r), holder) if p)
        text = f"事务已运行 {fmt_duration(age)}（{where}）"
        f = threshold_finding(
            ictx, "age_s", age, text, category="核心系统类", obj=str(r.get("pid")), unit=" 秒"
        )
        if f:
            findings.append(f)
    facts = {
        "transactions": [
            {
                "pid": r.get("pid"),
                "user": r.get("usename"),
                "database": r.get("datname"),
                "state": r.get("state"),
                "age_s": num(r.get("age_s")),
                **_kept(r, keep),
            }
            for r in rows[:MAX_FACTS]
        ]
    }
    return ItemOutcome(metrics, tuple(findings), facts)


# --- backups ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BackupSeen:
    """The newest completed backup of one database and type, as the server recorded it."""

    database: str
    type: str
    finished_at: datetime | None
    """Aware UTC; None when the server has no record of one."""


BACKUP_TYPE_ZH = {
    "full": "全量备份",
    "diff": "差异备份",
    "incremental": "增量备份",
    "log": "日志备份",
    "archivelog": "归档日志备份",
}


class BackupRule(Protocol):
    """What judge_backups reads of a configured expectation (probes.db.settings.BackupExpectation;
    named by its fields here, since the settings module imports this one for its item tables)."""

    @property
    def database(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def schedule(self) -> Expectation: ...
    @property
    def grace(self) -> float: ...


def judge_backups(
    expectations: Sequence[BackupRule],
    seen: Iterable[BackupSeen],
    databases: Sequence[str],
    ictx: ItemContext,
) -> ItemOutcome:
    """Judge configured backup expectations against the newest backups the server knows.

    `expectations` come from the check's `backups:` (database, type, schedule, grace);
    database "*" expands to `databases` (every user database). The
    server's clock is used when known: backup times are the server's. A missed slot is a CRIT
    finding of category 数据安全类; every judged slot goes into facts["backups_expected"].
    """
    newest: dict[tuple[str, str], datetime | None] = {}
    for b in seen:
        key = (b.database, b.type)
        t = as_utc(b.finished_at)
        old = newest.get(key)
        if t is not None and (old is None or t > old):
            newest[key] = t
        else:
            newest.setdefault(key, old)
    now = ictx.clock()
    findings: list[Finding] = []
    judged: list[dict[str, Any]] = []
    for exp in expectations:
        schedule: Expectation = exp.schedule
        names = list(databases) if exp.database == "*" else [exp.database]
        for db in names:
            last = newest.get((db, exp.type))
            verdict = schedule.judge(last, now, ictx.tz, float(exp.grace))
            judged.append(
                {
                    "database": db,
                    "type": exp.type,
                    "schedule": str(schedule),
                    "due": verdict.due.isoformat() if verdict.due else None,
                    "met": verdict.met,
                    "last": last.isoformat() if last else None,
                }
            )
            if verdict.met:
                continue
            what = BACKUP_TYPE_ZH.get(exp.type, exp.type)
            when = "从未有记录" if last is None else f"最近一次 {last.astimezone(ictx.tz):%Y-%m-%d %H:%M}"
            findings.append(
                Finding(
                    Status.CRIT,
                    f"{db} 的{what}未按计划完成（{schedule.describe_zh()}，{when}）",
                    "数据安全类",
                    db,
                )
            )
    return ItemOutcome(findings=tuple(findings), facts={"backups_expected": judged})
