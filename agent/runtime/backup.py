"""The daily copy of the store, as a built-in check (`sentinel.store_backup`).

Each copy is made by a child process running `sentinel store backup --json`, exactly what an
engineer runs by hand: copying and verifying a large store (integrity check, the whole
evidence chain) keeps a CPU busy for a while, and the monitoring process should neither
share its interpreter with that nor keep the memory afterwards. The outcome becomes an
ordinary check result (OK with the copy's name, CRIT with the reason) handed to the recorder,
so a failed backup opens a fault through the same state machine → fault → notice path as any
probe, with the usual levels, deadlines and maintenance muting. The check belongs to no
system and is never availability-critical: a failed backup is a fault of the monitoring,
not downtime of a hospital system.

When a copy is owed is a pure rule (`due`), asked every minute on the job's own one-thread
executor (a copy may take minutes; it must never hold up the heartbeat or the reports):
- every day at `storage.backup.at` (site time zone);
- at start, when the last copy made is older than the last such time (the agent was down at
  `at`, or this is the first start: the installer learns at once whether the target works);
- an hour after a failed copy, and every hour until one succeeds (the fault then recovers).
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from agent.faults.records import CheckInfo
from probes.base import CheckResult, Metric, Status

if TYPE_CHECKING:
    from apscheduler.schedulers.base import BaseScheduler

    from agent.config.schema import Config
    from agent.store.db import Store

log = logging.getLogger("sentinel.backup")

CHECK_NAME = "sentinel.store_backup"
CHECK_KIND = "store_backup"
FAULT_TYPE = "数据安全类"
TICK_S = 60
FIRST_TICK_S = 5.0
RETRY_AFTER_S = 3600.0
CHILD_TIMEOUT_S = 6 * 3600.0

Deliver = Callable[[str, CheckResult], None]
Last = tuple[int, bool]
"""(when the last copy was attempted, UTC ms; whether it succeeded)."""


# ------------------------------------------------------------------------------ the rule


def last_due_ms(now_ms: int, at: str, tz: ZoneInfo) -> int:
    """The latest daily `at` (site's local 'HH:MM') at or before `now_ms`."""
    now = datetime.fromtimestamp(now_ms / 1000, tz)
    hh, mm = (int(x) for x in at.split(":"))
    day = now.date()
    when = datetime.combine(day, dtime(hh, mm), tzinfo=tz)
    if when > now:
        when = datetime.combine(day - timedelta(days=1), dtime(hh, mm), tzinfo=tz)
    return int(when.timestamp() * 1000)


def due(now_ms: int, at: str, tz: ZoneInfo, last: Last | None, retry_s: float = RETRY_AFTER_S) -> bool:
    """Whether a copy is owed now, given the last attempt (None: never)."""
    if last is None:
        return True
    ts, ok = last
    if not ok:
        return now_ms - ts >= retry_s * 1000
    return ts < last_due_ms(now_ms, at, tz)


# ------------------------------------------------------------------------------ wiring


def builtin_checks(config: Config) -> list[tuple[str, str, str | None]]:
    """(name, kind, system) of the built-in check, to register with the configured ones."""
    return [(CHECK_NAME, CHECK_KIND, None)] if config.storage.backup is not None else []


def fault_checks(config: Config) -> dict[str, CheckInfo]:
    """How a failed backup is opened as a fault: no system, never availability-critical."""
    b = config.storage.backup
    if b is None:
        return {}
    return {CHECK_NAME: CheckInfo(CHECK_NAME, None, None, b.fault_level, FAULT_TYPE, False)}


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def result_from(outcome: dict[str, Any], started: datetime, duration_s: float) -> CheckResult:
    """The check result of one `sentinel store backup --json` outcome."""
    metrics = (
        Metric("backup_bytes", float(outcome.get("size") or 0), "B"),
        Metric("backup_seconds", float(outcome.get("seconds") or duration_s), "s"),
    )
    if not outcome.get("ok"):
        return CheckResult(
            Status.CRIT,
            f"存储备份失败: {outcome.get('error') or '原因不明'}",
            (),
            outcome,
            started,
            duration_s,
        )
    summary = (
        f"存储备份完成: {outcome.get('file')}（{_size(float(outcome.get('size') or 0))}，"
        f"完整性 {outcome.get('integrity')}，证据链完整 {outcome.get('rows')} 行）"
    )
    if outcome.get("warning"):
        return CheckResult(
            Status.WARN, f"{summary}；注意: {outcome['warning']}", metrics, outcome, started, duration_s
        )
    return CheckResult(Status.OK, summary, metrics, outcome, started, duration_s)


class BackupJob:
    """The daemon's backup: the rule, the child process, the result handed to the recorder."""

    def __init__(
        self,
        config: Config,
        config_path: Path,
        deliver: Deliver,
        last: Last | None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        assert config.storage.backup is not None
        self.settings = config.storage.backup
        self.tz = config.site.tz
        self.config_path = config_path
        self.deliver = deliver
        self.last = last
        self.clock = clock

    @classmethod
    def create(
        cls, config: Config, config_path: Path, deliver: Deliver, store: Store, clock: Callable[[], float]
    ) -> BackupJob | None:
        """None when `storage.backup` is not configured. The last attempt is read from the
        store, so a restart neither repeats today's copy nor forgets a failed one."""
        if config.storage.backup is None:
            return None
        prev = store.latest_result(CHECK_NAME)
        last = None if prev is None else (prev.ts, prev.status in (Status.OK, Status.WARN))
        return cls(config, config_path, deliver, last, clock)

    def schedule(self, scheduler: BaseScheduler) -> None:
        from apscheduler.executors.pool import ThreadPoolExecutor
        from apscheduler.triggers.interval import IntervalTrigger

        scheduler.add_executor(ThreadPoolExecutor(1), "backup")
        scheduler.add_job(
            self.tick,
            IntervalTrigger(seconds=TICK_S, timezone=UTC),
            id="store:backup",
            executor="backup",
            next_run_time=datetime.now(UTC) + timedelta(seconds=FIRST_TICK_S),
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
        )

    def tick(self) -> CheckResult | None:
        """Make the copy if one is owed; the result (also handed to the recorder), else None."""
        if not due(int(self.clock() * 1000), self.settings.at, self.tz, self.last):
            return None
        return self.run_once()

    def command(self) -> list[str]:
        return [sys.executable, "-m", "agent", "--config", str(self.config_path), "store", "backup", "--json"]

    def run_once(self) -> CheckResult:
        started = datetime.fromtimestamp(self.clock(), UTC)
        t0 = time.monotonic()
        log.info("store backup to %s started", self.settings.where)
        outcome: dict[str, Any]
        try:
            proc = subprocess.run(
                self.command(), capture_output=True, text=True, timeout=CHILD_TIMEOUT_S, check=False
            )
            try:
                outcome = json.loads(proc.stdout)
                if not isinstance(outcome, dict):
                    raise ValueError("not an object")
            except ValueError:
                detail = (proc.stderr or proc.stdout).strip()[-500:] or "no output"
                outcome = {"ok": False, "error": f"备份进程异常退出 (exit {proc.returncode}): {detail}"}
        except subprocess.TimeoutExpired:
            outcome = {"ok": False, "error": f"备份未在 {CHILD_TIMEOUT_S / 3600:g} 小时内完成 (timed out)"}
        except OSError as exc:
            outcome = {"ok": False, "error": f"备份进程无法启动: {exc.strerror or exc}"}
        result = result_from(outcome, started, time.monotonic() - t0)
        self.last = (int(started.timestamp() * 1000), result.status in (Status.OK, Status.WARN))
        if result.status is Status.CRIT:
            log.error("store backup failed: %s", result.summary)
        else:
            log.info("%s", result.summary)
        self.deliver(CHECK_NAME, result)
        return result
