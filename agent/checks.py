"""From validated configuration to runnable check specs (one probe instance per check)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from agent.runner import CheckSpec
from probes import registry


def build_specs(checks: Iterable[Any]) -> list[CheckSpec]:
    specs = []
    for check in checks:
        if not check.enabled:
            continue
        mod = registry.module(check.kind)
        specs.append(
            CheckSpec(
                name=check.name,
                probe=mod.Probe(check),
                timeout_s=check.timeout,
                rules=check.threshold_rules(),
                history_patterns=tuple(getattr(mod, "HISTORY_METRICS", ())),
            )
        )
    return specs


def select(checks: Sequence[Any], names: Sequence[str]) -> list[Any]:
    """The configured checks named (all when none named); unknown names raise KeyError."""
    if not names:
        return [c for c in checks if c.enabled]
    by_name = {c.name: c for c in checks}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise KeyError(", ".join(missing))
    return [by_name[n] for n in names]
