"""The force-majeure ledger: agreed periods excluded from availability, each with its reason
and both parties' approval, recorded with who entered it and when.

Records come from the configuration (`availability.force_majeure`) or from
`sentinel exclusions add`. A record is never edited or deleted: removal marks it, and every
change is appended to `exclusions_log` (append-only by trigger), so the committee can see
what was excluded, by whom, and whether that changed after the fact.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from agent.store.db import Store

if TYPE_CHECKING:
    from agent.config.schema import ForceMajeure


class ExclusionError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Record:
    """A force-majeure record as the ledger holds it (instants in UTC)."""

    name: str
    start: datetime
    end: datetime
    systems: tuple[str, ...]
    reason: str
    approved_by: str

    def model_dump_json(self) -> str:
        """The JSON the ledger logs when a record is withdrawn (the form pydantic wrote before)."""

        def iso(dt: datetime) -> str:
            return dt.isoformat().replace("+00:00", "Z")

        return json.dumps(
            {
                "name": self.name,
                "start": iso(self.start),
                "end": iso(self.end),
                "systems": list(self.systems),
                "reason": self.reason,
                "approved_by": self.approved_by,
            },
            ensure_ascii=False,
            separators=(",", ":"),
        )


@dataclass(frozen=True, slots=True)
class StoredExclusion:
    id: int
    record: Record
    start_ms: int
    end_ms: int
    source: str
    created_ts: int
    created_by: str
    removed_ts: int | None
    removed_by: str | None
    removed_reason: str | None

    def covers(self, system: str | None) -> bool:
        return not self.record.systems or system in self.record.systems


def to_ms(dt: datetime, tz: ZoneInfo) -> int:
    aware = dt if dt.tzinfo is not None else dt.replace(tzinfo=tz)
    return int(aware.astimezone(UTC).timestamp() * 1000)


def _log(store: Store, ts: int, actor: str, action: str, name: str, record: str) -> None:
    store.db.execute(
        "INSERT INTO exclusions_log(ts, actor, action, name, record) VALUES(?,?,?,?,?)",
        (ts, actor, action, name, record),
    )


def _insert(store: Store, rec: ForceMajeure, tz: ZoneInfo, by: str, now_ms: int, source: str) -> int:
    if store.db.execute(
        "SELECT 1 FROM exclusions WHERE name=? AND removed_ts IS NULL", (rec.name,)
    ).fetchone():
        raise ExclusionError(f"an exclusion named {rec.name!r} exists already")
    start_ms, end_ms = to_ms(rec.start, tz), to_ms(rec.end, tz)
    # The log entry carries the exact instants the table holds, so `sentinel verify` can
    # check the table against the chained log without knowing the site's time zone.
    text = json.dumps(
        {
            "name": rec.name,
            "start_ms": start_ms,
            "end_ms": end_ms,
            "systems": list(rec.systems),
            "reason": rec.reason,
            "approved_by": rec.approved_by,
            "start_local": rec.start.isoformat(),
            "end_local": rec.end.isoformat(),
        },
        ensure_ascii=False,
    )
    cur = store.db.execute(
        "INSERT INTO exclusions(name, kind, start_ts, end_ts, systems, reason, approved_by, source, "
        "created_ts, created_by) VALUES(?,?,?,?,?,?,?,?,?,?)",
        (
            rec.name,
            "force_majeure",
            start_ms,
            end_ms,
            json.dumps(list(rec.systems), ensure_ascii=False),
            rec.reason,
            rec.approved_by,
            source,
            now_ms,
            by,
        ),
    )
    _log(store, now_ms, by, "add", rec.name, text)
    return int(cur.lastrowid or 0)


def add(store: Store, rec: ForceMajeure, tz: ZoneInfo, by: str, now_ms: int) -> int:
    with store.tx():
        return _insert(store, rec, tz, by, now_ms, "cli")


def remove(store: Store, name: str, by: str, why: str, now_ms: int) -> None:
    if not why.strip():
        raise ExclusionError("say why the exclusion is withdrawn (--reason): it stays in the ledger")
    with store.tx() as db:
        row = db.execute(
            "SELECT id, source FROM exclusions WHERE name=? AND removed_ts IS NULL", (name,)
        ).fetchone()
        if row is None:
            raise ExclusionError(f"no active exclusion named {name!r}")
        if row[1] == "config":
            raise ExclusionError(f"{name!r} comes from the configuration file: remove it there")
        db.execute(
            "UPDATE exclusions SET removed_ts=?, removed_by=?, removed_reason=? WHERE id=?",
            (now_ms, by, why, row[0]),
        )
        _log(store, now_ms, by, "remove", name, json.dumps({"reason": why}, ensure_ascii=False))


def list_all(store: Store, include_removed: bool = False) -> list[StoredExclusion]:
    where = "" if include_removed else "WHERE removed_ts IS NULL"
    rows = store.db.execute(
        "SELECT id, name, start_ts, end_ts, systems, reason, approved_by, source, created_ts, created_by, "
        f"removed_ts, removed_by, removed_reason FROM exclusions {where} ORDER BY start_ts, id"
    ).fetchall()
    out = []
    for r in rows:
        start = datetime.fromtimestamp(r[2] / 1000, UTC)
        end = datetime.fromtimestamp(r[3] / 1000, UTC)
        rec = Record(r[1], start, end, tuple(json.loads(r[4])), r[5], r[6])
        out.append(StoredExclusion(r[0], rec, r[2], r[3], r[7], r[8], r[9], r[10], r[11], r[12]))
    return out


def sync_config(store: Store, records: tuple[ForceMajeure, ...], tz: ZoneInfo, now_ms: int) -> None:
    """Mirror the configuration's records into the ledger; a changed or dropped one is logged."""
    current = {x.record.name: x for x in list_all(store) if x.source == "config"}
    wanted = {r.name: r for r in records}

    def same(old: StoredExclusion, new: ForceMajeure) -> bool:
        return (
            old.start_ms == to_ms(new.start, tz)
            and old.end_ms == to_ms(new.end, tz)
            and old.record.systems == new.systems
            and old.record.reason == new.reason
            and old.record.approved_by == new.approved_by
        )

    with store.tx() as db:
        for name, old in current.items():
            new = wanted.get(name)
            if new is None or not same(old, new):
                db.execute(
                    "UPDATE exclusions SET removed_ts=?, removed_by='config', "
                    "removed_reason='changed or removed in the configuration' WHERE id=?",
                    (now_ms, old.id),
                )
                _log(store, now_ms, "config", "remove", name, old.record.model_dump_json())
        for name, rec in wanted.items():
            old = current.get(name)
            if old is not None and same(old, rec):
                continue
            _insert(store, rec, tz, "config", now_ms, "config")
