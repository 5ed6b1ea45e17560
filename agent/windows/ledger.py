"""Maintenance windows added from the CLI: stored with who added them and when, removed only by
marking (the row stays), and every change appended to an append-only log, so a window can
never be silently rewritten after the fact."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from agent.store import windows as stored
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


def add_window(store: Store, spec: WindowSpec, by: str, now_ms: int, source: str = "cli") -> int:
    text = spec.model_dump_json()
    with store.tx() as db:
        if stored.active_window(db, spec.name) is not None:
            raise WindowError(f"a maintenance window named {spec.name!r} exists already")
        return stored.add_window(db, spec.name, source, text, now_ms, by)


def remove_window(store: Store, name: str, by: str, now_ms: int) -> None:
    with store.tx() as db:
        row = stored.active_window(db, name)
        if row is None:
            raise WindowError(f"no active maintenance window named {name!r}")
        if row["source"] == "config":
            raise WindowError(f"{name!r} comes from the configuration file: remove it there")
        stored.remove_window(db, row["id"], name, row["spec"], now_ms, by)


def list_windows(store: Store, include_removed: bool = False) -> list[StoredWindow]:
    return [
        StoredWindow(
            id=r["id"],
            name=r["name"],
            source=r["source"],
            spec=window_from_json(r["spec"]),
            created_ts=r["created_ts"],
            created_by=r["created_by"],
            removed_ts=r["removed_ts"],
            removed_by=r["removed_by"],
        )
        for r in stored.windows(store.db, include_removed)
    ]


def sync_config_windows(store: Store, specs: list[WindowSpec], now_ms: int) -> None:
    """Record the configuration's windows in the ledger; a changed or dropped one is logged."""
    current = {w.name: w for w in list_windows(store) if w.source == "config"}
    wanted = {s.name: s for s in specs}
    with store.tx() as db:
        for name, old in current.items():
            new = wanted.get(name)
            if new is None or new.model_dump_json() != old.spec.model_dump_json():
                stored.remove_window(db, old.id, name, old.spec.model_dump_json(), now_ms, "config")
        for name, spec in wanted.items():
            kept = current.get(name)
            if kept is not None and kept.spec.model_dump_json() == spec.model_dump_json():
                continue
            if stored.active_window(db, name) is not None:
                raise WindowError(f"maintenance window {name!r} is defined in the configuration and the CLI")
            stored.add_window(db, name, "config", spec.model_dump_json(), now_ms, "config")


def change_token(store: Store) -> int:
    """Changes whenever a window is added or removed (for the daemon to reload)."""
    return stored.window_change_token(store.db)


def cli_specs(store: Store) -> list[WindowSpec]:
    return [w.spec for w in list_windows(store) if w.source == "cli"]
