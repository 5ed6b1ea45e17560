"""The maintenance-window ledger: every window, from the configuration file or added from the
CLI, stored with who recorded it and when, removed only by marking (the row stays), and every
change appended to an append-only log, so a window can never be silently rewritten after the
fact. Each window carries the approvals of 甲方 and 乙方 (agent.windows.approvals).

The configuration's windows enter the ledger when the agent first loads the configuration
holding them (`sync_config_windows`): that is their recording time, and with it both approvals
written in the file. A window unchanged since keeps its first recording time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from agent.store import windows as stored
from agent.store.db import Store
from agent.windows import approvals as ap
from agent.windows.approvals import Approval, ApprovalError
from agent.windows.maintenance import MaintenanceSchedule, occurrences, window_from_json

if TYPE_CHECKING:
    from agent.config.windows import WindowSpec


@dataclass(frozen=True, slots=True)
class StoredWindow:
    id: int
    name: str
    source: str
    spec: WindowSpec
    created_ts: int
    """When the window was recorded (for a configuration window: when the agent first loaded it)."""
    created_by: str
    """The OS user who recorded it, or "config"."""
    removed_ts: int | None
    removed_by: str | None
    approvals: tuple[Approval, ...] = ()
    """Every approval given so far, oldest first."""

    @property
    def effective(self) -> bool:
        """Both parties approved: the window excludes time from availability."""
        return ap.both(self.approvals)

    @property
    def mutes_from(self) -> int | None:
        """When the window starts muting alerts: its first approval (given when it is recorded)."""
        return min((a.ts_ms for a in self.approvals), default=None)


class WindowError(ValueError):
    pass


def add_window(
    store: Store,
    spec: WindowSpec,
    party: str,
    approver: str,
    user: str,
    now_ms: int,
) -> int:
    """Record a window added from the CLI with the approval of the party that records it."""
    if spec.approvals is not None:
        raise WindowError("a window added from the command line is approved with --party/--by")
    text = spec.model_dump_json()
    with store.tx() as db:
        if stored.active_window(db, spec.name) is not None:
            raise WindowError(f"a maintenance window named {spec.name!r} exists already")
        # Checked before the insert so a refused approval leaves no half-recorded window.
        ap.check_new((), party, approver, f"maintenance window {spec.name!r}")
        wid = stored.add_window(db, spec.name, "cli", text, now_ms, user)
        ap.record(db, "maintenance", wid, spec.name, (), party, approver, user, now_ms)
        return wid


def approve_window(store: Store, name: str, party: str, approver: str, user: str, now_ms: int) -> Approval:
    """The other party's approval of an active window."""
    with store.tx() as db:
        row = stored.active_window(db, name)
        if row is None:
            raise WindowError(f"no active maintenance window named {name!r}")
        existing = ap.of_record(db, "maintenance", row["id"])
        return ap.record(db, "maintenance", row["id"], name, existing, party, approver, user, now_ms)


def remove_window(store: Store, name: str, by: str, now_ms: int) -> None:
    with store.tx() as db:
        row = stored.active_window(db, name)
        if row is None:
            raise WindowError(f"no active maintenance window named {name!r}")
        if row["source"] == "config":
            raise WindowError(f"{name!r} comes from the configuration file: remove it there")
        stored.remove_window(db, row["id"], name, row["spec"], now_ms, by)


def list_windows(store: Store, include_removed: bool = False) -> list[StoredWindow]:
    approvals = ap.by_record(store.db, "maintenance")
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
            approvals=approvals.get(r["id"], ()),
        )
        for r in stored.windows(store.db, include_removed)
    ]


def sync_config_windows(store: Store, specs: list[WindowSpec], now_ms: int, user: str | None = None) -> None:
    """Record the configuration's windows in the ledger with both approvals written in the file
    (as of `now_ms`, recorded by `user`, default the OS user running the agent); a changed or
    dropped one is logged as removed and a changed one recorded anew."""
    user = user or ap.os_user()
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
            wid = stored.add_window(db, name, "config", spec.model_dump_json(), now_ms, "config")
            if spec.approvals is not None:
                try:
                    ap.record_all(db, "maintenance", wid, name, spec.approvals.by_party(), user, now_ms)
                except ApprovalError as exc:
                    raise WindowError(str(exc)) from None


def is_late(w: StoredWindow, tz: ZoneInfo) -> bool:
    """Recorded after it began (事后补录): a one-off window after its start, a recurring one
    while an occurrence was running (that occurrence counts from the recording on only)."""
    # A recurring window: the occurrence running at the recording; a one-off: its only one.
    lo = w.created_ts if w.spec.recurring else 0
    return any(o.start_ms < w.created_ts for o in occurrences(w.spec, tz, lo, w.created_ts + 1))


def change_token(store: Store) -> int:
    """Changes whenever a window is added or removed or an approval given (for the daemon to
    reload its schedule)."""
    return stored.window_change_token(store.db)


def muting_schedule(store: Store, tz: ZoneInfo) -> MaintenanceSchedule:
    """The windows that mute alerts and faults: every active window with at least one approval,
    from the moment of its first approval (when it was recorded) on, never earlier."""
    windows = [w for w in list_windows(store) if w.mutes_from is not None]
    return MaintenanceSchedule([w.spec for w in windows], tz, [w.mutes_from for w in windows])
