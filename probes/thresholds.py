"""Generic per-metric warn/crit thresholds, applied after a probe returns.

Patterns use shell-style wildcards so one rule covers every mount (`disk:*.used_pct`).
The most specific rule wins: an exact name beats a pattern, a longer pattern beats a shorter.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from fnmatch import fnmatchcase

from probes.base import CheckResult, Status, worst


@dataclass(frozen=True, slots=True)
class Threshold:
    warn: float | None = None
    crit: float | None = None
    below: bool = False
    """True when low values are bad (free space, days until full, certificate days left)."""

    def judge(self, value: float) -> Status:
        def breached(limit: float | None) -> bool:
            if limit is None:
                return False
            return value <= limit if self.below else value >= limit

        if breached(self.crit):
            return Status.CRIT
        if breached(self.warn):
            return Status.WARN
        return Status.OK


def rule_for(name: str, rules: Mapping[str, Threshold]) -> Threshold | None:
    exact = rules.get(name)
    if exact is not None:
        return exact
    best: tuple[int, Threshold] | None = None
    for pattern, rule in rules.items():
        if fnmatchcase(name, pattern) and (best is None or len(pattern) > best[0]):
            best = (len(pattern), rule)
    return best[1] if best else None


def apply_thresholds(result: CheckResult, rules: Mapping[str, Threshold]) -> CheckResult:
    """Raise the result's status for every metric that breaches its rule; name them in the summary.

    An UNKNOWN result (e.g. one hung NFS mount) still carries the metrics it could gather:
    a CRIT breach among them raises it to CRIT, a WARN does not replace the UNKNOWN.
    """
    if not rules:
        return result
    breaches: list[tuple[Status, str]] = []
    for m in result.metrics:
        rule = rule_for(m.name, rules)
        if rule is None:
            continue
        st = rule.judge(m.value)
        if st is not Status.OK:
            limit = rule.crit if st is Status.CRIT else rule.warn
            op = "≤" if rule.below else "≥"
            breaches.append((st, f"{m.name}={_fmt(m.value)}{m.unit} {op} {_fmt(limit)}{m.unit}"))
    if not breaches:
        return result
    if result.status is Status.UNKNOWN:
        breaches = [b for b in breaches if b[0] is Status.CRIT]
        if not breaches:
            return result
    status = worst(result.status, *(s for s, _ in breaches))
    detail = "; ".join(text for _, text in sorted(breaches, key=lambda b: -b[0]))
    return replace(result, status=status, summary=f"{result.summary} | {detail}")


def _fmt(v: float | None) -> str:
    if v is None:
        return "?"
    return f"{v:.0f}" if float(v).is_integer() else f"{v:.2f}"
