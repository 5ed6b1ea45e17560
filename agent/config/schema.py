"""Configuration: YAML in, frozen validated models out, every problem reported at once.

Problems carry their key path (`checks[3].interval`) and the YAML line, so an engineer can fix
the whole file in one pass. `load()` raises `ConfigError`; the CLI prints it and exits 2.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import date, datetime
from datetime import time as dtime
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, cast, get_args, get_origin
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from agent.config.backup import StoreBackup
from agent.config.base import FAULT_LEVELS, Model
from agent.config.channels import ChannelSettings
from agent.config.contract import Contract
from agent.config.errors import ConfigError, Problem, format_path
from agent.config.reader import read_file, read_yaml
from agent.config.windows import Approvals, WindowSpec, both_parties, legacy_approved_by, parse_local_datetime
from probes import registry
from probes.settings import Duration, Secret, SecretRef
from probes.thresholds import Threshold

__all__ = ["Config", "ConfigError", "Problem", "load", "parse"]

_LEVEL_BY_NAME = {v: k for k, v in FAULT_LEVELS.items()}
SPAN = re.compile(r"^(\d{2}):(\d{2})-(\d{2}):(\d{2})$")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

REPORT_KINDS = ("daily", "weekly", "monthly", "quarterly", "yearly")
"""The periodic report kinds the daemon writes on schedule."""
ScheduledKind = Literal["daily", "weekly", "monthly", "quarterly", "yearly"]


def check_hhmm(v: str) -> str:
    h, _, m = v.partition(":")
    if not (len(h) == 2 and len(m) == 2 and h.isdigit() and m.isdigit()) or int(h) > 23 or int(m) > 59:
        raise ValueError(f"{v!r} is not a time of day HH:MM")
    return v


def parse_span(span: str) -> tuple[int, int]:
    """'HH:MM-HH:MM' (end may be 24:00) -> [start, end) minutes of the day; ValueError if not."""
    m = SPAN.match(span)
    if not m:
        raise ValueError(f"{span!r} is not 'HH:MM-HH:MM'")
    h1, m1, h2, m2 = map(int, m.groups())
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if m1 >= 60 or m2 >= 60 or h1 >= 24 or end > 1440 or start >= end:
        raise ValueError(f"{span!r} must run forward within one day (00:00-24:00)")
    return start, end


class Site(Model):
    name: str = Field(min_length=1)
    timezone: str = "Asia/Shanghai"
    campuses: tuple[str, ...] = ()

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r} (use an IANA name such as 'Asia/Shanghai')") from None
        return v

    @functools.cached_property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class Storage(Model):
    path: Path = Path("var/sentinel.db")
    raw_retention: Duration = 31 * 86400.0
    """Raw results older than this are pruned (hourly roll-ups stay)."""
    evidence_key: SecretRef | None = None
    """HMAC key of the evidence chain ('${ENV}' or 'file:/path'). Unset: the agent creates a
    random key at its first start in a 0600 file next to the store (`<store>.key`)."""
    backup: StoreBackup | None = None
    """Online copies of the store, verified after copying (`sentinel store backup`)."""


class Schedule(Model):
    """Planned operating hours in the site's time zone; omitted days mean 00:00-24:00."""

    mon: tuple[str, ...] | None = None
    tue: tuple[str, ...] | None = None
    wed: tuple[str, ...] | None = None
    thu: tuple[str, ...] | None = None
    fri: tuple[str, ...] | None = None
    sat: tuple[str, ...] | None = None
    sun: tuple[str, ...] | None = None

    @model_validator(mode="after")
    def _spans(self) -> Schedule:
        for day in DAYS:
            for span in getattr(self, day) or ():
                m = SPAN.match(span)
                if not m:
                    raise ValueError(f"{day}: {span!r} is not 'HH:MM-HH:MM'")
                h1, m1, h2, m2 = map(int, m.groups())
                if not (0 <= h1 <= 24 and 0 <= h2 <= 24 and m1 < 60 and m2 < 60) or (h1 * 60 + m1) >= (
                    h2 * 60 + m2
                ):
                    raise ValueError(f"{day}: {span!r} must run forward within one day")
        return self

    def minutes(self, weekday: int) -> list[tuple[int, int]]:
        """Planned [start, end) minute spans of a weekday (0 = Monday)."""
        spans: tuple[str, ...] | None = getattr(self, DAYS[weekday])
        if spans is None:
            return [(0, 1440)]
        out = []
        for span in spans:
            m = SPAN.match(span)
            assert m is not None  # validated above
            h1, m1, h2, m2 = map(int, m.groups())
            out.append((h1 * 60 + m1, h2 * 60 + m2))
        return sorted(out)


class RedundancyGroup(Model):
    """Redundant components: the group is up while at least `need` of its checks are up
    (e.g. 2 application servers behind a balancer: need 1)."""

    checks: tuple[str, ...] = Field(min_length=2)
    need: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _need_fits(self) -> RedundancyGroup:
        if self.need > len(self.checks):
            raise ValueError(f"need ({self.need}) cannot exceed the number of checks ({len(self.checks)})")
        return self


