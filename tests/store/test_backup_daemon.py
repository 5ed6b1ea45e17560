"""The daemon's daily copy (agent.runtime.backup) on a controllable clock: owed at start, then
every day at `at` in the site's zone, retried hourly after a failure; a failed copy (a
directory that cannot exist, or a copy damaged on its way) is a fault through the usual
check → state → fault path, and the next good copy recovers it."""

from __future__ import annotations

import json
import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from agent.cli.main import main
from agent.config.schema import load
from agent.faults.records import list_faults
from agent.runtime.backup import CHECK_NAME, BackupJob, due, last_due_ms
from agent.runtime.daemon import Daemon
from agent.store.db import Store
from probes.base import Status
from tests.conftest import REPO, FakeClock, wait_until

SH = ZoneInfo("Asia/Shanghai")


def local_s(*args: int) -> float:
    return datetime(*args, tzinfo=SH).timestamp()  # type: ignore[misc]


def ms(t: float) -> int:
    return int(t * 1000)


# ------------------------------------------------------------------ the rule


def test_when_a_copy_is_owed() -> None:
    at = "02:30"
    day1_0229 = ms(local_s(2026, 11, 21, 2, 29))
    day1_0230 = ms(local_s(2026, 11, 21, 2, 30))
    day1_1000 = ms(local_s(2026, 11, 21, 10, 0))
    # The last `at` at or before now, in the site's zone (02:30 +08:00 is 18:30 UTC the day before).
    assert last_due_ms(day1_1000, at, SH) == day1_0230
    assert last_due_ms(day1_0229, at, SH) == ms(local_s(2026, 11, 20, 2, 30))
    assert last_due_ms(day1_0230, at, SH) == day1_0230
    assert due(day1_1000, at, SH, None)  # never made: at once (first start)
    assert not due(day1_1000, at, SH, (day1_0230 + 1000, True))  # today's is done
    assert due(day1_1000, at, SH, (day1_0230 - 1000, True))  # the agent was down at 02:30
    assert not due(day1_0229, at, SH, (ms(local_s(2026, 11, 20, 2, 31)), True))
    # After a failure: again an hour later, whatever the time of day.
    failed = (day1_1000, False)
    assert not due(day1_1000 + 3_599_000, at, SH, failed)
    assert due(day1_1000 + 3_600_000, at, SH, failed)


# ------------------------------------------------------------------ the daemon


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PYTHONPATH", str(REPO))  # the copy is made by a child `sentinel store backup`
    cfg = tmp_path / "sentinel.yaml"
    cfg.write_text(
        f"""
site: {{name: 测试医院, timezone: Asia/Shanghai}}
storage: {{path: {tmp_path}/var/s.db, backup: {{directory: {tmp_path}/bk, at: "02:30", keep: 2}}}}
""",
        encoding="utf-8",
    )
    return cfg


def faults(cfg: Path) -> list[Any]:
    store = Store(load(cfg).storage.path, readonly=True)
    try:
        return [f for f in list_faults(store.db) if f.checks == (CHECK_NAME,)]
    finally:
        store.close()


