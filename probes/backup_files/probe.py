"""Backup-file probe (kind `backup_files`): are the backup files there, on time, whole?

For each backup set (a directory and a file pattern, on this machine or over SFTP):
- the newest file against the expected schedule ("daily 03:00" + grace, in the site's time
  zone): a backup that did not arrive for the last slot is CRIT, and every judged slot goes
  into the details (`sets.<name>.expected` and `backups_expected`) for the inspection task
  completion rate;
- its size against the median of the previous copies: a sudden shrink is suspicious
  (a dump that stopped half-way, an export of the wrong schema);
- the number of copies kept against the retention policy (too few: the history is gone;
  too many: the clean-up stopped and the volume will fill);
- free space on the backup volume against the expected size of the next backup
  (newest × space_factor);
- optionally a checksum sidecar (`<file>.sha256` / `<file>.md5` in sha256sum/md5sum or BSD
  format) verified for the newest file. Hashing is bounded by `checksum_max_bytes` and the
  probe's time budget; a file that cannot be hashed in time is reported as not verified.
  A completed verification is remembered (path, size, mtime, expected digest) so the same
  file is not hashed again on every run.

Files are matched by name with fnmatch (case-sensitive); checksum sidecars never count as
copies. Over SFTP, file times are the remote server's, and free space comes from `df` (when
the account may run commands).
"""

from __future__ import annotations

import hashlib
import re
import statistics
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from typing import Any, ClassVar, Literal

from probes.backup_files.settings import BackupSet, Settings
from probes.base import CheckResult, Metric, ProbeContext, Status, Stopwatch, worst
from probes.boundary import run_guarded
from probes.db.items import fmt_bytes
from probes.fileaccess import AccessError, FileAccess, FileInfo, open_access
from probes.ssh.conn import SshError
from probes.thresholds import Threshold

__all__ = ["DEFAULT_THRESHOLDS", "Probe", "parse_checksum_file"]

# The probe judges its own limits per set; generic rules on top would judge twice.
DEFAULT_THRESHOLDS: dict[str, Threshold] = {}

CATEGORY = "数据安全类"
_SIDECARS = (".sha256", ".sha256sum", ".md5", ".md5sum")
_MAX_SIDECAR_BYTES = 64 * 1024
_HASH_CHUNK = 8 * 1024 * 1024
"""Large reads keep many SFTP requests in flight: 8 MiB chunks hash ~10x faster than 1 MiB ones."""
_HEX = {"sha256": re.compile(r"^[0-9a-fA-F]{64}$"), "md5": re.compile(r"^[0-9a-fA-F]{32}$")}


# ---------------------------------------------------------------------------- checksums


def parse_checksum_file(text: str, file_name: str, algo: str) -> str | None:
    """The expected digest for `file_name` from sha256sum/md5sum (`HEX  name`, `HEX *name`)
    or BSD (`SHA256 (name) = HEX`) output; a lone digest counts for the file it sits beside."""
    hex_re = _HEX[algo]
    entries: list[tuple[str, str | None]] = []
    for raw in text.splitlines():
        line = raw.strip().lstrip("\ufeff")
        if not line or line.startswith("#"):
            continue
        bsd = re.match(r"^(?:SHA256|MD5)\s*\((.*)\)\s*=\s*([0-9a-fA-F]+)$", line, re.I)
        if bsd:
            entries.append((bsd.group(2), bsd.group(1)))
            continue
        parts = line.split(None, 1)
        name = parts[1].lstrip("*").strip() if len(parts) == 2 else None
        entries.append((parts[0], name))
    for digest, name in entries:
        if name is not None and _base(name) == file_name and hex_re.match(digest):
            return digest.lower()
    if len(entries) == 1 and entries[0][1] is None and hex_re.match(entries[0][0]):
        return entries[0][0].lower()
    return None


def _base(path: str) -> str:
    return path.replace("\\", "/").rsplit("/", 1)[-1]


@dataclass(frozen=True, slots=True)
class _Verification:
    state: Literal["ok", "mismatch", "unfinished", "too_large", "no_sidecar", "bad_sidecar", "error"]
    detail: str = ""
    actual: str | None = None
    expected: str | None = None


def _hash_file(
    fs: FileAccess, info: FileInfo, algo: str, deadline: float, max_bytes: int
) -> tuple[str | None, int]:
    """(hex digest or None if not finished in time, bytes read)."""
    h = hashlib.new(algo)
    done = 0
    with fs.open(info.path) as f:
        size = f.info().size
        if size > max_bytes:
            return None, 0
        while done < size:
            if time.monotonic() >= deadline:
                return None, done
            chunk = f.read_at(done, min(_HASH_CHUNK, size - done))
            if not chunk:
                break
            h.update(chunk)
            done += len(chunk)
    return h.hexdigest(), done