class System(Model):
    name: str = Field(min_length=1)
    campus: str | None = None
    description: str = ""
    availability_target: float = Field(99.5, gt=0, le=100)
    schedule: Schedule | Literal["7x24"] = "7x24"
    redundancy: tuple[RedundancyGroup, ...] = ()
    """k-of-n groups among the system's availability-critical checks; the others must all be up."""


class ForceMajeure(Model):
    """Agreed force majeure (power cut by the grid, city-wide network outage, ...): excluded
    from availability like maintenance. Both parties' approval is part of the record."""

    name: str = Field(min_length=1)
    start: datetime
    end: datetime
    systems: tuple[str, ...] = ()
    """Empty: every system of the site."""
    reason: str = Field(min_length=1)
    approvals: Approvals

    @model_validator(mode="before")
    @classmethod
    def _legacy(cls, v: Any) -> Any:
        return legacy_approved_by(v)

    @field_validator("approvals")
    @classmethod
    def _both(cls, v: Approvals) -> Approvals:
        return both_parties(v)

    @field_validator("start", "end", mode="before")
    @classmethod
    def _local(cls, v: Any) -> Any:
        return parse_local_datetime(v)

    @model_validator(mode="after")
    def _order(self) -> ForceMajeure:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self


class Availability(Model):
    unknown_policy: Literal["unavailable", "excluded"] = "unavailable"
    """How unknown time (agent down, probe could not run, no data) enters the figure. Both
    figures are always shown; this one is the verdict's."""
    before_monitoring: Literal["excluded", "unknown"] = "excluded"
    """Time before monitoring began (未监控：监控开始前): left out of planned time (default), or
    counted as unknown time under `unknown_policy`. Stated in every figure."""
    force_majeure: tuple[ForceMajeure, ...] = ()


class ThresholdModel(Model):
    warn: float | None = None
    crit: float | None = None
    below: bool = False

    def to_threshold(self) -> Threshold:
        return Threshold(self.warn, self.crit, self.below)


FaultLevel = Annotated[int, Field(ge=1, le=4)]


class CheckCommon(Model):
    kind: str
    """The probe kind (probes.registry); each kind's model (check_model) narrows it to a Literal."""
    name: str = Field(min_length=1, pattern=r"^[^\s/]+$")
    system: str | None = None
    interval: Duration = 60.0
    timeout: Duration = 10.0
    confirmations: int = Field(3, ge=1, le=20)
    """Consecutive samples in a new state before it is confirmed (hard)."""
    thresholds: dict[str, ThresholdModel] = {}
    availability_critical: bool = False
    fault_level: FaultLevel = 3
    fault_type: Literal["核心系统类", "硬件网络类", "数据安全类", "综合类"] = "综合类"
    enabled: bool = True

    @field_validator("fault_level", mode="before")
    @classmethod
    def _level(cls, v: Any) -> Any:
        if isinstance(v, str) and v.strip() in _LEVEL_BY_NAME:
            return _LEVEL_BY_NAME[v.strip()]
        return v

    @model_validator(mode="after")
    def _timeout_vs_interval(self) -> CheckCommon:
        if self.timeout >= self.interval:
            raise ValueError(
                f"timeout ({self.timeout:g} s) must be shorter than interval ({self.interval:g} s)"
            )
        return self

    def threshold_rules(self) -> dict[str, Threshold]:
        rules = dict(registry.spec(self.kind).default_thresholds)
        rules.update({k: v.to_threshold() for k, v in self.thresholds.items()})
        return rules


@functools.cache
def check_model(kind: str) -> type[CheckCommon] | None:
    """The model of one kind's checks (CheckCommon + the kind's settings), built on first use so
    a site pays only for the probe kinds it configures."""
    if kind not in registry.KINDS:
        return None
    spec = registry.spec(kind)
    overrides: dict[str, Any] = {}
    if spec.default_confirmations is not None:
        # Event-like kinds (a log line, a restart) are over by the next run: their failures
        # would never be confirmed at the usual 3 consecutive samples.
        overrides["confirmations"] = (int, Field(spec.default_confirmations, ge=1, le=20))
    # pydantic's stubs cannot express a base tuple mixing CheckCommon with the kind's settings,
    # nor a Literal built at run time: the fields go in as Any; the result is a CheckCommon.
    fields: dict[str, Any] = {"kind": (Literal[kind], ...), **overrides}
    built: Any = create_model(f"{kind.capitalize()}Check", __base__=(CheckCommon, spec.settings), **fields)
    return cast("type[CheckCommon]", built)


class ReportSchedule(Model):
    """`reports.schedule` in the configuration."""

    kinds: tuple[ScheduledKind, ...] = ("daily", "weekly", "monthly", "quarterly", "yearly")
    """Which periodic reports the daemon writes."""
    daily_time: str = "07:30"
    weekly_weekday: int = Field(1, ge=1, le=7)
    """ISO weekday of the weekly report: 1 = Monday … 7 = Sunday."""
    time: str = "08:00"
    """Time of day of the weekly, monthly, quarterly and yearly reports."""
    holiday_inspection: bool = True
    """Run `inspect` on the last working day before each statutory holiday."""
    inspection_time: str = "14:00"
    deliver_within: int = Field(3, ge=1, le=30)
    """Working days after the period within which the contract wants the report delivered."""
    catch_up_days: int = Field(31, ge=1, le=400)
    """How far back a report that was never written is still written (and marked late)."""
    late_after_minutes: int = Field(60, ge=1, le=7 * 1440)

    @field_validator("daily_time", "time", "inspection_time")
    @classmethod
    def _times(cls, v: str) -> str:
        return check_hhmm(v)


