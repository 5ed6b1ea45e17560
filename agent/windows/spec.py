"""The validated description of a maintenance window (configuration and `sentinel maintenance
add`). The schedule logic that uses it is in agent.maintenance, free of pydantic."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, ValidationInfo, field_validator, model_validator

from agent.windows.maintenance import MAX_CRON_PER_WEEK, Weekday, WindowSpecMethods, compile_cron, parse_hhmm, parse_local_datetime, recurring_duration
from agent.config.base import Model
from probes.settings import Duration

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



class WindowSpec(WindowSpecMethods, Model):
    """One maintenance window, one-off or recurring, as configured or added from the CLI."""

    name: str = Field(min_length=1)
    systems: list[str] = []
    checks: list[str] = []
    reason: str
    approved_by: str
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

    @field_validator("reason", "approved_by")
    @classmethod
    def _not_blank(cls, v: str, info: ValidationInfo) -> str:
        if not v.strip():
            what = "why the window is needed" if info.field_name == "reason" else "who approved it"
            raise ValueError(f"{info.field_name} must not be empty: say {what} (it is printed in reports)")
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
