"""probes.logscan on real files: appends, rotation, truncation, GBK, masking, bounded reads.

Memory is carried from run to run through a JSON round trip, exactly as the agent stores it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from probes.base import CheckResult, ProbeContext, Status
from probes.log.probe import Probe
from probes.log.settings import Settings
from tests.conftest import FakeClock


class Runner:
    """Runs one configured log check repeatedly, committing memory as the agent does."""

    def __init__(
        self, settings: dict[str, Any], clock: FakeClock | None = None, shared: dict[str, Any] | None = None
    ) -> None:
        self.probe = Probe(Settings.model_validate(settings))
        self.memory: dict[str, Any] = {}
        self.clock = clock or FakeClock()
        self.shared = shared or {}

    def run(self) -> CheckResult:
        ctx = ProbeContext("log", 5.0, memory=self.memory, clock=self.clock, shared=self.shared)
        result = self.probe.run(ctx)
        if result.memory is not None:
            self.memory = json.loads(json.dumps(result.memory))
        return result

    def lines(self) -> list[str]:
        return [e["line"] for e in self.run().details["excerpt"]]


def append(path: Path, text: str, encoding: str = "utf-8") -> None:
    with path.open("ab") as fh:
        fh.write(text.encode(encoding))


@pytest.fixture
def log(tmp_path: Path) -> Path:
    path = tmp_path / "app.log"
    path.write_text("2025-01-01 08:00:00 ORA-00600 old history\n2025-01-01 08:00:01 started\n")
    return path


def settings(path: Path | str, **extra: Any) -> dict[str, Any]:
    return {"files": [str(path)], "patterns": ["ORA-\\d+", {"regex": "deadlock", "status": "CRIT"}], **extra}


# ------------------------------------------------------------------ appends and first run


def test_first_run_skips_history_then_each_new_line_once(log: Path) -> None:
    r = Runner(settings(log))
    first = r.run()
    assert first.status is Status.OK
    assert first.details["excerpt"] == []
    assert r.memory["files"][str(log)]["offset"] == log.stat().st_size

    append(log, "08:01 ORA-01555 snapshot too old\n08:01 fine\n08:02 deadlock detected\n")
    second = r.run()
    assert [e["line"] for e in second.details["excerpt"]] == [
        "08:01 ORA-01555 snapshot too old",
        "08:02 deadlock detected",
    ]
    assert second.status is Status.CRIT  # deadlock is configured CRIT
    assert second.summary.startswith("新增 2 行匹配: pattern1(1) pattern2(1)")
    lines_read, matches = second.metric("lines_read"), second.metric("matches")
    assert lines_read is not None and lines_read.value == 3
    assert matches is not None and matches.value == 2

    assert r.lines() == []  # nothing new: nothing again
    append(log, "08:03 ORA-00942 table or view does not exist\n")
    third = r.run()
    assert third.status is Status.WARN
    assert [e["line"] for e in third.details["excerpt"]] == ["08:03 ORA-00942 table or view does not exist"]


def test_from_start_reads_history(log: Path) -> None:
    r = Runner(settings(log, from_start=True))
    assert r.lines() == ["2025-01-01 08:00:00 ORA-00600 old history"]
    assert r.lines() == []


def test_partial_line_waits_for_its_newline(log: Path) -> None:
    r = Runner(settings(log))
    r.run()
    append(log, "08:05 ORA-00060 dead")
    partial = r.run()
    assert partial.details["excerpt"] == []
    assert partial.metric("lines_read").value == 0  # type: ignore[union-attr]
    append(log, "lock while waiting\n")
    assert r.lines() == ["08:05 ORA-00060 deadlock while waiting"]
    assert r.lines() == []


def test_first_run_starts_before_a_partial_last_line(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    path.write_text("old ORA-1\nORA-2 being writ")
    r = Runner(settings(path))
    assert r.lines() == []
    append(path, "ten\n")
    assert r.lines() == ["ORA-2 being written"]


# ------------------------------------------------------------------ rotation and truncation


def test_rotation_by_rename_reads_rest_of_old_then_new_from_start(log: Path) -> None:
    r = Runner(settings(log))
    r.run()
    append(log, "09:00 ORA-00001 before rotation, never read yet\n")
    log.rename(log.with_name("app.log.1"))
    log.write_text("09:01 ORA-00002 first line of the new file\n09:01 ok\n")
    result = r.run()
    assert [e["line"] for e in result.details["excerpt"]] == [
        "09:00 ORA-00001 before rotation, never read yet",
        "09:01 ORA-00002 first line of the new file",
    ]
    assert result.details["files"][str(log.with_name("app.log.1"))]["rotated_from"] == str(log)
    assert r.lines() == []
    append(log, "09:02 ORA-00003 later\n")
    assert r.lines() == ["09:02 ORA-00003 later"]
    # the drained old file is forgotten, the new one tracked
    assert list(r.memory["files"]) == [str(log)]


def test_glob_over_rotated_names_reads_nothing_twice_across_rename_chains(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("2025-01-01 00:00:00 first file header, long enough to fingerprint\n")
    r = Runner({"files": [str(tmp_path / "app.log*")], "patterns": ["ORA-"], "excerpt_lines": 50})
    r.run()
    seen: list[str] = []
    for n in range(1, 5):
        append(log, f"ORA-{n}a unread when rotated\n")
        # logrotate without dateext: shift app.log.K -> app.log.K+1, then app.log -> app.log.1
        for k in range(n - 1, 0, -1):
            (tmp_path / f"app.log.{k}").rename(tmp_path / f"app.log.{k + 1}")
        log.rename(tmp_path / "app.log.1")
        log.write_text(
            f"2025-01-0{n + 1} 00:00:00 file {n + 1} header, long enough to fingerprint\nORA-{n}b\n"
        )
        seen += r.lines()
        seen += r.lines()
    assert seen == [line for n in range(1, 5) for line in (f"ORA-{n}a unread when rotated", f"ORA-{n}b")]


def test_rotation_with_dateext_name(log: Path) -> None:
    r = Runner(settings(log))
    r.run()
    append(log, "ORA-10 tail of the old file\n")
    log.rename(log.with_name("app.log-20250102"))
    log.write_text("ORA-11 new\n")
    assert r.lines() == ["ORA-10 tail of the old file", "ORA-11 new"]


def test_rotated_file_gone_reads_new_file_from_start(log: Path) -> None:
    r = Runner(settings(log))
    r.run()
    append(log, "ORA-20 lost with the compressed file\n")
    log.rename(log.with_name("app.log.1.gz"))  # compressed files are never read
    log.write_text("ORA-21 new file\n")
    assert r.lines() == ["ORA-21 new file"]
    assert r.lines() == []


def test_copytruncate_reads_unread_tail_of_the_copy_then_new_content(log: Path) -> None:
    r = Runner(settings(log))
    r.run()
    append(log, "10:00 ORA-00030 written before the copy\n")
    shutil.copyfile(log, log.with_name("app.log.1"))
    with log.open("r+b") as fh:
        fh.truncate(0)
    append(log, "10:01 ORA-00031 after truncate\n")
    assert r.lines() == ["10:00 ORA-00030 written before the copy", "10:01 ORA-00031 after truncate"]
    assert r.lines() == []


def test_truncation_in_place_reads_from_start(log: Path) -> None:
    r = Runner(settings(log))
    r.run()
    inode = log.stat().st_ino
    with log.open("r+b") as fh:
        fh.truncate(0)
    append(log, "ORA-40 after truncation\n")
    assert log.stat().st_ino == inode
    result = r.run()
    assert [e["line"] for e in result.details["excerpt"]] == ["ORA-40 after truncation"]
    assert result.details["files"][str(log)]["reset"] is True


def test_truncated_and_refilled_beyond_old_offset_is_read_from_start(log: Path) -> None:
    r = Runner(settings(log))
    r.run()
    old_size = log.stat().st_size
    # Same inode, larger than the old offset, different first bytes: a new content.
    log.write_text("11:00 new content ORA-50 " + "x" * old_size + "\n")
    assert r.lines() == ["11:00 new content ORA-50 " + "x" * old_size]


def test_inode_reuse_is_not_mistaken_for_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    path.write_text("AAAA first file header line, long enough for a fingerprint\n")
    r = Runner(settings(path))
    r.run()
    state = r.memory["files"][str(path)]
    path.unlink()
    path.write_text("BBBB another file entirely, also long enough for a fingerprint\nORA-60 x\n")
    state["ino"] = path.stat().st_ino  # simulate the file system handing out the same inode
    state["dev"] = path.stat().st_dev
    assert r.lines() == ["ORA-60 x"]


# ------------------------------------------------------------------ encodings


def test_gbk_file_with_chinese_pattern_across_bounded_reads(tmp_path: Path) -> None:
    path = tmp_path / "his.log"
    path.write_bytes(b"")
    r = Runner(
        {
            "files": [str(path)],
            "patterns": [{"regex": "连接超时", "name": "连接超时", "status": "CRIT"}],
            "encoding": "gbk",
            "max_bytes": 1024,
        }
    )
    r.run()
    expected = []
    text = ""
    for i in range(120):
        if i % 7 == 0:
            line = f"2025-01-01 12:00:{i % 60:02d} 挂号服务 连接超时 第{i}次 数据库服务器无响应"
            expected.append(line)
        else:
            line = f"2025-01-01 12:00:{i % 60:02d} 门诊收费 正常 第{i}次"
        text += line + "\n"
    append(path, text, "gbk")
    assert len(text.encode("gbk")) > 4 * 1024  # several bounded runs are needed
    seen: list[str] = []
    statuses = []
    for _ in range(10):
        result = r.run()
        seen += [e["line"] for e in result.details["excerpt"]]
        statuses.append(result.status)
        if result.metric("backlog_bytes").value == 0:  # type: ignore[union-attr]
            break
    assert seen == expected  # each once, in order, decoded whole (no split character)
    assert Status.CRIT in statuses
    assert all("\ufffd" not in line for line in seen)
    assert r.lines() == []


def test_gb18030_and_undecodable_bytes_never_crash(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    path.write_bytes(b"")
    r = Runner({"files": [str(path)], "patterns": ["错误"], "encoding": "gb18030"})
    r.run()
    append(path, "病区 错误 𠀀\n", "gb18030")
    with path.open("ab") as fh:
        fh.write(b"\xff\xfe\x81 \xe9\x94\x99\xe8\xaf\xaf utf8 bytes\n")
    lines = r.lines()
    assert lines[0] == "病区 错误 𠀀"
    assert len(lines) == 1  # the garbage line decodes with replacements and does not match


def test_utf8_decode_errors_are_replaced(tmp_path: Path) -> None:
    path = tmp_path / "u.log"
    path.write_bytes(b"")
    r = Runner(settings(path))
    r.run()
    with path.open("ab") as fh:
        fh.write("ORA-70 报错 ".encode() + b"\xb4\xed\xce\xf3\n")
    assert r.lines() == ["ORA-70 报错 \ufffd\ufffd\ufffd\ufffd"]


# ------------------------------------------------------------------ masking, ignore, limits


def test_secrets_and_patient_data_are_masked_in_excerpts(log: Path) -> None:
    r = Runner(settings(log, mask=[r"患者:(\S+)"]))
    r.run()
    append(
        log,
        "ORA-01017 login failed user=his password=Secr3t!Pw token: abc.def.ghi\n"
        "ORA-1 jdbc:oracle://his:Hunter2@10.0.0.5/orcl\n"
        "ORA-2 患者:张三 身份证 11010519491231002X 电话 13812345678\n",
    )
    result = r.run()
    lines = [e["line"] for e in result.details["excerpt"]]
    assert lines[0] == "ORA-01017 login failed user=his password=*** token: ***"
    assert lines[1] == "ORA-1 jdbc:oracle://his:***@10.0.0.5/orcl"
    assert lines[2] == "ORA-2 患者:*** 身份证 *** 电话 ***"
    dumped = json.dumps([result.summary, dict(result.details)], ensure_ascii=False)
    for secret in ("Secr3t!Pw", "abc.def.ghi", "Hunter2", "张三", "11010519491231002X", "13812345678"):
        assert secret not in dumped


def test_ignore_patterns_and_one_count_per_line(log: Path) -> None:
    r = Runner(settings(log, ignore=["ORA-00028"]))
    r.run()
    append(log, "ORA-00028 your session has been killed\nORA-00060 deadlock detected\n")
    result = r.run()
    assert [e["line"] for e in result.details["excerpt"]] == ["ORA-00060 deadlock detected"]
    assert result.metric("matches.pattern1").value == 1  # type: ignore[union-attr]
    assert result.metric("matches.pattern2").value == 0  # type: ignore[union-attr]


def test_max_lines_bounds_a_run_and_the_rest_follows(log: Path) -> None:
    r = Runner(settings(log, max_lines=20, excerpt_lines=50))
    r.run()
    append(log, "".join(f"ORA-{i:05d}\n" for i in range(50)))
    counts = []
    seen: list[str] = []
    for _ in range(3):
        result = r.run()
        counts.append(len(result.details["excerpt"]))
        seen += [e["line"] for e in result.details["excerpt"]]
    assert counts == [20, 20, 10]
    assert seen == [f"ORA-{i:05d}" for i in range(50)]


def test_budget_is_shared_so_a_busy_file_cannot_starve_another(tmp_path: Path) -> None:
    busy, quiet = tmp_path / "busy.log", tmp_path / "quiet.log"
    busy.write_text("")
    quiet.write_text("")
    r = Runner({"files": [str(busy), str(quiet)], "patterns": ["ORA-"], "max_lines": 10, "excerpt_lines": 50})
    r.run()
    append(busy, "".join(f"ORA-busy {i}\n" for i in range(100)))
    append(quiet, "ORA-quiet 1\n")
    lines = r.lines()
    assert "ORA-quiet 1" in lines
    assert len(lines) <= 10


def test_glob_new_file_read_from_start_and_missing_files_reported(tmp_path: Path) -> None:
    (tmp_path / "a.log").write_text("ORA-1 history\n")
    r = Runner({"files": [str(tmp_path / "*.log"), str(tmp_path / "none.log")], "patterns": ["ORA-"]})
    first = r.run()
    assert first.status is Status.WARN
    assert {"status": "WARN", "text": f"日志文件不存在: {tmp_path / 'none.log'}"} in first.details["findings"]
    (tmp_path / "b.log").write_text("ORA-2 in a file that appeared after the first run\n")
    assert r.lines() == ["ORA-2 in a file that appeared after the first run"]


def test_unreadable_file_is_unknown_and_keeps_its_offset(log: Path) -> None:
    r = Runner(settings(log))
    r.run()
    offset = r.memory["files"][str(log)]["offset"]
    # A directory where the log was: opening works, reading fails (EISDIR) even for root,
    # unlike chmod 000.
    log.rename(log.with_name("app.log.moved.gz"))
    log.mkdir()
    result = r.run()
    assert result.status is Status.UNKNOWN
    assert any(f["text"].startswith(f"读取 {log} 失败") for f in result.details["findings"])
    assert r.memory["files"][str(log)]["offset"] == offset


def test_hold_keeps_the_status_after_a_match(log: Path) -> None:
    clock = FakeClock()
    r = Runner(settings(log, hold="30m"), clock)
    r.run()
    append(log, "deadlock detected\n")
    assert r.run().status is Status.CRIT
    clock.advance(600)
    held = r.run()
    assert held.status is Status.CRIT
    assert "保持之前的告警" in held.summary
    clock.advance(1300)
    assert r.run().status is Status.OK


def test_corrupt_memory_is_treated_as_first_run(log: Path) -> None:
    r = Runner(settings(log))
    r.memory = {"files": {str(log): {"offset": "x"}}, "v": 1}
    assert r.run().status is Status.OK


# ------------------------------------------------------------------ settings


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"encoding": "utf-16"}, "not supported"),
        ({"encoding": "klingon"}, "unknown encoding"),
        ({"patterns": []}, "at least 1"),
        ({"patterns": ["(unclosed"]}, "invalid regular expression"),
        ({"patterns": [{"regex": "a", "name": "x"}, {"regex": "b", "name": "x"}]}, "used twice"),
        ({"patterns": [{"regex": "a", "status": "OK"}]}, "'WARN' or 'CRIT'"),
        ({"patterns": [{"regex": "a", "name": "a b"}]}, "pattern name"),
        ({"max_bytes": 10}, "greater than or equal to 1024"),
    ],
)
def test_invalid_settings_are_rejected(extra: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as info:
        Settings.model_validate({"files": ["/x.log"], "patterns": ["ORA-"], **extra})
    assert message in str(info.value)


def test_encoding_aliases_are_normalised() -> None:
    for alias, name in (("cp936", "gbk"), ("GB18030", "gb18030"), ("UTF8", "utf-8")):
        assert (
            Settings.model_validate({"files": ["/x"], "patterns": ["a"], "encoding": alias}).encoding == name
        )
