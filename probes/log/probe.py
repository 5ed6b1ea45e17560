"""Log probe (kind `log`): new lines since the last run that match configured patterns.

Typical uses: Oracle's alert log (`ORA-`), an application server's log (`OutOfMemory`,
`deadlock`), a Chinese HIS front end writing GBK (`连接超时`).

Reading rules:
- The read position of every file is carried in `CheckResult.memory` and handed back in
  `ctx.memory`; the agent commits it with the result, so no line is read twice or skipped.
- Only complete lines are consumed; a last line still being written waits for its newline.
  Offsets are in bytes and lines are split at b"\\n", which never occurs inside a GBK, GB18030,
  Big5 or UTF-8 character, so a multi-byte character is never cut in half.
- First run: every file starts at its end (no alert storm over history) unless
  `from_start: true`. A file that appears later (a new daily log) is read from its start.
- A file is recognised by its identity: inode and device where the platform has them (not over
  SFTP), and always a fingerprint of its first bytes, so a reused inode is not mistaken
  for the old file.
- Rotation by rename (app.log -> app.log.1 / app.log-20250101): the rest of the old file is
  read from where it was left, found among the siblings by identity, then the new file from
  its start. Rotation by copy and truncate (logrotate copytruncate): the copy is found by
  its fingerprint and its unread tail is read, then the truncated file from its start.
  Trade-off: if the old file was compressed or removed before this run (rotation faster than
  the interval), its unread tail is lost; the new file is still read from its start.
- Truncation in place (size below the offset): read again from the start.
- Each run reads at most `max_lines` lines and `max_bytes` bytes (shared fairly among the
  files) and stops at the time budget; the rest is read by the next run (`backlog_bytes`).
- Excerpts of matching lines go into the result with secrets masked: password=, pwd=,
  token=, secret=, 密码= values, credentials in URLs, and 18-digit ID numbers and mobile
  numbers (patient data) always, plus the `mask` patterns configured.

A match is an event, not a state: the next run without new matches is OK again. With
`hold: 30m` the status stays at the matched level for that long after the last match, so a
check that needs several confirmations still opens a fault for a single ORA- line.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar

from probes.base import CheckResult, Metric, ProbeContext, Status, Stopwatch, worst
from probes.boundary import run_guarded
from probes.fileaccess import AccessError, FileAccess, FileInfo, OpenFile, open_access
from probes.log.settings import Settings
from probes.ssh.conn import SshError
from probes.thresholds import Threshold

__all__ = ["DEFAULT_MASKS", "DEFAULT_THRESHOLDS", "Probe", "mask_text"]

# The probe judges its own matches; the counts are metrics for trends and reports only.
DEFAULT_THRESHOLDS: dict[str, Threshold] = {}

HEAD_BYTES = 256
"""Fingerprint length: enough to tell two log files apart by their first timestamped lines."""
_MIN_FINGERPRINT = 32
"""Below this many known bytes a fingerprint alone cannot prove two files are the same."""
_TAIL_SCAN = 64 * 1024
_MAX_ROTATION_CANDIDATES = 8
_EXCERPT_CHARS = 400
_COMPRESSED = (".gz", ".bz2", ".xz", ".zip", ".zst", ".7z", ".lz4", ".z")

DEFAULT_MASKS: tuple[str, ...] = (
    # key=value secrets; only the value (group 1) is replaced
    r"(?i)(?:password|passwd|pwd|token|secret|api[_-]?key|access[_-]?key|密码|口令)"
    r"\s*[=:：]\s*(\"[^\"]*\"|'[^']*'|[^\s,;&\"'<>]+)",
    r"://[^/\s:@]+:([^@\s/]+)@",  # credentials in URLs
    r"(?<![0-9])[1-9][0-9]{16}[0-9Xx](?![0-9A-Za-z])",  # 居民身份证号 (patient data)
    r"(?<![0-9])1[3-9][0-9]{9}(?![0-9])",  # mobile phone numbers
)

_STATUS = {"WARN": Status.WARN, "CRIT": Status.CRIT}
_MISSING = {"OK": Status.OK, "WARN": Status.WARN, "CRIT": Status.CRIT, "UNKNOWN": Status.UNKNOWN}


def mask_text(text: str, masks: tuple[re.Pattern[str], ...]) -> str:
    """Replace each mask match by *** (only its groups, when the pattern has groups)."""
    for rx in masks:
        text = rx.sub(_masked, text)
    return text


def _masked(m: re.Match[str]) -> str:
    if not m.re.groups:
        return "***"
    whole, base = m.group(0), m.start(0)
    out: list[str] = []
    pos = 0
    for g in range(1, m.re.groups + 1):
        start, end = m.span(g)
        if start < 0 or start < base + pos:
            continue
        out.append(whole[pos : start - base])
        out.append("***")
        pos = end - base
    out.append(whole[pos:])
    return "".join(out)


# ---------------------------------------------------------------------------- state


@dataclass(slots=True)
class FileState:
    offset: int
    head: str = ""
    head_len: int = 0
    ino: int | None = None
    dev: int | None = None

    @classmethod
    def load(cls, raw: Any) -> FileState | None:
        if not isinstance(raw, Mapping):
            return None
        try:
            return cls(
                offset=int(raw["offset"]),
                head=str(raw.get("head", "")),
                head_len=int(raw.get("head_len", 0)),
                ino=None if raw.get("ino") is None else int(raw["ino"]),
                dev=None if raw.get("dev") is None else int(raw["dev"]),
            )
        except (KeyError, TypeError, ValueError):
            return None

    def dump(self) -> dict[str, Any]:
        return {
            "offset": self.offset,
            "head": self.head,
            "head_len": self.head_len,
            "ino": self.ino,
            "dev": self.dev,
        }


def _fingerprint(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:32]


@dataclass(slots=True)
class _Opened:
    """One open file: fstat and first bytes, read once."""

    path: str
    info: FileInfo
    head: bytes

    def same_inode(self, st: FileState) -> bool | None:
        if st.ino is None or self.info.ino is None:
            return None
        return (self.info.ino, self.info.dev) == (st.ino, st.dev)

    def head_matches(self, st: FileState) -> bool:
        return len(self.head) >= st.head_len and _fingerprint(self.head[: st.head_len]) == st.head

    def continues(self, st: FileState) -> bool:
        """The file the state describes, grown or unchanged (not replaced, not truncated)."""
        return self.same_inode(st) is not False and self.info.size >= st.offset and self.head_matches(st)

    def holds_old_content(self, st: FileState) -> bool:
        """A rotated copy or renamed original of the state's file, with everything up to its offset."""
        if self.info.size < st.offset or not self.head_matches(st):
            return False
        return bool(self.same_inode(st)) or st.head_len >= _MIN_FINGERPRINT

    def state(self, offset: int) -> FileState:
        return FileState(offset, _fingerprint(self.head), len(self.head), self.info.ino, self.info.dev)


