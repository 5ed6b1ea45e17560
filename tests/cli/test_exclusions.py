"""`sentinel exclusions` on a real store, through the command line in a subprocess: force
majeure recorded with one party's approval is pending (and late) until the other approves."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.cli.test_maintenance import CONFIG, cli


def listed(tmp: Path, *extra: str) -> dict[str, dict[str, Any]]:
    done = cli(tmp, "exclusions", "list", "--json", *extra)
    assert done.returncode == 0, done.stderr
    return {x["name"]: x for x in json.loads(done.stdout)}


def test_force_majeure_is_pending_until_both_parties_approve(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text(CONFIG, encoding="utf-8")
    add = cli(tmp_path, "exclusions", "add", "--name", "市电中断", "--start", "2026-11-10 20:00",
              "--end", "2026-11-10 20:30", "--system", "HIS", "--reason", "供电局计划外停电",
              "--party", "甲方", "--by", "信息科王主任")  # fmt: skip
    assert add.returncode == 0, add.stderr
    text = cli(tmp_path, "exclusions", "list").stdout
    assert text.startswith("市电中断  [待批准 · 事后补录]")
    assert "甲方  信息科王主任  " in text and "（系统用户 值班员）" in text and "乙方  —  未批准" in text
    assert "时间  2026-11-10 20:00:00+08:00 → 2026-11-10 20:30:00+08:00" in text
    doc = listed(tmp_path)["市电中断"]
    assert (doc["status"], doc["effective"], doc["late"], doc["created_by"]) == (
        "待批准",
        False,
        True,
        "值班员",
    )
    assert doc["approvals"]["乙方"] is None and doc["approvals"]["甲方"]["os_user"] == "值班员"

    again = cli(tmp_path, "exclusions", "approve", "市电中断", "--party", "甲方", "--by", "李主任")
    assert again.returncode == 1 and "甲方 approved already (信息科王主任)" in again.stderr
    same = cli(tmp_path, "exclusions", "approve", "市电中断", "--party", "乙方", "--by", "信息科王主任")
    assert same.returncode == 1 and "two different people" in same.stderr
    unknown = cli(tmp_path, "exclusions", "approve", "没有这条", "--party", "乙方", "--by", "张工")
    assert unknown.returncode == 1 and "no active exclusion named '没有这条'" in unknown.stderr
    party = cli(tmp_path, "exclusions", "approve", "市电中断", "--party", "厂商", "--by", "张工")
    assert party.returncode == 2 and "厂商" in party.stderr
    missing = cli(tmp_path, "exclusions", "add", "--name", "x", "--start", "2026-11-10 20:00",
                  "--end", "2026-11-10 20:30", "--reason", "r")  # fmt: skip
    assert missing.returncode == 2 and "--party" in missing.stderr
    backwards = cli(tmp_path, "exclusions", "add", "--name", "x", "--start", "2026-11-10 20:00",
                    "--end", "2026-11-10 19:00", "--reason", "r", "--party", "乙方",
                    "--by", "张工")  # fmt: skip
    assert backwards.returncode == 2 and "end must be after start" in backwards.stderr
    assert listed(tmp_path)["市电中断"]["status"] == "待批准" and "x" not in listed(tmp_path)

    ok = cli(tmp_path, "exclusions", "approve", "市电中断", "--party", "乙方", "--by", "张工", "--json",
             user="vendor")  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    doc = json.loads(ok.stdout)
    assert (doc["status"], doc["effective"], doc["late"]) == ("生效", True, True)
    assert (doc["approvals"]["乙方"]["approver"], doc["approvals"]["乙方"]["os_user"]) == ("张工", "vendor")
    assert cli(tmp_path, "exclusions", "list").stdout.startswith("市电中断  [生效 · 事后补录]")

    withdrawn = cli(tmp_path, "exclusions", "remove", "市电中断", "--reason", "录错")
    assert withdrawn.returncode == 0, withdrawn.stderr
    after = cli(tmp_path, "exclusions", "approve", "市电中断", "--party", "乙方", "--by", "张工")
    assert after.returncode == 1 and "no active exclusion" in after.stderr
    kept = listed(tmp_path, "--all")["市电中断"]
    assert kept["removed_reason"] == "录错" and kept["approvals"]["甲方"]["approver"] == "信息科王主任"
