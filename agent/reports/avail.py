"""Availability figures for reports, always from `agent.availability_store` (one engine for the
CLI, the reports and the acceptance committee), turned into JSON-ready dicts.

Durations stay integer milliseconds, percentages full floats: the templates round, the JSON
keeps what the engine computed, so a reader can redo the division.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import Any

from agent.availability.gather import SubjectFigures, check_figures, system_figures
from agent.config.schema import Config
from agent.store.db import Store

Progress = Callable[[int, int, str], None]
"""(done, total, what) — the CLI draws a bar on stderr; builders never print."""


def _passed(available_ms: int, den_ms: int, target_pct: float) -> bool | None:
    if den_ms <= 0:
        return None
    # Exact, like the engine's verdict: 99.5 % of a year must not round its way to a pass.
    return Fraction(available_ms * 100) >= Fraction(str(target_pct)) * den_ms


def entry(sf: SubjectFigures) -> dict[str, Any]:
    f = sf.figures
    figures: dict[str, Any] | None = None
    den = None
    passed = None
    if f is not None:
        figures = f.as_dict()
        figures.pop("outages", None)  # listed once, with their faults, under "outages"
        den = f.accountable_ms if sf.policy == "unavailable" else f.accountable_ms - f.unknown_ms
        passed = _passed(f.available_ms, den, sf.target_pct)
    return sf.as_dict() | {"figures": figures, "denominator_ms": den, "passed": passed}


def systems(
    config: Config,
    store: Store,
    start_ms: int,
    end_ms: int,
    now_ms: int,
    *,
    with_verdict: bool = True,
    progress: Progress | None = None,
) -> list[dict[str, Any]]:
    """Every business system's figures, with its campus; one system at a time so a year-long
    report can show progress."""
    out = []
    total = len(config.systems)
    for i, system in enumerate(config.systems):
        if progress is not None:
            progress(i, total, system.name)
        (sf,) = system_figures(
            store, config, start_ms, end_ms, now_ms, systems=[system.name], with_verdict=with_verdict
        )
        out.append(entry(sf) | {"campus": system.campus})
    if progress is not None:
        progress(total, total, "")
    return out


def checks(
    config: Config, store: Store, names: Sequence[str], start_ms: int, end_ms: int, now_ms: int
) -> dict[str, dict[str, Any]]:
    return {n: entry(check_figures(store, config, n, start_ms, end_ms, now_ms)) for n in names}


def all_outages(entries: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = [o | {"system": e["subject"]} for e in entries for o in e["outages"]]
    return sorted(rows, key=lambda o: (o["start_ms"], o["system"]))