def test_daily_copies_a_failure_is_a_fault_and_the_next_good_copy_recovers_it(
    site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clock = FakeClock(local_s(2026, 11, 21, 10, 0))
    daemon = Daemon(load(site), site, clock=clock)
    bk = tmp_path / "bk"
    daemon.recorder.start()
    try:
        job = daemon.backup
        assert job is not None
        # The job is on its own one-thread executor: a long copy never holds up the heartbeat.
        daemon.schedule()
        (sched,) = [j for j in daemon.scheduler.get_jobs() if j.id == "store:backup"]
        assert sched.executor == "backup"
        # First start: no copy ever made, so one now.
        first = job.tick()
        assert first is not None and first.status is Status.OK, first and first.summary
        assert "存储备份完成" in first.summary and "证据链完整" in first.summary
        assert len(list(bk.glob("s-*.db"))) == 1
        clock.advance(60)
        assert job.tick() is None
        clock.t = local_s(2026, 11, 22, 2, 29)
        assert job.tick() is None
        clock.t = local_s(2026, 11, 22, 2, 31)
        second = job.tick()
        assert second is not None and second.status is Status.OK
        # The directory becomes unusable (a file where it should be) before the next night.
        shutil.move(bk, tmp_path / "bk-saved")
        bk.write_text("not a directory")
        clock.t = local_s(2026, 11, 23, 2, 31)
        failed = job.tick()
        assert failed is not None and failed.status is Status.CRIT
        assert "存储备份失败" in failed.summary and "备份目录无法创建" in failed.summary
        (fault,) = wait_until(lambda: faults(site), 15, "the backup fault")  # type: ignore[misc]
        assert fault.recovered_ts is None and fault.system is None and fault.level == 3
        assert fault.start_ts == ms(clock.t)
        # `sentinel faults list` shows it like any other fault.
        assert main(["-c", str(site), "faults", "list", "--json"]) == 0
        listed = [f for f in json.loads(capsys.readouterr().out) if f["number"] == fault.number]
        assert listed and listed[0]["description"].startswith(f"{CHECK_NAME}: 存储备份失败")
        # Not retried at once; an hour later (still failing: the same fault, not a second one).
        clock.advance(600)
        assert job.tick() is None
        clock.advance(3000)
        again = job.tick()
        assert again is not None and again.status is Status.CRIT
        # Fixed; the next hourly try succeeds and the fault recovers.
        bk.unlink()
        shutil.move(tmp_path / "bk-saved", bk)
        clock.advance(3600)
        fixed = job.tick()
        assert fixed is not None and fixed.status is Status.OK
        wait_until(lambda: faults(site)[0].recovered_ts is not None, 15, "the fault to recover")
        assert len(faults(site)) == 1
        assert len(list(bk.glob("s-*.db"))) == 2  # keep: 2
    finally:
        daemon.shutdown()
    # A restart the same day neither repeats the copy nor forgets when the last one was made.
    store = Store(load(site).storage.path, readonly=True)
    try:
        restarted = BackupJob.create(load(site), site, lambda _n, _r: None, store, clock)
    finally:
        store.close()
    assert restarted is not None and restarted.last is not None and restarted.last[1]
    assert restarted.tick() is None


def test_a_copy_damaged_on_its_way_is_a_fault(site: Path, tmp_path: Path) -> None:
    clock = FakeClock(local_s(2026, 11, 21, 10, 0))
    daemon = Daemon(load(site), site, clock=clock)
    daemon.recorder.start()
    try:
        job = daemon.backup
        assert job is not None
        # The seam: the job runs `command()`; here it is `sentinel store backup --json` with
        # make_backup's after_copy hook overwriting a page of the copy before it is verified.
        script = (
            "import json, sys\n"
            "from agent.config.schema import load\n"
            "from agent.store.backup import make_backup\n"
            "from agent.store.evidence import evidence_key\n"
            "def spoil(p):\n"
            "    with open(p, 'r+b') as f:\n"
            "        f.seek(4096 * 2)\n"
            "        f.write(bytes(range(256)) * 16)\n"
            "c = load(sys.argv[1])\n"
            "k = evidence_key(c.storage, create=False)\n"
            "out = make_backup(c.storage.path, c.storage.backup, k, after_copy=spoil)\n"
            "print(json.dumps(out.as_json()))\n"
        )
        job.command = lambda: [sys.executable, "-c", script, str(site)]  # type: ignore[method-assign]
        result = job.tick()
        assert result is not None and result.status is Status.CRIT
        assert "副本校验失败" in result.summary and "integrity_check" in result.summary
        (fault,) = wait_until(lambda: faults(site), 15, "the backup fault")  # type: ignore[misc]
        assert "副本校验失败" in fault.description
        assert not list((tmp_path / "bk").glob("*.db"))  # the bad copy was not kept
    finally:
        daemon.shutdown()


def test_no_backup_configured_no_job_no_check(tmp_path: Path) -> None:
    cfg = tmp_path / "sentinel.yaml"
    cfg.write_text(f"site: {{name: x}}\nstorage: {{path: {tmp_path}/s.db}}\n", encoding="utf-8")
    daemon = Daemon(load(cfg), cfg, clock=FakeClock(datetime(2026, 11, 21, tzinfo=UTC).timestamp()))
    try:
        assert daemon.backup is None
        daemon.schedule()
        assert "store:backup" not in {j.id for j in daemon.scheduler.get_jobs()}
        assert CHECK_NAME not in daemon.store.check_names()
    finally:
        daemon.shutdown()
