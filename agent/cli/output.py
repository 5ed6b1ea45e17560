"""What every command group prints with: tables, JSON, times in the site's zone, who acted.

One place so the commands agree: a JSON instant is always ISO 8601 in the site's zone with its
offset (`2026-12-02T14:03:00+08:00`), a table shows the same instant as `2026-12-02 14:03:00+08:00`,
durations stay numbers named by their unit (`_ms`, `_s`). Stored times are UTC epoch milliseconds
(agent.clock.timeutil); only this module turns them into text for people and scripts.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    from pydantic import ValidationError

    from agent.config.schema import Config
    from agent.store.db import Store
    from agent.store.rows import Row
    from probes.base import CheckResult

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

INSTANT_KEYS = {
    "start_ms": "start_at",
    "end_ms": "end_at",
    "exhaust_ms": "exhaust_at",
    "generated_ms": "generated_at",
    "computed_at_ms": "computed_at",
    "sealed_at_ms": "sealed_at",
}
"""Keys of epoch-ms instants that do not end in `_ts` (`_ms` alone also names durations)."""


# ------------------------------------------------------------------------- time


def now_ms() -> int:
    return int(datetime.now(UTC).timestamp() * 1000)


def at_ms(text: str | None, tz: tzinfo) -> int:
    """`--at 'YYYY-MM-DD HH:MM'` (site time; an explicit offset is honoured) -> UTC ms; now if absent."""
    if not text:
        return now_ms()
    local = datetime.fromisoformat(text.strip().replace(" ", "T"))
    if local.tzinfo is None:
        local = local.replace(tzinfo=tz)
    return int(local.timestamp() * 1000)


def _local(ms: int, tz: tzinfo) -> datetime:
    # Integer arithmetic: ms / 1000 as a float can land one millisecond off.
    return (_EPOCH + timedelta(milliseconds=ms)).astimezone(tz)


def iso(ms: int | None, tz: tzinfo) -> str | None:
    """An instant for JSON: ISO 8601 with the site's offset; milliseconds only when there are any."""
    if ms is None:
        return None
    return _local(ms, tz).isoformat(timespec="milliseconds" if ms % 1000 else "seconds")


def iso_dt(dt: datetime | None, tz: tzinfo) -> str | None:
    """A datetime for JSON; a naive one is site-local wall time (how the ledgers parse input)."""
    if dt is None:
        return None
    local = dt.replace(tzinfo=tz) if dt.tzinfo is None else dt.astimezone(tz)
    return local.isoformat(timespec="milliseconds" if local.microsecond else "seconds")


def fmt_time(ms: int | None, tz: tzinfo, empty: str = "—") -> str:
    """An instant for a table: `2026-12-02 14:03:00+08:00` (the offset says which clock)."""
    if ms is None:
        return empty
    return _local(ms, tz).isoformat(sep=" ", timespec="seconds")


def with_iso_times(obj: Any, tz: tzinfo) -> Any:
    """A JSON-ready structure with its instants as ISO 8601: every `*_ts` key (epoch ms) becomes
    `*_at`, and so do the keys of INSTANT_KEYS; everything else is returned as it was."""
    if isinstance(obj, Mapping):
        out: dict[str, Any] = {}
        for key, value in obj.items():
            new = INSTANT_KEYS.get(key) or (f"{key[:-3]}_at" if key.endswith("_ts") else None)
            if new is not None and (value is None or isinstance(value, int)) and not isinstance(value, bool):
                out[new] = iso(value, tz)
            else:
                out[key] = with_iso_times(value, tz)
        return out
    if isinstance(obj, list | tuple):
        return [with_iso_times(v, tz) for v in obj]
    return obj


# ------------------------------------------------------------------------- printing


def print_json(obj: Any) -> None:
    print(json.dumps(obj, ensure_ascii=False, indent=2, default=str))


