"""The configuration in force, as availability needs it: which checks are critical for which
system, its planned schedule, redundancy groups and target, per span of time ("era").

Each agent start recorded the effective configuration (agent.store.versions); a version is in
force from its start until the next one. Time before the first recorded version is judged by the
first one (the earliest the store knows); a store with no recorded version at all (never run by
an agent that records them) is judged by the configuration given. Today's file never rewrites
time a recorded version covers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from agent.config.schema import Schedule

if TYPE_CHECKING:
    from agent.config.schema import Config
    from agent.store.versions import ConfigVersion

FOREVER = 2**62


@dataclass(frozen=True, slots=True)
class SystemView:
    name: str
    schedule: Schedule | Literal["7x24"]
    target: float
    redundancy: tuple[tuple[tuple[str, ...], int], ...]
    critical: tuple[str, ...]
    """Enabled, availability-critical checks of the system, in configuration order."""

    def schedule_json(self) -> Any:
        return self.schedule if isinstance(self.schedule, str) else self.schedule.model_dump()


@dataclass(frozen=True, slots=True)
class Era:
    start_ms: int
    end_ms: int
    version_id: int | None
    """None: the configuration given (no version recorded)."""
    hash: str | None
    systems: Mapping[str, SystemView]
    system_order: tuple[str, ...]
    check_system: Mapping[str, str | None]
    """Every configured check's system in this era (enabled or not, critical or not)."""


def views(data: Mapping[str, Any]) -> tuple[dict[str, SystemView], tuple[str, ...], dict[str, str | None]]:
    """The availability view of one configuration in its canonical JSON form."""
    checks = list(data.get("checks") or [])
    out: dict[str, SystemView] = {}
    for s in data.get("systems") or []:
        sched_raw = s.get("schedule", "7x24")
        schedule: Schedule | Literal["7x24"] = (
            "7x24" if sched_raw in (None, "7x24") else Schedule.model_validate(sched_raw)
        )
        critical = tuple(
            c["name"]
            for c in checks
            if c.get("system") == s["name"] and c.get("availability_critical") and c.get("enabled", True)
        )
        out[s["name"]] = SystemView(
            name=s["name"],
            schedule=schedule,
            target=float(s.get("availability_target", 99.5)),
            redundancy=tuple((tuple(g["checks"]), int(g.get("need", 1))) for g in s.get("redundancy") or ()),
            critical=critical,
        )
    # Only enabled checks were measured under this configuration.
    return out, tuple(out), {c["name"]: c.get("system") for c in checks if c.get("enabled", True)}


def eras(versions: Sequence[ConfigVersion], config: Config) -> list[Era]:
    """Tile all time with the configuration in force; consecutive starts with the same
    configuration make one era."""
    if not versions:
        text, digest = config.canonical()
        import json

        systems, order, check_system = views(json.loads(text))
        return [Era(-FOREVER, FOREVER, None, None, systems, order, check_system)]
    merged: list[ConfigVersion] = []
    for v in versions:
        if not merged or merged[-1].hash != v.hash:
            merged.append(v)
    out = []
    for i, v in enumerate(merged):
        start = -FOREVER if i == 0 else v.ts
        end = merged[i + 1].ts if i + 1 < len(merged) else FOREVER
        if end <= start:
            continue
        systems, order, check_system = views(v.data())
        out.append(Era(start, end, v.id, v.hash, systems, order, check_system))
    return out


def overlapping(all_eras: Sequence[Era], start_ms: int, end_ms: int) -> list[tuple[int, int, Era]]:
    """The eras of [start_ms, end_ms), each with its part of the range."""
    return [
        (max(e.start_ms, start_ms), min(e.end_ms, end_ms), e)
        for e in all_eras
        if e.start_ms < end_ms and e.end_ms > start_ms
    ]
