"""Fault records (故障记录) that open, group, recover and escalate themselves.

Fed by the recorder (the single writer) with every result and the confirmed state changes it
caused, and by a periodic tick for deadlines and reminders. Everything a fault does is written
in the same transaction as the outbox rows of the notifications it triggers, so a crash can
neither lose a notification nor send one twice; the dedup key of each notification makes a
replayed event (after a restart) a no-op.

One fault per system incident: checks of the same system failing together join the open
fault instead of opening their own. The fault's start is the first failing sample (the state
interval's start), not the moment confirmations completed.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, Protocol

from agent.config.base import FAULT_LEVELS
from agent.state.flapping import FlapDetector
from agent.state.machine import Change
from agent.store import faults as stored
from agent.store import outbox
from agent.store.db import Store
from agent.store.faults import Deadline, FaultEvent
from probes.base import CheckResult, Status

log = logging.getLogger("sentinel.faults")

LEVEL_NAMES = FAULT_LEVELS
"""Display names of the fault levels (one table: agent.config.base.FAULT_LEVELS)."""


@dataclass(frozen=True, slots=True)
class LevelRule:
    respond_s: float
    restore_s: float | None
    working_time: bool
    warn_before_s: float
    remind_every_s: float
    report_within_s: float


@dataclass(frozen=True, slots=True)
class Policy:
    levels: Mapping[int, LevelRule]
    open_on: frozenset[Status] = frozenset({Status.CRIT})
    raise_when_unavailable: int | None = 1
    yearly_limits: Mapping[int, int] = field(default_factory=lambda: {1: 5, 2: 10})
    flap_window: int = 21
    flap_low: float = 25.0
    flap_high: float = 30.0
    recovery_hold_s: float = 300.0
    """A recovery notice waits this long; if the fault comes back first, it is withdrawn."""
    reopen_within_s: float = 1800.0
    """A system failing again this soon after its fault recovered reopens that fault."""


@dataclass(frozen=True, slots=True)
class CheckInfo:
    name: str
    system: str | None
    campus: str | None
    level: int
    type: str
    availability_critical: bool


@dataclass(frozen=True, slots=True)
class Fault:
    id: int
    number: str
    system: str | None
    campus: str | None
    level: int
    level_initial: int
    type: str
    description: str
    impact: str
    start_ts: int
    detected_ts: int
    respond_deadline_ts: int | None
    restore_deadline_ts: int | None
    calendar_note: str | None
    acked_ts: int | None
    acked_by: str | None
    recovered_ts: int | None
    closed_ts: int | None
    closed_by: str | None
    cause: str | None
    measures: str | None
    flapping: bool
    maintenance: str | None
    response_overdue: bool
    restore_overdue: bool
    warned_response: bool
    warned_restore: bool
    reminders: int
    last_reminder_ts: int | None
    checks: tuple[str, ...] = ()

    @property
    def level_name(self) -> str:
        return LEVEL_NAMES.get(self.level, str(self.level))

    @property
    def response_s(self) -> float | None:
        return (self.acked_ts - self.start_ts) / 1000 if self.acked_ts is not None else None

    @property
    def recovery_s(self) -> float | None:
        return (self.recovered_ts - self.start_ts) / 1000 if self.recovered_ts is not None else None

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__} | {
            "level_name": self.level_name,
            "response_s": self.response_s,
            "recovery_s": self.recovery_s,
        }

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Fault:
        """A fault row of the store (agent.store.faults), field by column name; a missing
        column raises KeyError naming it."""
        values = {f.name: row[f.name] for f in fields(cls)}
        for flag in _FLAGS:  # stored as 0/1
            values[flag] = bool(values[flag])
        values["checks"] = tuple(values["checks"])
        return cls(**values)


_FLAGS = ("flapping", "response_overdue", "restore_overdue", "warned_response", "warned_restore")


def _fault(row: Mapping[str, Any] | None) -> Fault | None:
    return None if row is None else Fault.from_row(row)


class Deadlines(Protocol):
    def __call__(self, start_ms: int, seconds: float, working_time: bool) -> tuple[int, str | None]: ...


class Planner(Protocol):
    """Turns a fault event into outbox rows: [(channel, dedup key, message JSON)]."""

    def __call__(self, event: str, fault: Fault, detail: Mapping[str, Any]) -> list[tuple[str, str, str]]: ...


MaintenanceLookup = Callable[[int, str | None, str], str | None]
"""(ts_ms, system, check) -> name of the maintenance window covering it, or None."""


# ------------------------------------------------------------------------------- queries


def get_fault(db: sqlite3.Connection, key: int | str) -> Fault | None:
    """The fault of this id (int) or number (str)."""
    return _fault(stored.fault(db, key))


def list_faults(
    db: sqlite3.Connection,
    open_only: bool = False,
    level: int | None = None,
    start_ms: int | None = None,
    end_ms: int | None = None,
) -> list[Fault]:
    return [Fault.from_row(r) for r in stored.faults(db, open_only, level, start_ms, end_ms)]


def fault_events(db: sqlite3.Connection, fault_id: int) -> list[FaultEvent]:
    """The fault's history: (ts, actor, action, detail JSON), oldest first."""
    return stored.events(db, fault_id)


