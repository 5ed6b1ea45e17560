"""`sentinel inspect --reason "国庆节前巡检" [--send] [--check NAME …]`: an inspection on demand.

Runs every enabled check (or the named ones) now, as `sentinel check` does, then builds the
holiday / major-event inspection report from those results and the store
(agent.reports.inspection.build_inspection), archives it with agent.reports.archive.publish
(HTML, PDF when `reports.pdf` lists `inspection`, JSON, SHA-256, evidence chain head) and with
--send queues it for the recipients of the `inspection` kind. The exit code is the worst
status, like `sentinel check` (0 OK, 1 WARN, 2 CRIT, 3 UNKNOWN, 3 also for an unknown check
name); a report that cannot be written or queued (missing file, unknown channel) exits 4.

Results of an on-demand run are not written into the store: the daemon's state machine,
availability and faults see only their own scheduled runs. Probe memory is read (so a log
probe reports what is new since the daemon's last read) but never written back.

Sending: the row goes into the outbox, which the running agent delivers. When no agent holds
the store (its lock is free), the command delivers the rows itself once before exiting, so
`--send` also works on a machine where the agent is stopped; a failed attempt stays queued.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from agent.cli.output import print_json, print_table, result_json

if TYPE_CHECKING:
    from agent.config.schema import Config
    from agent.reports.archive import ArchivedReport
    from agent.store.db import Store
    from probes.base import CheckResult

EXIT_UNKNOWN_CHECK = 3
"""As `sentinel check` answers an unknown name (2 would read as CRIT)."""
EXIT_REPORT = 4
SCHEDULED_KIND = "inspection"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "inspect",
        help="run every check now and write an inspection report (节前/重大活动巡检)",
        description="Run every enabled check (or those named with --check) now, then write the "
        "holiday / major-event inspection report with the current state and findings. Exit code "
        "is the worst status, as for `sentinel check`.",
    )
    p.add_argument("--reason", required=True, help='why, printed as the title, e.g. "国庆节前巡检"')
    p.add_argument("--check", dest="checks", action="append", default=[], metavar="NAME",
                   help="only this check (repeatable; default: every enabled check)")  # fmt: skip
    p.add_argument("--send", action="store_true", help="e-mail the report to the inspection recipients")
    p.add_argument("--json", action="store_true", help="print the results and archive paths as JSON")
    # The daemon's scheduled run passes the holiday's first day; it is recorded as done for it.
    p.add_argument("--holiday", metavar="YYYY-MM-DD", help=argparse.SUPPRESS)
    return p


def _write_report(
    config: Config, store: Store, rows: Sequence[tuple[str, CheckResult]], reason: str, now_ms: int
) -> ArchivedReport:
    """Build the inspection report from the fresh results and archive it (PDF if configured)."""
    from agent.reports.archive import publish
    from agent.reports.delivery import pdf_kinds
    from agent.reports.inspection import build_inspection
    from agent.reports.pdf import PdfUnavailable

    data = build_inspection(config, store, rows, reason, now_ms)
    lang = getattr(config.reports, "lang", "zh")
    want_pdf = SCHEDULED_KIND in pdf_kinds(config)
    try:
        return publish(config, data, lang=lang, pdf=want_pdf, recorder=store)
    except PdfUnavailable as exc:
        # The HTML is what the engineers read first; a missing PDF library must not cost it.
        print(f"sentinel: no PDF: {exc}", file=sys.stderr)
        return publish(config, data, lang=lang, pdf=False, recorder=store)


def run(config: Config, args: argparse.Namespace) -> int:
    try:
        from agent.runtime.checks import run_checks_now

        rows = run_checks_now(config, args.checks)
    except KeyError as exc:
        print(f"sentinel: unknown check(s): {exc.args[0]}", file=sys.stderr)
        return EXIT_UNKNOWN_CHECK
    worst = int(max((r.status for _, r in rows), default=0))
    now_ms = int(time.time() * 1000)

    from agent.cli.output import writer

    store = writer(config)
    try:
        try:
            archived = _write_report(config, store, rows, args.reason, now_ms)
        except (OSError, ValueError, KeyError) as exc:
            print(f"sentinel: the inspection report could not be written: {exc}", file=sys.stderr)
            return EXIT_REPORT
        if args.holiday:
            store.record_report(SCHEDULED_KIND, args.holiday, now_ms, str(archived.html_path))
        sent = None
        if args.send:
            from agent.reports.delivery import deliver_unless_agent_runs, send_report

            try:
                queued = send_report(config, store, archived, now_ms)
            except KeyError as exc:
                print(f"sentinel: report recipient channel(s) not configured: {exc.args[0]}", file=sys.stderr)
                return EXIT_REPORT
            except FileNotFoundError as exc:
                print(f"sentinel: {exc}", file=sys.stderr)
                return EXIT_REPORT
            if queued == 0:
                sent = "未发送：没有为 inspection 配置收件渠道（reports.recipients），或已发送过"
            else:
                sent = deliver_unless_agent_runs(config, store, archived)
    finally:
        store.close()

    files = {"html": str(archived.html_path), "json": str(archived.json_path)}
    if archived.pdf_path is not None:
        files["pdf"] = str(archived.pdf_path)
    if args.json:
        doc = {
            "reason": args.reason,
            "worst": ["OK", "WARN", "CRIT", "UNKNOWN"][worst],
            "results": [result_json(n, r, config.site.tz) for n, r in rows],
            "report": {"kind": archived.kind, "period": archived.period, "files": files},
            "sent": sent,
        }
        print_json(doc)
    else:
        print_table(["CHECK", "STATUS", "SUMMARY"], [[n, r.status.name, r.summary] for n, r in rows])
        print(f"\n{args.reason}：报告已归档 {files['html']}")
        for kind, path in files.items():
            if kind != "html":
                print(f"  {kind}: {path}")
        if sent is not None:
            print(sent)
    return worst
