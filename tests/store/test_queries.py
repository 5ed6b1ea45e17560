"""The store functions that took over the SQL of the CLI and the reports (issue 12): ledger change
logs, report runs, report rows in the outbox, faults recovered in a period, hourly roll-ups and
result details. A real store on disk; every value is read back through the function under test."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from agent.state.machine import CheckState
from agent.store import faults as stored_faults
from agent.store import outbox, reports
from agent.store import windows as ledgers
from agent.store.db import HOUR_MS, HourlyValue, Store
from probes.base import CheckResult, Metric, Status

T0 = 1_790_000_000_000 - 1_790_000_000_000 % HOUR_MS  # an hour boundary


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "s.db")
    yield s
    s.close()


def test_ledger_change_logs_oldest_first_by_column(store: Store) -> None:
    with store.tx() as db:
        wid = ledgers.add_window(db, "升级", "cli", '{"reason": "r"}', T0, "张工")
        ledgers.add_window(db, "备份", "cli", "{}", T0 + 1, "李工")
        ledgers.remove_window(db, wid, "升级", '{"reason": "r"}', T0 + 2, "王工")
        ledgers.add_exclusion(
            db,
            name="停电",
            kind="force_majeure",
            start_ms=T0,
            end_ms=T0 + HOUR_MS,
            systems=["HIS"],
            reason="市政停电",
            approved_by="院办",
            start_local="2026-09-22T08:00:00+08:00",
            end_local="2026-09-22T09:00:00+08:00",
            source="cli",
            ts=T0 + 3,
            by="赵工",
        )
    log = ledgers.window_log(store.db)
    assert [(e["ts"], e["actor"], e["action"], e["name"]) for e in log] == [
        (T0, "张工", "add", "升级"),
        (T0 + 1, "李工", "add", "备份"),
        (T0 + 2, "王工", "remove", "升级"),
    ]
    assert [(e["ts"], e["actor"], e["action"], e["name"]) for e in ledgers.exclusion_log(store.db)] == [
        (T0 + 3, "赵工", "add", "停电")
    ]


def test_report_runs_record_replace_list_and_forget(store: Store) -> None:
    assert reports.done(store.db) == set()
    assert reports.generated_at(store.db, "daily", "2026-10-01") is None
    store.record_report("daily", "2026-10-01", T0, "a.html")
    store.record_report("monthly", "2026-09", T0 + 5, "m.html")
    store.record_report("daily", "2026-10-01", T0 + 9, "b.html")  # a re-run replaces the time
    assert reports.done(store.db) == {("daily", "2026-10-01"), ("monthly", "2026-09")}
    assert reports.generated_at(store.db, "daily", "2026-10-01") == T0 + 9
    assert store.report_done("monthly", "2026-09") and not store.report_done("monthly", "2026-10")
    with store.tx() as db:
        reports.forget(db, "daily", "2026-10-01")
    assert reports.done(store.db) == {("monthly", "2026-09")}
    assert not reports.is_done(store.db, "daily", "2026-10-01")


def test_report_rows_renew_until_delivered(store: Store) -> None:
    def put(key: str, message: str, ts: int) -> bool:
        with store.tx() as db:
            return outbox.enqueue_or_renew(
                db,
                created_ts=ts,
                dedup_key=key,
                channel="mail",
                event="report",
                message=message,
                next_attempt_ts=ts,
            )

    assert put("report:daily:2026-10-01:mail", "v1", T0)
    assert put("report:inspection:2026-10-01@7:mail", "i1", T0)
    with store.tx() as db:
        row = outbox.due(db, T0, 10)[0]
        outbox.schedule_retry(db, row.id, 1, T0 + 60_000, "relay down")
    assert put("report:daily:2026-10-01:mail", "v2", T0 + 1)  # undelivered: replaced, due now, error gone
    rows = {r["dedup_key"]: r for r in outbox.listing(store.db)}
    daily = rows["report:daily:2026-10-01:mail"]
    assert (daily["message"], daily["status"], daily["next_attempt_ts"], daily["last_error"]) == (
        "v2",
        "pending",
        T0 + 1,
        None,
    )
    with store.tx() as db:
        outbox.mark_delivered(db, daily["id"], 2, T0 + 2, "250 ok")
    assert not put("report:daily:2026-10-01:mail", "v3", T0 + 3)  # delivered: never again
    assert {r["dedup_key"]: r["message"] for r in outbox.listing(store.db)}[daily["dedup_key"]] == "v2"

    inspection = "report:inspection:2026-10-01@7:mail"
    assert outbox.keys_like(store.db, "report", "report:inspection:%") == [inspection]
    assert outbox.keys_like(store.db, "opened", "report:%") == []
    wanted = ["report:daily:2026-10-01:mail", "report:daily:2026-10-02:mail"]
    assert outbox.existing_keys(store.db, wanted) == {"report:daily:2026-10-01:mail"}
    by_status = {(r["status"], r["last_error"]) for r in outbox.statuses(store.db, [*wanted, inspection])}
    assert by_status == {("delivered", None), ("pending", None)}


def test_faults_recovered_in_a_period_whenever_they_started(store: Store) -> None:
    def fault(number: str, start: int, recovered: int | None) -> int:
        with store.tx() as db:
            fid = stored_faults.insert(
                db,
                number=number,
                system="HIS",
                campus=None,
                level=2,
                level_initial=2,
                type="应用",
                description="d",
                impact="i",
                start_ts=start,
                detected_ts=start,
                respond_deadline_ts=None,
                restore_deadline_ts=None,
                calendar_note=None,
                flapping=False,
                maintenance=None,
            )
            if recovered is not None:
                stored_faults.mark_recovered(db, fid, recovered, False)
            return fid

    before = fault("GZ-1", T0 - 10 * HOUR_MS, T0 + 5)  # started long before the period
    late = fault("GZ-2", T0, T0 + 2)
    fault("GZ-3", T0, T0 + HOUR_MS)  # recovered at the period's end: not in it
    fault("GZ-4", T0, None)
    assert stored_faults.recovered_between(store.db, T0, T0 + HOUR_MS) == [late, before]


def _result(ts_ms: int, status: Status, details: Mapping[str, Any] | None, **metrics: float) -> CheckResult:
    return CheckResult(
        status,
        status.name,
        tuple(Metric(k, v, "%") for k, v in metrics.items()),
        started_at=datetime.fromtimestamp(ts_ms / 1000, UTC),
        details=details or {},
    )


def test_hourly_last_values_latest_rollup_and_result_details(store: Store) -> None:
    store.sync_checks([("db", "postgres", "HIS"), ("idle", "tcp", None)], T0)
    run = store.begin_run(T0, 1, "h", "t")
    state = CheckState()
    samples = [
        (T0 + 60_000, {"disk:/.used_pct": 50.0, "disk:/data.used_pct": 10.0, "latency": 3.0}, {"a": 1}),
        (T0 + 120_000, {"disk:/.used_pct": 51.0}, None),
        (T0 + HOUR_MS + 60_000, {"disk:/.used_pct": 55.0}, {"a": 2}),
        (T0 + 2 * HOUR_MS, {"disk:/.used_pct": 60.0}, {"a": 3}),
    ]
    for ts, metrics, details in samples:
        r = _result(ts, Status.OK, details, **metrics)
        store.write_batch(run, [("db", r, state.observe(ts, r.status, r.summary, 1), state)])

    assert list(store.rollup_last_values("db", "disk:*", T0, T0 + 2 * HOUR_MS)) == [
        HourlyValue("disk:/.used_pct", T0, 51.0),
        HourlyValue("disk:/.used_pct", T0 + HOUR_MS, 55.0),
        HourlyValue("disk:/data.used_pct", T0, 10.0),
    ]
    assert list(store.rollup_last_values("db", "tablespace.*", T0, T0 + 3 * HOUR_MS)) == []
    assert store.latest_rollup("db", "disk:/.used_pct", T0, T0 + 2 * HOUR_MS) == 55.0
    assert store.latest_rollup("db", "disk:/.used_pct", T0, T0 + 3 * HOUR_MS) == 60.0
    assert store.latest_rollup("db", "latency", T0 + HOUR_MS, T0 + 3 * HOUR_MS) is None
    assert store.latest_rollup("idle", "latency", T0, T0 + 3 * HOUR_MS) is None

    found = list(store.result_details("db", T0, T0 + 2 * HOUR_MS))
    assert [(ts, json.loads(text)) for ts, text in found] == [
        (T0 + 60_000, {"a": 1}),
        (T0 + HOUR_MS + 60_000, {"a": 2}),
    ]
    with pytest.raises(KeyError):
        list(store.result_details("never-configured", T0, T0 + HOUR_MS))
