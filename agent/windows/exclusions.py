"""The force-majeure ledger: agreed periods excluded from availability, each with its reason
and the approvals of both parties (甲方 and 乙方), recorded with who entered it and when.

Records come from the configuration (`availability.force_majeure`, mirrored into the ledger
with both approvals when the agent loads the configuration) or from `sentinel exclusions add`
(with the recording party's approval; the other party approves with `sentinel exclusions
approve`). A record is never edited or deleted: removal marks it, and every change is appended
to `exclusions_log` (append-only by trigger), so the committee can see what was excluded, by
whom, and whether that changed after the fact. Only a record both parties approved excludes
time (agent.windows.excluded).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import Field, field_validator, model_validator

from agent.config.base import Model
from agent.config.windows import parse_local_datetime
from agent.store import windows as stored
from agent.store.db import Store
from agent.windows import approvals as ap
from agent.windows.approvals import Approval, ApprovalError

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

    from agent.config.schema import ForceMajeure


class ExclusionError(ValueError):
    pass


class NewRecord(Model):
    """A record as `sentinel exclusions add` takes it: what the configuration's ForceMajeure
    holds, less the approvals (the CLI records them one party at a time)."""

    name: str = Field(min_length=1)
    start: datetime
    end: datetime
    systems: tuple[str, ...] = ()
    reason: str = Field(min_length=1)

    @field_validator("start", "end", mode="before")
    @classmethod
    def _local(cls, v: Any) -> Any:
        return parse_local_datetime(v)

    @field_validator("reason")
    @classmethod
    def _reason(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("say what happened (it is printed in reports)")
        return v.strip()

    @model_validator(mode="after")
    def _order(self) -> NewRecord:
        if (self.start.tzinfo is None) != (self.end.tzinfo is None):
            raise ValueError("write start and end the same way: both in site time, or both with an offset")
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self


@dataclass(frozen=True, slots=True)
class Record:
    """A force-majeure record as the ledger holds it (instants in UTC)."""

    name: str
    start: datetime
    end: datetime
    systems: tuple[str, ...]
    reason: str

    def model_dump_json(self) -> str:
        """The JSON the ledger logs when a record is withdrawn."""

        def iso(dt: datetime) -> str:
            return dt.isoformat().replace("+00:00", "Z")

        return json.dumps(
            {
                "name": self.name,
                "start": iso(self.start),
                "end": iso(self.end),
                "systems": list(self.systems),
                "reason": self.reason,
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
    """When it was recorded (from the configuration: when the agent first loaded it)."""
    created_by: str
    """The OS user who recorded it, or "config"."""
    removed_ts: int | None
    removed_by: str | None
    removed_reason: str | None
    approvals: tuple[Approval, ...] = ()
    """Every approval given so far, oldest first."""
    legacy_approved_by: str = ""
    """The one approver name of a record made before approvals had two parties (shown only)."""

    def covers(self, system: str | None) -> bool:
        return not self.record.systems or system in self.record.systems

    @property
    def effective(self) -> bool:
        """Both parties approved: the record excludes time from availability."""
        return ap.both(self.approvals)

    @property
    def late(self) -> bool:
        """Recorded after the excluded time began (事后补录)."""
        return self.created_ts > self.start_ms


def to_ms(dt: datetime, tz: ZoneInfo) -> int:
    aware = dt if dt.tzinfo is not None else dt.replace(tzinfo=tz)
    return int(aware.astimezone(UTC).timestamp() * 1000)


def _insert(
    store: Store, rec: NewRecord | ForceMajeure, tz: ZoneInfo, by: str, now_ms: int, source: str
) -> int:
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
        # The column predates two-party approvals; they live in the approvals ledger now.
        approved_by="",
        start_local=rec.start.isoformat(),
        end_local=rec.end.isoformat(),
        source=source,
        ts=now_ms,
        by=by,
    )


def add(store: Store, rec: NewRecord, tz: ZoneInfo, party: str, approver: str, user: str, now_ms: int) -> int:
    """Record a force-majeure entry from the CLI with the recording party's approval."""
    with store.tx() as db:
        # Checked before the insert so a refused approval leaves no half-recorded entry.
        ap.check_new((), party, approver, f"exclusion {rec.name!r}")
        rid = _insert(store, rec, tz, user, now_ms, "cli")
        ap.record(db, "exclusions", rid, rec.name, (), party, approver, user, now_ms)
        return rid


def approve(store: Store, name: str, party: str, approver: str, user: str, now_ms: int) -> Approval:
    """The other party's approval of an active record."""
    with store.tx() as db:
        row = stored.active_exclusion(db, name)
        if row is None:
            raise ExclusionError(f"no active exclusion named {name!r}")
        existing = ap.of_record(db, "exclusions", row["id"])
        return ap.record(db, "exclusions", row["id"], name, existing, party, approver, user, now_ms)


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
    approvals = ap.by_record(store.db, "exclusions")
    out = []
    for r in stored.exclusions(store.db, include_removed):
        rec = Record(
            name=r["name"],
            start=datetime.fromtimestamp(r["start_ts"] / 1000, UTC),
            end=datetime.fromtimestamp(r["end_ts"] / 1000, UTC),
            systems=tuple(json.loads(r["systems"])),
            reason=r["reason"],
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
                approvals=approvals.get(r["id"], ()),
                legacy_approved_by=r["approved_by"] or "",
            )
        )
    return out


def sync_config(
    store: Store, records: tuple[ForceMajeure, ...], tz: ZoneInfo, now_ms: int, user: str | None = None
) -> None:
    """Mirror the configuration's records into the ledger with both approvals written in the
    file (as of `now_ms`, recorded by `user`, default the OS user running the agent); a changed
    or dropped one is logged as withdrawn and a changed one recorded anew. An unchanged record
    keeps its first recording time."""
    user = user or ap.os_user()
    current = {x.record.name: x for x in list_all(store) if x.source == "config"}
    wanted = {r.name: r for r in records}

    def same(old: StoredExclusion, new: ForceMajeure) -> bool:
        return (
            old.start_ms == to_ms(new.start, tz)
            and old.end_ms == to_ms(new.end, tz)
            and old.record.systems == new.systems
            and old.record.reason == new.reason
            and {a.party: a.approver for a in old.approvals} == new.approvals.by_party()
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
            rid = _insert(store, rec, tz, "config", now_ms, "config")
            try:
                ap.record_all(db, "exclusions", rid, name, rec.approvals.by_party(), user, now_ms)
            except ApprovalError as exc:
                raise ExclusionError(str(exc)) from None
