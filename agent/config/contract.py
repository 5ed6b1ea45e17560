"""The contract's service periods (服务期): the year's verdict, downtime budget and overdue
limits run over a service period (e.g. 2026-04-14 → 2027-04-13), not the calendar year."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from pydantic import Field, field_validator, model_validator

from agent.config.base import FAULT_LEVELS, Model

_LEVEL_BY_NAME = {v: k for k, v in FAULT_LEVELS.items()}


class ServicePeriod(Model):
    """One service period: `start` and `end` are whole local days, both inclusive."""

    start: date
    end: date
    name: str | None = None
    """Shown in reports; default '服务期 START 至 END'."""
    target: float | None = Field(None, gt=0, le=100)
    """Availability target (%) of every system in this period; unset: each system's own."""
    overdue_limits: dict[int, Annotated[int, Field(ge=1)]] | None = None
    """Overdue faults per level (1..4 or 一级..四级) that make a major breach in this period;
    unset: faults.yearly_limits."""

    @field_validator("overdue_limits", mode="before")
    @classmethod
    def _level_names(cls, v: Any) -> Any:
        # The contract says 一级/二级; the YAML may too.
        if isinstance(v, dict):
            return {(_LEVEL_BY_NAME.get(k, k) if isinstance(k, str) else k): n for k, n in v.items()}
        return v

    @model_validator(mode="after")
    def _order(self) -> ServicePeriod:
        if self.end < self.start:
            raise ValueError(f"end ({self.end}) is before start ({self.start})")
        for level in self.overdue_limits or {}:
            if not 1 <= level <= 4:
                raise ValueError(f"overdue_limits: level {level} is not 1..4")
        return self

    @property
    def label(self) -> str:
        return self.name or f"服务期 {self.start:%Y-%m-%d} 至 {self.end:%Y-%m-%d}"

    def local_bounds(self, tz: ZoneInfo) -> tuple[datetime, datetime]:
        """[local midnight of `start`, local midnight after `end`) in the site's zone."""
        after = self.end + timedelta(days=1)
        return (
            datetime(self.start.year, self.start.month, self.start.day, tzinfo=tz),
            datetime(after.year, after.month, after.day, tzinfo=tz),
        )


class Contract(Model):
    service_periods: tuple[ServicePeriod, ...] = ()
    """In order, not overlapping. None configured: calendar years stand in for them (and for
    any time no service period covers: see agent.clock.periods.contract_year)."""

    @model_validator(mode="after")
    def _no_overlap(self) -> Contract:
        for a, b in zip(self.service_periods, self.service_periods[1:], strict=False):
            if b.start <= a.end:
                raise ValueError(
                    f"service periods must be in order and not overlap: {b.start} is not after {a.end}"
                )
        return self
