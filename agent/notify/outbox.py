"""The notification outbox: every message is a row before anything is sent.

A dispatcher thread claims due rows, sends them, and records every attempt. Failures are
retried with exponential backoff (capped) for as long as it takes: a channel that is down for
an hour loses nothing. Delivered rows are never sent again, so a restart repeats nothing that
was confirmed; a crash in the instant between a send and its confirmation can repeat that one
message (at-least-once), which is the safe side for an alert.

The notices of one fault on one channel go out in the order they were queued, i.e. the order of
the fault's events: a notice waits while an earlier one of the same fault and channel is still
pending (in its backoff, or a recovery notice in its hold), so "closed" never overtakes
"recovered" and neither overtakes a refused "opened". A permanently failed or withdrawn notice
holds nothing back. Other faults, other channels and reports are not held up
(agent.store.outbox.due).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from agent.store import outbox as stored
from agent.store.db import Store

log = logging.getLogger("sentinel.outbox")

BACKOFF_S = (30, 60, 120, 300, 600, 900)
"""Wait after the 1st, 2nd, ... failed attempt; the last value repeats."""


class SendError(Exception):
    def __init__(self, reason: str, retryable: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable


Sender = Callable[[str, str], str]
"""(channel name, message JSON) -> receipt; raises SendError (or any exception = retryable)."""


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    created_ts: int
    channel: str
    event: str
    fault_id: int | None
    status: str
    attempts: int
    next_attempt_ts: int
    last_error: str | None
    delivered_ts: int | None
    dedup_key: str
    subject: str


def list_rows(store: Store, failed_only: bool = False, limit: int = 200) -> list[OutboxRow]:
    """The newest messages first (only those failed or retried, when asked)."""
    out = []
    for r in stored.listing(store.db, failed_only, limit):
        try:
            subject = str(json.loads(r["message"]).get("subject", ""))
        except ValueError:
            subject = ""
        out.append(
            OutboxRow(
                id=r["id"],
                created_ts=r["created_ts"],
                channel=r["channel"],
                event=r["event"],
                fault_id=r["fault_id"],
                status=r["status"],
                attempts=r["attempts"],
                next_attempt_ts=r["next_attempt_ts"],
                last_error=r["last_error"],
                delivered_ts=r["delivered_ts"],
                dedup_key=r["dedup_key"],
                subject=subject,
            )
        )
    return out


class Dispatcher:
    def __init__(
        self,
        store: Store,
        send: Sender,
        clock: Callable[[], float],
        poll_s: float = 5.0,
        batch: int = 20,
        known_channels: Mapping[str, Any] | None = None,
    ) -> None:
        self.store = store
        self.send = send
        self.clock = clock
        self.poll_s = poll_s
        self.batch = batch
        self.known = known_channels
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="outbox", daemon=True)
        self.sent = 0

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.ident is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                worked = self.run_once()
            except Exception:  # the store is busy or broken: keep the thread, try later
                log.exception("outbox pass failed")
                worked = 0
            if worked == 0:
                self._wake.wait(self.poll_s)
                self._wake.clear()

    def run_once(self) -> int:
        """Send every due row once (at most `batch`); returns how many were attempted.

        A fault's next notice on a channel becomes due only once the one before it is delivered,
        so a backlog of one fault drains one notice per pass; `_loop` runs the next pass at once
        whenever this one did some work.
        """
        now = int(self.clock() * 1000)
        rows = stored.due(self.store.db, now, self.batch)
        for row in rows:
            if self._stop.is_set():
                break
            self._attempt(row.id, row.channel, row.message, row.attempts)
        return len(rows)

    def _attempt(self, row_id: int, channel: str, message: str, attempts: int) -> None:
        if self.known is not None and channel not in self.known:
            self._finish(
                row_id, attempts, ok=False, detail=f"channel {channel!r} is not configured", retryable=False
            )
            return
        try:
            receipt = self.send(channel, message)
        except SendError as exc:
            self._finish(row_id, attempts, ok=False, detail=exc.reason, retryable=exc.retryable)
            return
        except Exception as exc:  # noqa: BLE001 - a channel bug or surprise is treated as transient
            self._finish(
                row_id, attempts, ok=False, detail=f"{type(exc).__name__}: {exc}"[:500], retryable=True
            )
            return
        self._finish(row_id, attempts, ok=True, detail=receipt or "delivered", retryable=False)

    def _finish(self, row_id: int, attempts: int, ok: bool, detail: str, retryable: bool) -> None:
        now = int(self.clock() * 1000)
        n = attempts + 1
        with self.store.tx() as db:
            stored.record_attempt(db, row_id, now, ok, detail[:1000])
            if ok:
                stored.mark_delivered(db, row_id, n, now, detail[:500])
                self.sent += 1
            elif retryable:
                wait = BACKOFF_S[min(n - 1, len(BACKOFF_S) - 1)]
                stored.schedule_retry(db, row_id, n, now + wait * 1000, detail[:1000])
                log.warning(
                    "notification %d: attempt %d failed (%s); next try in %d s", row_id, n, detail, wait
                )
            else:
                stored.mark_failed(db, row_id, n, detail[:1000])
                log.error("notification %d failed permanently: %s", row_id, detail)


def retry_failed(store: Store, now_ms: int) -> int:
    """Put permanently failed rows back in the queue (after fixing a channel's settings)."""
    with store.tx() as db:
        return stored.requeue_failed(db, now_ms)