def overdue_counts(db: sqlite3.Connection, start_ms: int, end_ms: int) -> dict[int, int]:
    """Faults per level with an overdue response or recovery, outside maintenance."""
    return stored.overdue_counts(db, start_ms, end_ms)


def _next_number(db: sqlite3.Connection, start_ms: int, tz: Any) -> str:
    day = datetime.fromtimestamp(start_ms / 1000, UTC).astimezone(tz).strftime("%Y%m%d")
    prefix = f"GZ-{day}-"
    return f"{prefix}{stored.last_number(db, prefix) + 1:03d}"


# ------------------------------------------------------------------------------- manager


class FaultManager:
    def __init__(
        self,
        store: Store,
        policy: Policy,
        checks: Mapping[str, CheckInfo],
        deadlines: Deadlines,
        planner: Planner | None,
        maintenance: MaintenanceLookup,
        tz: Any,
        clock: Callable[[], float],
    ) -> None:
        self.store = store
        self.policy = policy
        self.checks = checks
        self.deadlines = deadlines
        self.planner = planner
        self.maintenance = maintenance
        self.tz = tz
        self.clock = clock
        self.flaps: dict[str, FlapDetector] = {}

    def _now(self) -> int:
        return int(self.clock() * 1000)

    def _enqueue(
        self, db: sqlite3.Connection, event: str, fault: Fault, detail: Mapping[str, Any], delay_s: float = 0
    ) -> None:
        if self.planner is None or fault.maintenance is not None:
            return
        now = self._now()
        for channel, dedup, message in self.planner(event, fault, detail):
            outbox.enqueue(
                db,
                created_ts=now,
                dedup_key=dedup,
                channel=channel,
                event=event,
                fault_id=fault.id,
                message=message,
                next_attempt_ts=now + int(delay_s * 1000),
            )

    # ---------------------------------------------------------------- results

    def observe(self, name: str, result: CheckResult, changes: Sequence[Change]) -> None:
        """Called by the recorder, after the result is committed, for every result."""
        info = self.checks.get(name)
        if info is None:
            return
        flap = self.flaps.setdefault(
            name, FlapDetector(self.policy.flap_window, self.policy.flap_low, self.policy.flap_high)
        )
        flap_event = flap.observe(result.status)
        if not changes and flap_event is None:
            return
        with self.store.tx() as db:
            if flap_event is True:
                self._flapping_started(db, info, result)
            for ch in changes:
                if flap.flapping:
                    # While flapping, state changes are recorded as intervals but do not
                    # open, recover or notify: one flapping fault stands for all of them.
                    continue
                if ch.state in self.policy.open_on:
                    self._failing(db, info, ch)
                elif ch.state in (Status.OK, Status.WARN):
                    self._recovered(db, info, ch.at_ms)
            if flap_event is False and result.status in (Status.OK, Status.WARN):
                ts = int(result.started_at.timestamp() * 1000)
                self._recovered(db, info, ts, flapping_ended=True)

    def _open_fault_for(self, db: sqlite3.Connection, info: CheckInfo) -> Fault | None:
        """The unrecovered fault of this check's system (or of the check itself when it has none)."""
        if info.system is not None:
            return _fault(stored.unrecovered_of_system(db, info.system))
        return _fault(stored.unrecovered_of_check(db, info.name))

    def _failing(self, db: sqlite3.Connection, info: CheckInfo, ch: Change) -> None:
        fault = self._open_fault_for(db, info) or self._reopen(db, info, ch.at_ms)
        if fault is not None:
            self._join(db, fault, info, ch.at_ms, ch.summary)
            return
        self._open(db, info, ch.at_ms, ch.summary, flapping=False)

    def _reopen(self, db: sqlite3.Connection, info: CheckInfo, ts: int) -> Fault | None:
        """The same incident coming back soon after recovery is not a new fault."""
        since = ts - int(self.policy.reopen_within_s * 1000)
        fault_id = stored.recovered_since(db, info.system, info.name, since)
        if fault_id is None:
            return None
        stored.clear_recovery(db, fault_id)
        withdrawn = outbox.withdraw_pending(db, fault_id, "recovered")
        stored.add_event(db, fault_id, self._now(), "agent", "reopened", {"check": info.name, "at": ts})
        fault = get_fault(db, fault_id)
        assert fault is not None
        if not withdrawn:
            # Its recovery was already announced: say that it is back.
            self._enqueue(db, "reopened", fault, {"check": info.name, "seq": ts})
        return fault

    def _level_for(self, info: CheckInfo) -> int:
        level = info.level
        if info.availability_critical and self.policy.raise_when_unavailable is not None:
            level = min(level, self.policy.raise_when_unavailable)
        return level

    def _open(
        self, db: sqlite3.Connection, info: CheckInfo, start: int, summary: str, flapping: bool
    ) -> Fault:
        now = self._now()
        level = self._level_for(info)
        rule = self.policy.levels[level]
        respond, note1 = self.deadlines(start, rule.respond_s, rule.working_time)
        restore, note2 = (None, None)
        if rule.restore_s is not None:
            restore, note2 = self.deadlines(start, rule.restore_s, rule.working_time)
        window = self.maintenance(start, info.system, info.name)
        if info.availability_critical:
            impact = f"{info.system or info.name} 不可用（关键检查项 {info.name} 失败）"
        else:
            impact = f"{info.system or info.name} 部分功能或性能受影响，业务仍可运行"
        number = _next_number(db, start, self.tz)
        fault_id = stored.insert(
            db,
            number=number,
            system=info.system,
            campus=info.campus,
            level=level,
            level_initial=info.level,
            type=info.type,
            description=f"{info.name}: {summary}",
            impact=impact,
            start_ts=start,
            detected_ts=now,
            respond_deadline_ts=respond,
            restore_deadline_ts=restore,
            calendar_note=note1 or note2,
            flapping=flapping,
            maintenance=window,
        )
        stored.add_check(db, fault_id, info.name, start, summary)
        stored.add_event(
            db,
            fault_id,
            now,
            "agent",
            "opened",
            {"check": info.name, "summary": summary, "flapping": flapping, "maintenance": window},
        )
        if note1 or note2:
            log.warning("fault %s: %s", number, note1 or note2)
        fault = get_fault(db, fault_id)
        assert fault is not None
        log.warning(
            "fault %s opened (%s, %s): %s", number, fault.level_name, info.system or info.name, summary
        )
        self._enqueue(db, "flapping" if flapping else "opened", fault, {"check": info.name})
        return fault

    def _join(self, db: sqlite3.Connection, fault: Fault, info: CheckInfo, ts: int, summary: str) -> None:
        now = self._now()
        if not stored.add_check(db, fault.id, info.name, ts, summary):
            stored.check_failing_again(db, fault.id, info.name, summary)
            return  # the same check failing again (e.g. first sample after a restart)
        stored.add_event(db, fault.id, now, "agent", "check-joined", {"check": info.name, "summary": summary})
        level = self._level_for(info)
        if level < fault.level:
            stored.raise_level(
                db, fault.id, level, f"{info.system or info.name} 不可用（关键检查项 {info.name} 失败）"
            )
            stored.add_event(db, fault.id, now, "agent", "level-raised", {"from": fault.level, "to": level})
            raised = get_fault(db, fault.id)
            assert raised is not None
            self._enqueue(db, "escalation", raised, {"reason": "level-raised", "check": info.name})

    def _flapping_started(self, db: sqlite3.Connection, info: CheckInfo, result: CheckResult) -> None:
        ts = int(result.started_at.timestamp() * 1000)
        fault = self._open_fault_for(db, info) or self._reopen(db, info, ts)
        if fault is None:
            self._open(db, info, ts, f"状态频繁变化（抖动）: {result.summary}", flapping=True)
            return
        self._join(db, fault, info, ts, result.summary)
        if not fault.flapping:
            stored.mark_flapping(db, fault.id)
            stored.add_event(db, fault.id, self._now(), "agent", "flapping", {"check": info.name})

    def _recovered(
        self, db: sqlite3.Connection, info: CheckInfo, ts: int, flapping_ended: bool = False
    ) -> None:
        now = self._now()
        for fault_id in stored.failing_with(db, info.name):
            stored.check_recovered(db, fault_id, info.name, ts)
            if stored.unrecovered_checks(db, fault_id):
                continue
            fault = get_fault(db, fault_id)
            assert fault is not None
            overdue = fault.restore_deadline_ts is not None and ts > fault.restore_deadline_ts
            stored.mark_recovered(db, fault_id, ts, restore_overdue=overdue and fault.maintenance is None)
            stored.add_event(
                db,
                fault_id,
                now,
                "agent",
                "recovered",
                {"check": info.name, "at": ts, "flapping_ended": flapping_ended},
            )
            log.info("fault %s recovered", fault.number)
            recovered = get_fault(db, fault_id)
            assert recovered is not None
            self._enqueue(
                db,
                "recovered",
                recovered,
                {"check": info.name, "seq": ts},
                delay_s=self.policy.recovery_hold_s,
            )

    # ---------------------------------------------------------------- clock

    def tick(self) -> None:
        """Deadline warnings, overdue marks, escalations and reminders (every ~30 s)."""
        now = self._now()
        with self.store.tx() as db:
            for fault in list_faults(db, open_only=True):
                if fault.maintenance is not None:
                    continue
                rule = self.policy.levels[fault.level]
                self._deadline(db, fault, now, rule, "response")
                if fault.recovered_ts is None:
                    self._deadline(db, fault, now, rule, "restore")
                if fault.acked_ts is None and fault.recovered_ts is None:
                    last = fault.last_reminder_ts or fault.detected_ts
                    if now - last >= rule.remind_every_s * 1000:
                        n = fault.reminders + 1
                        stored.record_reminder(db, fault.id, n, now)
                        fresh = get_fault(db, fault.id)
                        assert fresh is not None
                        self._enqueue(db, "reminder", fresh, {"seq": n})

    def _deadline(
        self, db: sqlite3.Connection, fault: Fault, now: int, rule: LevelRule, which: Deadline
    ) -> None:
        if which == "response":
            deadline, done, warned, overdue = (
                fault.respond_deadline_ts,
                fault.acked_ts,
                fault.warned_response,
                fault.response_overdue,
            )
        else:
            deadline, done, warned, overdue = (
                fault.restore_deadline_ts,
                fault.recovered_ts,
                fault.warned_restore,
                fault.restore_overdue,
            )
        if deadline is None or done is not None:
            return
        # The warning comes `warn_before` ahead, but never earlier than half-way: a 30-minute
        # warning on a 30-minute deadline would fire the moment the fault opens.
        lead_ms = min(rule.warn_before_s * 1000, (deadline - fault.start_ts) / 2)
        if not warned and now >= deadline - lead_ms:
            stored.mark_warned(db, fault.id, which)
            stored.add_event(db, fault.id, now, "agent", f"{which}-deadline-warning", {"deadline": deadline})
            self._enqueue(db, "warning", fault, {"which": which, "deadline": deadline})
        if not overdue and now >= deadline:
            stored.mark_overdue(db, fault.id, which)
            stored.add_event(db, fault.id, now, "agent", f"{which}-overdue", {"deadline": deadline})
            fresh = get_fault(db, fault.id)
            assert fresh is not None
            self._enqueue(
                db, "escalation", fresh, {"which": which, "deadline": deadline, "reason": "overdue"}
            )


