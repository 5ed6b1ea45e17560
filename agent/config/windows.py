"""Maintenance windows as configured (and as added with `sentinel maintenance add`): the
validated description and the parsers it needs. The schedule logic that uses it (occurrences,
"is this check in maintenance at t?") is in agent.windows.maintenance."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from agent.config.base import Model
from probes.settings import Duration

if TYPE_CHECKING:
    from apscheduler.triggers.cron import CronTrigger

MAX_RECURRING_DURATION_S = 31 * 86400.0
"""A recurring window longer than a month is a one-off window in disguise (or a typo for h/d);
it would also make every lookup look back that far."""

MAX_CRON_PER_WEEK = 7 * 96
"""At most every 15 minutes on average: keeps a yearly report under MAX_OCCURRENCES."""

_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_HHMM = re.compile(r"^(\d{1,2}):(\d{2})$")
_LOCAL_DT = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")


def parse_hhmm(v: Any) -> str:
    if isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 1440:
        # YAML 1.1 reads an unquoted 22:00 as the base-60 number 1320.
        h, m = divmod(v, 60)
        raise ValueError(
            f"write the time in quotes, e.g. at: '{h:02d}:{m:02d}' (YAML read it as the number {v})"
        )
    if not isinstance(v, str):
        raise ValueError("a time of day must be a string 'HH:MM'")
    found = _HHMM.match(v.strip())
    if not found or int(found.group(1)) > 23 or int(found.group(2)) > 59:
        raise ValueError(f"{v!r} is not a time of day 'HH:MM' (00:00-23:59)")
    return f"{int(found.group(1)):02d}:{found.group(2)}"


def recurring_duration(v: float) -> float:
    if v > MAX_RECURRING_DURATION_S:
        raise ValueError(
            f"a recurring window may last at most 31 days (got {v / 86400:g} days); "
            "use a one-off window with start and end for longer work"
        )
    return v


def parse_local_datetime(v: Any) -> Any:
    if v is None or isinstance(v, datetime):
        return v
    if isinstance(v, date):
        raise ValueError("give a time too: 'YYYY-MM-DD HH:MM'")
    if not isinstance(v, str):
        raise ValueError(
            "a date and time must be written as 'YYYY-MM-DD HH:MM' (site time) or ISO with offset"
        )
    s = v.strip()
    if not _LOCAL_DT.match(s):
        raise ValueError(f"{v!r} is not 'YYYY-MM-DD HH:MM' (site time) or ISO 8601 with an offset")
    try:
        return datetime.fromisoformat(s)
    except ValueError:
        raise ValueError(f"{v!r} is not a valid date and time") from None


_DOW_NAMES = {"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}
_DOW_ELEMENT = re.compile(r"^(?:(\*)|([0-7]|[a-z]{3})(?:-([0-7]|[a-z]{3}))?)(?:/(\d+))?$")


def _cron_dow_to_names(field: str) -> str:
    """Crontab day-of-week (0/7 = Sunday) -> APScheduler names, which number from Monday."""
    if field == "*":
        return field
    days: set[int] = set()
    for element in field.lower().split(","):
        m = _DOW_ELEMENT.match(element)
        if not m:
            raise ValueError(
                f"day-of-week {element!r} is not understood (use 0-7, sun-sat, ranges, lists, /step)"
            )
        star, first, last, step = m.groups()

        def num(tok: str) -> int:
            if tok.isdigit():
                return int(tok)
            if tok not in _DOW_NAMES:
                raise ValueError(f"unknown day-of-week name {tok!r}")
            return _DOW_NAMES[tok]

        if star:
            lo, hi = 0, 6
        else:
            lo = num(first)
            # "5/2" is crontab for "from 5 to the end, every 2nd".
            hi = num(last) if last else (7 if step else lo)
        if lo > hi:
            raise ValueError(f"day-of-week range {element!r} runs backwards")
        stride = int(step) if step else 1
        if stride < 1:
            raise ValueError(f"day-of-week step in {element!r} must be at least 1")
        days.update(d % 7 for d in range(lo, hi + 1, stride))
    if len(days) == 7:
        return "*"
    # Sunday is 0 in crontab and "sun" (6) in APScheduler: go through names, never numbers.
    return ",".join(_WEEKDAYS[(d - 1) % 7] for d in sorted(days, key=lambda d: (d - 1) % 7))


def compile_cron(expr: str) -> CronTrigger:
    """Parse a crontab line into a trigger that runs on the *wall clock* (UTC as a stand-in).

    Occurrences are enumerated as naive local times and placed on the time line by
    `_local_to_ms`, so DST handling is ours and the same for every schedule form.
    """
    fields = expr.split()
    if len(fields) != 5:
        raise ValueError(f"a cron expression has 5 fields 'minute hour day month weekday', got {len(fields)}")
    if fields[2] != "*" and fields[4] != "*":
        raise ValueError(
            "restricting both day-of-month and day-of-week is ambiguous (crontab matches either, "
            "APScheduler both); use a monthly window or two windows"
        )
    fields[4] = _cron_dow_to_names(fields[4])
    # Imported here: APScheduler (with asyncio) is only needed when a window is a cron line, and
    # the configuration helper process should not carry it for every site.
    from apscheduler.triggers.cron import CronTrigger

    try:
        return CronTrigger.from_crontab(" ".join(fields), timezone=UTC)
    except ValueError as exc:
        raise ValueError(f"invalid cron expression {expr!r}: {exc}") from None


TimeOfDay = Annotated[str, BeforeValidator(parse_hhmm)]
"""'HH:MM' in site time, normalised to two-digit hours."""
RecurringDuration = Annotated[Duration, AfterValidator(recurring_duration)]
"""How long each occurrence of a recurring window lasts (at most 31 days)."""


class Weekly(Model):
    days: list[Weekday] = Field(min_length=1)
    at: TimeOfDay
    duration: RecurringDuration

    @field_validator("days", mode="before")
    @classmethod
    def _days(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = [v]
        if isinstance(v, list):
            return [d.strip().lower() if isinstance(d, str) else d for d in v]
        return v


class Monthly(Model):
    day: int | Literal["last"]
    at: TimeOfDay
    duration: RecurringDuration

    @field_validator("day", mode="before")
    @classmethod
    def _day(cls, v: Any) -> Any:
        if isinstance(v, str) and v.strip().lower() == "last":
            return "last"
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 31:
            raise ValueError(f"day must be 1..31 or 'last' (got {v!r})")
        return v


PARTIES = ("甲方", "乙方")
"""The two parties whose agreement (经双方认定) lets a window or record exclude time: the
hospital (甲方) and the vendor (乙方)."""


class Approvals(Model):
    """Who approved, per party. Written in YAML as `approvals: {甲方: 信息科王主任, 乙方: 张工}`."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", arbitrary_types_allowed=True, hide_input_in_errors=True,
        populate_by_name=True,
    )  # fmt: skip

    hospital: str | None = Field(None, alias="甲方", min_length=1)
    vendor: str | None = Field(None, alias="乙方", min_length=1)

    def by_party(self) -> dict[str, str]:
        """{party: approver} of the parties that approved."""
        return {p: n for p, n in (("甲方", self.hospital), ("乙方", self.vendor)) if n}

    @property
    def both(self) -> bool:
        return bool(self.hospital and self.vendor)

    @model_validator(mode="after")
    def _two_people(self) -> Approvals:
        # One person signing for both sides is not an agreement of two parties.
        if self.hospital and self.vendor and self.hospital.strip() == self.vendor.strip():
            raise ValueError(
                f"甲方 and 乙方 must be approved by two different people (both are {self.hospital.strip()!r})"
            )
        return self


