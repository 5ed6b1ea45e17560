"""Excluded time needs both parties (经双方认定): the ledgers, their approvals, `excluded_spans`
(what availability may exclude) and the muting schedule (what silences alerts)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from agent.config.schema import ForceMajeure
from agent.config.windows import WindowSpec
from agent.store import evidence
from agent.store import windows as stored
from agent.store.db import Store
from agent.windows import approvals as ap
from agent.windows import exclusions as fm
from agent.windows.approvals import ApprovalError
from agent.windows.excluded import Approval, ExcludedSpan, excluded_spans
from agent.windows.ledger import (
    WindowError,
    add_window,
    approve_window,
    change_token,
    is_late,
    list_windows,
    muting_schedule,
    remove_window,
    sync_config_windows,
)
from agent.windows.maintenance import window_from_json

SH = ZoneInfo("Asia/Shanghai")
H = 3_600_000
DAY = 24 * H
MIN = 60_000


def sh(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> int:
    return int(datetime(y, mo, d, h, mi, tzinfo=SH).timestamp()) * 1000


def spec(**kw: Any) -> WindowSpec:
    base: dict[str, Any] = {"name": "w", "systems": ["HIS"], "reason": "升级"}
    base.update(kw)
    return WindowSpec.model_validate(base)


def force_majeure(**kw: Any) -> ForceMajeure:
    base: dict[str, Any] = {
        "name": "市电中断",
        "start": "2026-03-10 20:00",
        "end": "2026-03-10 22:00",
        "systems": ["HIS"],
        "reason": "供电局计划外停电",
        "approvals": {"甲方": "王主任", "乙方": "张工"},
    }
    base.update(kw)
    return ForceMajeure.model_validate(base)


def new_record(**kw: Any) -> fm.NewRecord:
    base: dict[str, Any] = {
        "name": "光缆中断",
        "start": "2026-03-10 20:00",
        "end": "2026-03-10 22:00",
        "systems": [],
        "reason": "运营商光缆被挖断",
    }
    base.update(kw)
    return fm.NewRecord.model_validate(base)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "s.db")
    yield s
    s.close()


def spans(store: Store, start: int, end: int, as_of: int) -> list[ExcludedSpan]:
    return excluded_spans(store, SH, start, end, as_of)


# ------------------------------------------------------------------------- both parties, late


def test_a_window_recorded_after_it_began_is_late_and_pending_until_both_approve(store: Store) -> None:
    start, end = sh(2026, 3, 1, 22), sh(2026, 3, 2, 1)
    recorded, approved = sh(2026, 3, 5, 9), sh(2026, 3, 6, 15)
    w = spec(name="HIS补录", start="2026-03-01 22:00", end="2026-03-02 01:00", ticket="CHG-9")
    add_window(store, w, "乙方", "张工", "ops", recorded)

    (span,) = spans(store, sh(2026, 3, 1), sh(2026, 4, 1), recorded)
    assert (span.kind, span.name, span.start_ms, span.end_ms) == ("maintenance", "HIS补录", start, end)
    assert span.late and not span.effective
    assert span.approvals == (Approval("乙方", "张工", recorded, "ops"),)
    assert (span.recorded_ms, span.recorded_by, span.ticket, span.reason) == (
        recorded,
        "ops",
        "CHG-9",
        "升级",
    )

    approve_window(store, "HIS补录", "甲方", "王主任", "root", approved)
    # An approval given after the computation's instant does not count for it.
    (before,) = spans(store, sh(2026, 3, 1), sh(2026, 4, 1), approved - 1)
    assert not before.effective and len(before.approvals) == 1
    (after,) = spans(store, sh(2026, 3, 1), sh(2026, 4, 1), approved)
    # Both approved: the whole span excludes, the part before the recording too, still marked late.
    assert after.effective and after.late and (after.start_ms, after.end_ms) == (start, end)
    assert [a.party for a in after.approvals] == ["乙方", "甲方"]


def test_a_window_recorded_before_it_begins_is_not_late(store: Store) -> None:
    add_window(
        store, spec(start="2026-03-10 22:00", end="2026-03-10 23:00"), "甲方", "王主任", "ops", sh(2026, 3, 9)
    )
    (span,) = spans(store, sh(2026, 3, 1), sh(2026, 4, 1), sh(2026, 3, 9))
    assert not span.late and not span.effective
    (w,) = list_windows(store)
    assert not is_late(w, SH) and w.mutes_from == sh(2026, 3, 9)


def test_spans_are_not_clipped_and_only_those_overlapping_the_range(store: Store) -> None:
    add_window(
        store, spec(start="2026-03-10 22:00", end="2026-03-11 02:00"), "甲方", "王主任", "ops", sh(2026, 3, 1)
    )
    (span,) = spans(store, sh(2026, 3, 11), sh(2026, 3, 12), sh(2026, 3, 20))
    assert (span.start_ms, span.end_ms) == (sh(2026, 3, 10, 22), sh(2026, 3, 11, 2))
    assert spans(store, sh(2026, 3, 11, 2), sh(2026, 3, 12), sh(2026, 3, 20)) == []
    assert spans(store, sh(2026, 3, 12), sh(2026, 3, 11), sh(2026, 3, 20)) == []


# ------------------------------------------------------------------------- recurring


def test_a_weekly_window_recorded_today_excludes_no_past_sunday(store: Store) -> None:
    weekly = spec(name="每周例行维护", weekly={"days": ["sun"], "at": "02:00", "duration": "2h"})
    recorded = sh(2026, 6, 10, 9)  # a Wednesday
    add_window(store, weekly, "乙方", "张工", "ops", recorded)
    approve_window(store, "每周例行维护", "甲方", "王主任", "ops", recorded + MIN)
    year = spans(store, sh(2026, 1, 1), sh(2027, 1, 1), sh(2027, 1, 1))
    # 2026-06-14 is the first Sunday after the recording; 29 Sundays from then to the year's end.
    assert year[0].start_ms == sh(2026, 6, 14, 2) and len(year) == 29
    assert all(s.start_ms >= recorded and s.effective and not s.late for s in year)
    assert all(s.end_ms - s.start_ms == 2 * H for s in year)


def test_an_occurrence_running_at_the_recording_starts_at_the_recording_and_is_late(store: Store) -> None:
    weekly = spec(name="周日", weekly={"days": ["sun"], "at": "02:00", "duration": "2h"})
    recorded = sh(2026, 6, 14, 3)  # Sunday 03:00, one hour into the occurrence
    add_window(store, weekly, "甲方", "王主任", "ops", recorded)
    first, second = spans(store, sh(2026, 6, 1), sh(2026, 6, 22), recorded)
    assert (first.start_ms, first.end_ms, first.late) == (recorded, sh(2026, 6, 14, 4), True)
    assert (second.start_ms, second.late) == (sh(2026, 6, 21, 2), False)
    (w,) = list_windows(store)
    assert is_late(w, SH)


def test_a_year_of_weekly_windows_enumerates_only_the_weeks_after_recording(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agent.windows import excluded as module

    asked: list[tuple[int, int]] = []
    real = module.occurrences

    def spy(s: WindowSpec, tz: ZoneInfo, a: int, b: int, not_before: int | None = None) -> list[Any]:
        asked.append((a, b))
        return real(s, tz, a, b, not_before)

    monkeypatch.setattr(module, "occurrences", spy)
    for i in range(50):
        add_window(
            store,
            spec(name=f"w{i}", weekly={"days": ["sun", "wed"], "at": "02:00", "duration": "1h"}),
            "甲方",
            "王主任",
            "ops",
            sh(2026, 12, 1),
        )
    got = spans(store, sh(2026, 1, 1), sh(2027, 1, 1), sh(2027, 1, 1))
    assert len(got) == 50 * 9  # December 2026: 4 Sundays and 5 Wednesdays
    assert {a for a, _ in asked} == {sh(2026, 12, 1)}


# ------------------------------------------------------------------------- as of


def test_the_ledger_is_read_as_it_stood_at_as_of(store: Store) -> None:
    w = spec(name="一次性", start="2026-03-10 22:00", end="2026-03-10 23:00")
    add_window(store, w, "甲方", "王主任", "ops", sh(2026, 3, 5))
    approve_window(store, "一次性", "乙方", "张工", "ops", sh(2026, 3, 6))
    remove_window(store, "一次性", "ops", sh(2026, 3, 20))
    rng = (sh(2026, 3, 1), sh(2026, 4, 1))
    assert spans(store, *rng, sh(2026, 3, 4)) == []  # not recorded yet
    (then,) = spans(store, *rng, sh(2026, 3, 15))
    assert then.effective
    assert spans(store, *rng, sh(2026, 3, 20)) == []  # withdrawn


# ------------------------------------------------------------------------- force majeure


def test_force_majeure_needs_both_parties_and_covers_its_systems(store: Store) -> None:
    recorded = sh(2026, 3, 11, 9)
    fm.add(store, new_record(systems=["HIS"]), SH, "甲方", "王主任", "ops", recorded)
    (span,) = spans(store, sh(2026, 3, 1), sh(2026, 4, 1), recorded)
    assert (span.kind, span.start_ms, span.end_ms) == (
        "force_majeure",
        sh(2026, 3, 10, 20),
        sh(2026, 3, 10, 22),
    )
    assert span.late and not span.effective and span.checks == () and span.ticket is None
    assert span.covers("HIS", "any-check") and not span.covers("EMR", "any-check")
    assert not span.covers(None, "any-check")
    fm.approve(store, "光缆中断", "乙方", "张工", "ops", recorded + H)
    (span,) = spans(store, sh(2026, 3, 1), sh(2026, 4, 1), recorded + H)
    assert span.effective
    (x,) = fm.list_all(store)
    assert x.effective and x.late and [a.party for a in x.approvals] == ["甲方", "乙方"]


def test_force_majeure_naming_no_system_covers_every_system(store: Store) -> None:
    fm.add(store, new_record(), SH, "甲方", "王主任", "ops", sh(2026, 3, 9))
    (span,) = spans(store, sh(2026, 3, 1), sh(2026, 4, 1), sh(2026, 3, 9))
    assert not span.late
    assert span.covers("HIS", "c") and span.covers("EMR", "c") and span.covers(None, "c")


def test_window_coverage_by_system_or_check(store: Store) -> None:
    add_window(store, spec(name="按检查", systems=[], checks=["db-backup"], start="2026-03-10 22:00",
                           end="2026-03-10 23:00"), "甲方", "王主任", "ops", sh(2026, 3, 1))  # fmt: skip
    (span,) = spans(store, sh(2026, 3, 1), sh(2026, 4, 1), sh(2026, 3, 1))
    assert span.covers("EMR", "db-backup") and span.covers(None, "db-backup")
    assert not span.covers("HIS", "his-web")
    add_window(store, spec(name="按系统", start="2026-03-10 22:00", end="2026-03-10 23:00"),
               "甲方", "王主任", "ops", sh(2026, 3, 1))  # fmt: skip
    by_system = next(
        s for s in spans(store, sh(2026, 3, 1), sh(2026, 4, 1), sh(2026, 3, 1)) if s.name == "按系统"
    )
    assert by_system.covers("HIS", "his-web") and not by_system.covers(None, "his-web")
    assert [s.name for s in spans(store, sh(2026, 3, 1), sh(2026, 4, 1), sh(2026, 3, 1))] == [
        "按检查",
        "按系统",
    ]


# ------------------------------------------------------------------------- refusals


def test_refusals_leave_the_ledger_as_it_was(store: Store) -> None:
    t = sh(2026, 3, 1)
    with pytest.raises(ApprovalError, match="unknown party"):
        add_window(store, spec(start="2026-03-10 22:00", end="2026-03-10 23:00"), "丙方", "某人", "ops", t)
    assert list_windows(store, include_removed=True) == []
    add_window(store, spec(start="2026-03-10 22:00", end="2026-03-10 23:00"), "乙方", "张工", "ops", t)
    with pytest.raises(ApprovalError, match="乙方 approved already"):
        approve_window(store, "w", "乙方", "李工", "ops", t + 1)
    with pytest.raises(ApprovalError, match="two different people"):
        approve_window(store, "w", "甲方", " 张工 ", "ops", t + 1)
    with pytest.raises(ApprovalError, match="name the person"):
        approve_window(store, "w", "甲方", "  ", "ops", t + 1)
    with pytest.raises(WindowError, match="no active maintenance window named 'nope'"):
        approve_window(store, "nope", "甲方", "王主任", "ops", t + 1)
    (w,) = list_windows(store)
    assert len(w.approvals) == 1 and not w.effective
    remove_window(store, "w", "ops", t + 2)
    with pytest.raises(WindowError, match="no active maintenance window"):
        approve_window(store, "w", "甲方", "王主任", "ops", t + 3)
    with pytest.raises(WindowError, match="approved with --party"):
        add_window(store, spec(approvals={"甲方": "王主任", "乙方": "张工"}, start="2026-03-10 22:00",
                               end="2026-03-10 23:00"), "甲方", "王主任", "ops", t)  # fmt: skip

    with pytest.raises(ApprovalError, match="unknown party"):
        fm.add(store, new_record(), SH, "丙方", "王主任", "ops", t)
    assert fm.list_all(store, include_removed=True) == []
    fm.add(store, new_record(), SH, "甲方", "王主任", "ops", t)
    with pytest.raises(ApprovalError, match="甲方 approved already"):
        fm.approve(store, "光缆中断", "甲方", "李主任", "ops", t)
    with pytest.raises(ApprovalError, match="two different people"):
        fm.approve(store, "光缆中断", "乙方", "王主任", "ops", t)
    with pytest.raises(fm.ExclusionError, match="no active exclusion"):
        fm.approve(store, "别的", "乙方", "张工", "ops", t)
    fm.remove(store, "光缆中断", "ops", "录错", t + 1)
    with pytest.raises(fm.ExclusionError, match="no active exclusion"):
        fm.approve(store, "光缆中断", "乙方", "张工", "ops", t + 2)
    assert len(stored.approvals(store.db, "exclusions")) == 1


def test_the_same_person_for_both_parties_is_refused_in_the_configuration() -> None:
    with pytest.raises(ValueError, match="two different people"):
        force_majeure(approvals={"甲方": "王主任", "乙方": "王主任"})
    with pytest.raises(ValueError, match="approved_by was replaced by approvals"):
        force_majeure(approved_by="双方")


# ------------------------------------------------------------------------- the configuration


def test_config_windows_are_recorded_when_first_loaded_with_both_approvals(store: Store) -> None:
    weekly = spec(name="每周例行维护", weekly={"days": ["sun"], "at": "02:00", "duration": "2h"},
                  approvals={"甲方": "王主任", "乙方": "张工"})  # fmt: skip
    loaded = sh(2026, 6, 10, 9)
    sync_config_windows(store, [weekly], loaded, "agent-user")
    (w,) = list_windows(store)
    assert (w.source, w.created_ts, w.created_by, w.effective) == ("config", loaded, "config", True)
    assert {(a.party, a.approver, a.ts_ms, a.os_user) for a in w.approvals} == {
        ("甲方", "王主任", loaded, "agent-user"),
        ("乙方", "张工", loaded, "agent-user"),
    }
    # Loaded again unchanged: the first recording stands, no approval is added.
    sync_config_windows(store, [weekly], loaded + DAY, "agent-user")
    (w,) = list_windows(store)
    assert w.created_ts == loaded and len(stored.approvals(store.db, "maintenance")) == 2
    year = spans(store, sh(2026, 1, 1), sh(2027, 1, 1), sh(2027, 1, 1))
    assert len(year) == 29 and all(s.effective and s.recorded_by == "config" for s in year)
    # Changed in the file: recorded anew at that load, the old one withdrawn.
    changed = weekly.model_copy(update={"reason": "数据库例行维护（改）"})
    sync_config_windows(store, [changed], loaded + 2 * DAY, "agent-user")
    (w,) = list_windows(store)
    assert (w.created_ts, w.spec.reason, w.effective) == (loaded + 2 * DAY, "数据库例行维护（改）", True)
    assert len(list_windows(store, include_removed=True)) == 2


def test_config_force_majeure_is_recorded_when_first_loaded_with_both_approvals(store: Store) -> None:
    rec = force_majeure()
    loaded = sh(2026, 3, 12)
    fm.sync_config(store, (rec,), SH, loaded, "agent-user")
    (x,) = fm.list_all(store)
    assert (x.source, x.created_ts, x.effective, x.late) == ("config", loaded, True, True)
    assert {(a.party, a.approver, a.os_user) for a in x.approvals} == {
        ("甲方", "王主任", "agent-user"),
        ("乙方", "张工", "agent-user"),
    }
    fm.sync_config(store, (rec,), SH, loaded + DAY, "agent-user")
    assert [x.created_ts for x in fm.list_all(store)] == [loaded]
    # Nothing counts before the agent loaded it (as_of before the load: not recorded yet).
    assert spans(store, sh(2026, 3, 1), sh(2026, 4, 1), loaded - 1) == []
    # Another approver in the file is a changed record: recorded anew.
    fm.sync_config(
        store, (force_majeure(approvals={"甲方": "李主任", "乙方": "张工"}),), SH, loaded + 2 * DAY
    )
    (x,) = fm.list_all(store)
    assert x.created_ts == loaded + 2 * DAY and {a.approver for a in x.approvals} == {"李主任", "张工"}
    assert x.approvals[0].os_user == ap.os_user()


def test_os_user_is_the_user_behind_sudo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUDO_USER", "值班员")
    assert ap.os_user() == "值班员"
    monkeypatch.delenv("SUDO_USER")

    def no_user() -> str:
        raise OSError("no login name")

    monkeypatch.setattr(ap.getpass, "getuser", no_user)
    assert ap.os_user() == "unknown"


# ------------------------------------------------------------------------- muting


def test_muting_needs_one_approval_and_starts_at_the_recording(store: Store) -> None:
    recorded = sh(2026, 3, 1, 23)
    add_window(store, spec(name="补录", start="2026-03-01 22:00", end="2026-03-02 01:00"), "乙方", "张工",
               "ops", recorded)  # fmt: skip
    add_window(store, spec(name="每周", weekly={"days": ["sun"], "at": "02:00", "duration": "2h"}),
               "乙方", "张工", "ops", sh(2026, 3, 4))  # fmt: skip
    sched = muting_schedule(store, SH)
    assert sched.active(recorded - 1, "HIS", "his-web") is None  # before the recording: not muted
    w = sched.active(recorded, "HIS", "his-web")
    assert w is not None and (w.name, w.start_ms, w.end_ms) == ("补录", recorded, sh(2026, 3, 2, 1))
    # The weekly window mutes from its first Sunday after recording, never the one before.
    assert sched.active(sh(2026, 3, 1, 2, 30), "HIS", "his-web") is None
    nxt = sched.active(sh(2026, 3, 8, 2, 30), "HIS", "his-web")
    assert nxt is not None and nxt.name == "每周"
    assert sched.next_boundary(sh(2026, 3, 2, 1), "HIS", "his-web") == sh(2026, 3, 8, 2)


def test_a_window_without_any_approval_mutes_nothing(store: Store) -> None:
    # A window recorded before approvals had two parties (schema 4) carries one name in its spec.
    legacy = json.dumps(
        {"name": "旧窗口", "systems": ["HIS"], "checks": [], "reason": "升级", "approved_by": "张工",
         "ticket": None, "start": "2026-03-01T22:00:00", "end": "2026-03-02T01:00:00", "weekly": None,
         "monthly": None, "cron": None, "duration": None, "valid_from": None, "valid_until": None},
        ensure_ascii=False,
    )  # fmt: skip
    with store.tx() as db:
        stored.add_window(db, "旧窗口", "cli", legacy, sh(2026, 2, 1), "ops")
    (w,) = list_windows(store)
    assert w.spec.approvals is None and w.approvals == () and w.mutes_from is None
    assert muting_schedule(store, SH).active(sh(2026, 3, 1, 23), "HIS", "his-web") is None
    (span,) = spans(store, sh(2026, 3, 1), sh(2026, 4, 1), sh(2026, 3, 5))
    assert not span.effective and span.approvals == ()
    approve_window(store, "旧窗口", "甲方", "王主任", "ops", sh(2026, 3, 5))
    approve_window(store, "旧窗口", "乙方", "张工", "ops", sh(2026, 3, 5))
    (span,) = spans(store, sh(2026, 3, 1), sh(2026, 4, 1), sh(2026, 3, 5))
    assert span.effective and not span.late


def test_window_from_json_drops_the_legacy_single_approver() -> None:
    text = spec(start="2026-03-01 22:00", end="2026-03-02 01:00").model_dump_json()
    legacy = text.replace('"approvals":null', '"approved_by":"张工"')
    assert '"approved_by"' in legacy
    assert window_from_json(legacy) == window_from_json(text)


def test_the_change_token_moves_on_every_approval(store: Store) -> None:
    t0 = change_token(store)
    add_window(store, spec(start="2026-03-10 22:00", end="2026-03-10 23:00"), "乙方", "张工", "ops", 1)
    t1 = change_token(store)
    approve_window(store, "w", "甲方", "王主任", "ops", 2)
    t2 = change_token(store)
    assert t0 < t1 < t2


# ------------------------------------------------------------------------- evidence


def _ledger_problem(store: Store) -> evidence.Problem | None:
    rep = evidence.verify(store.db, store.evidence_key)
    return next((p for p in rep.problems if p.table in ("maintenance", "exclusions")), None)


def test_verify_names_an_edited_recording_time(store: Store) -> None:
    add_window(
        store, spec(start="2026-03-10 22:00", end="2026-03-10 23:00"), "乙方", "张工", "ops", sh(2026, 3, 11)
    )
    fm.add(store, new_record(), SH, "甲方", "王主任", "ops", sh(2026, 3, 11))
    assert _ledger_problem(store) is None
    # Moving the recording before the window would make it look recorded in time.
    store.db.execute("UPDATE maintenance SET created_ts=? WHERE name='w'", (sh(2026, 3, 1),))
    p = _ledger_problem(store)
    assert p is not None and (p.table, p.kind) == ("maintenance", "edited") and "'w'" in p.detail
    store.db.execute("UPDATE maintenance SET created_ts=? WHERE name='w'", (sh(2026, 3, 11),))
    store.db.execute("UPDATE exclusions SET created_ts=? WHERE name='光缆中断'", (sh(2026, 3, 1),))
    p = _ledger_problem(store)
    assert p is not None and (p.table, p.kind) == ("exclusions", "edited")


def test_verify_names_an_approval_moved_onto_another_record(store: Store) -> None:
    add_window(
        store, spec(name="a", start="2026-03-10 22:00", end="2026-03-10 23:00"), "乙方", "张工", "ops", 1
    )
    add_window(
        store, spec(name="b", start="2026-03-10 22:00", end="2026-03-10 23:00"), "乙方", "张工", "ops", 1
    )
    assert _ledger_problem(store) is None
    # The ledger rows are not chained themselves: swapping their ids would hand a's approval to b.
    ids = dict(store.db.execute("SELECT name, id FROM maintenance").fetchall())
    store.db.execute("UPDATE maintenance SET id=-1 WHERE id=?", (ids["a"],))
    store.db.execute("UPDATE maintenance SET id=? WHERE id=?", (ids["a"], ids["b"]))
    store.db.execute("UPDATE maintenance SET id=? WHERE id=-1", (ids["b"],))
    p = _ledger_problem(store)
    assert p is not None and (p.table, p.kind) == ("maintenance", "edited") and "approval of" in p.detail


def test_spans_are_sorted_by_start_then_name(store: Store) -> None:
    t = sh(2026, 3, 1)
    add_window(
        store, spec(name="乙", start="2026-03-10 22:00", end="2026-03-10 23:00"), "甲方", "王主任", "ops", t
    )
    add_window(
        store, spec(name="甲", start="2026-03-10 22:00", end="2026-03-10 23:30"), "甲方", "王主任", "ops", t
    )
    early = new_record(name="早", start="2026-03-09 20:00", end="2026-03-09 21:00")
    fm.add(store, early, SH, "甲方", "王主任", "ops", t)
    got = spans(store, sh(2026, 3, 1), sh(2026, 4, 1), t)
    assert [(s.name, s.start_ms) for s in got] == [
        ("早", sh(2026, 3, 9, 20)),
        *sorted([("甲", sh(2026, 3, 10, 22)), ("乙", sh(2026, 3, 10, 22))], key=lambda p: p[0]),
    ]
