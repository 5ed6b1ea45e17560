"""Run-time behaviour of configuration sections, shared by the pydantic models (agent.config)
and their plain form in the monitoring process (probes.plain). Free of pydantic.

The mixins declare no annotations: pydantic would take them for fields of the models."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import time as dtime
from functools import cached_property
from typing import Any
from zoneinfo import ZoneInfo

from probes import registry
from probes.plain import Methods
from probes.thresholds import Threshold

SPAN = re.compile(r"^(\d{2}):(\d{2})-(\d{2}):(\d{2})$")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class SiteMethods(Methods):
    @cached_property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class ScheduleMethods(Methods):
    def minutes(self, weekday: int) -> list[tuple[int, int]]:
        """Planned [start, end) minute spans of a weekday (0 = Monday)."""
        spans = getattr(self, DAYS[weekday])
        if spans is None:
            return [(0, 1440)]
        out = []
        for span in spans:
            h1, m1, h2, m2 = map(int, SPAN.match(span).groups())  # type: ignore[union-attr]
            out.append((h1 * 60 + m1, h2 * 60 + m2))
        return sorted(out)


class ThresholdMethods(Methods):
    def to_threshold(self) -> Threshold:
        return Threshold(self.warn, self.crit, self.below)


class CheckMethods(Methods):
    def threshold_rules(self) -> dict[str, Threshold]:
        rules = dict(registry.default_thresholds(self.kind))
        rules.update({k: v.to_threshold() for k, v in self.thresholds.items()})
        return rules


class ReportsMethods(Methods):
    @cached_property
    def daily_at(self) -> dtime:
        h, m = map(int, self.daily_time.split(":"))
        return dtime(h, m)


class ConfigMethods(Methods):
    @cached_property
    def check_map(self) -> Mapping[str, Any]:
        return {c.name: c for c in self.checks}

    def system(self, name: str | None) -> Any:
        for s in self.systems:
            if s.name == name:
                return s
        return None
