"""Configuration problems, free of pydantic so the YAML reader can report them too."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

MAX_SHOWN = 50
"""Problems printed at most; a file with thousands is the wrong file, and the first ones say so."""


def format_path(loc: Sequence[Any]) -> str:
    """`('checks', 3, 'interval')` -> `checks[3].interval`, as the keys are written in the file."""
    out = ""
    for part in loc:
        if isinstance(part, int) and not isinstance(part, bool):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


@dataclass(frozen=True, slots=True)
class Problem:
    path: str
    line: int | None
    message: str

    def __str__(self) -> str:
        if not self.path and self.line is None:
            return self.message  # about the file as a whole (cannot read it, too large)
        where = f"{self.path}" if self.path else "(top level)"
        if self.line is not None:
            where += f" (line {self.line})"
        return f"{where}: {self.message}"


class ConfigError(Exception):
    def __init__(self, source: str, problems: Sequence[Problem]) -> None:
        self.source = source
        self.problems = tuple(problems)
        super().__init__(self.render())

    def __reduce__(self) -> tuple[type[ConfigError], tuple[str, tuple[Problem, ...]]]:
        return (type(self), (self.source, self.problems))

    def render(self) -> str:
        n = len(self.problems)
        head = f"{self.source}: {n} problem{'s' if n != 1 else ''} in the configuration"
        lines = [head, *(f"  - {p}" for p in self.problems[:MAX_SHOWN])]
        if n > MAX_SHOWN:
            more = n - MAX_SHOWN
            lines.append(f"  … and {more} more (fix these first, or check that this is the right file)")
        return "\n".join(lines)
