"""Maintenance windows: when checks are silenced and their time is excluded from availability.

Pure schedule logic: no I/O, no store, no pydantic. `WindowSpec` (agent.config.windows) is
the validated description (loaded from the store's ledger, where the daemon mirrors the
configuration's windows and `sentinel maintenance add` records the others);
`MaintenanceSchedule` answers "is this check in maintenance at t?" cheaply enough to be asked
for every stored result (alerts and faults are muted then). Which time is *excluded* from
availability is `agent.windows.excluded` (it needs both parties' approval; muting needs one).

Time rules (they are what the acceptance committee is shown, so they are stated once here):

- Recurring windows are defined in the site's local wall-clock time; their duration is real
  elapsed time (a 3 h window across a DST change still lasts 3 h).
- A window starts at the first instant the local clock shows its start time *or later*:
  * a start inside the spring-forward gap (Europe/Berlin, last Sunday of March, 02:00-03:00
    does not exist) starts when the clock jumps, at 03:00 local time;
  * a start inside the repeated autumn hour (02:00-03:00 happens twice) starts on the first
    pass, once — never twice in one night.
  The same rule applies to one-off windows written as local times, and to cron windows
  (occurrences are enumerated on the wall clock and then placed on the time line by this rule,
  not by APScheduler's own DST handling, which fires "30 2 * * *" twice on the autumn night).
  Asia/Shanghai has no DST, so none of this changes anything there.
- `monthly.day` beyond a month's length (31 in April, 30 in February) skips that month; use
  `day: last` for "the last day of every month".
- `valid_from` / `valid_until` are inclusive local dates and select occurrences by the local
  date they *start* on; an occurrence starting on `valid_until` keeps its full duration.
- Cron day-of-week numbers follow crontab (0 or 7 = Sunday, 1-5 = Monday to Friday). APScheduler
  3 numbers weekdays from Monday = 0, so the field is translated to names before it is parsed.
  A cron that restricts both day-of-month and day-of-week is refused: crontab ORs the two,
  APScheduler ANDs them, and either reading excludes time the other would not.
- A window never reaches back before it was recorded: each spec of a schedule may carry a
  `not_before` instant (when it was recorded and first approved); occurrences are clipped to
  start there, and earlier ones do not exist for the schedule.
- Where windows overlap, each instant belongs to one window: the one that started first (then
  the one ending last, then the one listed first). `active()`, `covering()` and
  `next_boundary()` all follow that one rule, so they never disagree.
"""

from __future__ import annotations

import calendar
import heapq
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from agent.clock.timeutil import to_ms
from agent.config.windows import WindowSpec, compile_cron

if TYPE_CHECKING:
    from apscheduler.triggers.cron import CronTrigger

MAX_OCCURRENCES = 100_000
"""Refuse to enumerate more occurrences than this in one call (a runaway cron or range)."""

_DAY_MS = 86_400_000
_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# Horizons searched by next_boundary(); the last one bounds the search for a window that may
# never come (a one-off long past, a valid_until already reached).
_BOUNDARY_HORIZONS_MS = (_DAY_MS, 32 * _DAY_MS, 400 * _DAY_MS, 3700 * _DAY_MS)


class TooManyOccurrences(ValueError):
    """A call would enumerate more than MAX_OCCURRENCES windows."""


def _hhmm_time(v: str) -> dtime:
    h, m = v.split(":")
    return dtime(int(h), int(m))


def window_from_json(text: str) -> WindowSpec:
    """A window from the JSON the ledger keeps (written by `model_dump_json` of a validated
    WindowSpec): validated again, so the store cannot hand the schedule a malformed window.

    Windows recorded before approvals had two parties carry one `approved_by` name; it is
    dropped here (the ledger's log keeps it): such a window counts only once both parties
    approve it with `sentinel maintenance approve`."""
    data = json.loads(text)
    if isinstance(data, dict):
        data.pop("approved_by", None)
    return WindowSpec.model_validate_json(json.dumps(data, ensure_ascii=False))


# --------------------------------------------------------------------------------------
# Occurrences


@dataclass(frozen=True, slots=True)
class Window:
    """One occurrence of a window on the time line: [start_ms, end_ms) in UTC epoch ms."""

    name: str
    start_ms: int
    end_ms: int
    systems: tuple[str, ...]
    checks: tuple[str, ...]
    reason: str
    ticket: str | None