@dataclass(slots=True)
class _Match:
    path: str
    pattern: int
    text: str


@dataclass(slots=True)
class _Run:
    """Everything one run accumulates."""

    lines: int = 0
    bytes: int = 0
    backlog: int = 0
    matches: list[_Match] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)
    findings: list[dict[str, Any]] = field(default_factory=list)
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    states: dict[str, FileState] = field(default_factory=dict)

    def finding(self, status: Status, text: str) -> None:
        self.findings.append({"status": status.name, "text": text})


# ---------------------------------------------------------------------------- probe


class Probe:
    kind: ClassVar[str] = "log"

    __slots__ = ("settings", "_patterns", "_names", "_ignore", "_masks")

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._patterns = tuple(re.compile(p.regex) for p in settings.patterns)
        self._names = tuple(p.name or f"pattern{i + 1}" for i, p in enumerate(settings.patterns))
        self._ignore = tuple(re.compile(r) for r in settings.ignore)
        self._masks = tuple(re.compile(r) for r in (*DEFAULT_MASKS, *settings.mask))

    def run(self, ctx: ProbeContext) -> CheckResult:
        return run_guarded(ctx, "日志检查出错", lambda sw: self._run(ctx, sw))

    def _run(self, ctx: ProbeContext, sw: Stopwatch) -> CheckResult:
        s = self.settings
        # Leave a tenth of the budget for closing the session and building the result.
        deadline = time.monotonic() + ctx.timeout_s * 0.9
        run = _Run(counts=[0] * len(self._patterns))
        try:
            with open_access(s.ssh, ctx, deadline) as fs:
                self._scan(fs, ctx, run, deadline)
        except AccessError as exc:
            # memory=None keeps the committed offsets: nothing read now counts as read.
            return sw.result(Status.UNKNOWN, f"无法读取日志: {exc}")
        except SshError as exc:
            return sw.result(exc.status, exc.message)
        return self._result(ctx, sw, run)

    # -------------------------------------------------------------- scanning

    def _scan(self, fs: FileAccess, ctx: ProbeContext, run: _Run, deadline: float) -> None:
        s = self.settings
        raw_files = ctx.memory.get("files")
        first_run = not isinstance(raw_files, Mapping)
        prev: dict[str, FileState] = {}
        unsure: set[str] = set()  # an unreadable entry: where we were is unknown, skip its history
        if isinstance(raw_files, Mapping):
            for path, raw in raw_files.items():
                st = FileState.load(raw)
                if st is not None:
                    prev[str(path)] = st
                else:
                    unsure.add(str(path))

        current: list[str] = []
        for spec in s.files:
            try:
                found = fs.glob(spec)
            except OSError as exc:
                run.finding(Status.UNKNOWN, f"无法展开 {spec}: {_oserror(exc)}")
                continue
            if not found:
                status = _MISSING[s.missing]
                run.finding(status, f"日志文件不存在: {spec}")
            current.extend(p for p in found if p not in current)
        current_set = set(current)

        # First find where every known file's content lives now (its own path, or the name
        # rotation gave it), then read: known content from its offset, before any file that is
        # new at its path. Matching everything first keeps a chain of renames
        # (app.log.1 -> app.log.2, app.log -> app.log.1) from reading anything twice.
        where = self._locate(fs, prev, run)
        taken = {loc for loc in where.values() if loc is not None}
        todo: list[tuple[str, FileState | None, str]] = [
            (loc, prev[key], key) for key, loc in where.items() if loc is not None
        ]
        failed = {path for path, facts in run.files.items() if "error" in facts}
        todo += [(path, None, path) for path in current if path not in taken and path not in failed]
        fresh_start = s.from_start or not first_run
        pending = len(todo)
        for path, st, key in todo:
            budget = _Budget.share(s, run, pending)
            pending -= 1
            if time.monotonic() >= deadline:
                run.finding(Status.OK, "时间预算用完，其余文件下次继续读取")
                if st is not None:
                    run.states.setdefault(key, st)
                continue
            try:
                if st is None:
                    start_at_end = not fresh_start or path in unsure
                    self._read_new(fs, path, start_at_end, path in prev, run, budget, deadline)
                else:
                    keep = path in current_set
                    self._read_known(fs, path, st, key, keep, run, budget, deadline)
            except OSError as exc:
                run.finding(Status.UNKNOWN, f"读取 {path} 失败: {_oserror(exc)}")
                run.files[path] = {"error": _oserror(exc)}
                if st is not None:
                    run.states.setdefault(key, st)  # try again from the same place next run

    def _locate(self, fs: FileAccess, prev: dict[str, FileState], run: _Run) -> dict[str, str | None]:
        """Known file (state key) -> the path that holds its content now, or None if gone."""
        where: dict[str, str | None] = {}
        for key, st in prev.items():
            try:
                with _maybe_open(fs, key) as opened:
                    if opened is not None and opened[1].continues(st):
                        where[key] = key
            except OSError as exc:
                run.finding(Status.UNKNOWN, f"读取 {key} 失败: {_oserror(exc)}")
                run.files[key] = {"error": _oserror(exc)}
                run.states[key] = st  # try again from the same place next run
        taken = {path for path in where.values() if path is not None}
        for key, st in prev.items():
            if key in where or key in run.states:
                continue
            moved = self._find_moved(fs, key, st, taken)
            where[key] = moved
            if moved is not None:
                taken.add(moved)
        return where

    def _read_known(
        self,
        fs: FileAccess,
        path: str,
        st: FileState,
        key: str,
        keep: bool,
        run: _Run,
        budget: _Budget,
        deadline: float,
    ) -> None:
        """Continue known content from its offset, at its own path or where rotation moved it.
        A rotated file no glob names is remembered only until it has been read to its end."""
        with _maybe_open(fs, path) as opened:
            if opened is None or not (
                opened[1].continues(st) if path == key else opened[1].holds_old_content(st)
            ):
                run.states.setdefault(key, st)  # changed since it was located: next run decides
                return
            f, o = opened
            end = self._consume(f, o, st.offset, run, budget, deadline)
            run.files[path] = {"offset": end, "size": o.info.size}
            if path != key:
                run.files[path]["rotated_from"] = key
            if keep or end < o.info.size:
                run.states[path] = o.state(end)

    def _read_new(
        self,
        fs: FileAccess,
        path: str,
        start_at_end: bool,
        replaced: bool,
        run: _Run,
        budget: _Budget,
        deadline: float,
    ) -> None:
        """A file new at its path: read from its start, or (first run) only remember its end."""
        with _maybe_open(fs, path) as opened:
            if opened is None:
                return
            f, o = opened
            if start_at_end:
                end = _after_last_newline(f, o.info.size)
                run.files[path] = {"offset": end, "size": o.info.size, "skipped_history": True}
            else:
                end = self._consume(f, o, 0, run, budget, deadline)
                run.files[path] = {"offset": end, "size": o.info.size, "reset" if replaced else "new": True}
            run.states[path] = o.state(end)

    def _find_moved(self, fs: FileAccess, path: str, st: FileState, taken: set[str]) -> str | None:
        """Where the content the state describes lives now (renamed or copied by rotation)."""
        directory = fs.dirname(path)
        base = path.replace("\\", "/").rsplit("/", 1)[-1]
        stem = base.rsplit(".", 1)[0] if "." in base else base
        try:
            entries = fs.listdir(directory or ".")
        except OSError:
            return None
        candidates = [
            e
            for e in entries
            if not e.is_dir
            and e.name != base
            and e.path not in taken
            and (e.name.startswith(base) or e.name.startswith((stem + ".", stem + "-", stem + "_")))
            and not e.name.lower().endswith(_COMPRESSED)
            and e.size >= st.offset
        ]
        # A renamed original is found by its inode alone; otherwise the newest few are checked.
        if st.ino is not None:
            for e in candidates:
                if e.ino == st.ino and e.dev == st.dev:
                    return e.path
        candidates.sort(key=lambda e: e.mtime, reverse=True)
        for e in candidates[:_MAX_ROTATION_CANDIDATES]:
            try:
                with fs.open(e.path) as f:
                    if _open_info(f, e.path).holds_old_content(st):
                        return e.path
            except OSError:
                continue
        return None

    def _consume(
        self, f: OpenFile, o: _Opened, start: int, run: _Run, budget: _Budget, deadline: float
    ) -> int:
        """Read complete lines from `start`; return the new offset."""
        size = o.info.size
        if start >= size:
            return start
        want = min(size - start, budget.bytes)
        data = f.read_at(start, want) if want > 0 and time.monotonic() < deadline else b""
        cut = data.rfind(b"\n") + 1
        if cut == 0 and len(data) >= self.settings.max_bytes:
            cut = len(data)  # one line longer than max_bytes: take it cut short rather than stall forever
        consumed = 0
        enc = self.settings.encoding
        for raw in data[:cut].splitlines(keepends=True):
            if budget.lines <= 0:
                break
            budget.lines -= 1
            consumed += len(raw)
            run.lines += 1
            line = raw.decode(enc, errors="replace").rstrip("\r\n")
            self._judge_line(o.path, line, run)
        run.bytes += consumed
        budget.bytes -= consumed
        end = start + consumed
        run.backlog += size - end
        return end

    def _judge_line(self, path: str, line: str, run: _Run) -> None:
        if any(rx.search(line) for rx in self._ignore):
            return
        for i, rx in enumerate(self._patterns):
            if rx.search(line):
                run.counts[i] += 1
                run.matches.append(_Match(path, i, line))
                return  # one line counts once, for the first pattern it matches

    # -------------------------------------------------------------- result

    def _result(self, ctx: ProbeContext, sw: Stopwatch, run: _Run) -> CheckResult:
        s = self.settings
        statuses = [_STATUS[s.patterns[m.pattern].status] for m in run.matches]
        status = worst(*statuses, *(Status[f["status"]] for f in run.findings))
        now = ctx.clock()
        memory: dict[str, Any] = {"v": 1, "files": {p: st.dump() for p, st in run.states.items()}}

        if run.matches:
            parts = [f"{self._names[i]}({n})" for i, n in enumerate(run.counts) if n]
            summary = f"新增 {len(run.matches)} 行匹配: {' '.join(parts)}"
            first = mask_text(run.matches[0].text, self._masks)[:120]
            summary += f" | {first}"
            if s.hold:
                memory["hold"] = {"status": int(worst(*statuses)), "until": now + s.hold, "summary": summary}
        else:
            summary = f"无新增匹配（读取 {run.lines} 行）"
            held = ctx.memory.get("hold")
            if s.hold and isinstance(held, Mapping) and float(held.get("until", 0)) > now:
                status = worst(status, Status(int(held["status"])))
                summary = f"{summary}；保持之前的告警: {str(held.get('summary', ''))[:160]}"
                memory["hold"] = dict(held)
        bad = [f["text"] for f in run.findings if f["status"] != "OK"]
        if bad:
            summary = f"{summary}；{bad[0]}" + (f" 等 {len(bad)} 项" if len(bad) > 1 else "")

        metrics = [
            Metric("lines_read", run.lines),
            Metric("bytes_read", run.bytes, "B"),
            Metric("backlog_bytes", run.backlog, "B"),
            Metric("matches", len(run.matches)),
            *(Metric(f"matches.{name}", n) for name, n in zip(self._names, run.counts, strict=True)),
        ]
        excerpt = [
            {
                "file": m.path,
                "pattern": self._names[m.pattern],
                "status": s.patterns[m.pattern].status,
                "line": mask_text(m.text, self._masks)[:_EXCERPT_CHARS],
            }
            for m in run.matches[: s.excerpt_lines]
        ]
        details: dict[str, Any] = {"files": run.files, "excerpt": excerpt, "findings": run.findings}
        if len(run.matches) > len(excerpt):
            details["excerpt_omitted"] = len(run.matches) - len(excerpt)
        return sw.result(status, summary, metrics, details, memory)


