"""Maintenance windows added from the CLI: stored with who added them and when, removed only by
marking (the row stays), and every change appended to an append-only log, so a window can
never be silently rewritten after the fact."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from agent.store.db import Store
from agent.windows.maintenance import window_from_json

if TYPE_CHECKING:
    from agent.config.windows import WindowSpec


@dataclass(frozen=True, slots=True)
class StoredWindow:
    id: int
    name: str
    source: str
    spec: WindowSpec
    created_ts: int
    created_by: str
    removed_ts: int | None
    removed_by: str | None


class WindowError(ValueError):
    pass


def _log(store: Store, ts: int, actor: str, action: str, name: str, spec_json: str) -> None:
    store.db.execute(
        "INSERT INTO maintenance_log(ts, actor, action, name, spec) VALUES(?,?,?,?,?)",
        (ts, actor, action, name, spec_json),
    )


def add_window(store: Store, spec: WindowSpec, by: str, now_ms: int, source: str = "cli") -> int:
    text = spec.model_dump_json()
    with store.tx() as db:
        if db.execute(
            "SELECT 1 FROM maintenance WHERE name=? AND removed_ts IS NULL", (spec.name,)
        ).fetchone():
            raise WindowError(f"a maintenance window named {spec.name!r} exists already")
        cur = db.execute(
            "INSERT INTO maintenance(name, source, spec, created_ts, created_by) VALUES(?,?,?,?,?)",
            (spec.name, source, text, now_ms, by),
        )
        _log(store, now_ms, by, "add", spec.name, text)
        return int(cur.lastrowid or 0)


def remove_window(store: Store, name: str, by: str, now_ms: int) -> None:
    with store.tx() as db:
        row = db.execute(
            "SELECT id, spec, source FROM maintenance WHERE name=? AND removed_ts IS NULL", (name,)
        ).fetchone()
        if row is None:
            raise WindowError(f"no active maintenance window named {name!r}")
        if row[2] == "config":
            raise WindowError(f"{name!r} comes from the configuration file: remove it there")
        db.execute("UPDATE maintenance SET removed_ts=?, removed_by=? WHERE id=?", (now_ms, by, row[0]))
        _log(store, now_ms, by, "remove", name, row[1])


def list_windows(store: Store, include_removed: bool = False) -> list[StoredWindow]:
    where = "" if include_removed else "WHERE removed_ts IS NULL"
    rows = store.db.execute(
        "SELECT id, name, source, spec, created_ts, created_by, removed_ts, removed_by FROM maintenance "
        f"{where} ORDER BY created_ts, id"
    ).fetchall()
    return [
        StoredWindow(r[0], r[1], r[2], window_from_json(r[3]), r[4], r[5], r[6], r[7])
        for r in rows
    ]


def sync_config_windows(store: Store, specs: list[WindowSpec], now_ms: int) -> None:
    """Record the configuration's windows in the ledger; a changed or dropped one is logged."""
    current = {w.name: w for w in list_windows(store) if w.source == "config"}
    wanted = {s.name: s for s in specs}
    with store.tx() as db:
        for name, old in current.items():
            new = wanted.get(name)
            if new is None or new.model_dump_json() != old.spec.model_dump_json():
                db.execute(
                    "UPDATE maintenance SET removed_ts=?, removed_by='config' WHERE id=?", (now_ms, old.id)
                )
                _log(store, now_ms, "config", "remove", name, old.spec.model_dump_json())
        for name, spec in wanted.items():
            old = current.get(name)
            if old is not None and old.spec.model_dump_json() == spec.model_dump_json():
                continue
            clash = db.execute(
                "SELECT source FROM maintenance WHERE name=? AND removed_ts IS NULL", (name,)
            ).fetchone()
            if clash is not None:
                raise WindowError(f"maintenance window {name!r} is defined in the configuration and the CLI")
            text = spec.model_dump_json()
            db.execute(
                "INSERT INTO maintenance(name, source, spec, created_ts, created_by) VALUES(?,?,?,?,?)",
                (name, "config", text, now_ms, "config"),
            )
            _log(store, now_ms, "config", "add", name, text)


def change_token(store: Store) -> int:
    """Changes whenever a window is added or removed (for the daemon to reload)."""
    return int(store.db.execute("SELECT coalesce(max(id), 0) FROM maintenance_log").fetchone()[0])


def cli_specs(store: Store) -> list[WindowSpec]:
    return [w.spec for w in list_windows(store) if w.source == "cli"]