def _local_to_ms(wall: datetime, tz: ZoneInfo) -> int:
    """The first instant the local clock shows `wall` or later, in UTC ms (see module doc)."""
    ms = wall.microsecond // 1000
    wall = wall.replace(microsecond=0)
    first_s = int(wall.replace(tzinfo=tz, fold=0).timestamp())
    if datetime.fromtimestamp(first_s, tz).replace(tzinfo=None) == wall:
        # Exists (fold=0 is the first pass when the hour repeats).
        return first_s * 1000 + ms
    # In a spring-forward gap: the two folds bracket the jump; find the second it happens.
    other_s = int(wall.replace(tzinfo=tz, fold=1).timestamp())
    lo, hi = min(first_s, other_s), max(first_s, other_s)
    while lo < hi:
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, tz).replace(tzinfo=None) >= wall:
            hi = mid
        else:
            lo = mid + 1
    return lo * 1000


def _local_date(ms: int, tz: ZoneInfo) -> date:
    return datetime.fromtimestamp(ms / 1000, tz).date()


class _Compiled:
    """A spec with everything parsed once, able to list its occurrences in a range."""

    __slots__ = ("at", "dur_ms", "monthly_day", "not_before", "spec", "trigger", "tz", "weekdays")

    def __init__(self, spec: WindowSpec, tz: ZoneInfo, not_before: int | None = None) -> None:
        self.spec = spec
        self.tz = tz
        self.not_before = not_before
        self.trigger: CronTrigger | None = None
        self.weekdays: frozenset[int] = frozenset()
        self.monthly_day: int | str | None = None
        self.at = dtime(0, 0)
        if spec.weekly is not None:
            self.weekdays = frozenset(_WEEKDAYS.index(d) for d in spec.weekly.days)
            self.at = _hhmm_time(spec.weekly.at)
            seconds = spec.weekly.duration
        elif spec.monthly is not None:
            self.monthly_day = spec.monthly.day
            self.at = _hhmm_time(spec.monthly.at)
            seconds = spec.monthly.duration
        elif spec.cron is not None:
            self.trigger = compile_cron(spec.cron)
            seconds = spec.duration or 0.0
        else:
            seconds = 0.0
        self.dur_ms = int(round(seconds * 1000))

    def window(self, start_ms: int, end_ms: int) -> Window:
        s = self.spec
        return Window(s.name, start_ms, end_ms, tuple(s.systems), tuple(s.checks), s.reason, s.ticket)

    def occurrences(self, start_ms: int, end_ms: int) -> list[Window]:
        nb = self.not_before
        if nb is None:
            return self._occurrences(start_ms, end_ms)
        # Clipped to begin at `not_before`: nothing of the window exists before it.
        out = []
        for w in self._occurrences(max(start_ms, nb), end_ms):
            clipped = self.window(nb, w.end_ms) if w.start_ms < nb else w
            if clipped.start_ms < clipped.end_ms:
                out.append(clipped)
        return out

    def _occurrences(self, start_ms: int, end_ms: int) -> list[Window]:
        if end_ms <= start_ms:
            return []
        spec = self.spec
        if not spec.recurring:
            assert spec.start is not None and spec.end is not None
            if spec.start.tzinfo is None:
                ws, we = _local_to_ms(spec.start, self.tz), _local_to_ms(spec.end, self.tz)
            else:
                ws, we = to_ms(spec.start), to_ms(spec.end)
            # Both ends may fall in one DST gap and collapse to nothing: no window then.
            return [self.window(ws, we)] if ws < end_ms and we > start_ms and we > ws else []

        # Look back by the duration (an occurrence that began earlier may still run), and a day
        # either side so wall-clock versus UTC offsets can never drop a candidate.
        d_lo = _local_date(start_ms - self.dur_ms, self.tz) - timedelta(days=1)
        d_hi = _local_date(end_ms, self.tz) + timedelta(days=1)
        if spec.valid_from is not None:
            d_lo = max(d_lo, spec.valid_from)
        if spec.valid_until is not None:
            d_hi = min(d_hi, spec.valid_until)
        if d_lo > d_hi:
            return []
        out: list[Window] = []
        for wall in self._walls(d_lo, d_hi):
            ws = _local_to_ms(wall, self.tz)
            we = ws + self.dur_ms
            if ws < end_ms and we > start_ms:
                out.append(self.window(ws, we))
        # Wall times come in order and _local_to_ms never reorders them (a start in a DST gap
        # moves to the jump, never past a later wall time), so this is already time order.
        return out

    def _walls(self, d_lo: date, d_hi: date) -> Iterable[datetime]:
        """Naive local start times whose date lies in [d_lo, d_hi], in order, bounded."""
        count = 0

        def bump() -> None:
            nonlocal count
            count += 1
            if count > MAX_OCCURRENCES:
                raise TooManyOccurrences(
                    f"window {self.spec.name!r}: more than {MAX_OCCURRENCES} occurrences between "
                    f"{d_lo} and {d_hi}; ask for a shorter range"
                )

        if self.trigger is not None:
            stop = datetime.combine(d_hi + timedelta(days=1), dtime(0), UTC)
            nxt = self.trigger.get_next_fire_time(None, datetime.combine(d_lo, dtime(0), UTC))
            while nxt is not None and nxt < stop:
                bump()
                yield nxt.replace(tzinfo=None)
                nxt = self.trigger.get_next_fire_time(nxt, nxt)
            return
        if self.monthly_day is not None:
            y, m = d_lo.year, d_lo.month
            while (y, m) <= (d_hi.year, d_hi.month):
                last = calendar.monthrange(y, m)[1]
                day = last if self.monthly_day == "last" else int(self.monthly_day)
                # A day the month does not have (31 in April) skips the month: documented.
                if day <= last and d_lo <= date(y, m, day) <= d_hi:
                    bump()
                    yield datetime.combine(date(y, m, day), self.at)
                y, m = (y + 1, 1) if m == 12 else (y, m + 1)
            return
        d = d_lo
        while d <= d_hi:
            if d.weekday() in self.weekdays:
                bump()
                yield datetime.combine(d, self.at)
            d += timedelta(days=1)