# ------------------------------------------------------------------------------- people


class FaultError(ValueError):
    """A CLI action that does not fit the fault's state."""


def _open_fault(db: sqlite3.Connection, key: int | str) -> Fault:
    fault = get_fault(db, key)
    if fault is None:
        raise FaultError(f"no fault {key}")
    if fault.closed_ts is not None:
        raise FaultError(f"fault {fault.number} is closed already")
    return fault


def _reloaded(db: sqlite3.Connection, fault_id: int) -> Fault:
    fault = get_fault(db, fault_id)
    assert fault is not None
    return fault


def acknowledge(store: Store, key: int | str, by: str, now_ms: int) -> Fault:
    with store.tx() as db:
        fault = _open_fault(db, key)
        if fault.acked_ts is not None:
            raise FaultError(f"fault {fault.number} was acknowledged by {fault.acked_by} already")
        overdue = fault.respond_deadline_ts is not None and now_ms > fault.respond_deadline_ts
        stored.acknowledge(db, fault.id, now_ms, by, response_overdue=overdue and fault.maintenance is None)
        stored.add_event(db, fault.id, now_ms, by, "acknowledged", {})
        return _reloaded(db, fault.id)


def resolve(store: Store, key: int | str, by: str, cause: str, measures: str, now_ms: int) -> Fault:
    """Record cause and measures; a recovered fault with a cause is closed."""
    if not cause.strip():
        raise FaultError("a cause is required (the contract requires it in the fault report)")
    with store.tx() as db:
        fault = _open_fault(db, key)
        stored.set_cause(db, fault.id, cause, measures)
        stored.add_event(db, fault.id, now_ms, by, "resolved", {"cause": cause, "measures": measures})
        return _reloaded(db, fault.id)


def close(store: Store, key: int | str, by: str, now_ms: int) -> Fault:
    with store.tx() as db:
        fault = _open_fault(db, key)
        if fault.recovered_ts is None:
            raise FaultError(f"fault {fault.number} has not recovered yet")
        if not fault.cause:
            raise FaultError(f"fault {fault.number} has no cause yet: run `sentinel faults resolve` first")
        stored.close(db, fault.id, now_ms, by)
        stored.add_event(db, fault.id, now_ms, by, "closed", {})
        return _reloaded(db, fault.id)


def default_levels() -> dict[int, LevelRule]:
    """The common contract table (the README's fault-level table): respond / restore / warn
    before / remind."""
    minute, hour = 60.0, 3600.0
    return {
        1: LevelRule(10 * minute, 30 * minute, False, 5 * minute, 10 * minute, 24 * hour),
        2: LevelRule(30 * minute, 2 * hour, False, 30 * minute, 30 * minute, 24 * hour),
        3: LevelRule(1 * hour, 4 * hour, True, 30 * minute, 1 * hour, 48 * hour),
        4: LevelRule(2 * hour, None, True, 30 * minute, 4 * hour, 24 * hour),
    }
