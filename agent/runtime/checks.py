"""From validated configuration to runnable check specs (one probe instance per check)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from agent.config.schema import CheckCommon, Config
from agent.runtime.runner import CheckSpec
from probes import registry


def build_specs(checks: Iterable[CheckCommon]) -> list[CheckSpec]:
    specs = []
    for check in checks:
        if not check.enabled:
            continue
        kind = registry.spec(check.kind)
        specs.append(
            CheckSpec(
                name=check.name,
                probe=kind.build(check),
                timeout_s=check.timeout,
                rules=check.threshold_rules(),
                history_patterns=kind.history_metrics,
            )
        )
    return specs


def select(checks: Sequence[CheckCommon], names: Sequence[str]) -> list[CheckCommon]:
    """The configured checks named (all when none named); unknown names raise KeyError."""
    if not names:
        return [c for c in checks if c.enabled]
    by_name = {c.name: c for c in checks}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise KeyError(", ".join(missing))
    return [by_name[n] for n in names]


def _history_reader(config: Config) -> Any:
    """Metric history for trend figures, read from the store if the agent has written one."""
    if not config.storage.path.exists():
        return None
    from agent.store.db import Store

    store = Store(config.storage.path, readonly=True)
    lock = threading.Lock()
    now_ms = int(datetime.now(UTC).timestamp() * 1000)

    def read(check: str, patterns: Sequence[str]) -> Any:
        with lock:
            try:
                return store.metric_history(check, patterns, now_ms - 14 * 86_400_000)
            except KeyError:
                return {}

    return read


def run_checks_now(
    config: Config, names: Sequence[str], clock: Callable[[], float] = time.time
) -> list[tuple[str, Any]]:
    """Run the named (or all enabled) checks once; (name, CheckResult) in configuration order.

    A check that produced nothing by its deadline (plus a margin) gets an UNKNOWN result that
    says so, never a silent gap. KeyError names unknown checks.
    """
    from agent.runtime.runner import ProbeRunner
    from probes.base import CheckResult, Status
    from probes.ssh.conn import SshPool

    specs = build_specs(select(config.checks, list(names)))
    memories: dict[str, Any] = {}
    if config.storage.path.exists():
        from agent.store.db import Store

        reader = Store(config.storage.path, readonly=True)
        try:
            memories = reader.probe_memories()
        finally:
            reader.close()
    results: dict[str, Any] = {}
    done = threading.Event()
    lock = threading.Lock()

    def sink(name: str, result: Any) -> None:
        with lock:
            results[name] = result
            if len(results) == len(specs):
                done.set()

    pool = SshPool()
    runner = ProbeRunner(
        sink,
        config.agent.workers,
        _history_reader(config),
        clock,
        memory=lambda name: memories.get(name, {}),
        tz=config.site.tz,
        shared={"ssh": pool},
    )
    try:
        for spec in specs:
            runner.submit(spec)
        longest = max((s.timeout_s for s in specs), default=0.0)
        done.wait(longest + 5.0 if specs else 0)
    finally:
        runner.stop()
        pool.close_all()
    out = []
    for spec in specs:
        result = results.get(spec.name)
        if result is None:
            result = CheckResult(
                Status.UNKNOWN,
                f"no result within {spec.timeout_s:g} s (+5 s margin)",
                started_at=datetime.fromtimestamp(clock(), UTC),
            )
        out.append((spec.name, result))
    return out
