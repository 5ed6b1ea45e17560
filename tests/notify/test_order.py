"""One fault's notices go out in the order of its events, per channel (issue 14, "Order").

Real store, real fault manager, planner, outbox and dispatcher on a controllable clock; the
sender is a recorder that refuses what the test tells it to (the channels themselves are tested
against real servers in test_channels.py, the whole path in tests/runtime).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from agent.clock.workcal import WorkCalendar
from agent.config.schema import parse
from agent.faults.notices import AlertPlanner, enqueue_closed, message_from_json
from agent.faults.records import FaultManager, close, list_faults, resolve
from agent.notify.outbox import Dispatcher, SendError, retry_failed
from agent.runtime.daemon import check_info, policy_from_config
from agent.state.machine import CheckState
from agent.store import outbox as stored
from agent.store.db import Store
from probes.base import CheckResult, Status
from tests.conftest import FakeClock

T0 = 1_795_000_000.0  # Wed 2026-11-18 19:06:40 in Shanghai

CONFIG = """
site: {name: 测试医院, timezone: Asia/Shanghai}
systems:
  - {name: LIS}
  - {name: PACS}
checks:
  - {name: lis-web, kind: http, url: "http://127.0.0.1:9/", system: LIS, fault_level: 二级}
  - {name: pacs-web, kind: http, url: "http://127.0.0.1:9/", system: PACS, fault_level: 二级}
faults:
  recovery_hold: 5s
notifications:
  channels:
    mail: {type: email, host: 127.0.0.1, port: 9, security: none, sender: s@h.local, to: [o@h.local]}
    hook: {type: webhook, url: "http://127.0.0.1:9/alerts"}
  routes:
    - {channels: [mail, hook]}
"""


class Receiver:
    """The sender: records (channel, fault number, event) of every accepted message, refuses
    those the test names: `down` channels, `refuse` fault numbers (retryably), `reject` ones
    (permanently, as a 4xx would)."""

    def __init__(self) -> None:
        self.got: list[tuple[str, str, str]] = []
        self.down: set[str] = set()
        self.refuse: set[str] = set()
        self.reject: set[str] = set()

    def __call__(self, channel: str, payload: str) -> str:
        headers = message_from_json(payload).headers
        number, event = headers["X-Sentinel-Fault"], headers["X-Sentinel-Event"]
        if channel in self.down or number in self.refuse:
            raise SendError("HTTP 503", retryable=True)
        if number in self.reject:
            raise SendError("HTTP 400", retryable=False)
        self.got.append((channel, number, event))
        return "ok"

    def events(self, channel: str, number: str) -> list[str]:
        return [e for c, n, e in self.got if c == channel and n == number]


class Rig:
    def __init__(self, tmp_path: Path) -> None:
        self.config = parse(CONFIG)
        self.clock = FakeClock(T0)
        self.store = Store(tmp_path / "s.db")
        self.store.sync_checks([("lis-web", "http", "LIS"), ("pacs-web", "http", "PACS")], 0)
        self.run = self.store.begin_run(int(T0 * 1000), 1, "h", "t")
        self.states = {c.name: CheckState() for c in self.config.checks}
        self.faults = FaultManager(
            self.store,
            policy_from_config(self.config),
            {c.name: check_info(self.config, c) for c in self.config.checks},
            WorkCalendar(self.config.faults.working_hours, self.config.site.tz).deadline_ms,
            AlertPlanner(self.config),
            lambda ts, system, check: None,
            self.config.site.tz,
            self.clock,
        )
        self.receiver = Receiver()
        self.dispatcher = Dispatcher(
            Store(tmp_path / "s.db"),
            self.receiver,
            self.clock,
            known_channels=self.config.notifications.channels,
        )

    def now(self) -> int:
        return int(self.clock() * 1000)

    def feed(self, check: str, status: Status) -> None:
        ts = self.now()
        result = CheckResult(status, status.name, started_at=datetime.fromtimestamp(ts / 1000, UTC))
        changes = self.states[check].observe(ts, status, status.name, 1)
        self.store.write_batch(self.run, [(check, result, changes, self.states[check])])
        self.faults.observe(check, result, changes)

    def number(self, system: str) -> str:
        return next(f.number for f in list_faults(self.store.db) if f.system == system)

    def close(self, system: str) -> None:
        number = self.number(system)
        resolve(self.store, number, "张工", "应用池耗尽", "重启应用池", self.now())
        enqueue_closed(self.config, self.store, close(self.store, number, "张工", self.now()), self.now())

    def drain(self) -> int:
        """Pass after pass while there is work, as the daemon's loop does; attempts made."""
        total = 0
        while n := self.dispatcher.run_once():
            total += n
        return total

    def rows(self, channel: str) -> list[tuple[str, str, int]]:
        return list(
            self.store.db.execute(
                "SELECT event, status, attempts FROM outbox WHERE channel=? ORDER BY id", (channel,)
            )
        )