ReportKind = Literal["daily", "weekly", "monthly", "quarterly", "yearly", "inspection", "acceptance"]


class Reports(Model):
    output_dir: Path = Path("var/reports")
    daily_time: str = Field("07:30", pattern=r"^\d{2}:\d{2}$")
    lang: Literal["zh", "en"] = "zh"
    schedule: ReportSchedule = ReportSchedule()
    """When the daemon writes the periodic reports and the pre-holiday inspections."""
    recipients: dict[ReportKind, tuple[str, ...]] = {}
    """Notification channel names per report kind; a report with none is only archived."""
    pdf: tuple[ReportKind, ...] = ("monthly", "quarterly", "yearly", "acceptance")
    """Kinds that also get a PDF (archived, and attached to the mail)."""

    @model_validator(mode="after")
    def _one_daily_time(self) -> Reports:
        if "daily_time" in self.schedule.model_fields_set:
            raise ValueError(
                "set the daily report's time as reports.daily_time, not reports.schedule.daily_time"
            )
        return self

    @field_validator("daily_time")
    @classmethod
    def _hhmm(cls, v: str) -> str:
        h, m = map(int, v.split(":"))
        if h > 23 or m > 59:
            raise ValueError(f"{v!r} is not a time of day")
        return v

    @functools.cached_property
    def daily_at(self) -> dtime:
        h, m = map(int, self.daily_time.split(":"))
        return dtime(h, m)

    def effective_schedule(self) -> ReportSchedule:
        """The report schedule, with `daily_time` (which wins over the schedule's) filled in."""
        return self.schedule.model_copy(update={"daily_time": self.daily_time})


