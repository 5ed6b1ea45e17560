"""The last line of defence in a probe's run(): an unexpected exception becomes UNKNOWN.

A probe must never raise into the scheduler. Every probe module used to write the same
try/except with its own way of cutting the text; here it is once, with one rule for the
text: "<what>: <ExceptionType>: <message>", revealed secrets masked, on one line, bounded.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from probes.base import CheckResult, ProbeContext, Status, Stopwatch
from probes.values import scrub_secrets

__all__ = ["crash_text", "run_guarded"]

CRASH_CHARS = 200
"""A crash text longer than this is cut: an exception can carry a whole response or SQL text."""


def crash_text(
    what: str, exc: BaseException, *, secrets: Sequence[str] = (), limit: int = CRASH_CHARS
) -> str:
    """One bounded line naming the probe's step, the exception type and its message."""
    text = " ".join(scrub_secrets(f"{what}: {type(exc).__name__}: {exc}", secrets).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def run_guarded(
    ctx: ProbeContext,
    what: str,
    body: Callable[[Stopwatch], CheckResult],
    *,
    secrets: Sequence[str] = (),
    details: dict[str, Any] | None = None,
    limit: int = CRASH_CHARS,
) -> CheckResult:
    """`body(stopwatch)`, or UNKNOWN with `crash_text` when it raises.

    `secrets` may be a list the body fills as it reveals them: it is read only after a crash.
    """
    sw = Stopwatch(ctx)
    try:
        return body(sw)
    except Exception as exc:  # noqa: BLE001 - the probe boundary: run() reports, it never raises
        return sw.result(Status.UNKNOWN, crash_text(what, exc, secrets=secrets, limit=limit), details=details)
