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
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from agent.config.base import FAULT_LEVELS, Model
from agent.config.channels import ChannelSettings
from agent.config.errors import ConfigError, Problem
from agent.config.reader import read_file, read_yaml
from agent.config.windows import WindowSpec, parse_local_datetime
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
    """HMAC key of the evidence chain ('${ENV}' or 'file:/path'); set before the first run."""


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
    approved_by: str = Field(min_length=1)

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
        rules = dict(registry.default_thresholds(self.kind))
        rules.update({k: v.to_threshold() for k, v in self.thresholds.items()})
        return rules


@functools.cache
def check_model(kind: str) -> type[CheckCommon] | None:
    """The model of one kind's checks (CheckCommon + the kind's settings), built on first use so
    a site pays only for the probe kinds it configures."""
    if kind not in registry.KINDS:
        return None
    settings = registry.settings_model(kind)
    overrides: dict[str, Any] = {}
    # Event-like kinds (a log line, a restart) are over by the next run: their failures
    # would never be confirmed at the usual 3 consecutive samples.
    # Read from the settings module (which re-exports it): validation never loads the runtime
    # module, so the helper process stays free of http.client, ssl and the drivers.
    confirmations = getattr(registry.settings_module(kind), "DEFAULT_CONFIRMATIONS", None)
    if confirmations is not None:
        overrides["confirmations"] = (int, Field(confirmations, ge=1, le=20))
    return create_model(  # type: ignore[call-overload, no-any-return]
        f"{kind.capitalize()}Check",
        __base__=(CheckCommon, settings),
        kind=(Literal[kind], ...),
        **overrides,
    )


class ReportSchedule(Model):
    """`reports.schedule` in the configuration."""

    kinds: tuple[ScheduledKind, ...] = REPORT_KINDS
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
    listen: str | None = Field(None, pattern=r"^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.\-]+):\d{1,5}$")
    """host:port of the agent's own /healthz endpoint; unset = no endpoint."""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_file: Path | None = None
    log_json: bool = False


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
        3: LevelConfig(respond=3600, restore=14400, working_time=True, warn_before=1800, remind_every=3600,
                       report_within=172800),
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


# --------------------------------------------------------------------------------------
# Loading and error reporting


def _fmt_path(loc: Sequence[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _model_at(loc: Sequence[Any], raw: Any) -> type[BaseModel] | None:
    """The model class that validates the mapping at `loc` (for 'did you mean' hints)."""
    model: Any = Config
    node: Any = raw
    parts = list(loc)
    if len(parts) >= 2 and parts[0] == "checks" and isinstance(parts[1], int):
        items = raw.get("checks") if isinstance(raw, dict) else None
        item = items[parts[1]] if isinstance(items, list) and parts[1] < len(items) else None
        if not isinstance(item, dict):
            return None
        model, node, parts = check_model(str(item.get("kind"))), item, parts[2:]
    for part in parts:
        if isinstance(part, int):
            node = node[part] if isinstance(node, list) and part < len(node) else None
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return None
        field = model.model_fields.get(part)
        if field is None:
            return None
        node = node.get(part) if isinstance(node, dict) else None
        model = _first_model(field.annotation)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


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
    """Validate data read by `config_yaml.read_yaml`; raises ConfigError with every problem."""
    errors: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
    checks = _validate_checks(raw.get("checks"), errors)
    top = {k: v for k, v in raw.items() if k != "checks"}
    config: Config | None = None
    try:
        config = Config.model_validate(top)
    except ValidationError as exc:
        errors.extend(((), dict(e)) for e in exc.errors())

    problems: list[Problem] = []
    for prefix, err in errors:
        loc = (*prefix, *err.get("loc", ()))
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
        name = rc.get("name")
        if isinstance(name, str):
            if name in seen:
                add(("checks", i, "name"), f"duplicate check name {name!r} (first at checks[{seen[name]}])")
            else:
                seen[name] = i
        system = rc.get("system")
        if system is not None and str(system) not in names:
            close = difflib.get_close_matches(str(system), names, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            add(("checks", i, "system"), f"system {system!r} is not defined under systems{hint}")
    raw_windows = raw.get("maintenance") if isinstance(raw.get("maintenance"), list) else []
    check_names = {rc.get("name") for rc in raw_checks if isinstance(rc, dict)}
    window_names: list[str] = []
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
    avail = raw.get("availability") if isinstance(raw.get("availability"), dict) else {}
    fm = avail.get("force_majeure") if isinstance(avail.get("force_majeure"), list) else []
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
    reports = raw.get("reports") if isinstance(raw.get("reports"), dict) else {}
    recipients = reports.get("recipients") if isinstance(reports.get("recipients"), dict) else {}
    notif = raw.get("notifications") if isinstance(raw.get("notifications"), dict) else {}
    channels = notif.get("channels") if isinstance(notif.get("channels"), dict) else {}
    for kind, names in recipients.items():
        for j, n in enumerate(names if isinstance(names, list) else []):
            if n not in channels:
                close = difflib.get_close_matches(str(n), list(channels), n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                where = ("reports", "recipients", kind, j)
                add(where, f"channel {n!r} is not defined under notifications.channels{hint}")
    del checks
    return problems


def _resolve_paths(config: Config, base: Path) -> Config:
    def fix(p: Path) -> Path:
        return p if p.is_absolute() else (base / p)

    return config.model_copy(
        update={
            "storage": config.storage.model_copy(update={"path": fix(config.storage.path)}),
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