class Agent(Model):
    workers: int = Field(64, ge=1, le=512)
    """Probe threads; a hung probe holds one until its driver gives up."""
    heartbeat: Duration = 10.0
    liveness_grace: Duration | None = None
    """A run that recorded no stop is alive up to its last heartbeat plus this grace, then the
    time is unknown (agent down). Unset: three heartbeats."""
    listen: str | None = None
    """host:port of the agent's own /healthz endpoint; unset = no endpoint."""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_file: Path | None = None
    log_json: bool = False

    @property
    def grace_ms(self) -> int:
        """The liveness grace in ms: one rule for availability, status, reports and verify.py."""
        grace = self.liveness_grace if self.liveness_grace is not None else 3 * float(self.heartbeat)
        return int(round(float(grace) * 1000))

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str | None) -> str | None:
        """A host and a port the agent can bind: `127.0.0.1:99999` is refused here, by
        `config validate`, not by a traceback when `sentinel run` starts."""
        import ipaddress

        if v is None:
            return v
        if "/" in v or "@" in v:
            raise ValueError(f"{v!r}: write host:port only, without a scheme, path or user")
        host, sep, port = v.rpartition(":")
        if not sep or not host:
            raise ValueError(f"{v!r} is not host:port (e.g. 127.0.0.1:9187)")
        if not (port.isascii() and port.isdigit()) or not 1 <= int(port) <= 65535:
            raise ValueError(f"{v!r}: the port must be a number from 1 to 65535")
        if host.startswith("[") and host.endswith("]"):
            try:
                ipaddress.IPv6Address(host[1:-1])
            except ValueError:
                raise ValueError(f"{v!r}: {host[1:-1]!r} is not an IPv6 address") from None
        elif ":" in host:
            raise ValueError(f"{v!r}: write an IPv6 address in brackets, e.g. [::1]:{port}")
        elif all(label.isascii() and label.isdigit() for label in host.split(".")):
            try:
                ipaddress.IPv4Address(host)
            except ValueError:
                raise ValueError(f"{v!r}: {host!r} is not an IPv4 address") from None
        elif len(host) > 253 or not all(
            re.fullmatch(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?", label) for label in host.split(".")
        ):
            raise ValueError(f"{v!r}: {host!r} is not a host name or IP address")
        return v


EVENTS = ("opened", "flapping", "reminder", "warning", "escalation", "recovered", "reopened", "closed")
Event = Literal["opened", "flapping", "reminder", "warning", "escalation", "recovered", "reopened", "closed"]


class LevelConfig(Model):
    respond: Duration
    restore: Duration | None
    working_time: bool = False
    """Deadlines count working time (China calendar and working hours) instead of clock time."""
    warn_before: Duration = 1800.0
    remind_every: Duration = 3600.0
    report_within: Duration = 86400.0


def _default_levels() -> dict[int, LevelConfig]:
    return {
        1: LevelConfig(respond=600, restore=1800, warn_before=300, remind_every=600),
        2: LevelConfig(respond=1800, restore=7200, warn_before=1800, remind_every=1800),
        3: LevelConfig(
            respond=3600,
            restore=14400,
            working_time=True,
            warn_before=1800,
            remind_every=3600,
            report_within=172800,
        ),
        4: LevelConfig(respond=7200, restore=None, working_time=True, warn_before=1800, remind_every=14400),
    }


class Flapping(Model):
    window: int = Field(21, ge=5, le=100)
    low: float = Field(25.0, ge=0, le=100)
    high: float = Field(30.0, ge=0, le=100)

    @model_validator(mode="after")
    def _order(self) -> Flapping:
        if self.low >= self.high:
            raise ValueError("low must be below high")
        return self


class WorkingHours(Model):
    """When the maintenance team counts as working. Dates override the statutory calendar."""

    spans: tuple[str, ...] = Field(("08:00-12:00", "13:30-17:30"), min_length=1)
    """Working spans of every working day, local time, 'HH:MM-HH:MM' (end may be 24:00)."""
    extra_holidays: tuple[date, ...] = ()
    """Days off on top of (or, for unknown years, instead of) the statutory calendar."""
    extra_workdays: tuple[date, ...] = ()
    """Working days on top of the calendar, e.g. next year's 调休 before the package knows it."""

    @model_validator(mode="after")
    def _check(self) -> WorkingHours:
        """The spans run forward, do not overlap, and no date is both off and on."""
        minutes = self.minutes()
        for (_, end), (start, _) in zip(minutes, minutes[1:], strict=False):
            if start < end:
                raise ValueError(f"working spans overlap: {self.spans!r}")
        both = sorted(set(self.extra_holidays) & set(self.extra_workdays))
        if both:
            days = ", ".join(d.isoformat() for d in both)
            raise ValueError(f"dates listed both as extra holiday and extra workday: {days}")
        return self

    def minutes(self) -> tuple[tuple[int, int], ...]:
        """Sorted [start, end) minute-of-day pairs of the working spans."""
        return tuple(sorted(parse_span(s) for s in self.spans))


class Faults(Model):
    levels: dict[FaultLevel, LevelConfig] = Field(default_factory=_default_levels)
    open_on: tuple[Literal["CRIT", "UNKNOWN", "WARN"], ...] = ("CRIT",)
    raise_when_unavailable: FaultLevel | None = 1
    """Level a fault is raised to when an availability-critical check fails (null: never)."""
    yearly_limits: dict[FaultLevel, int] = Field(default_factory=lambda: {1: 5, 2: 10})
    """Overdue faults per level and year that make a major breach of contract."""
    flapping: Flapping = Flapping()
    recovery_hold: Duration = 300.0
    reopen_within: Duration = 1800.0
    working_hours: WorkingHours = WorkingHours()

    @field_validator("levels", mode="before")
    @classmethod
    def _merge_levels(cls, v: Any) -> Any:
        # A contract usually changes one or two rows of the table: keep the others.
        if isinstance(v, dict):
            merged: dict[Any, Any] = {k: m.model_dump() for k, m in _default_levels().items()}
            for k, row in v.items():
                key = _LEVEL_BY_NAME.get(k, k) if isinstance(k, str) else k
                try:
                    key = int(key)
                except (TypeError, ValueError):
                    merged[k] = row
                    continue
                merged[key] = {**merged.get(key, {}), **row} if isinstance(row, dict) else row
            return merged
        return v


class Route(Model):
    channels: tuple[str, ...] = Field(min_length=1)
    levels: tuple[FaultLevel, ...] = (1, 2, 3, 4)
    systems: tuple[str, ...] = ()
    campuses: tuple[str, ...] = ()
    events: tuple[Event, ...] = ("opened", "flapping", "reminder", "recovered", "reopened", "closed")
    """An escalation route lists warning/escalation here and a second set of channels."""


class Notifications(Model):
    channels: dict[str, ChannelSettings] = {}
    routes: tuple[Route, ...] = ()
    heartbeat_url: str | None = Field(None, pattern=r"^https?://")
    """Dead man's switch: the agent GETs this URL every `heartbeat_every` while it is healthy."""
    heartbeat_every: Duration = 60.0

    @model_validator(mode="after")
    def _routes(self) -> Notifications:
        for i, route in enumerate(self.routes):
            for ch in route.channels:
                if ch not in self.channels:
                    known = ", ".join(sorted(self.channels)) or "none"
                    raise ValueError(f"routes[{i}]: channel {ch!r} is not defined (defined: {known})")
        return self


class Config(Model):
    site: Site
    storage: Storage = Storage()
    agent: Agent = Agent()
    systems: tuple[System, ...] = ()
    checks: tuple[CheckCommon, ...] = ()
    reports: Reports = Reports()
    faults: Faults = Faults()
    notifications: Notifications = Notifications()
    maintenance: tuple[WindowSpec, ...] = ()
    availability: Availability = Availability()
    contract: Contract = Contract()
    # Later capabilities add their own sections here; existing files stay valid because every
    # new section has defaults.

    @functools.cached_property
    def check_map(self) -> Mapping[str, CheckCommon]:
        return {c.name: c for c in self.checks}

    def system(self, name: str | None) -> System | None:
        for s in self.systems:
            if s.name == name:
                return s
        return None

    def canonical(self) -> tuple[str, str]:
        """The effective configuration as canonical JSON (sorted keys, no spaces; secrets as
        their references, never their values) and its SHA-256: what a start records."""
        import hashlib
        import json

        data = self.model_dump(mode="json", by_alias=True, serialize_as_any=True)
        text = json.dumps(data, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        return text, hashlib.sha256(text.encode("utf-8")).hexdigest()

    @model_validator(mode="after")
    def _windows_approved(self) -> Config:
        # A window written in the file counts as recorded when the file is first loaded, with
        # both parties' approval written next to it (经双方认定).
        for i, w in enumerate(self.maintenance):
            if w.approvals is None or not w.approvals.both:
                raise ValueError(
                    f"maintenance[{i}] ({w.name}): a window in the configuration needs "
                    "approvals: {甲方: 姓名, 乙方: 姓名}"
                )
        return self


# --------------------------------------------------------------------------------------
# Loading and error reporting


def _fmt_path(loc: Sequence[Any]) -> str:
    return format_path(loc)


_LABEL = re.compile(r"[\[\]()]")
"""What pydantic's union member labels contain (`function-after[_spans(), Schedule]`,
`literal['7x24']`, `[key]`) and keys written in a configuration do not."""
_TYPE_LABELS = frozenset({"str", "int", "float", "bool", "none", "bytes", "date", "datetime", "time"})
_DISCRIMINATORS = ("type", "kind")


def _is_label(part: str, node: Any) -> bool:
    """Whether `part` of an error's loc names a union member rather than a key."""
    if _LABEL.search(part) or part in _TYPE_LABELS or part[:1].isupper():  # models are CamelCase
        return True
    if isinstance(node, dict):
        return any(node.get(d) == part for d in _DISCRIMINATORS)  # a tagged union's tag
    return node is not None  # below a scalar or a list no name is the user's key


def _user_loc(loc: Sequence[Any], raw: Any) -> tuple[tuple[Any, ...], tuple[int, str] | None]:
    """`loc` as the user wrote it, and where a union member's label was dropped from it.

    Pydantic names the member of a union it tried (`systems[0].schedule.function-after[_spans(),
    Schedule]`, the channel type in `notifications.channels.ding.dingtalk.webhook`). Walking the
    data along `loc` tells them apart: a key that is in the data is the user's; one that is not
    is a missing key, unless it has the shape of a label."""
    out: list[Any] = []
    node: Any = raw
    branch: tuple[int, str] | None = None
    for part in loc:
        if isinstance(node, dict) and part in node:
            # As the line index has it: `levels: {1: ...}` is `faults.levels.1`, not `[1]`.
            out.append(str(part) if isinstance(part, int) else part)
            node = node[part]
        elif isinstance(part, int) and not isinstance(part, bool):
            out.append(part)
            node = node[part] if isinstance(node, list) and 0 <= part < len(node) else None
        elif _is_label(str(part), node):
            branch = branch or (len(out), str(part))
        else:
            out.append(part)  # a key the model wants and the data lacks
            node = None
    return tuple(out), branch


_MISMATCH = frozenset(
    {
        "model_type",
        "model_attributes_type",
        "dict_type",
        "literal_error",
        "string_type",
        "int_type",
        "int_parsing",
        "float_type",
        "float_parsing",
        "bool_type",
        "bool_parsing",
        "list_type",
        "tuple_type",
        "none_required",
        "is_instance_of",
    }
)
"""Error types that only say the input is not this member's type at all."""


def _expected(err: Mapping[str, Any]) -> str:
    kind = err["type"]
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return "a mapping"
    if kind == "literal_error":
        return str((err.get("ctx") or {}).get("expected", "one of the listed values"))
    if kind in ("list_type", "tuple_type"):
        return "a list"
    if kind == "string_type":
        return "text"
    if kind in ("int_type", "int_parsing"):
        return "a whole number"
    if kind in ("float_type", "float_parsing"):
        return "a number"
    if kind in ("bool_type", "bool_parsing"):
        return "true or false"
    return str(err.get("msg", kind))


Located = tuple[tuple[Any, ...], "tuple[int, str] | None", dict[str, Any]]


def _one_answer_per_union(entries: list[Located]) -> list[Located]:
    """A value in a union field fails every member: report the member it was meant for.

    A member whose only complaint is that the value is not its type at all (`Input should be
    '7x24'` for a schedule written as a mapping) is dropped when another member got further;
    when none did, one problem says what the value may be ("expected a mapping or '7x24'")."""
    groups: dict[tuple[Any, ...], dict[str, list[Located]]] = {}
    out: list[Located] = []
    for entry in entries:
        loc, branch, _err = entry
        if branch is None:
            out.append(entry)
        else:
            groups.setdefault(loc[: branch[0]], {}).setdefault(branch[1], []).append(entry)
    for point, members in groups.items():

        def shallow(member: list[Located], point: tuple[Any, ...] = point) -> bool:
            return all(loc == point and err["type"] in _MISMATCH for loc, _b, err in member)

        further = [m for m in members.values() if not shallow(m)]
        if further:
            out.extend(e for m in further for e in m)
            continue
        errs = [err for m in members.values() for _loc, _b, err in m]
        expected = list(dict.fromkeys(_expected(e) for e in errs))
        merged = {"type": "union_mismatch", "msg": "expected " + " or ".join(expected)}
        if "input" in errs[0]:
            merged["input"] = errs[0]["input"]
        out.append((point, None, merged))
    return out


def _narrow(ann: Any, node: Any) -> Any:
    """The type that validates `node` under annotation `ann`: Annotated and Optional removed,
    a union narrowed to the member the node's discriminator (`type:`) names, else its model."""
    discriminator: str | None = None
    while True:
        origin = get_origin(ann)
        if origin is Annotated:
            base, *meta = get_args(ann)
            for m in meta:
                d = getattr(m, "discriminator", None)
                if isinstance(d, str):
                    discriminator = d
            ann = base
            continue
        if origin in (Union, UnionType):
            members = [a for a in get_args(ann) if a is not type(None)]
            pick = None
            if discriminator is not None and isinstance(node, dict):
                for m in members:
                    field = getattr(m, "model_fields", {}).get(discriminator)
                    if field is not None and node.get(discriminator) in get_args(field.annotation):
                        pick = m
            if pick is None:
                pick = _first_model(ann)
            if pick is None:
                return members[0] if len(members) == 1 else None
            ann = pick
            continue
        return ann


def _model_at(loc: Sequence[Any], raw: Any) -> type[BaseModel] | None:
    """The model class that validates the mapping at `loc` (for 'did you mean' hints)."""
    ann: Any = Config
    node: Any = raw
    parts = list(loc)
    if len(parts) >= 2 and parts[0] == "checks" and isinstance(parts[1], int):
        items = raw.get("checks") if isinstance(raw, dict) else None
        item = items[parts[1]] if isinstance(items, list) and parts[1] < len(items) else None
        if not isinstance(item, dict):
            return None
        ann, node, parts = check_model(str(item.get("kind"))), item, parts[2:]
    for part in parts:
        ann = _narrow(ann, node)
        origin = get_origin(ann)
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            field = ann.model_fields.get(str(part))
            if field is None:
                return None
            ann = field.annotation
        elif origin in (tuple, list) and isinstance(part, int):
            ann = (get_args(ann) or (None,))[0]
        elif origin is dict:
            args = get_args(ann)
            ann = args[1] if len(args) == 2 else None
        else:
            return None
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            node = None
    ann = _narrow(ann, node)
    return ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None


def _first_model(ann: Any) -> Any:
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    for arg in getattr(ann, "__args__", ()) or ():
        found = _first_model(arg)
        if found is not None:
            return found
    return None


def _message(err: Mapping[str, Any], raw: Any) -> str:
    kind = err["type"]
    loc = tuple(err["loc"])
    if kind == "extra_forbidden":
        key = str(loc[-1])
        parent = _model_at(loc[:-1], raw)
        hint = ""
        if parent is not None:
            names = [n for n in parent.model_fields if not n.startswith("_")]
            close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
            if close:
                hint = f" (did you mean '{close[0]}'?)"
        return f"unknown key '{key}'{hint}"
    if kind == "missing":
        return "required key is missing"
    if kind == "union_tag_invalid":
        ctx = err.get("ctx") or {}
        tag = str(ctx.get("tag"))
        expected = str(ctx.get("expected_tags", ""))
        close = difflib.get_close_matches(tag, re.findall(r"'([^']*)'", expected), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        return f"unknown type '{tag}'{hint}; expected one of {expected}"
    if kind == "union_tag_not_found":
        ctx = err.get("ctx") or {}
        return f"required key {ctx.get('discriminator', 'type')} is missing"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        msg = "expected a mapping"  # pydantic's wording names the model class
    else:
        msg = str(err["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            msg = msg[len(prefix) :]
    if "input" in err and kind not in ("value_error",) and not isinstance(err["input"], dict | list):
        msg += f" (got {err['input']!r})"
    return msg


def _validate_checks(raw_checks: Any, problems: list[tuple[tuple[Any, ...], dict[str, Any]]]) -> list[Any]:
    out: list[Any] = []
    if raw_checks is None:
        return out
    if not isinstance(raw_checks, list):
        problems.append((("checks",), {"type": "list_type", "loc": (), "msg": "must be a list of checks"}))
        return out
    for i, item in enumerate(raw_checks):
        if not isinstance(item, dict):
            problems.append((("checks", i), {"type": "t", "loc": (), "msg": "each check must be a mapping"}))
            continue
        kind = item.get("kind")
        model = check_model(str(kind)) if kind is not None else None
        if model is None:
            if kind is None:
                problems.append((("checks", i, "kind"), {"type": "missing", "loc": ()}))
            else:
                close = difflib.get_close_matches(str(kind), list(registry.KINDS), n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                problems.append(
                    (
                        ("checks", i, "kind"),
                        {
                            "type": "t",
                            "loc": (),
                            "msg": f"unknown kind {kind!r}{hint}; known: "
                            + ", ".join(sorted(registry.KINDS)),
                        },
                    )
                )
            continue
        try:
            out.append(model.model_validate(item))
        except ValidationError as exc:
            for e in exc.errors():
                problems.append((("checks", i), dict(e)))
    return out


def _secrets(obj: Any, loc: tuple[Any, ...]) -> Iterator[tuple[tuple[Any, ...], Secret]]:
    if isinstance(obj, Secret):
        yield loc, obj
    elif isinstance(obj, BaseModel):
        for name in type(obj).model_fields:
            yield from _secrets(getattr(obj, name), (*loc, name))
    elif isinstance(obj, Mapping):
        for k, v in obj.items():
            yield from _secrets(v, (*loc, k))
    elif isinstance(obj, tuple | list):
        for i, v in enumerate(obj):
            yield from _secrets(v, (*loc, i))


def parse(text: str, source: str = "<config>", base_dir: Path | None = None) -> Config:
    """Validate YAML text; relative paths are resolved against `base_dir`."""
    raw, lines = read_yaml(text, source)
    return validate(raw, lines, source, base_dir)


def validate(
    raw: dict[str, Any], lines: Mapping[tuple[Any, ...], int], source: str, base_dir: Path | None = None
) -> Config:
    """Validate data read by `agent.config.reader`; raises ConfigError with every problem."""
    verdict = _not_a_configuration(raw)
    if verdict is not None:
        raise ConfigError(source, [Problem("", None, verdict)])
    errors: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
    checks = _validate_checks(raw.get("checks"), errors)
    top = {k: v for k, v in raw.items() if k != "checks"}
    config: Config | None = None
    try:
        config = Config.model_validate(top)
    except ValidationError as exc:
        errors.extend(((), dict(e)) for e in exc.errors())

    located: list[Located] = []
    for prefix, err in errors:
        loc, branch = _user_loc((*prefix, *err.get("loc", ())), raw)
        if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
            # Point at the `type:` line, which is where the fix goes.
            loc = (*loc, str((err.get("ctx") or {}).get("discriminator", "type")).strip("'"))
        located.append((loc, branch, err))
    problems: list[Problem] = []
    for loc, _branch, err in _one_answer_per_union(located):
        message = _message({**err, "loc": loc}, raw)
        problems.append(Problem(_fmt_path(loc), _nearest_line(lines, loc), message))

    if config is not None:
        config = config.model_copy(update={"checks": tuple(checks)})
    problems.extend(_cross_checks(checks, raw, lines))
    secret_refs = list(_secrets(checks, ("checks",)))
    if config is not None:
        secret_refs += list(_secrets(config.notifications, ("notifications",)))
        secret_refs += list(_secrets(config.storage, ("storage",)))
    for loc, secret in secret_refs:
        try:
            secret.check()
        except ValueError as exc:
            problems.append(Problem(_fmt_path(loc), _nearest_line(lines, loc), str(exc)))

    if problems:
        problems.sort(key=lambda p: (p.line if p.line is not None else 0, p.path))
        raise ConfigError(source, problems)
    assert config is not None
    if base_dir is not None:
        config = _resolve_paths(config, base_dir)
    return config


def _not_a_configuration(raw: Mapping[Any, Any]) -> str | None:
    """One answer for a file that is not a configuration (another program's YAML, a log that
    happens to parse), instead of an "unknown key" line for each of its keys."""
    sections = list(Config.model_fields)
    if "site" in raw or "checks" in raw:
        return None
    keys = [str(k) for k in raw]
    unknown = [k for k in keys if k not in sections]
    if len(unknown) <= len(keys) - len(unknown):
        return None  # mostly sections (or empty): the usual problems say what is missing
    misspelt = [k for k in unknown if difflib.get_close_matches(k, sections, n=1, cutoff=0.75)]
    if 2 * len(misspelt) >= len(unknown):
        return None  # mostly misspelt sections: 'did you mean' says which
    shown = ", ".join(repr(k if len(k) <= 24 else k[:23] + "…") for k in keys[:3])
    shown += f" and {len(keys) - 3} more" if len(keys) > 3 else ""
    return (
        f"this does not look like a Sentinel configuration: its top-level keys ({shown}) are not "
        f"the sections of one ({', '.join(sections)}); is this the right file?"
    )


def _nearest_line(lines: Mapping[tuple[Any, ...], int], loc: tuple[Any, ...]) -> int | None:
    for n in range(len(loc), -1, -1):
        line = lines.get(tuple(loc[:n]))
        if line is not None:
            return line
    return None


def _cross_checks(checks: Sequence[Any], raw: Any, lines: Mapping[tuple[Any, ...], int]) -> list[Problem]:
    """Rules across sections; they run even when a section failed, so every problem shows."""
    problems = []

    def add(loc: tuple[Any, ...], message: str) -> None:
        problems.append(Problem(_fmt_path(loc), _nearest_line(lines, loc), message))

    raw_systems = raw.get("systems") if isinstance(raw.get("systems"), list) else []
    site = raw.get("site") if isinstance(raw.get("site"), dict) else {}
    campuses = site.get("campuses") if isinstance(site.get("campuses"), list) else []
    names: list[str] = []
    for i, s in enumerate(raw_systems):
        if not isinstance(s, dict):
            continue
        name = str(s.get("name"))
        if name in names:
            add(("systems", i, "name"), f"duplicate system {name!r}")
        names.append(name)
        if s.get("campus") and campuses and s["campus"] not in campuses:
            add(("systems", i, "campus"), f"campus {s['campus']!r} is not listed in site.campuses")
    raw_checks = raw.get("checks") if isinstance(raw.get("checks"), list) else []
    seen: dict[str, int] = {}
    for i, rc in enumerate(raw_checks):
        if not isinstance(rc, dict):
            continue
        check_name = rc.get("name")
        if isinstance(check_name, str):
            if check_name in seen:
                first = seen[check_name]
                add(("checks", i, "name"), f"duplicate check name {check_name!r} (first at checks[{first}])")
            else:
                seen[check_name] = i
        system = rc.get("system")
        if system is not None and str(system) not in names:
            close = difflib.get_close_matches(str(system), names, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            add(("checks", i, "system"), f"system {system!r} is not defined under systems{hint}")
    raw_windows = raw.get("maintenance") if isinstance(raw.get("maintenance"), list) else []
    check_names = {rc.get("name") for rc in raw_checks if isinstance(rc, dict)}
    window_names: list[Any] = []
    for i, w in enumerate(raw_windows):
        if not isinstance(w, dict):
            continue
        for j, s in enumerate(w.get("systems") or []):
            if str(s) not in names:
                add(("maintenance", i, "systems", j), f"system {s!r} is not defined under systems")
        for j, c in enumerate(w.get("checks") or []):
            if c not in check_names:
                add(("maintenance", i, "checks", j), f"check {c!r} is not defined under checks")
        if w.get("name") in window_names:
            add(("maintenance", i, "name"), f"duplicate maintenance window {w.get('name')!r}")
        window_names.append(w.get("name"))
    critical = {
        rc.get("name"): rc.get("system")
        for rc in raw_checks
        if isinstance(rc, dict) and rc.get("availability_critical")
    }
    for i, s in enumerate(raw_systems):
        if not isinstance(s, dict) or not isinstance(s.get("redundancy"), list):
            continue
        grouped: set[str] = set()
        for g, group in enumerate(s["redundancy"]):
            members = group.get("checks") if isinstance(group, dict) else None
            for j, c in enumerate(members if isinstance(members, list) else []):
                loc = ("systems", i, "redundancy", g, "checks", j)
                if c not in check_names:
                    add(loc, f"check {c!r} is not defined under checks")
                elif critical.get(c, object()) != s.get("name"):
                    add(
                        loc,
                        f"check {c!r} must belong to system {s.get('name')!r} and be availability_critical",
                    )
                elif c in grouped:
                    add(loc, f"check {c!r} is already in another redundancy group")
                grouped.add(c)
    avail = _mapping(raw.get("availability"))
    fm = _sequence(avail.get("force_majeure"))
    fm_names: list[Any] = []
    for i, rec in enumerate(fm):
        if not isinstance(rec, dict):
            continue
        at = ("availability", "force_majeure", i)
        for j, s in enumerate(rec.get("systems") or []):
            if str(s) not in names:
                add((*at, "systems", j), f"system {s!r} is not defined under systems")
        if rec.get("name") in fm_names:
            add((*at, "name"), f"duplicate force majeure record {rec.get('name')!r}")
        fm_names.append(rec.get("name"))
    recipients = _mapping(_mapping(raw.get("reports")).get("recipients"))
    channels = _mapping(_mapping(raw.get("notifications")).get("channels"))
    for kind, listed in recipients.items():
        for j, n in enumerate(listed if isinstance(listed, list) else []):
            if n not in channels:
                close = difflib.get_close_matches(str(n), list(channels), n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                where = ("reports", "recipients", kind, j)
                add(where, f"channel {n!r} is not defined under notifications.channels{hint}")
    del checks
    return problems


def _mapping(value: Any) -> dict[Any, Any]:
    return value if isinstance(value, dict) else {}


def _sequence(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _resolve_paths(config: Config, base: Path) -> Config:
    def fix(p: Path) -> Path:
        return p if p.is_absolute() else (base / p)

    return config.model_copy(
        update={
            "storage": config.storage.model_copy(
                update={
                    "path": fix(config.storage.path),
                    "backup": config.storage.backup.resolved(base) if config.storage.backup else None,
                }
            ),
            "reports": config.reports.model_copy(update={"output_dir": fix(config.reports.output_dir)}),
            "agent": config.agent.model_copy(
                update={"log_file": fix(config.agent.log_file) if config.agent.log_file else None}
            ),
        }
    )


def load(path: str | Path) -> Config:
    raw, lines = read_file(path)
    # Relative paths in the file are taken from the working directory the agent starts in
    # (systemd's WorkingDirectory=), and fixed now so later code never depends on the cwd.
    return validate(raw, lines, str(path), base_dir=Path.cwd())
