"""The unattended agent: APScheduler drives the checks, the runner probes, the recorder stores.

APScheduler is used only as a clock. Check jobs merely hand a run to the runner and return at
once (inline, in the scheduler's own loop), so no executor thread is ever held by a probe and
its misfire rules (checked when a job starts) cannot drop runs behind busy threads. Reports and
housekeeping run on their own executor; reports are rendered in a child process so a year-long
report cannot bloat or stall the monitoring process.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.executors.debug import DebugExecutor
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers import SchedulerNotRunningError
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.interval import IntervalTrigger

from agent import __version__
from agent.clock.workcal import WorkCalendar
from agent.faults.notices import AlertPlanner
from agent.faults.records import CheckInfo, FaultManager, LevelRule, Policy
from agent.notify.outbox import Dispatcher
from agent.runtime import backup as store_backup
from agent.runtime.checks import build_specs
from agent.runtime.memory import ProbeMemory
from agent.runtime.recorder import Recorder
from agent.runtime.runner import CheckSpec, ProbeRunner
from agent.store import evidence
from agent.store.db import Store, acquire_lock
from agent.windows import exclusions
from agent.windows.ledger import change_token, muting_schedule, sync_config_windows
from probes.base import CheckResult, History, Status
from probes.ssh.conn import SshPool

if TYPE_CHECKING:
    from agent.config.schema import CheckCommon, Config

log = logging.getLogger("sentinel.daemon")

HISTORY_DAYS = 14
PRUNE_EVERY_S = 3600


def limit_malloc_arenas(arenas: int = 2) -> None:
    """Cap glibc's per-thread malloc arenas.

    Each probe thread would otherwise get an arena of its own, and freed memory stays spread
    over them: resident memory creeps up with the thread count for no benefit to a prober.
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        libc = ctypes.CDLL(None)  # the running process: glibc's symbols are already there
        libc.mallopt(-8, arenas)  # M_ARENA_MAX
    except (OSError, AttributeError):
        log.debug("mallopt not available; malloc arenas left at the default")


def policy_from_config(config: Config) -> Policy:
    f = config.faults
    return Policy(
        levels={
            k: LevelRule(v.respond, v.restore, v.working_time, v.warn_before, v.remind_every, v.report_within)
            for k, v in f.levels.items()
        },
        open_on=frozenset(Status[s] for s in f.open_on),
        raise_when_unavailable=f.raise_when_unavailable,
        yearly_limits=dict(f.yearly_limits),
        flap_window=f.flapping.window,
        flap_low=f.flapping.low,
        flap_high=f.flapping.high,
        recovery_hold_s=f.recovery_hold,
        reopen_within_s=f.reopen_within,
    )


def check_info(config: Config, check: CheckCommon) -> CheckInfo:
    system = config.system(check.system)
    return CheckInfo(
        check.name,
        check.system,
        system.campus if system is not None else None,
        check.fault_level,
        check.fault_type,
        check.availability_critical,
    )