def test_recovered_and_closed_wait_while_opened_waits_for_its_retry(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.receiver.down = {"mail", "hook"}  # the receivers are down when the fault opens
    rig.feed("lis-web", Status.CRIT)
    assert rig.drain() == 2  # opened, on both channels, refused: retry in 30 s
    rig.receiver.down = set()
    rig.clock.advance(1)
    rig.feed("lis-web", Status.OK)  # recovered: held 5 s
    rig.clock.advance(9)
    rig.close("LIS")  # closed: due at once
    for channel in ("mail", "hook"):
        assert rig.rows(channel) == [
            ("opened", "pending", 1),
            ("recovered", "pending", 0),
            ("closed", "pending", 0),
        ]
    # recovered and closed are due, but "opened" of their fault and channel is still waiting.
    assert rig.drain() == 0 and rig.receiver.got == []
    rig.clock.advance(21)  # the retry of "opened" is due
    assert rig.drain() == 6
    number = rig.number("LIS")
    for channel in ("mail", "hook"):
        assert rig.receiver.events(channel, number) == ["opened", "recovered", "closed"]
        assert [s for _, s, _ in rig.rows(channel)] == ["delivered"] * 3


def test_closed_waits_for_the_recovery_notice_in_its_hold(tmp_path: Path) -> None:
    """The measured case: a fault closed from the command line during the recovery hold."""
    rig = Rig(tmp_path)
    rig.feed("lis-web", Status.CRIT)
    rig.drain()
    rig.clock.advance(1)
    rig.feed("lis-web", Status.OK)
    rig.clock.advance(2)  # within the 5 s hold
    rig.close("LIS")
    assert rig.drain() == 0  # "closed" is due but "recovered" is still held
    rig.clock.advance(3)
    assert rig.drain() == 4
    number = rig.number("LIS")
    assert rig.receiver.events("mail", number) == ["opened", "recovered", "closed"]
    assert rig.receiver.events("hook", number) == ["opened", "recovered", "closed"]


def test_two_faults_do_not_hold_each_other_up(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.feed("lis-web", Status.CRIT)
    lis = rig.number("LIS")
    rig.receiver.refuse = {lis}  # this fault's messages are refused, retryably
    rig.feed("pacs-web", Status.CRIT)
    pacs = rig.number("PACS")
    rig.drain()
    rig.clock.advance(1)
    rig.feed("lis-web", Status.OK)
    rig.feed("pacs-web", Status.OK)
    rig.clock.advance(5)
    rig.close("PACS")
    rig.drain()
    # PACS went through completely while LIS's first notice waits for its retry.
    for channel in ("mail", "hook"):
        assert rig.receiver.events(channel, pacs) == ["opened", "recovered", "closed"]
        assert rig.receiver.events(channel, lis) == []
        assert rig.rows(channel)[0] == ("opened", "pending", 1)
    rig.receiver.refuse = set()
    rig.clock.advance(30)
    rig.drain()
    for channel in ("mail", "hook"):
        assert rig.receiver.events(channel, lis) == ["opened", "recovered"]


def test_a_channel_that_is_down_does_not_hold_up_another(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.receiver.down = {"hook"}
    rig.feed("lis-web", Status.CRIT)
    rig.drain()
    rig.clock.advance(1)
    rig.feed("lis-web", Status.OK)
    rig.clock.advance(5)
    rig.close("LIS")
    rig.drain()
    number = rig.number("LIS")
    assert rig.receiver.events("mail", number) == ["opened", "recovered", "closed"]
    assert rig.rows("hook") == [
        ("opened", "pending", 1),
        ("recovered", "pending", 0),
        ("closed", "pending", 0),
    ]
    rig.receiver.down = set()
    rig.clock.advance(30)
    rig.drain()
    assert rig.receiver.events("hook", number) == ["opened", "recovered", "closed"]


def test_a_notice_given_up_holds_nothing_back(tmp_path: Path) -> None:
    """A permanently failed notice (a person has to fix the channel) does not block the fault's
    later ones for ever; `notifications retry` sends it again, late and labelled as what it is."""
    rig = Rig(tmp_path)
    rig.feed("lis-web", Status.CRIT)
    number = rig.number("LIS")
    rig.receiver.reject = {number}
    rig.drain()
    assert [s for _, s, _ in rig.rows("mail")] == ["failed"]
    rig.receiver.reject = set()
    rig.clock.advance(1)
    rig.feed("lis-web", Status.OK)
    rig.clock.advance(5)
    rig.close("LIS")
    rig.drain()
    assert rig.receiver.events("mail", number) == ["recovered", "closed"]
    assert retry_failed(rig.store, rig.now()) == 2
    rig.drain()
    assert rig.receiver.events("mail", number) == ["recovered", "closed", "opened"]


def test_messages_of_no_fault_are_not_ordered(tmp_path: Path) -> None:
    """Reports (no fault) go out as they are due: one waiting for a retry holds no other back."""
    store = Store(tmp_path / "s.db")
    clock = FakeClock(T0)
    sent: list[str] = []

    def sender(channel: str, payload: str) -> str:
        if payload == "first" and not sent:
            raise SendError("HTTP 503", retryable=True)
        sent.append(payload)
        return "ok"

    with store.tx() as db:
        for key in ("first", "second"):
            stored.enqueue_or_renew(
                db,
                created_ts=0,
                dedup_key=key,
                channel="mail",
                event="report",
                message=key,
                next_attempt_ts=0,
            )
    dispatcher = Dispatcher(store, sender, clock)
    assert dispatcher.run_once() == 2 and sent == ["second"]
    clock.advance(30)
    assert dispatcher.run_once() == 1 and sent == ["second", "first"]


def test_the_due_query_reads_only_the_pending_rows_index(tmp_path: Path) -> None:
    """The dispatcher polls every few seconds over an outbox that keeps every delivered row:
    the due query must stay on the partial index of pending rows, never scan the table."""
    store = Store(tmp_path / "s.db")
    seen: list[str] = []
    store.db.set_trace_callback(seen.append)
    stored.due(store.db, 0, 20)
    store.db.set_trace_callback(None)
    (sql,) = [s for s in seen if "FROM outbox" in s]
    plan = [str(r[3]) for r in store.db.execute("EXPLAIN QUERY PLAN " + sql)]
    reads = [p for p in plan if p.startswith(("SCAN", "SEARCH"))]
    assert len(reads) == 2 and all("USING INDEX outbox_due" in p for p in reads), plan