# ---------------------------------------------------------------------------- helpers


@dataclass(slots=True)
class _Budget:
    bytes: int
    lines: int

    @classmethod
    def share(cls, s: Settings, run: _Run, files_left: int) -> _Budget:
        """A fair share of what is left, so one busy file cannot starve the others."""
        n = max(files_left, 1)
        left_b = max(s.max_bytes - run.bytes, 0)
        left_l = max(s.max_lines - run.lines, 0)
        return cls(max(left_b // n, min(left_b, 4096)), max(left_l // n, min(left_l, 1)))


@contextmanager
def _maybe_open(fs: FileAccess, path: str) -> Iterator[tuple[OpenFile, _Opened] | None]:
    """The open file with its identity, or None when nothing exists at `path` any more."""
    with ExitStack() as stack:
        try:
            f: OpenFile | None = stack.enter_context(fs.open(path))
        except FileNotFoundError:
            f = None
        yield None if f is None else (f, _open_info(f, path))


def _open_info(f: OpenFile, path: str) -> _Opened:
    info = f.info()
    head = f.read_at(0, min(info.size, HEAD_BYTES)) if info.size else b""
    return _Opened(path, info, head)


def _after_last_newline(f: OpenFile, size: int) -> int:
    """Where the first run starts: after the last complete line (a partial one waits)."""
    if size == 0:
        return 0
    start = max(size - _TAIL_SCAN, 0)
    tail = f.read_at(start, size - start)
    nl = tail.rfind(b"\n")
    return size if nl < 0 else start + nl + 1


def _oserror(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__
