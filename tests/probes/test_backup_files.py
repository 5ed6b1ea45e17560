"""probes.backup_files on a real directory: files with controlled times and sizes, a FakeClock
and the site's time zone (Asia/Shanghai)."""

from __future__ import annotations

import hashlib
import json
import os
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from probes.backup_files.probe import Probe, parse_checksum_file
from probes.backup_files.settings import Settings
from probes.base import CheckResult, ProbeContext, Status
from tests.conftest import FakeClock

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = datetime(2025, 3, 10, 9, 0, tzinfo=SHANGHAI)
"""Monday 09:00 local: the 'daily 03:00' slot of today (deadline 04:00 with 1 h grace) is judged."""


def at(day_offset: int, hhmm: str) -> datetime:
    h, m = map(int, hhmm.split(":"))
    return (NOW + timedelta(days=day_offset)).replace(hour=h, minute=m)


def backup(directory: Path, name: str, size: int, when: datetime, fill: bytes = b"x") -> Path:
    path = directory / name
    path.write_bytes((fill * (size // len(fill) + 1))[:size])
    ts = when.timestamp()
    os.utime(path, (ts, ts))
    return path


def history(directory: Path, days: int = 5, size: int = 10_000) -> None:
    """One nightly dump at 02:30 for each of the `days` nights before today."""
    for d in range(days, 0, -1):
        backup(directory, f"his_{at(-d, '02:30'):%Y%m%d}.dmp", size, at(-d, "02:30"))


def run(
    directory: Path,
    now: datetime = NOW,
    memory: dict[str, Any] | None = None,
    timeout: float = 5.0,
    ssh: dict[str, Any] | None = None,
    **set_options: Any,
) -> CheckResult:
    bset = {
        "name": "his_full",
        "directory": str(directory),
        "pattern": "his_*.dmp",
        "schedule": "daily 03:00",
    }
    bset.update(set_options)
    probe = Probe(Settings.model_validate({"sets": [bset], "ssh": ssh}))
    clock = FakeClock(now.timestamp())
    ctx = ProbeContext("backup", timeout, clock=clock, tz=SHANGHAI, memory=memory or {})
    return probe.run(ctx)


def texts(result: CheckResult) -> list[str]:
    return [f["text"] for f in result.details["findings"] if f["status"] != "OK"]


def value(result: CheckResult, name: str) -> float:
    m = result.metric(name)
    assert m is not None, name
    return m.value


# ------------------------------------------------------------------ schedule


def test_on_time_backup_is_ok_with_metrics_and_expected_slot(tmp_path: Path) -> None:
    history(tmp_path)
    backup(tmp_path, "his_20250310.dmp", 10_000, at(0, "02:30"))
    result = run(tmp_path)
    assert result.status is Status.OK, result.summary
    assert result.summary.startswith("备份正常: his_full")
    assert texts(result) == []
    assert value(result, "backup.his_full.age_s") == 6.5 * 3600
    assert value(result, "backup.his_full.size_bytes") == 10_000
    assert value(result, "backup.his_full.copies") == 6
    assert value(result, "backup.his_full.expected_next_bytes") == 12_000
    assert value(result, "backup.his_full.free_bytes") > 0
    facts = result.details["sets"]["his_full"]
    assert facts["expected"]["met"] is True
    assert facts["expected"]["due"] == at(0, "03:00").astimezone(ZoneInfo("UTC")).isoformat()
    assert facts["newest"]["file"] == "his_20250310.dmp"
    assert result.details["backups_expected"][0]["set"] == "his_full"
    assert result.details["backups_expected"][0]["met"] is True


def test_late_backup_is_crit_and_counted_as_missed(tmp_path: Path) -> None:
    history(tmp_path)  # last one yesterday 02:30; today's 03:00 (+1 h) slot has passed
    result = run(tmp_path)
    assert result.status is Status.CRIT
    assert texts(result) == [
        "备份集 his_full: 备份未按计划完成（每天 03:00 前，最近一次 2025-03-09 02:30 his_20250309.dmp）"
    ]
    assert result.details["sets"]["his_full"]["expected"]["met"] is False
    assert result.details["findings"][0]["category"] == "数据安全类"
    assert value(result, "backup.his_full.age_s") == 30.5 * 3600


def test_within_grace_yesterdays_backup_still_counts(tmp_path: Path) -> None:
    history(tmp_path)
    result = run(tmp_path, now=at(0, "03:30"))  # due 03:00, grace until 04:00
    assert result.status is Status.OK, result.summary
    late = run(tmp_path, now=at(0, "04:01"))
    assert late.status is Status.CRIT


def test_backup_after_midnight_in_shanghai_belongs_to_the_local_day(tmp_path: Path) -> None:
    # 00:30 Shanghai is 16:30 UTC of the previous day: the slot is judged in the site's zone.
    backup(tmp_path, "his_a.dmp", 10_000, at(0, "00:30"))
    assert run(tmp_path).status is Status.OK


def test_missing_backups_and_missing_directory_are_crit(tmp_path: Path) -> None:
    (tmp_path / "other.txt").write_text("not a backup")
    empty = run(tmp_path)
    assert empty.status is Status.CRIT
    assert texts(empty) == [f"备份集 his_full: {tmp_path} 中没有匹配 his_*.dmp 的备份文件"]
    assert empty.details["sets"]["his_full"]["expected"]["met"] is False
    assert value(empty, "backup.his_full.copies") == 0

    gone = run(tmp_path / "nope")
    assert gone.status is Status.CRIT
    assert texts(gone) == [f"备份集 his_full: 备份目录不存在 {tmp_path / 'nope'}"]
    assert gone.details["backups_expected"][0]["met"] is False


def test_weekly_schedule(tmp_path: Path) -> None:
    backup(tmp_path, "his_w.dmp", 10, at(-1, "01:00"))  # Sunday 01:00
    assert run(tmp_path, schedule="weekly sun 02:00").status is Status.OK
    assert run(tmp_path, now=NOW + timedelta(days=7), schedule="weekly sun 02:00").status is Status.CRIT


# ------------------------------------------------------------------ size, copies, space


def test_newest_shrunk_by_60_percent_is_crit(tmp_path: Path) -> None:
    history(tmp_path)
    backup(tmp_path, "his_20250310.dmp", 4_000, at(0, "02:30"))
    result = run(tmp_path)
    assert result.status is Status.CRIT
    assert texts(result) == [
        "备份集 his_full: 最新备份 his_20250310.dmp 为 3.9 KB，比之前 5 份的中位数 9.8 KB 小 60%（阈值 50%）"
    ]
    assert result.details["sets"]["his_full"]["shrink_pct"] == 60.0


def test_moderate_shrink_is_warn_and_growth_is_fine(tmp_path: Path) -> None:
    history(tmp_path)
    backup(tmp_path, "his_20250310.dmp", 6_500, at(0, "02:30"))
    warn = run(tmp_path)
    assert warn.status is Status.WARN
    assert "小 35%（阈值 30%）" in texts(warn)[0]
    backup(tmp_path, "his_20250310.dmp", 30_000, at(0, "02:30"))
    assert run(tmp_path).status is Status.OK


def test_median_ignores_one_odd_previous_copy(tmp_path: Path) -> None:
    history(tmp_path)
    backup(tmp_path, f"his_{at(-3, '02:30'):%Y%m%d}.dmp", 100, at(-3, "02:30"))  # one broken old dump
    backup(tmp_path, "his_20250310.dmp", 9_500, at(0, "02:30"))
    assert run(tmp_path).status is Status.OK


def test_empty_newest_file_is_crit(tmp_path: Path) -> None:
    backup(tmp_path, "his_20250310.dmp", 0, at(0, "02:30"))
    result = run(tmp_path)
    assert result.status is Status.CRIT
    assert "只有 0 B" in texts(result)[0]


def test_too_few_and_too_many_copies_are_warn(tmp_path: Path) -> None:
    history(tmp_path, days=1)
    backup(tmp_path, "his_20250310.dmp", 10_000, at(0, "02:30"))
    few = run(tmp_path, min_copies=7)
    assert few.status is Status.WARN
    assert texts(few) == ["备份集 his_full: 保留 2 份，少于保留策略要求的 7 份"]
    many = run(tmp_path, max_copies=1)
    assert many.status is Status.WARN
    assert texts(many) == ["备份集 his_full: 保留 2 份，超过保留策略的 1 份（过期备份可能未清理）"]


def test_free_space_against_next_backup(tmp_path: Path) -> None:
    backup(tmp_path, "his_20250310.dmp", 1_000_000, at(0, "02:30"))
    st = os.statvfs(tmp_path)
    free = st.f_bavail * st.f_frsize
    ratio = free / 1_000_000
    crit = run(tmp_path, space_factor=ratio * 1.5, space_warn_factor=ratio * 2)
    assert crit.status is Status.CRIT
    assert "不足以存放下一次备份" in texts(crit)[0]
    assert value(crit, "backup.his_full.expected_next_bytes") == round(1_000_000 * ratio * 1.5)
    assert abs(value(crit, "backup.his_full.free_bytes") - free) < 0.05 * free
    warn = run(tmp_path, space_factor=1.0, space_warn_factor=ratio * 1.5)
    assert warn.status is Status.WARN
    assert "不足最新备份的" in texts(warn)[0]


# ------------------------------------------------------------------ checksums


def with_sidecar(tmp_path: Path, digest: str | None = None, algo: str = "sha256", fmt: str = "gnu") -> Path:
    path = backup(tmp_path, "his_20250310.dmp", 50_000, at(0, "02:30"), fill=b"backup-data-")
    actual = hashlib.new(algo, path.read_bytes()).hexdigest()
    d = digest or actual
    line = f"{d}  his_20250310.dmp\n" if fmt == "gnu" else f"{algo.upper()} (his_20250310.dmp) = {d}\n"
    (tmp_path / f"his_20250310.dmp.{algo}").write_text(line)
    return path


def test_good_checksum_is_ok_and_not_counted_as_a_copy(tmp_path: Path) -> None:
    with_sidecar(tmp_path)
    result = run(tmp_path, checksum="sha256")
    assert result.status is Status.OK, result.summary
    assert result.details["sets"]["his_full"]["checksum"] == {"algorithm": "sha256", "state": "ok"}
    assert value(result, "backup.his_full.copies") == 1


def test_bad_checksum_is_crit(tmp_path: Path) -> None:
    with_sidecar(tmp_path, digest="0" * 64)
    result = run(tmp_path, checksum="sha256")
    assert result.status is Status.CRIT
    assert texts(result)[0].startswith(
        "备份集 his_full: 最新备份 his_20250310.dmp 校验失败，sha256 与校验文件不一致"
    )


def test_md5_in_bsd_format(tmp_path: Path) -> None:
    with_sidecar(tmp_path, algo="md5", fmt="bsd")
    assert run(tmp_path, checksum="md5").status is Status.OK
    with_sidecar(tmp_path, digest="f" * 32, algo="md5", fmt="bsd")
    assert run(tmp_path, checksum="md5").status is Status.CRIT


def test_missing_sidecar_is_warn(tmp_path: Path) -> None:
    backup(tmp_path, "his_20250310.dmp", 100, at(0, "02:30"))
    result = run(tmp_path, checksum="sha256")
    assert result.status is Status.WARN
    assert texts(result) == [
        "备份集 his_full: 最新备份 his_20250310.dmp 缺少校验文件 his_20250310.dmp.sha256"
    ]


def test_verified_file_is_remembered_not_hashed_again(tmp_path: Path) -> None:
    path = with_sidecar(tmp_path)
    first = run(tmp_path, checksum="sha256")
    assert first.status is Status.OK
    memory = json.loads(json.dumps(first.memory))
    assert memory["verified"]["his_full"]["path"] == str(path)
    # Same size and mtime, other bytes: the remembered verdict is used, nothing is re-read.
    st = path.stat()
    path.write_bytes(b"Z" * st.st_size)
    os.utime(path, (st.st_atime, st.st_mtime))
    assert run(tmp_path, memory=memory, checksum="sha256").status is Status.OK
    assert run(tmp_path, checksum="sha256").status is Status.CRIT  # without memory: hashed, mismatch


def test_large_file_not_hashed_within_budget_is_reported_unverified(tmp_path: Path) -> None:
    path = tmp_path / "his_20250310.dmp"
    with path.open("wb") as fh:
        fh.truncate(4 * 1024**3)  # sparse: 4 GiB that cost no disk
    ts = at(0, "02:30").timestamp()
    os.utime(path, (ts, ts))
    (tmp_path / "his_20250310.dmp.sha256").write_text("a" * 64 + "  his_20250310.dmp\n")
    result = run(tmp_path, timeout=0.3, checksum="sha256", space_factor=0)
    assert result.status is Status.WARN
    assert "未能在时间预算内完成 his_20250310.dmp 的校验" in texts(result)[0]
    assert result.duration_s < 2.0
    capped = run(tmp_path, checksum="sha256", checksum_max_bytes=1024**3, space_factor=0)
    assert "超过校验上限，未校验" in texts(capped)[0]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a" * 64 + "  his.dmp\n", "a" * 64),
        ("A" * 64 + " *his.dmp\n", "a" * 64),
        ("b" * 64 + "  other.dmp\n" + "c" * 64 + "  /backup/his.dmp\n", "c" * 64),
        ("SHA256 (his.dmp) = " + "d" * 64 + "\n", "d" * 64),
        ("e" * 64 + "\n", "e" * 64),
        ("b" * 64 + "  other.dmp\n", None),
        ("not a checksum\n", None),
        ("abc  his.dmp\n", None),
    ],
)
def test_parse_checksum_file(text: str, expected: str | None) -> None:
    assert parse_checksum_file(text, "his.dmp", "sha256") == expected


# ------------------------------------------------------------------ several sets, settings


def test_several_sets_worst_status_and_per_set_facts(tmp_path: Path) -> None:
    full, arch = tmp_path / "full", tmp_path / "arch"
    full.mkdir()
    arch.mkdir()
    backup(full, "his_1.dmp", 100, at(0, "02:00"))
    backup(arch, "arch_1.log", 100, at(0, "07:00"))
    settings = Settings.model_validate(
        {
            "sets": [
                {"name": "full", "directory": str(full), "pattern": "*.dmp", "schedule": "daily 03:00"},
                {"name": "arch", "directory": str(arch), "pattern": "*.log", "schedule": "every 1h"},
            ]
        }
    )
    probe = Probe(settings)
    ctx = ProbeContext("b", 5.0, clock=FakeClock(NOW.timestamp()), tz=SHANGHAI)
    result = probe.run(ctx)
    assert result.status is Status.CRIT  # the archive-log set is 2 h old against 'every 1h'
    assert [b["met"] for b in result.details["backups_expected"]] == [True, False]
    assert set(result.details["sets"]) == {"full", "arch"}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"schedule": "sometimes"}, "invalid schedule"),
        ({"shrink_warn_pct": 60}, "shrink_warn_pct"),
        ({"min_copies": 5, "max_copies": 2}, "max_copies"),
        ({"pattern": "a/*.dmp"}, "put the path in directory"),
        ({"name": "his full"}, "backup set name"),
        ({"checksum": "crc32"}, "'none', 'sha256' or 'md5'"),
    ],
)
def test_invalid_settings_are_rejected(override: dict[str, Any], message: str) -> None:
    bset = {"name": "a", "directory": "/b", "schedule": "daily 03:00", **override}
    with pytest.raises(ValidationError) as info:
        Settings.model_validate({"sets": [bset]})
    assert message in str(info.value)


def test_duplicate_set_names_are_rejected() -> None:
    bset = {"name": "a", "directory": "/b", "schedule": "daily 03:00"}
    with pytest.raises(ValidationError, match="used twice"):
        Settings.model_validate({"sets": [bset, bset]})