def occurrences(
    spec: WindowSpec, tz: ZoneInfo, start_ms: int, end_ms: int, not_before: int | None = None
) -> list[Window]:
    """Every occurrence of `spec` overlapping [start_ms, end_ms), in time order.

    Includes an occurrence that began before `start_ms` and is still running. With
    `not_before`, occurrences are clipped to start there (earlier ones are dropped). Raises
    TooManyOccurrences beyond MAX_OCCURRENCES.
    """
    return _Compiled(spec, tz, not_before).occurrences(start_ms, end_ms)


# --------------------------------------------------------------------------------------
# Schedule


def _partition(
    windows: Sequence[tuple[int, Window]], start_ms: int, end_ms: int
) -> list[tuple[int, int, Window]]:
    """Split [start, end) among (order, window) pairs: each instant goes to the window that
    started first (then ends last, then lowest order); pieces of one window are merged."""
    clipped = ((max(w.start_ms, start_ms), min(w.end_ms, end_ms), order, w) for order, w in windows)
    by_start = sorted((it for it in clipped if it[0] < it[1]), key=lambda x: x[0])
    if not by_start:
        return []
    points = sorted({p for it in by_start for p in (it[0], it[1])})
    heap: list[tuple[int, int, int, int, int, Window]] = []
    out: list[tuple[int, int, Window]] = []
    i = 0
    for a, b in zip(points, points[1:], strict=False):
        while i < len(by_start) and by_start[i][0] <= a:
            cs, ce, order, w = by_start[i]
            heapq.heappush(heap, (w.start_ms, -w.end_ms, order, cs, ce, w))
            i += 1
        while heap and heap[0][4] <= a:
            heapq.heappop(heap)
        # Finished windows are dropped only from the top: one buried deeper ranks below the
        # running top, so it can never be picked by mistake.
        if not heap:
            continue
        w = heap[0][5]
        if out and out[-1][2] is w and out[-1][1] == a:
            out[-1] = (out[-1][0], b, w)
        else:
            out.append((a, b, w))
    return out


