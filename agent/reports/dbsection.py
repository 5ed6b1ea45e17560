"""Databases and backups as the probes describe them in a result's details.

Recognised by shape, not by probe kind, so every engine (PostgreSQL, MySQL, Oracle, SQL
Server) and the backup-file probe report the same way:

- DB probes: {"version", "findings": [{status, text, category, obj, item}],
  "facts": {item: {"space": [{kind, name, size_bytes, limit_bytes, used_pct,
  growth_bytes_per_day, days_to_full}], "backups": [{database, type, finished_at, age_s}],
  "backups_expected": [{database, type, schedule, due, met, last}]}}}
- backup_files: {"sets": {name: {schedule, expected: {due, met}, copies, newest: {file,
  mtime, size_bytes}}}, "findings": [...], "backups_expected": [{set, schedule, due, met}]}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from functools import lru_cache
from typing import Any

from agent.clock.timeutil import to_ms


def _iso_ms(text: Any) -> int | None:
    if not isinstance(text, str) or not text:
        return None
    return _parse_iso(text)


@lru_cache(maxsize=4096)
def _parse_iso(text: str) -> int | None:
    """Cached: a month of judgements names the same few dozen due instants over and over."""
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        return None
    return to_ms(dt) if dt.tzinfo is not None else None


def is_database(details: Mapping[str, Any] | None) -> bool:
    return bool(details) and isinstance(details.get("facts"), dict)  # type: ignore[union-attr]


def is_backup_files(details: Mapping[str, Any] | None) -> bool:
    return bool(details) and isinstance(details.get("sets"), dict)  # type: ignore[union-attr]


def _findings(details: Mapping[str, Any]) -> list[dict[str, Any]]:
    out = []
    for f in details.get("findings") or ():
        if isinstance(f, Mapping) and f.get("status") in ("WARN", "CRIT", "UNKNOWN"):
            out.append(
                {
                    "status": f["status"],
                    "text": str(f.get("text", "")),
                    "category": f.get("category"),
                    "obj": f.get("obj"),
                    "item": f.get("item"),
                }
            )
    return out


def database_entry(
    check: Any, ts: int, status: str, summary: str, details: Mapping[str, Any]
) -> dict[str, Any]:
    space: list[dict[str, Any]] = []
    backups: list[dict[str, Any]] = []
    for item, facts in (details.get("facts") or {}).items():
        if not isinstance(facts, Mapping):
            continue
        for s in facts.get("space") or ():
            space.append(
                {
                    "item": item,
                    **{
                        k: s.get(k)
                        for k in (
                            "kind",
                            "name",
                            "size_bytes",
                            "limit_bytes",
                            "used_pct",
                            "growth_bytes_per_day",
                            "days_to_full",
                        )
                    },
                }
            )
        expected = {(e.get("database"), e.get("type")): e for e in facts.get("backups_expected") or ()}
        for b in facts.get("backups") or ():
            e = expected.pop((b.get("database"), b.get("type")), None)
            backups.append(
                _backup_row(
                    b.get("database"), b.get("type"), _iso_ms(b.get("finished_at")), b.get("age_s"), e
                )
            )
        for (db, kind), e in expected.items():
            backups.append(_backup_row(db, kind, _iso_ms(e.get("last")), None, e))
    return {
        "check": check.name,
        "kind": check.kind,
        "system": check.system,
        "status": status,
        "summary": summary,
        "sample_ms": ts,
        "version": details.get("version"),
        "space": space,
        "backups": backups,
        "findings": _findings(details),
    }


def _backup_row(
    db: Any, kind: Any, last_ms: int | None, age_s: Any, e: Mapping[str, Any] | None
) -> dict[str, Any]:
    return {
        "database": db,
        "type": kind,
        "last_ms": last_ms,
        "age_s": age_s,
        "schedule": None if e is None else e.get("schedule"),
        "due_ms": None if e is None else _iso_ms(e.get("due")),
        "met": None if e is None else e.get("met"),
    }


def backup_set_entries(check: Any, ts: int, status: str, details: Mapping[str, Any]) -> list[dict[str, Any]]:
    out = []
    for name, s in (details.get("sets") or {}).items():
        if not isinstance(s, Mapping):
            continue
        exp = s.get("expected") or {}
        newest = s.get("newest") or {}
        out.append(
            {
                "check": check.name,
                "system": check.system,
                "status": status,
                "sample_ms": ts,
                "set": name,
                "schedule": s.get("schedule") or exp.get("schedule"),
                "due_ms": _iso_ms(exp.get("due")),
                "met": exp.get("met"),
                "newest_file": newest.get("file"),
                "newest_ms": _iso_ms(newest.get("mtime")),
                "size_bytes": newest.get("size_bytes"),
                "copies": s.get("copies"),
            }
        )
    return out


def set_findings(details: Mapping[str, Any]) -> list[dict[str, Any]]:
    return _findings(details)


def expected_slots(
    check: str, ts: int, details: Mapping[str, Any] | None
) -> Iterable[tuple[tuple[str, ...], int, bool]]:
    """(slot key, due ms, met) for each backup expectation judged by this result.

    Only judgements made at or after the slot's due instant count: before it, "met" says
    nothing about that slot yet.
    """
    if not details:
        return
    lists: list[tuple[str, list[Any]]] = []
    if isinstance(details.get("backups_expected"), list):
        lists.append(("", details["backups_expected"]))
    facts = details.get("facts")
    if isinstance(facts, Mapping):
        lists += [
            (item, f.get("backups_expected") or []) for item, f in facts.items() if isinstance(f, Mapping)
        ]
    for item, rows in lists:
        for e in rows:
            if not isinstance(e, Mapping):
                continue
            due = _iso_ms(e.get("due"))
            if due is None or due > ts or e.get("met") is None:
                continue
            target = str(e.get("database") or e.get("set") or "")
            key = (check, item, target, str(e.get("type") or ""), str(e.get("schedule") or ""))
            yield key, due, bool(e.get("met"))
