"""Flap detection, the Icinga way: a weighted share of state changes over the last results.

Each of the last `window` results is compared with the one before it; a change counts with a
weight rising linearly from 0.8 (oldest) to 1.2 (newest), so recent changes matter more. The
check starts flapping above `high` percent and stops below `low` (hysteresis, so it does not
flap about flapping).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from probes.base import Status


@dataclass(slots=True)
class FlapDetector:
    window: int = 21
    low: float = 25.0
    high: float = 30.0
    states: deque[Status] = field(default_factory=deque)
    flapping: bool = False

    def observe(self, status: Status) -> bool | None:
        """Add a result; return True when flapping starts, False when it stops, else None."""
        self.states.append(status)
        while len(self.states) > self.window:
            self.states.popleft()
        pct = self.percent()
        if not self.flapping and pct > self.high:
            self.flapping = True
            return True
        if self.flapping and pct < self.low:
            self.flapping = False
            return False
        return None

    def percent(self) -> float:
        """Weighted percentage of state changes among the remembered results."""
        n = len(self.states)
        if n < 2:
            return 0.0
        states = list(self.states)
        total = 0.0
        changed = 0.0
        for i in range(1, n):
            # Weights spread evenly from 0.8 to 1.2 over the comparisons in the window.
            weight = 0.8 + 0.4 * (i - 1) / max(self.window - 2, 1)
            total += weight
            if states[i] != states[i - 1]:
                changed += weight
        # Normalise against a full window so a few early changes cannot look like flapping.
        full = sum(0.8 + 0.4 * (i - 1) / max(self.window - 2, 1) for i in range(1, self.window))
        return 100.0 * changed / full if total else 0.0
