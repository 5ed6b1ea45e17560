"""`sentinel notifications list|retry`: the outbox every notice passes through."""

from __future__ import annotations

import argparse
import dataclasses
from typing import TYPE_CHECKING, Any

from agent.cli.output import fmt_time, now_ms, print_json, print_table, with_iso_times, writer

if TYPE_CHECKING:
    from agent.config.schema import Config


def add_parser(sub: Any) -> None:
    n = sub.add_parser(
        "notifications",
        help="the notification outbox: list, retry",
        description="Every notification is a row in the outbox before it is sent; the running agent "
        "delivers and retries them.",
    )
    ns = n.add_subparsers(dest="notifications_command", metavar="ACTION", required=True)
    nl = ns.add_parser("list", help="queued, failed and delivered notifications (newest first)")
    nl.add_argument("--failed", action="store_true", help="only those not delivered after an attempt")
    nl.add_argument("--json", action="store_true", help="print JSON instead of a table")
    nr = ns.add_parser("retry", help="queue permanently failed notifications again (after fixing a channel)")
    nr.add_argument("--json", action="store_true", help='print {"requeued": N} as JSON')


def run(config: Config, args: argparse.Namespace) -> int:
    from agent.notify.outbox import list_rows, retry_failed

    tz = config.site.tz
    store = writer(config)
    try:
        if args.notifications_command == "retry":
            n = retry_failed(store, now_ms())
            if args.json:
                print_json({"requeued": n})
            else:
                print(f"{n} notification(s) queued again")
            return 0
        rows = list_rows(store, failed_only=args.failed)
        if args.json:
            print_json([with_iso_times(dataclasses.asdict(r), tz) for r in rows])
            return 0
        print_table(
            [
                "ID",
                "CREATED",
                "CHANNEL",
                "EVENT",
                "STATUS",
                "TRIES",
                "NEXT/DELIVERED",
                "SUBJECT / LAST ERROR",
            ],  # fmt: skip
            [
                [
                    str(r.id),
                    fmt_time(r.created_ts, tz),
                    r.channel,
                    r.event,
                    r.status,
                    str(r.attempts),
                    fmt_time(r.delivered_ts if r.status == "delivered" else r.next_attempt_ts, tz),
                    r.subject if r.status == "delivered" or not r.last_error else r.last_error,
                ]
                for r in rows
            ],
        )
        return 0
    finally:
        store.close()
