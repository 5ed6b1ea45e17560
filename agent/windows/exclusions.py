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

from agent.store import windows as stored
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


def unrecorded(rec: ForceMajeure, tz: ZoneInfo, now_ms: int) -> StoredExclusion:
    """A record of the configuration the daemon has not mirrored into the ledger yet (it does
    when it starts): it counts already, marked as not yet recorded."""
    start_ms, end_ms = to_ms(rec.start, tz), to_ms(rec.end, tz)
    return StoredExclusion(
        id=0,
        record=Record(
            name=rec.name,
            start=datetime.fromtimestamp(start_ms / 1000, UTC),
            end=datetime.fromtimestamp(end_ms / 1000, UTC),
            systems=tuple(rec.systems),
            reason=rec.reason,
            approved_by=rec.approved_by,
        ),
        start_ms=start_ms,
        end_ms=end_ms,
        source="config",
        created_ts=now_ms,
        created_by="config (not yet recorded)",
        removed_ts=None,
        removed_by=None,
        removed_reason=None,
    )


def _insert(store: Store, rec: ForceMajeure, tz: ZoneInfo, by: str, now_ms: int, source: str) -> int:
    """Record and log one exclusion; inside the caller's transaction."""
    if stored.active_exclusion(store.db, rec.name) is not None:
        raise ExclusionError(f"an exclusion named {rec.name!r} exists already")
    return stored.add_exclusion(
        store.db,
        name=rec.name,
        kind="force_majeure",
        start_ms=to_ms(rec.start, tz),
        end_ms=to_ms(rec.end, tz),
        systems=rec.systems,
        reason=rec.reason,
        approved_by=rec.approved_by,
        start_local=rec.start.isoformat(),
        end_local=rec.end.isoformat(),
        source=source,
        ts=now_ms,
        by=by,
    )


def add(store: Store, rec: ForceMajeure, tz: ZoneInfo, by: str, now_ms: int) -> int:
    with store.tx():
        return _insert(store, rec, tz, by, now_ms, "cli")


def remove(store: Store, name: str, by: str, why: str, now_ms: int) -> None:
    if not why.strip():
        raise ExclusionError("say why the exclusion is withdrawn (--reason): it stays in the ledger")
    with store.tx() as db:
        row = stored.active_exclusion(db, name)
        if row is None:
            raise ExclusionError(f"no active exclusion named {name!r}")
        if row["source"] == "config":
            raise ExclusionError(f"{name!r} comes from the configuration file: remove it there")
        logged = json.dumps({"reason": why}, ensure_ascii=False)
        stored.remove_exclusion(db, row["id"], name, now_ms, by, why, logged)


def list_all(store: Store, include_removed: bool = False) -> list[StoredExclusion]:
    out = []
    for r in stored.exclusions(store.db, include_removed):
        rec = Record(
            name=r["name"],
            start=datetime.fromtimestamp(r["start_ts"] / 1000, UTC),
            end=datetime.fromtimestamp(r["end_ts"] / 1000, UTC),
            systems=tuple(json.loads(r["systems"])),
            reason=r["reason"],
            approved_by=r["approved_by"],
        )
        out.append(
            StoredExclusion(
                id=r["id"],
                record=rec,
                start_ms=r["start_ts"],
                end_ms=r["end_ts"],
                source=r["source"],
                created_ts=r["created_ts"],
                created_by=r["created_by"],
                removed_ts=r["removed_ts"],
                removed_by=r["removed_by"],
                removed_reason=r["removed_reason"],
            )
        )
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
                stored.remove_exclusion(
                    db,
                    old.id,
                    name,
                    now_ms,
                    "config",
                    "changed or removed in the configuration",
                    old.record.model_dump_json(),
                )
        for name, rec in wanted.items():
            kept = current.get(name)
            if kept is not None and same(kept, rec):
                continue
            _insert(store, rec, tz, "config", now_ms, "config")