class Daemon:
    def __init__(self, config: Config, config_path: Path, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.config_path = config_path
        self.clock = clock
        self._lock_fd = acquire_lock(config.storage.path)
        # The health endpoint binds first: an address in use or not on this machine raises
        # ListenError (one clear line, exit 2 in the CLI) before a run is recorded or anything
        # scheduled. It serves requests only from run() on.
        self.health: Any = None
        if config.agent.listen:
            from agent.runtime.health import HealthServer, ListenError

            try:
                self.health = HealthServer(config.agent.listen, self.health_snapshot)
            except ListenError:
                os.close(self._lock_fd)
                raise
        # Both connections seal: the writer its batches, the reader the checkpoints of pruning.
        # The first start creates the key (`<store>.key`, 0600) when none is configured.
        key = evidence.evidence_key(config.storage, create=True)
        self.store = Store(config.storage.path, evidence_key=key)
        self._reader = Store(config.storage.path, evidence_key=key)
        self._reader_lock = threading.Lock()
        now_ms = self._now_ms()
        checks = [c for c in config.checks if c.enabled]
        builtin = store_backup.builtin_checks(config)  # the store's own backup, when configured
        self.store.sync_checks([*((c.name, c.kind, c.system) for c in checks), *builtin], now_ms)
        runs = self.store.runs()
        # When the agent was last alive: a report falling due since then was missed and is late.
        self._down_since_ms: int | None = runs[-1].end_ts if runs else None
        self._first_start_ms = runs[0].started_ts if runs else now_ms
        self._report_retry: dict[tuple[str, str], float] = {}
        self.run_id = self.store.begin_run(
            now_ms, os.getpid(), socket.gethostname(), __version__, config.agent.grace_ms
        )
        # The configuration in force from now on: availability of this run's time is computed
        # from it, whatever the file says later.
        self.store.record_config(now_ms, self.run_id, *config.canonical())
        self.specs: dict[str, CheckSpec] = {s.name: s for s in build_specs(checks)}
        self._system_of = {c.name: c.system for c in checks}
        sync_config_windows(self.store, list(config.maintenance), now_ms)
        exclusions.sync_config(self.store, config.availability.force_majeure, config.site.tz, now_ms)
        self._maint_token = change_token(self.store)
        # Mutes alerts and faults: windows with one approval, from their recording on.
        self.maintenance = muting_schedule(self.store, config.site.tz)
        self.recorder = Recorder(
            self.store,
            self.run_id,
            {c.name: c.confirmations for c in checks},
            self.store.load_states(),
            maintenance=self._window_name,
        )
        self.faults = FaultManager(
            self.store,
            policy_from_config(config),
            {c.name: check_info(config, c) for c in checks} | store_backup.fault_checks(config),
            WorkCalendar(config.faults.working_hours, config.site.tz).deadline_ms,
            AlertPlanner(config) if config.notifications.routes else None,
            lambda ts, system, check: self._window_name(ts, check),
            config.site.tz,
            clock,
        )
        self.recorder.on_result(self.faults.observe)
        self.backup = store_backup.BackupJob.create(config, config_path, self.recorder.put, self.store, clock)
        self.dispatcher: Dispatcher | None = None
        if config.notifications.channels:
            # One sender for fault notices and reports (reports carry HTML, images and a PDF).
            from agent.reports.delivery import make_sender

            self.dispatcher = Dispatcher(
                Store(config.storage.path, evidence_key=key),
                make_sender(config.notifications.channels),
                clock,
                known_channels=config.notifications.channels,
            )
            dispatcher = self.dispatcher
            # A state change may have queued an alert: look at the outbox now, not at the next poll.
            self.recorder.on_change(lambda _name, _result, _changes: dispatcher.wake())
        self.memory = ProbeMemory(self.store.probe_memories())
        # Checks of one host share SSH connections (bounded per host); paramiko itself is
        # imported only when an SSH check first connects.
        self.ssh_pool = SshPool()
        self.runner = ProbeRunner(
            self._deliver,
            config.agent.workers,
            self._history,
            clock,
            memory=self.memory.get,
            tz=config.site.tz,
            shared={"ssh": self.ssh_pool},
        )
        self.scheduler = BlockingScheduler(
            timezone=config.site.tz,
            executors={
                # Check jobs only hand a run to the runner (never blocking), so they run inline
                # in the scheduler's loop: no thread hand-off per run, nothing to queue behind.
                "checks": DebugExecutor(),
                "background": ThreadPoolExecutor(2),
            },
            job_defaults={"coalesce": True, "max_instances": 1},
        )
        self._stop_requested = threading.Event()

    def health_snapshot(self) -> dict[str, Any]:
        backlog = self.recorder.backlog
        healthy = self.scheduler.running and self.recorder.alive and backlog < 10_000
        return {
            "status": "UP" if healthy else "DOWN",
            "run_id": self.run_id,
            "checks": len(self.specs),
            "probe_threads": self.runner.thread_count,
            "busy_checks": len(self.runner.busy_checks()),
            "results_written": self.recorder.written,
            "recorder_backlog": backlog,
            "write_failures": self.recorder.failures,
        }

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    def _window_name(self, ts_ms: int, check: str) -> str | None:
        window = self.maintenance.active(ts_ms, self._system_of.get(check), check)
        return window.name if window is not None else None

    def _fault_tick(self) -> None:
        """Runs in the recorder (writer) thread: deadlines, reminders, maintenance reloads."""
        token = change_token(self.store)
        if token != self._maint_token:
            self._maint_token = token
            self.maintenance = muting_schedule(self.store, self.config.site.tz)
            log.info("maintenance windows reloaded")
        self.faults.tick()
        if self.dispatcher is not None:
            self.dispatcher.wake()

    def _ping_heartbeat_url(self) -> None:
        """Dead man's switch: an outside service alarms when these calls stop."""
        url = self.config.notifications.heartbeat_url
        if url is None or self.health_snapshot()["status"] != "UP":
            return
        from urllib.request import urlopen

        try:
            with urlopen(url, timeout=10) as resp:
                resp.read(1024)
        except OSError as exc:
            log.warning("heartbeat URL not reached: %s", type(exc).__name__)

    def _deliver(self, check: str, result: CheckResult) -> None:
        self.memory.note(check, result)
        self.recorder.put(check, result)

    def _history(self, check: str, patterns: Sequence[str]) -> History:
        since = self._now_ms() - HISTORY_DAYS * 86_400_000
        with self._reader_lock:
            return self._reader.metric_history(check, patterns, since)

    # ------------------------------------------------------------------ scheduling

    def schedule(self) -> None:
        now = datetime.fromtimestamp(self.clock(), UTC)
        checks = [c for c in self.config.checks if c.name in self.specs]
        # Spread the first runs over each check's interval so the load is flat instead of
        # every check firing in the same second after a start — but in whole-second slots:
        # the scheduler then wakes once a second for a handful of checks rather than for each
        # one, which is most of its cost on a large site.
        for i, check in enumerate(checks):
            offset = float(int(check.interval * i / max(len(checks), 1)))
            self.scheduler.add_job(
                self.runner.submit,
                IntervalTrigger(seconds=check.interval, timezone=UTC),
                args=[self.specs[check.name]],
                id=f"check:{check.name}",
                name=check.name,
                executor="checks",
                next_run_time=now + timedelta(seconds=min(offset, 30.0) + 0.5),
                misfire_grace_time=max(1, int(check.interval / 2)),
            )
        self.scheduler.add_job(
            self._heartbeat,
            IntervalTrigger(seconds=self.config.agent.heartbeat, timezone=UTC),
            id="heartbeat",
            executor="background",
            misfire_grace_time=None,
        )
        self.scheduler.add_job(
            self._housekeeping,
            IntervalTrigger(seconds=PRUNE_EVERY_S, timezone=UTC),
            id="housekeeping",
            executor="background",
            next_run_time=now + timedelta(seconds=60),
            misfire_grace_time=None,
        )
        self.scheduler.add_job(
            self.ssh_pool.close_idle,
            IntervalTrigger(seconds=60, timezone=UTC),
            id="ssh:close-idle",
            executor="background",
            misfire_grace_time=None,
        )
        self.scheduler.add_job(
            lambda: self.recorder.call(self._fault_tick),
            IntervalTrigger(seconds=30, timezone=UTC),
            id="faults:tick",
            executor="background",
            misfire_grace_time=None,
        )
        if self.config.notifications.heartbeat_url:
            self.scheduler.add_job(
                self._ping_heartbeat_url,
                IntervalTrigger(seconds=self.config.notifications.heartbeat_every, timezone=UTC),
                id="heartbeat-url",
                executor="background",
                next_run_time=now + timedelta(seconds=5),
                misfire_grace_time=None,
            )
        # Every report kind (daily, weekly, monthly on the first working day after the month,
        # pre-holiday inspections, catch-up after downtime) comes from one pure schedule.
        self.scheduler.add_job(
            self._report_tick,
            IntervalTrigger(seconds=60, timezone=UTC),
            id="reports:tick",
            executor="background",
            next_run_time=now + timedelta(seconds=30),
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
        )
        if self.backup is not None:
            self.backup.schedule(self.scheduler)
        self.scheduler.add_listener(
            self._on_event, EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES | EVENT_JOB_ERROR
        )

    def _on_event(self, event: JobExecutionEvent) -> None:
        job_id = getattr(event, "job_id", "")
        if not job_id.startswith("check:"):
            if event.code == EVENT_JOB_ERROR:
                log.error("job %s failed: %s", job_id, getattr(event, "exception", None))
            return
        name = job_id[len("check:") :]
        if event.code == EVENT_JOB_MISSED:
            when = getattr(event, "scheduled_run_time", None)
            summary = f"run missed by the scheduler (due {when:%H:%M:%S} UTC; agent paused or overloaded)"
        elif event.code == EVENT_JOB_MAX_INSTANCES:
            summary = "run skipped by the scheduler: previous submission still in progress"
        else:
            summary = f"scheduler error: {getattr(event, 'exception', '')}"
        # Silence would read as "nothing happened"; a recorded UNKNOWN shows the hole.
        log.warning("check %s: %s", name, summary)
        self.recorder.put(
            name, CheckResult(Status.UNKNOWN, summary, started_at=datetime.fromtimestamp(self.clock(), UTC))
        )

    def _heartbeat(self) -> None:
        self.store_heartbeat()

    def store_heartbeat(self) -> None:
        with self._reader_lock:
            # The reader connection is idle between history reads; borrowing it keeps the
            # heartbeat from queueing behind a large result batch on the writer connection.
            self._reader.heartbeat(self.run_id, self._now_ms())

    def _housekeeping(self) -> None:
        cutoff = self._now_ms() - int(self.config.storage.raw_retention * 1000)
        total = 0
        with self._reader_lock:
            for _ in range(200):  # bounded: at most 1 M rows per pass, the rest next hour
                n = self._reader.prune_results(cutoff, now_ms=self._now_ms())
                total += n
                if n == 0:
                    break
        if total:
            log.info("pruned %d raw results older than the retention", total)

    def _report_tick(self) -> None:
        from agent.reports.schedule import ChinaCalendar, done_from_store, due_reports, schedule_from_config

        tz = self.config.site.tz
        now = datetime.fromtimestamp(self.clock(), tz)
        with self._reader_lock:
            done = done_from_store(self._reader)
        down = None if self._down_since_ms is None else datetime.fromtimestamp(self._down_since_ms / 1000, tz)
        calendar = ChinaCalendar(WorkCalendar(self.config.faults.working_hours, tz))
        due = due_reports(
            now,
            tz,
            calendar,
            schedule_from_config(self.config.reports),
            done,
            down,
            monitoring_since=datetime.fromtimestamp(self._first_start_ms / 1000, tz),
        )
        for report in due:
            if self._stop_requested.is_set():
                return
            key = (report.kind, report.period_label)
            if self._report_retry.get(key, 0.0) > self.clock():
                continue
            if not self.produce_report(report):
                self._report_retry[key] = self.clock() + 1800  # a failing report retries every 30 min
        self._down_since_ms = None  # from now on a due report was not missed while down

    def produce_report(self, report: Any) -> bool:
        """Write and queue one report in a child process: the daemon never carries Jinja2,
        matplotlib or WeasyPrint. True when it is done: archived and, if the kind has
        recipients, queued for each of them; otherwise the reason is logged and it stays owed."""
        import subprocess

        from agent.reports.delivery import pdf_kinds

        cmd = [sys.executable, "-m", "agent", "--config", str(self.config_path)]
        if report.kind == "inspection":
            cmd += ["inspect", "--reason", report.reason, "--send", "--holiday", report.period_label]
        else:
            cmd += ["report", report.kind, "--period", report.period_label, "--send"]
            cmd += ["--late"] if report.late else []
            cmd += ["--pdf"] if report.kind in pdf_kinds(self.config) else []
        log.info(
            "writing the %s report for %s%s",
            report.kind,
            report.period_label,
            " (late)" if report.late else "",
        )
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, check=False)
            detail = (proc.stderr or proc.stdout).strip()[-500:] or f"exit status {proc.returncode}"
        except subprocess.TimeoutExpired:
            detail = "did not finish within 30 min"
        with self._reader_lock:
            # `inspect` exits with the worst check status, so success is read from the store.
            problem = self._report_problem(report.kind, report.period_label)
        if problem is not None:
            log.error("%s report %s failed (%s): %s", report.kind, report.period_label, problem, detail)
            return False
        if self.dispatcher is not None:
            self.dispatcher.wake()
        return True

    def _report_problem(self, kind: str, period: str) -> str | None:
        """Why the report the child was to write is not done, or None (reader lock held)."""
        from agent.reports.delivery import unqueued_channels
        from agent.reports.schedule import forget_report, recorded_at

        generated_ms = recorded_at(self._reader, kind, period)
        if generated_ms is None:
            return "not archived"
        missing = unqueued_channels(self.config, self._reader, kind, period, generated_ms)
        if not missing:
            return None
        # Archived but not on its way (the child failed between the two): recorded as done it
        # would never be sent, so the schedule owes it again and the next attempt queues it.
        forget_report(self._reader, kind, period)
        return f"archived but not queued for {', '.join(missing)}"

    # ------------------------------------------------------------------ life cycle

    def run(self) -> int:
        self.recorder.start()
        if self.dispatcher is not None:
            self.dispatcher.start()
        if self.health is not None:
            self.health.start()
        self.schedule()

        def stop(signum: int, _frame: Any) -> None:
            # A second signal (Ctrl-C twice, `timeout` signalling the process and its group)
            # arrives while the clean shutdown is running: it must not break that shutdown.
            if self._stop_requested.is_set():
                log.info("received %s again, already stopping", signal.Signals(signum).name)
                return
            self._stop_requested.set()
            log.info("received %s, stopping", signal.Signals(signum).name)
            # shutdown(wait=False): a hung job must not hold the stop (APScheduler would
            # otherwise wait forever); check jobs never hold a thread anyway.
            try:
                self.scheduler.shutdown(wait=False)
            except SchedulerNotRunningError:
                # The second signal's handler can run inside this one (Python runs handlers
                # between any two bytecodes, e.g. during the log call above) and stop first.
                pass

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        log.info(
            "agent started: %d checks, store %s, run %d, pid %d",
            len(self.specs),
            self.config.storage.path,
            self.run_id,
            os.getpid(),
        )
        # Everything built so far (the validated configuration, pydantic's schema objects, the
        # probes, the scheduler's jobs) lives as long as the agent. Moving it out of the cyclic
        # collector's reach keeps each full collection from walking it again for months: the
        # steady loop allocates constantly, and those scans were a measurable share of its CPU.
        gc.collect()
        gc.freeze()
        # A signal between the handlers' installation and the scheduler's start finds no running
        # scheduler to stop; this job, the first to run, honours it (else start() blocks forever).
        self.scheduler.add_job(self._stop_if_requested, id="stop-if-requested")
        try:
            if not self._stop_requested.is_set():
                self.scheduler.start()
        finally:
            self.shutdown()
        return 0

    def _stop_if_requested(self) -> None:
        if self._stop_requested.is_set():
            try:
                self.scheduler.shutdown(wait=False)
            except SchedulerNotRunningError:
                pass

    def shutdown(self) -> None:
        if self.health is not None:
            self.health.stop()
        self.runner.stop()
        self.ssh_pool.close_all()
        self.recorder.stop(timeout=5.0)
        if self.dispatcher is not None:
            self.dispatcher.stop(timeout=3.0)
        self.store.end_run(self.run_id, self._now_ms())
        log.info("agent stopped cleanly (run %d)", self.run_id)
        self.store.close()
        self._reader.close()