def legacy_approved_by(v: Any) -> Any:
    """`approved_by` (one name) was replaced by `approvals` (one per party): say how to write it."""
    if isinstance(v, dict) and "approved_by" in v:
        raise ValueError(
            "approved_by was replaced by approvals: {甲方: 姓名, 乙方: 姓名}: excluded time needs the "
            "approval of both parties (经双方认定)"
        )
    return v


class WindowSpec(Model):
    """One maintenance window, one-off or recurring, as configured or added from the CLI.

    `approvals` is written in the configuration file (both parties required there); a window
    added from the CLI carries its approvals in the store's approvals ledger instead."""

    name: str = Field(min_length=1)
    systems: list[str] = []
    checks: list[str] = []
    reason: str
    approvals: Approvals | None = None
    ticket: str | None = None
    # one-off
    start: datetime | None = None
    end: datetime | None = None
    # recurring
    weekly: Weekly | None = None
    monthly: Monthly | None = None
    cron: str | None = None
    duration: Duration | None = None
    valid_from: date | None = None
    valid_until: date | None = None

    @model_validator(mode="before")
    @classmethod
    def _legacy(cls, v: Any) -> Any:
        return legacy_approved_by(v)

    @field_validator("reason")
    @classmethod
    def _not_blank(cls, v: str, info: ValidationInfo) -> str:
        if not v.strip():
            raise ValueError(
                f"{info.field_name} must not be empty: say why the window is needed "
                "(it is printed in reports)"
            )
        return v.strip()

    @field_validator("systems", "checks")
    @classmethod
    def _names(cls, v: list[str]) -> list[str]:
        for n in v:
            if not n.strip():
                raise ValueError("names must not be empty")
        return v

    @field_validator("start", "end", mode="before")
    @classmethod
    def _dt(cls, v: Any) -> Any:
        return parse_local_datetime(v)

    @field_validator("cron")
    @classmethod
    def _cron(cls, v: str | None) -> str | None:
        if v is None:
            return v
        trigger = compile_cron(v.strip())
        # A week in which every weekday and hour exists on the wall clock (no DST question).
        lo = datetime(2025, 1, 6, tzinfo=UTC)
        first = nxt = trigger.get_next_fire_time(None, lo)
        if first is None:
            raise ValueError(f"cron {v!r} never fires")
        fires = 0
        while nxt is not None and nxt < lo + timedelta(days=7):
            fires += 1
            if fires > MAX_CRON_PER_WEEK:
                raise ValueError(
                    f"cron {v!r} fires more than {MAX_CRON_PER_WEEK} times a week; a maintenance window "
                    "may recur at most every 15 minutes on average"
                )
            nxt = trigger.get_next_fire_time(nxt, nxt)
        return v.strip()

    @field_validator("duration")
    @classmethod
    def _dur(cls, v: float | None) -> float | None:
        return None if v is None else recurring_duration(v)

    @model_validator(mode="after")
    def _form(self) -> WindowSpec:
        if not self.systems and not self.checks:
            raise ValueError("name at least one system or check the window applies to (systems: / checks:)")
        forms = [
            f
            for f, present in (
                ("start/end", self.start is not None or self.end is not None),
                ("weekly", self.weekly is not None),
                ("monthly", self.monthly is not None),
                ("cron", self.cron is not None),
            )
            if present
        ]
        if not forms:
            raise ValueError(
                "give a schedule: start + end (one-off), weekly: {days, at, duration}, "
                "monthly: {day, at, duration}, or cron + duration"
            )
        if len(forms) > 1:
            raise ValueError(f"give exactly one schedule form, found {' and '.join(forms)}")
        if self.duration is not None and self.cron is None:
            raise ValueError(
                "duration goes with cron; weekly and monthly carry their own duration, "
                "one-off windows use end"
            )
        if self.cron is not None and self.duration is None:
            raise ValueError("a cron window needs a duration, e.g. duration: 3h")
        if forms[0] == "start/end":
            if self.start is None or self.end is None:
                raise ValueError("a one-off window needs both start and end")
            if (self.start.tzinfo is None) != (self.end.tzinfo is None):
                raise ValueError(
                    "write start and end the same way: both in site time, or both with an offset"
                )
            if self.end <= self.start:
                raise ValueError(f"end ({self.end}) must be after start ({self.start})")
            if self.valid_from is not None or self.valid_until is not None:
                raise ValueError("valid_from / valid_until apply to recurring windows only")
        if (
            self.valid_from is not None
            and self.valid_until is not None
            and self.valid_until < self.valid_from
        ):
            raise ValueError(f"valid_until ({self.valid_until}) is before valid_from ({self.valid_from})")
        return self

    @property
    def recurring(self) -> bool:
        return self.start is None


def both_parties(v: Approvals) -> Approvals:
    """Validator: both 甲方 and 乙方 approved (a record written in the configuration file)."""
    missing = [p for p, n in (("甲方", v.hospital), ("乙方", v.vendor)) if not n]
    if missing:
        raise ValueError(f"approvals need both parties (经双方认定); missing: {', '.join(missing)}")
    return v