def print_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Columns aligned for Chinese text too (wide characters count two)."""
    from unicodedata import east_asian_width

    def width(text: str) -> int:
        return sum(2 if east_asian_width(ch) in "WF" else 1 for ch in text)

    def clip(text: str, limit: int) -> str:
        text = text.replace("\n", " ")
        if width(text) <= limit:
            return text
        out, w = "", 0
        for ch in text:
            cw = width(ch)
            if w + cw > limit - 1:
                break
            out += ch
            w += cw
        return out + "…"

    # Every column but the last is clipped to 40 columns; the last one (a summary) to 120.
    limits = [40] * (len(header) - 1) + [120]
    cells = [[clip(str(c), limits[i]) for i, c in enumerate(r)] for r in rows]
    widths = [max([width(h)] + [width(r[i]) for r in cells]) for i, h in enumerate(header)]
    for r in [list(header), *cells]:
        print("  ".join(c + " " * (widths[i] - width(c)) for i, c in enumerate(r)).rstrip())


def print_validation_errors(exc: ValidationError, what: str) -> None:
    """A CLI record that fails validation: one line per problem, with its field, no traceback."""
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or what
        print(f"sentinel: {loc}: {err['msg'].removeprefix('Value error, ')}", file=sys.stderr)


def validation_problems(exc: ValidationError, what: str) -> list[dict[str, str]]:
    """The same problems for --json."""
    return [
        {
            "field": ".".join(str(p) for p in err["loc"]) or what,
            "message": err["msg"].removeprefix("Value error, "),
        }
        for err in exc.errors()
    ]


def print_change_log(entries: Sequence[Row], when: Callable[[int], str]) -> None:
    """A ledger's append-only change log (agent.store.windows.window_log / exclusion_log)."""
    print("\nchange log:")
    for e in entries:
        print(f"  {when(e['ts'])}  {e['actor']}  {e['action']}  {e['name']}")


def result_json(name: str, r: CheckResult | None, tz: tzinfo) -> dict[str, Any]:
    """One check result as `sentinel check --json` and `sentinel inspect --json` print it."""
    if r is None:
        return {"check": name, "status": "UNKNOWN", "summary": "no result"}
    return {
        "check": name,
        "status": r.status.name,
        "summary": r.summary,
        "started_at": iso_dt(r.started_at, tz),
        "duration_s": r.duration_s,
        "metrics": [{"name": m.name, "value": m.value, "unit": m.unit} for m in r.metrics],
        "details": dict(r.details),
    }


# ------------------------------------------------------------------------- people and the store


def actor(args: argparse.Namespace) -> str:
    """Who acts: --by when given, else the login name (the ledgers record it)."""
    return getattr(args, "by", None) or getpass.getuser()


def writer(config: Config) -> Store:
    """A writable store for the commands that change something, with the evidence key: what
    it writes is sealed in the same transaction, whether an agent runs or not. The first writer
    of a new store creates the key (`<store>.key`); `KeyFileError` when it cannot be used."""
    from agent.store.db import Store
    from agent.store.evidence import evidence_key

    return Store(config.storage.path, evidence_key=evidence_key(config.storage, create=True))


def key_text(key_id: str | None) -> str:
    """The evidence key as people see it: its fingerprint (never the key), or why there is none."""
    if key_id:
        return key_id
    return "未使用密钥（旧存储）" if key_id == "" else "尚未封存"


def evidence_stamp(store: Store) -> dict[str, str | None]:
    """What a figure was computed from: the evidence chain head and the fingerprint of the key
    that sealed it ("" a legacy store sealed without a key; None nothing sealed yet)."""
    from agent.store import evidence

    head = evidence.head(store.db)
    return {"head": None if head is None else head.digest_hex, "key_id": evidence.stored_key_id(store.db)}


def period_ms(
    text: str | None, tz: ZoneInfo, config: Config | None = None, at: int | None = None
) -> tuple[int | None, int | None]:
    """A period (see agent.clock.periods) in the site's zone -> UTC ms; (None, None) when not given.
    With `config`, the service-period forms too (`service` = the one containing `at`, default now)."""
    if not text:
        return None, None
    from agent.clock.periods import parse_period, resolve_period

    if config is None:
        p = parse_period(text, tz)
    else:
        p = resolve_period(text, tz, config.contract, now_ms() if at is None else at)
    return p.start_ms, p.end_ms
