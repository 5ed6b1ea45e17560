"""Fault records on a controllable clock: grouping, deadlines, reminders, flapping, maintenance."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from agent.faults import records as F
from agent.state.machine import CheckState
from agent.store import faults as stored
from agent.store.db import Store
from agent.store.rows import fetch_all
from probes.base import CheckResult, Status
from tests.conftest import FakeClock

T0 = 1_795_000_000.0  # 2026-11-18 (a Wednesday), epoch seconds
TZ = ZoneInfo("Asia/Shanghai")
CHECKS = {
    "web": F.CheckInfo("web", "HIS", "本院区", 3, "核心系统类", True),
    "disk": F.CheckInfo("disk", "HIS", "本院区", 3, "硬件网络类", False),
    "lis": F.CheckInfo("lis", "LIS", "分院区", 2, "核心系统类", False),
}


class Rig:
    def __init__(self, path: Path, windows: Mapping[str, tuple[float, float]] | None = None) -> None:
        self.clock = FakeClock(T0)
        self.store = Store(path)
        self.store.sync_checks([(n, "http", c.system) for n, c in CHECKS.items()], 0)
        self.run = self.store.begin_run(int(T0 * 1000), 1, "h", "t")
        self.states: dict[str, CheckState] = self.store.load_states()
        self.windows = dict(windows or {})
        self.planned: list[tuple[str, str]] = []
        self.mgr = self.manager()

    def manager(self) -> F.FaultManager:
        return F.FaultManager(
            self.store,
            F.Policy(F.default_levels()),
            CHECKS,
            lambda start, s, wt: (start + int(s * 1000), None),
            self.plan,
            self.window_at,
            TZ,
            self.clock,
        )

    def window_at(self, ts: int, system: str | None, check: str) -> str | None:
        for name, (a, b) in self.windows.items():
            if a * 1000 <= ts < b * 1000:
                return name
        return None

    def plan(self, event: str, fault: F.Fault, detail: Mapping[str, Any]) -> list[tuple[str, str, str]]:
        self.planned.append((event, fault.number))
        seq = detail.get("seq", detail.get("which", ""))
        msg = json.dumps({"subject": f"{event} {fault.number}"})
        return [("ops", f"{fault.number}:{event}:{seq}", msg)]

    def feed(self, name: str, status: Status, confirmations: int = 3, summary: str = "") -> None:
        ts = int(self.clock() * 1000)
        st = self.states.setdefault(name, CheckState())
        window = self.window_at(ts, CHECKS[name].system, name)
        result = CheckResult(
            status, summary or status.name, started_at=datetime.fromtimestamp(ts / 1000, UTC)
        )
        changes = st.observe(ts, status, result.summary, confirmations, window)
        self.store.write_batch(self.run, [(name, result, changes, st)])
        self.mgr.observe(name, result, changes)

    def outbox(self) -> list[tuple[str, str]]:
        """Messages that are or will be sent (withdrawn recovery notices never leave)."""
        return [
            (r[0], r[1])
            for r in self.store.db.execute(
                "SELECT event, dedup_key FROM outbox WHERE status != 'withdrawn' ORDER BY id"
            )
        ]

    def faults(self) -> list[F.Fault]:
        return F.list_faults(self.store.db)


def test_confirmed_failure_opens_one_fault_from_the_first_failing_sample(tmp_path: Path) -> None:
    rig = Rig(tmp_path / "s.db")
    rig.feed("web", Status.OK)
    for _ in range(3):
        rig.clock.advance(60)
        rig.feed("web", Status.CRIT, summary="HTTP 500")
    (fault,) = rig.faults()
    first_fail = int((T0 + 60) * 1000)
    assert fault.start_ts == first_fail and fault.detected_ts == int((T0 + 180) * 1000)
    # An availability-critical check: 三级 configured, raised to 一级 because HIS is down.
    assert (fault.level, fault.level_initial, fault.system, fault.checks) == (1, 3, "HIS", ("web",))
    assert fault.respond_deadline_ts == first_fail + 600_000
    assert fault.restore_deadline_ts == first_fail + 1_800_000
    assert "HIS 不可用" in fault.impact and fault.description == "web: HTTP 500"
    assert fault.number == "GZ-20261118-001"
    assert rig.outbox() == [("opened", "GZ-20261118-001:opened:")]


def test_a_fault_is_read_by_column_name_not_by_position(tmp_path: Path) -> None:
    rig = Rig(tmp_path / "s.db")
    rig.feed("web", Status.CRIT, confirmations=1)
    F.acknowledge(rig.store, "GZ-20261118-001", "李工", int(rig.clock() * 1000) + 3_600_000)
    (fault,) = rig.faults()
    assert fault.acked_by == "李工" and fault.response_overdue is True and fault.flapping is False
    # Every column of the table is a field of Fault and read by its name: the same row with
    # its columns in the opposite order gives the same fault.
    columns = [r["name"] for r in fetch_all(rig.store.db, "PRAGMA table_info(faults)")]
    assert set(columns) == set(stored.FAULT_COLUMNS) == {f.name for f in fields(F.Fault)} - {"checks"}
    row = stored.fault(rig.store.db, fault.id)
    assert row is not None
    assert F.Fault.from_row(dict(reversed(list(row.items())))) == fault


def test_checks_of_one_system_join_one_fault_other_systems_get_their_own(tmp_path: Path) -> None:
    rig = Rig(tmp_path / "s.db")
    for name in ("web", "disk", "lis"):
        rig.feed(name, Status.OK)
    rig.clock.advance(60)
    rig.feed("disk", Status.CRIT, confirmations=1)
    rig.clock.advance(60)
    rig.feed("web", Status.CRIT, confirmations=1)
    rig.feed("lis", Status.CRIT, confirmations=1)
    his, lis = rig.faults()
    assert his.checks == ("disk", "web") and his.level == 1 and his.level_initial == 3
    assert lis.checks == ("lis",) and lis.level == 2 and lis.number == "GZ-20261118-002"
    events = [e for e, _ in rig.outbox()]
    assert events == ["opened", "escalation", "opened"]  # level raised when web joined


def test_recovery_needs_every_check_and_closing_needs_a_cause(tmp_path: Path) -> None:
    rig = Rig(tmp_path / "s.db")
    rig.feed("web", Status.CRIT, confirmations=1)
    rig.feed("disk", Status.CRIT, confirmations=1)
    rig.clock.advance(300)
    rig.feed("web", Status.OK, confirmations=1)
    assert rig.faults()[0].recovered_ts is None
    rig.clock.advance(300)
    rig.feed("disk", Status.WARN, confirmations=1)  # WARN counts as recovered
    fault = rig.faults()[0]
    assert fault.recovered_ts == int((T0 + 600) * 1000) and fault.closed_ts is None
    assert fault.recovery_s == 600
    with pytest.raises(F.FaultError, match="no cause yet"):
        F.close(rig.store, fault.number, "张工", int(rig.clock() * 1000))
    F.resolve(
        rig.store, fault.number, "张工", "应用服务器内存泄漏", "重启并升级补丁", int(rig.clock() * 1000)
    )
    closed = F.close(rig.store, fault.number, "张工", int(rig.clock() * 1000))
    assert closed.closed_by == "张工" and closed.cause == "应用服务器内存泄漏"
    actions = [a for _, _, a, _ in F.fault_events(rig.store.db, fault.id)]
    assert actions == ["opened", "check-joined", "recovered", "resolved", "closed"]
    assert [e for e, _ in rig.outbox()] == ["opened", "recovered"]
    with pytest.raises(Exception, match="append-only"):
        rig.store.db.execute("DELETE FROM fault_events")


def test_deadline_warning_overdue_escalation_and_reminders(tmp_path: Path) -> None:
    rig = Rig(tmp_path / "s.db")
    rig.feed("lis", Status.CRIT, confirmations=1)  # 二级: respond 30 min, restore 2 h, remind 30 min
    fault = rig.faults()[0]
    rig.clock.advance(60)
    rig.mgr.tick()
    assert [e for e, _ in rig.outbox()] == ["opened"]
    rig.clock.advance(29 * 60)  # 30 min: reminder due, response deadline reached
    rig.mgr.tick()
    rig.mgr.tick()  # a second tick in the same minute adds nothing
    fault = rig.faults()[0]
    assert fault.response_overdue and fault.warned_response and fault.reminders == 1
    assert [e for e, _ in rig.outbox()] == ["opened", "warning", "escalation", "reminder"]
    F.acknowledge(rig.store, fault.number, "李工", int(rig.clock() * 1000))
    rig.clock.advance(3600)
    rig.mgr.tick()  # acknowledged: no more reminders, restore warning only (30 min before 2 h)
    assert [e for e, _ in rig.outbox()][4:] == ["warning"]
    rig.clock.advance(3600)
    rig.mgr.tick()
    fault = rig.faults()[0]
    assert fault.restore_overdue and fault.response_s == 1800
    assert F.overdue_counts(rig.store.db, 0, 2**62) == {2: 1}


def test_flapping_check_yields_one_fault_and_few_messages(tmp_path: Path) -> None:
    rig = Rig(tmp_path / "s.db")
    # 20 state changes in 10 minutes: a sample every 30 s alternating OK / CRIT.
    for i in range(21):
        rig.feed("lis", Status.CRIT if i % 2 else Status.OK, confirmations=1)
        rig.clock.advance(30)
    faults = rig.faults()
    assert len(faults) == 1 and faults[0].flapping
    assert [e for e, _ in rig.outbox()] == ["opened"], rig.outbox()
    withdrawn = rig.store.db.execute("SELECT count(*) FROM outbox WHERE status='withdrawn'").fetchone()[0]
    assert withdrawn >= 1  # recovery notices of the early flaps were held back, then withdrawn
    # It settles: OK long enough to stop flapping, and the fault recovers once.
    for _ in range(40):
        rig.feed("lis", Status.OK, confirmations=1)
        rig.clock.advance(30)
    fault = rig.faults()[0]
    assert fault.recovered_ts is not None and not fault.flapping
    assert [e for e, _ in rig.outbox()] == ["opened", "recovered"]
    assert len(rig.faults()) == 1


def test_failure_inside_maintenance_is_recorded_but_not_notified(tmp_path: Path) -> None:
    rig = Rig(tmp_path / "s.db", windows={"升级窗口": (T0 + 30, T0 + 3600)})
    rig.feed("web", Status.OK)
    rig.clock.advance(60)
    for _ in range(3):
        rig.feed("web", Status.CRIT)
        rig.clock.advance(60)
    fault = rig.faults()[0]
    assert fault.maintenance == "升级窗口"
    rig.clock.advance(7200)
    rig.mgr.tick()
    assert rig.outbox() == []
    assert F.overdue_counts(rig.store.db, 0, 2**62) == {}
    ivs = rig.store.intervals(0, 2**62, "web")
    assert [(i.state, i.maintenance) for i in ivs if i.end_ts != i.start_ts] == [
        (Status.OK, None),
        (Status.CRIT, "升级窗口"),
    ]


def test_restart_in_the_middle_of_a_fault_repeats_nothing(tmp_path: Path) -> None:
    rig = Rig(tmp_path / "s.db")
    rig.feed("web", Status.CRIT, confirmations=1)
    rig.clock.advance(60)
    rig.mgr.tick()
    before = rig.outbox()
    # The agent restarts: new run, state machines and manager rebuilt from the store.
    rig.store.end_run(rig.run, int(rig.clock() * 1000))
    rig.clock.advance(120)
    rig.run = rig.store.begin_run(int(rig.clock() * 1000), 2, "h", "t")
    rig.states = rig.store.load_states()
    rig.mgr = rig.manager()
    rig.feed("web", Status.CRIT, confirmations=1)
    rig.mgr.tick()
    assert len(rig.faults()) == 1
    assert rig.outbox() == before
    rig.feed("web", Status.OK, confirmations=1)
    assert [e for e, _ in rig.outbox()] == [e for e, _ in before] + ["recovered"]


def _level3_fault_at(tmp_path: Path, local: str) -> F.Fault:
    """A 三级 fault (non-critical check) opened at a local Shanghai time, real China calendar."""
    from agent.clock.workcal import WorkCalendar
    from agent.config.schema import parse
    from agent.runtime.daemon import policy_from_config

    cfg = parse("site: {name: x}")
    start = datetime.fromisoformat(local).replace(tzinfo=TZ)
    clock = FakeClock(start.timestamp())
    store = Store(tmp_path / "cal.db")
    store.sync_checks([("lis", "http", "LIS")], 0)
    run = store.begin_run(int(clock() * 1000), 1, "h", "t")
    info = {"lis": F.CheckInfo("lis", "LIS", None, 3, "核心系统类", False)}
    mgr = F.FaultManager(
        store,
        policy_from_config(cfg),
        info,
        WorkCalendar(cfg.faults.working_hours, TZ).deadline_ms,
        None,
        lambda *a: None,
        TZ,
        clock,
    )
    st = CheckState()
    ts = int(clock() * 1000)
    r = CheckResult(Status.CRIT, "down", started_at=datetime.fromtimestamp(ts / 1000, UTC))
    ch = st.observe(ts, Status.CRIT, "down", 1)
    store.write_batch(run, [("lis", r, ch, st)])
    mgr.observe("lis", r, ch)
    return F.list_faults(store.db)[0]


def _local(ms: int | None) -> str:
    assert ms is not None
    return datetime.fromtimestamp(ms / 1000, TZ).strftime("%Y-%m-%d %H:%M")


def test_level3_deadline_on_friday_before_a_statutory_holiday_skips_the_holiday(tmp_path: Path) -> None:
    # 端午节 2025: 31 May - 2 June off (国办发明电〔2024〕12号). Default hours 08:00-12:00, 13:30-17:30.
    fault = _level3_fault_at(tmp_path, "2025-05-30 17:00")
    # Respond within 1 h of working time: 30 min on Friday, 30 min on Tuesday morning.
    assert _local(fault.respond_deadline_ts) == "2025-06-03 08:30"
    # Restore within 4 h: 30 min on Friday, 3.5 h from Tuesday 08:00.
    assert _local(fault.restore_deadline_ts) == "2025-06-03 11:30"
    assert fault.calendar_note is None


def test_level3_deadline_counts_a_swapped_working_sunday(tmp_path: Path) -> None:
    # Sunday 2025-09-28 is a working day (调休) before 国庆/中秋 2025.
    fault = _level3_fault_at(tmp_path, "2025-09-28 09:00")
    assert _local(fault.respond_deadline_ts) == "2025-09-28 10:00"
    assert _local(fault.restore_deadline_ts) == "2025-09-28 14:30"