class MaintenanceSchedule:
    """All windows of a site, queried per check.

    A window naming a system covers every check of that system; checks named directly are
    covered wherever they belong. `not_before[i]` (when given) is the instant spec i starts to
    count: its occurrences are clipped there (agent.windows.ledger.muting_schedule passes when
    each window was recorded with its first approval). Thread-safe for concurrent readers:
    caches are only read, replaced or cleared, so a race costs a recomputation, never a wrong
    answer.
    """

    _CACHED_BUCKETS_PER_SPEC = 4
    _MAX_KEYS = 8192

    def __init__(
        self, specs: Iterable[WindowSpec], tz: ZoneInfo, not_before: Sequence[int | None] = ()
    ) -> None:
        self.tz = tz
        self.specs: tuple[WindowSpec, ...] = tuple(specs)
        if len(not_before) > len(self.specs):
            raise ValueError("more not_before instants than windows")
        starts = (*not_before, *([None] * (len(self.specs) - len(not_before))))
        self._compiled = tuple(_Compiled(s, tz, nb) for s, nb in zip(self.specs, starts, strict=True))
        self._relevant: dict[tuple[str | None, str], tuple[int, ...]] = {}
        # (spec index, UTC day number) -> occurrences overlapping that day
        self._day: dict[tuple[int, int], tuple[Window, ...]] = {}
        # (system, check) -> (UTC day number, that day's windows for the key in attribution order)
        self._active: dict[tuple[str | None, str], tuple[int, tuple[Window, ...]]] = {}
        # (system, check) -> (after_ms it was computed from, next boundary)
        self._boundary: dict[tuple[str | None, str], tuple[int, int]] = {}
        # (spec index, start, end) -> occurrences: a report asks every check for the same period
        self._range: dict[tuple[int, int, int], tuple[Window, ...]] = {}

    def _specs_for(self, system: str | None, check: str) -> tuple[int, ...]:
        key = (system, check)
        found = self._relevant.get(key)
        if found is None:
            found = tuple(
                i
                for i, s in enumerate(self.specs)
                if check in s.checks or (system is not None and system in s.systems)
            )
            if len(self._relevant) >= self._MAX_KEYS:
                self._relevant.clear()
            self._relevant[key] = found
        return found

    def _day_windows(self, i: int, day: int) -> tuple[Window, ...]:
        got = self._day.get((i, day))
        if got is None:
            got = tuple(self._compiled[i].occurrences(day * _DAY_MS, (day + 1) * _DAY_MS))
            if len(self._day) >= self._CACHED_BUCKETS_PER_SPEC * max(1, len(self.specs)):
                self._day.clear()
            self._day[(i, day)] = got
        return got

    def _in_range(self, i: int, start_ms: int, end_ms: int) -> tuple[Window, ...]:
        got = self._range.get((i, start_ms, end_ms))
        if got is None:
            got = tuple(self._compiled[i].occurrences(start_ms, end_ms))
            if len(self._range) >= self._CACHED_BUCKETS_PER_SPEC * max(1, len(self.specs)):
                self._range.clear()
            self._range[(i, start_ms, end_ms)] = got
        return got

    def active(self, at_ms: int, system: str | None, check: str) -> Window | None:
        """The window covering `check` at `at_ms` (start inclusive, end exclusive), or None."""
        key = (system, check)
        day = at_ms // _DAY_MS
        entry = self._active.get(key)
        if entry is None or entry[0] != day:
            pairs = [(i, w) for i in self._specs_for(system, check) for w in self._day_windows(i, day)]
            pairs.sort(key=lambda p: (p[1].start_ms, -p[1].end_ms, p[0]))
            entry = (day, tuple(w for _, w in pairs))
            if len(self._active) >= self._MAX_KEYS:
                self._active.clear()
            self._active[key] = entry
        for w in entry[1]:
            if w.start_ms <= at_ms < w.end_ms:
                return w
        return None

    def windows(
        self, start_ms: int, end_ms: int, system: str | None = None, check: str | None = None
    ) -> list[Window]:
        """Every occurrence overlapping [start, end), unclipped and unmerged (for listings and
        for reports that justify each exclusion). Without a check, every window of the site."""
        idx = range(len(self.specs)) if check is None else self._specs_for(system, check)
        out = [w for i in idx for w in self._in_range(i, start_ms, end_ms)]
        out.sort(key=lambda w: (w.start_ms, -w.end_ms))
        return out

    def covering(
        self, start_ms: int, end_ms: int, system: str | None, check: str
    ) -> list[tuple[int, int, Window]]:
        """Maintenance time of `check` within [start, end) as sorted, non-overlapping
        (span_start, span_end, window) pieces, clipped to the range.

        Overlapping windows are merged so no instant counts twice; each piece names the window
        `active()` returns inside it. The sum of the pieces is the time to exclude.
        """
        if end_ms <= start_ms:
            return []
        pairs = [(i, w) for i in self._specs_for(system, check) for w in self._in_range(i, start_ms, end_ms)]
        return _partition(pairs, start_ms, end_ms)

    def next_boundary(self, after_ms: int, system: str | None, check: str) -> int | None:
        """The first instant > after_ms at which `active()` for this check changes (a window
        starts, ends, or hands over to another), or None if none within about ten years."""
        if not self._specs_for(system, check):
            return None
        key = (system, check)
        cached = self._boundary.get(key)
        # Nothing changes between the instant it was computed from and the boundary found.
        if cached is not None and cached[0] <= after_ms < cached[1]:
            return cached[1]
        for horizon in _BOUNDARY_HORIZONS_MS:
            stop = after_ms + horizon
            for s, e, _ in self.covering(after_ms, stop, system, check):
                found = s if s > after_ms else (e if e < stop else None)
                if found is not None:
                    if len(self._boundary) >= self._MAX_KEYS:
                        self._boundary.clear()
                    self._boundary[key] = (after_ms, found)
                    return found
        return None