# ---------------------------------------------------------------------------- evaluation


@dataclass(slots=True)
class _SetReport:
    status: Status = Status.OK
    findings: list[dict[str, Any]] = field(default_factory=list)
    metrics: list[Metric] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    verified: dict[str, Any] | None = None

    def add(self, status: Status, text: str, obj: str) -> None:
        self.status = worst(self.status, status)
        self.findings.append({"status": status.name, "text": text, "category": CATEGORY, "obj": obj})


class Probe:
    kind: ClassVar[str] = "backup_files"

    __slots__ = ("settings",)

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def run(self, ctx: ProbeContext) -> CheckResult:
        return run_guarded(ctx, "备份文件检查出错", lambda sw: self._run(ctx, sw))

    def _run(self, ctx: ProbeContext, sw: Stopwatch) -> CheckResult:
        # A tenth of the budget stays for closing the session and building the result.
        deadline = time.monotonic() + ctx.timeout_s * 0.9
        now = ctx.now_utc()
        cache = ctx.memory.get("verified")
        cache = cache if isinstance(cache, Mapping) else {}
        reports: dict[str, _SetReport] = {}
        try:
            with open_access(self.settings.ssh, ctx, deadline) as fs:
                for bset in self.settings.sets:
                    reports[bset.name] = self._evaluate(fs, bset, ctx, now, deadline, cache.get(bset.name))
        except AccessError as exc:
            return sw.result(Status.UNKNOWN, f"无法读取备份目录: {exc}")
        except SshError as exc:
            return sw.result(exc.status, exc.message)
        return self._result(sw, reports)

    def _evaluate(
        self,
        fs: FileAccess,
        bset: BackupSet,
        ctx: ProbeContext,
        now: datetime,
        deadline: float,
        cached: Any,
    ) -> _SetReport:
        rep = _SetReport()
        name = bset.name
        where = f"{fs.where} {bset.directory}" if fs.where != "本机" else bset.directory
        rep.facts.update(directory=bset.directory, pattern=bset.pattern, schedule=str(bset.schedule))
        try:
            entries = fs.listdir(bset.directory)
        except FileNotFoundError:
            rep.add(Status.CRIT, f"备份集 {name}: 备份目录不存在 {where}", name)
            self._expect(rep, bset, None, now, ctx)
            return rep
        except OSError as exc:
            rep.add(Status.UNKNOWN, f"备份集 {name}: 无法读取备份目录 {where}: {exc.strerror or exc}", name)
            rep.facts["expected"] = {"due": None, "met": None, "schedule": str(bset.schedule)}
            return rep

        names = {e.name for e in entries}
        files = sorted(
            (
                e
                for e in entries
                if not e.is_dir
                and fnmatchcase(e.name, bset.pattern)
                and not e.name.lower().endswith(_SIDECARS)
            ),
            key=lambda e: (e.mtime, e.name),
        )
        rep.metrics.append(Metric(f"backup.{name}.copies", len(files)))
        rep.facts["copies"] = len(files)
        if not files:
            rep.add(Status.CRIT, f"备份集 {name}: {where} 中没有匹配 {bset.pattern} 的备份文件", name)
            self._expect(rep, bset, None, now, ctx)
            self._copies(rep, bset, 0)
            return rep

        newest = files[-1]
        newest_at = datetime.fromtimestamp(newest.mtime, UTC)
        local = newest_at.astimezone(ctx.tz)
        age = max((now - newest_at).total_seconds(), 0.0)
        rep.metrics += [
            Metric(f"backup.{name}.age_s", round(age), "s"),
            Metric(f"backup.{name}.size_bytes", newest.size, "B"),
        ]
        rep.facts["newest"] = {"file": newest.name, "mtime": newest_at.isoformat(), "size_bytes": newest.size}

        verdict = self._expect(rep, bset, newest_at, now, ctx)
        if not verdict:
            rep.add(
                Status.CRIT,
                f"备份集 {name}: 备份未按计划完成（{bset.schedule.describe_zh()}，"
                f"最近一次 {local:%Y-%m-%d %H:%M} {newest.name}）",
                name,
            )

        if newest.size < bset.min_bytes:
            rep.add(Status.CRIT, f"备份集 {name}: 最新备份 {newest.name} 只有 {fmt_bytes(newest.size)}", name)
        self._shrink(rep, bset, files)
        self._copies(rep, bset, len(files))
        self._space(rep, bset, fs, newest, where)
        if bset.checksum != "none":
            self._checksum(rep, bset, fs, newest, names, deadline, cached)
        return rep

    def _expect(
        self, rep: _SetReport, bset: BackupSet, newest: datetime | None, now: datetime, ctx: ProbeContext
    ) -> bool:
        verdict = bset.schedule.judge(newest, now, ctx.tz, bset.grace)
        rep.facts["expected"] = {
            "due": verdict.due.isoformat() if verdict.due else None,
            "deadline": verdict.deadline.isoformat() if verdict.deadline else None,
            "met": verdict.met,
            "schedule": str(bset.schedule),
        }
        return verdict.met

    def _shrink(self, rep: _SetReport, bset: BackupSet, files: list[FileInfo]) -> None:
        previous = [f.size for f in files[-1 - bset.baseline_copies : -1]]
        if not previous:
            return
        median = statistics.median(previous)
        newest = files[-1].size
        rep.facts["baseline_median_bytes"] = median
        if median <= 0:
            return
        shrink = (median - newest) / median * 100.0
        rep.facts["shrink_pct"] = round(shrink, 1)
        for limit, status in ((bset.shrink_crit_pct, Status.CRIT), (bset.shrink_warn_pct, Status.WARN)):
            if shrink >= limit:
                rep.add(
                    status,
                    f"备份集 {bset.name}: 最新备份 {files[-1].name} 为 {fmt_bytes(newest)}，"
                    f"比之前 {len(previous)} 份的中位数 {fmt_bytes(median)} "
                    f"小 {shrink:.0f}%（阈值 {limit:g}%）",
                    bset.name,
                )
                return

    def _copies(self, rep: _SetReport, bset: BackupSet, n: int) -> None:
        if n < bset.min_copies and n > 0:
            rep.add(
                Status.WARN,
                f"备份集 {bset.name}: 保留 {n} 份，少于保留策略要求的 {bset.min_copies} 份",
                bset.name,
            )
        if bset.max_copies is not None and n > bset.max_copies:
            rep.add(
                Status.WARN,
                f"备份集 {bset.name}: 保留 {n} 份，超过保留策略的 {bset.max_copies} 份（过期备份可能未清理）",
                bset.name,
            )

    def _space(self, rep: _SetReport, bset: BackupSet, fs: FileAccess, newest: FileInfo, where: str) -> None:
        if not bset.space_factor:
            return
        try:
            free = fs.free_bytes(bset.directory)
        except OSError as exc:
            free = None
            rep.facts["free_bytes_error"] = exc.strerror or type(exc).__name__
        expected = round(newest.size * bset.space_factor)
        rep.metrics.append(Metric(f"backup.{bset.name}.expected_next_bytes", expected, "B"))
        if free is None:
            rep.facts["free_bytes"] = None
            rep.findings.append(
                {
                    "status": "OK",
                    "text": f"备份集 {bset.name}: 无法获取 {where} 所在卷的剩余空间",
                    "category": CATEGORY,
                    "obj": bset.name,
                }
            )
            return
        rep.metrics.append(Metric(f"backup.{bset.name}.free_bytes", free, "B"))
        rep.facts["free_bytes"] = free
        if free < expected:
            rep.add(
                Status.CRIT,
                f"备份集 {bset.name}: 备份卷剩余 {fmt_bytes(free)}，"
                f"不足以存放下一次备份（预计 {fmt_bytes(expected)}）",
                bset.name,
            )
        elif bset.space_warn_factor and free < newest.size * bset.space_warn_factor:
            rep.add(
                Status.WARN,
                f"备份集 {bset.name}: 备份卷剩余 {fmt_bytes(free)}，"
                f"不足最新备份的 {bset.space_warn_factor:g} 倍（{fmt_bytes(newest.size)}）",
                bset.name,
            )

    def _checksum(
        self,
        rep: _SetReport,
        bset: BackupSet,
        fs: FileAccess,
        newest: FileInfo,
        names: set[str],
        deadline: float,
        cached: Any,
    ) -> None:
        algo = bset.checksum
        v = self._verify(fs, newest, names, algo, deadline, bset.checksum_max_bytes, cached)
        rep.facts["checksum"] = {
            "algorithm": algo,
            "state": v.state,
            **({"detail": v.detail} if v.detail else {}),
        }
        n = bset.name
        if v.state in ("ok", "mismatch"):
            # Remembered so the same file is not hashed again next run (see _verify).
            rep.verified = {
                "path": newest.path,
                "size": newest.size,
                "mtime": newest.mtime,
                "expected": v.expected,
                "actual": v.actual,
            }
        if v.state == "ok":
            return
        if v.state == "mismatch":
            rep.add(
                Status.CRIT,
                f"备份集 {n}: 最新备份 {newest.name} 校验失败，{algo} 与校验文件不一致"
                f"（期望 {(v.expected or '')[:12]}…，实际 {(v.actual or '')[:12]}…）",
                n,
            )
        elif v.state == "no_sidecar":
            rep.add(Status.WARN, f"备份集 {n}: 最新备份 {newest.name} 缺少校验文件 {newest.name}.{algo}", n)
        elif v.state == "bad_sidecar":
            rep.add(Status.WARN, f"备份集 {n}: 校验文件中没有 {newest.name} 的 {algo} 值（{v.detail}）", n)
        elif v.state == "too_large":
            rep.add(Status.WARN, f"备份集 {n}: 最新备份 {newest.name} 超过校验上限，未校验（{v.detail}）", n)
        elif v.state == "unfinished":
            rep.add(
                Status.WARN, f"备份集 {n}: 未能在时间预算内完成 {newest.name} 的校验（{v.detail}），未校验", n
            )
        else:
            rep.add(Status.UNKNOWN, f"备份集 {n}: 校验 {newest.name} 时出错: {v.detail}", n)

    def _verify(
        self,
        fs: FileAccess,
        newest: FileInfo,
        names: set[str],
        algo: str,
        deadline: float,
        max_bytes: int,
        cached: Any,
    ) -> _Verification:
        candidates = (f"{newest.name}.{algo}", f"{newest.name}.{algo}sum")
        sidecar = next((c for c in candidates if c in names), None)
        if sidecar is None:
            return _Verification("no_sidecar")
        path = fs.join(fs.dirname(newest.path), sidecar)
        try:
            with fs.open(path) as f:
                text = f.read_at(0, _MAX_SIDECAR_BYTES).decode("utf-8", errors="replace")
        except OSError as exc:
            return _Verification("error", f"{sidecar}: {exc.strerror or type(exc).__name__}")
        expected = parse_checksum_file(text, newest.name, algo)
        if expected is None:
            return _Verification("bad_sidecar", sidecar)
        if (
            isinstance(cached, Mapping)
            and cached.get("path") == newest.path
            and cached.get("size") == newest.size
            and cached.get("mtime") == newest.mtime
            and cached.get("expected") == expected
        ):
            known = str(cached.get("actual"))
            return _Verification("ok" if known == expected else "mismatch", "", known, expected)
        if newest.size > max_bytes:
            return _Verification("too_large", f"{fmt_bytes(newest.size)} > {fmt_bytes(max_bytes)}")
        try:
            actual, done = _hash_file(fs, newest, algo, deadline, max_bytes)
        except OSError as exc:
            return _Verification("error", exc.strerror or type(exc).__name__)
        if actual is None:
            return _Verification("unfinished", f"已读 {fmt_bytes(done)} / {fmt_bytes(newest.size)}")
        if actual != expected:
            return _Verification("mismatch", "", actual, expected)
        return _Verification("ok", "", actual, expected)

    # -------------------------------------------------------------- result

    def _result(self, sw: Stopwatch, reports: dict[str, _SetReport]) -> CheckResult:
        status = worst(*(r.status for r in reports.values()))
        metrics = [m for r in reports.values() for m in r.metrics]
        findings = [f for r in reports.values() for f in r.findings]
        problems = [f["text"] for f in findings if f["status"] != "OK"]
        if problems:
            summary = problems[0] + (f" 等 {len(problems)} 项问题" if len(problems) > 1 else "")
        else:
            parts = []
            for name, r in reports.items():
                newest = r.facts.get("newest", {})
                parts.append(
                    f"{name} {fmt_bytes(newest.get('size_bytes', 0))} 共 {r.facts.get('copies', 0)} 份"
                )
            summary = "备份正常: " + "；".join(parts)
        details = {
            "sets": {name: r.facts for name, r in reports.items()},
            "findings": findings,
            # Same shape as the database probes' facts, for the inspection completion rate.
            "backups_expected": [
                {"set": name, "schedule": r.facts["expected"].get("schedule"), **r.facts["expected"]}
                for name, r in reports.items()
                if "expected" in r.facts
            ],
        }
        memory = {"verified": {name: r.verified for name, r in reports.items() if r.verified is not None}}
        return sw.result(status, summary, metrics, details, memory)
