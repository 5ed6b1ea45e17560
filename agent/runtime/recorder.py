"""The single writer: takes results from the runner, advances the state machines and commits
results and state changes in batches. Probe threads only enqueue; they never wait on the disk.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Mapping, Sequence

from agent.state.machine import Change, CheckState
from agent.store.db import Store
from probes.base import CheckResult

log = logging.getLogger("sentinel.recorder")

ChangeListener = Callable[[str, CheckResult, Sequence[Change]], None]
MaintenanceLookup = Callable[[int, str], "str | None"]
"""(ts_ms, check) -> name of the maintenance window covering that check then, or None."""
Item = tuple[str, CheckResult] | Callable[[], None] | None


class Recorder:
    def __init__(
        self,
        store: Store,
        run_id: int | None,
        confirmations: Mapping[str, int],
        states: dict[str, CheckState] | None = None,
        batch_window_s: float = 0.5,
        max_batch: int = 500,
        maintenance: MaintenanceLookup | None = None,
    ) -> None:
        self._store = store
        self._run_id = run_id
        self._confirmations = dict(confirmations)
        self.states: dict[str, CheckState] = states if states is not None else {}
        self._queue: queue.SimpleQueue[Item] = queue.SimpleQueue()
        self._maintenance = maintenance
        self._result_listeners: list[ChangeListener] = []
        self._window = batch_window_s
        self._max_batch = max_batch
        self._listeners: list[ChangeListener] = []
        self._thread = threading.Thread(target=self._loop, name="recorder", daemon=True)
        self._stopped = threading.Event()
        self._stopping = threading.Event()
        self.written = 0
        self.failures = 0

    def on_change(self, listener: ChangeListener) -> None:
        """Called after commit for every result that changed a confirmed state."""
        self._listeners.append(listener)

    def on_result(self, listener: ChangeListener) -> None:
        """Called after commit for every result, with the changes it caused (maybe none)."""
        self._result_listeners.append(listener)

    def call(self, fn: Callable[[], None]) -> None:
        """Run `fn` in the writer thread, between batches (periodic work that writes)."""
        self._queue.put(fn)

    @property
    def backlog(self) -> int:
        return self._queue.qsize()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def start(self) -> None:
        self._thread.start()

    def put(self, check: str, result: CheckResult) -> None:
        self._queue.put((check, result))

    def stop(self, timeout: float = 5.0) -> None:
        """Write everything already queued, then stop."""
        self._stopping.set()  # no more waiting for a batch to fill
        self._queue.put(None)
        if self._thread.ident is None:
            # Never started (the agent failed during start-up): write what was queued here.
            self._loop()
            return
        self._thread.join(timeout)

    def _loop(self) -> None:
        done = False
        while not done:
            item = self._queue.get()
            batch: list[tuple[str, CheckResult]] = []
            calls: list[Callable[[], None]] = []
            if item is None:
                done = True
            elif callable(item):
                calls.append(item)
            else:
                batch.append(item)
                # Sleep through the window, then take everything that arrived: one wake-up per
                # batch instead of one per result (that was most of the writer's CPU).
                self._stopping.wait(self._window)
                while len(batch) < self._max_batch:
                    try:
                        nxt = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is None:
                        done = True
                        break
                    if callable(nxt):
                        calls.append(nxt)
                        continue
                    batch.append(nxt)
            if batch:
                self._write(batch)
            for fn in calls:
                try:
                    fn()
                except Exception:
                    log.exception("periodic task in the writer failed")
        self._stopped.set()

    def _write(self, batch: list[tuple[str, CheckResult]]) -> None:
        rows = []
        for name, result in batch:
            state = self.states.setdefault(name, CheckState())
            ts = int(result.started_at.timestamp() * 1000)
            window = self._maintenance(ts, name) if self._maintenance is not None else None
            changes = state.observe(
                ts, result.status, result.summary, self._confirmations.get(name, 1), window
            )
            rows.append((name, result, changes, state))
        attempt = 0
        while True:
            try:
                self._store.write_batch(self._run_id, rows)
                break
            except Exception:  # disk full, database locked: keep the results and retry
                attempt += 1
                self.failures += 1
                log.exception("writing %d results failed (attempt %d); retrying", len(rows), attempt)
                if self._stopped.wait(min(30.0, 0.5 * 2 ** min(attempt, 6))):
                    return
        self.written += len(rows)
        for name, result, changes, _ in rows:
            for listener in self._result_listeners:
                try:
                    listener(name, result, changes)
                except Exception:
                    log.exception("result listener failed for %s", name)
            if changes:
                for listener in self._listeners:
                    try:
                        listener(name, result, changes)
                    except Exception:
                        log.exception("state-change listener failed for %s", name)
