"""Approvals of excluded time: 甲方 (the hospital) and 乙方 (the vendor), one named person each.

A maintenance window or force-majeure record excludes time from availability only once both
parties approved it (经双方认定); one approval is enough to mute alerts. Each approval is a row
of its own in the store (append-only, evidence-chained) with the approver's name, the time and
the OS user who recorded it, so nobody can approve for the other party without it showing.
"""

from __future__ import annotations

import getpass
import os
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from agent.config.windows import PARTIES
from agent.store import windows as stored

Ledger = Literal["maintenance", "exclusions"]


class ApprovalError(ValueError):
    """An approval that must not be recorded (unknown party, second approval, same person)."""


@dataclass(frozen=True, slots=True)
class Approval:
    party: str
    approver: str
    ts_ms: int
    os_user: str


def os_user() -> str:
    """Who is at the keyboard: the user behind sudo when there is one, else the login name."""
    sudo = os.environ.get("SUDO_USER")
    if sudo:
        return sudo
    try:
        return getpass.getuser() or "unknown"
    except (OSError, KeyError):
        # No login name in the environment and none in the password database (a container).
        return "unknown"


def both(approvals: Iterable[Approval]) -> bool:
    """Both parties approved (the rule that lets a record exclude time)."""
    return {a.party for a in approvals} >= set(PARTIES)


def check_new(existing: Iterable[Approval], party: str, approver: str, what: str) -> str:
    """Refuse an approval that must not be recorded; returns the approver's name, trimmed."""
    if party not in PARTIES:
        raise ApprovalError(f"unknown party {party!r}: use 甲方 (hospital) or 乙方 (vendor)")
    name = approver.strip()
    if not name:
        raise ApprovalError("name the person who approves (--by)")
    for a in existing:
        if a.party == party:
            raise ApprovalError(f"{what}: {party} approved already ({a.approver}); each party approves once")
        if a.approver.strip() == name:
            raise ApprovalError(
                f"{what}: {name} approved already for {a.party}; 甲方 and 乙方 must be approved by "
                "two different people (经双方认定)"
            )
    return name


def record(
    db: sqlite3.Connection,
    ledger: Ledger,
    record_id: int,
    name: str,
    existing: Iterable[Approval],
    party: str,
    approver: str,
    user: str,
    now_ms: int,
) -> Approval:
    """Check and append one approval, in the caller's transaction."""
    label = "maintenance window" if ledger == "maintenance" else "exclusion"
    who = check_new(existing, party, approver, f"{label} {name!r}")
    stored.add_approval(
        db, ledger=ledger, record_id=record_id, name=name, party=party, approver=who, ts=now_ms, os_user=user
    )
    return Approval(party, who, now_ms, user)


def by_record(db: sqlite3.Connection, ledger: Ledger) -> dict[int, tuple[Approval, ...]]:
    """Every approval of a ledger, by record id, oldest first."""
    out: dict[int, list[Approval]] = {}
    for r in stored.approvals(db, ledger):
        out.setdefault(r["record_id"], []).append(Approval(r["party"], r["approver"], r["ts"], r["os_user"]))
    return {k: tuple(v) for k, v in out.items()}


def of_record(db: sqlite3.Connection, ledger: Ledger, record_id: int) -> tuple[Approval, ...]:
    return tuple(
        Approval(r["party"], r["approver"], r["ts"], r["os_user"])
        for r in stored.approvals(db, ledger, record_id)
    )


def record_all(
    db: sqlite3.Connection,
    ledger: Ledger,
    record_id: int,
    name: str,
    by_party: Mapping[str, str],
    user: str,
    now_ms: int,
) -> None:
    """Both approvals written in the configuration file, recorded as of `now_ms` (when the
    configuration holding them was loaded)."""
    done: list[Approval] = []
    for party in PARTIES:
        if party in by_party:
            done.append(record(db, ledger, record_id, name, done, party, by_party[party], user, now_ms))
