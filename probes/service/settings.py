"""Settings of the service probe (see probes.service.probe for what it does with them)."""

from __future__ import annotations

import re
from collections import Counter
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from probes.settings import ProbeSettings, Regex

__all__ = ["ProcessRule", "Settings", "StatusName"]

_LABEL = re.compile(r"^[^\s]+$")

StatusName = Literal["OK", "WARN", "CRIT"]


class ProcessRule(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    """Exact process name (java, sqlservr.exe) or a regular expression matching the whole name."""
    cmdline: Regex | None = None
    """Searched in the command line joined by spaces, e.g. 'his-server\\.jar'."""
    user: str | None = None
    min_count: int = Field(default=1, ge=0)
    max_count: int | None = Field(default=None, ge=1)
    label: str | None = None
    """Name in metrics and messages; default: `name`."""
    on_restart: StatusName = "WARN"

    @property
    def key(self) -> str:
        """Name in metrics, messages and the memory between runs."""
        return self.label or self.name

    @field_validator("label")
    @classmethod
    def _check_label(cls, v: str | None) -> str | None:
        if v is not None and not _LABEL.match(v):
            raise ValueError("label must not be empty or contain spaces")
        return v

    @model_validator(mode="after")
    def _check_counts(self) -> ProcessRule:
        if self.max_count is not None and self.max_count < self.min_count:
            raise ValueError(f"max_count ({self.max_count}) is below min_count ({self.min_count})")
        if self.label is None and not _LABEL.match(self.name):
            raise ValueError("a name with spaces needs a label (used in metric names)")
        return self


class Settings(ProbeSettings):
    processes: list[ProcessRule] = []
    windows_services: list[str] = []
    """Windows service names (Windows only), e.g. MSSQLSERVER, OracleServiceORCL."""
    on_service_restart: StatusName = "WARN"

    @field_validator("windows_services")
    @classmethod
    def _check_services(cls, v: list[str]) -> list[str]:
        seen: set[str] = set()
        for name in v:
            if not name.strip() or not _LABEL.match(name):
                raise ValueError(
                    f"invalid Windows service name {name!r} (use the service name, not the display name)"
                )
            if name.lower() in seen:
                raise ValueError(f"Windows service {name!r} is listed twice")
            seen.add(name.lower())
        return v

    @model_validator(mode="after")
    def _check_rules(self) -> Settings:
        if not self.processes and not self.windows_services:
            raise ValueError("list at least one entry in processes or windows_services")
        # Two rules with one label would write the same metrics twice.
        twice = [key for key, n in Counter(r.key for r in self.processes).items() if n > 1]
        if twice:
            raise ValueError(f"process {twice[0]!r} is listed twice; give one of them a label")
        return self
