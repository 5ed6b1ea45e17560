"""`sentinel report daily|weekly|monthly|quarterly|yearly|acceptance|list`.

Imported when the parser is built, so it stays light: the report modules (Jinja2,
matplotlib, WeasyPrint) load only when a report is written.
"""

from __future__ import annotations

import argparse
import sys
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.cli.output import at_ms, fmt_time, iso, print_json, print_table

if TYPE_CHECKING:
    from agent.clock.periods import Period
    from agent.config.schema import Config
    from agent.reports.archive import ArchivedReport
    from agent.store.db import Store

KINDS = ("daily", "weekly", "monthly", "quarterly", "yearly", "acceptance")
HELP = {
    "daily": "daily inspection report (日常巡检报告), default: yesterday",
    "weekly": "weekly inspection report (每周巡检), default: last ISO week",
    "monthly": "monthly inspection report (月度巡检报告), default: last month",
    "quarterly": "quarterly inspection and risk assessment (季度巡检), default: last quarter",
    "yearly": "yearly operations report (年度运维报告), default: last year",
    "acceptance": "availability acceptance report (验收报告), PDF by default, default: the last complete "
    "service period (contract.service_periods), or last year where none is configured",
}


def add_parser(report_subparsers: Any) -> None:
    for kind in KINDS:
        p = report_subparsers.add_parser(kind, help=HELP[kind], description=HELP[kind])
        p.add_argument(
            "--period",
            help="2026, 2026-Q4, 2026-11, 2026-W48, 2026-11-23 or FROM..TO in the site's time zone; "
            "service (the current service period), service:2026 or service:2026-04-14",
        )
        if kind == "daily":
            p.add_argument("--date", type=date.fromisoformat, help="same as --period YYYY-MM-DD")
        if kind in ("acceptance", "yearly"):
            p.add_argument("--year", type=int, help="same as --period YYYY")
        p.add_argument("--pdf", action="store_true", help="also write a PDF (always for acceptance)")
        p.add_argument(
            "--out", type=Path, help="directory for the files (default: reports.output_dir/<kind>/<period>)"
        )
        p.add_argument("--lang", choices=["zh", "en"], help="language (default: reports.lang, Chinese)")
        p.add_argument("--send", action="store_true", help="e-mail it to the recipients of this report kind")
        p.add_argument("--at", help="compute as of this local time 'YYYY-MM-DD HH:MM' (default: now)")
        p.add_argument("--late", action="store_true", help=argparse.SUPPRESS)
        p.add_argument("--json", action="store_true", help="print the written files as JSON")
    lst = report_subparsers.add_parser("list", help="list archived reports with their SHA-256")
    lst.add_argument("--json", action="store_true", help="print JSON instead of a table")


def default_period(kind: str, today: date) -> str:
    if kind == "daily":
        return (today - timedelta(days=1)).isoformat()
    if kind == "weekly":
        y, w, _ = (today - timedelta(days=7)).isocalendar()
        return f"{y}-W{w:02d}"
    if kind == "monthly":
        first = today.replace(day=1) - timedelta(days=1)
        return f"{first.year}-{first.month:02d}"
    if kind == "quarterly":
        q = (today.month - 1) // 3  # the quarter before this one, 0 = last year's Q4
        return f"{today.year - 1}-Q4" if q == 0 else f"{today.year}-Q{q}"
    return str(today.year - 1)


class _Bar:
    """Progress on stderr: a bar on a terminal, one line per step otherwise (logs, CI)."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.tty = sys.stderr.isatty()

    def __call__(self, done: int, total: int, what: str) -> None:
        if total <= 0:
            return
        width = 30
        filled = width * done // total
        line = f"{self.label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total} {what}"
        if self.tty:
            print("\r" + line.ljust(78), end="" if done < total else "\n", file=sys.stderr, flush=True)
        elif done < total:
            print(line, file=sys.stderr, flush=True)


def default_acceptance_period(config: Config, now_ms: int) -> tuple[Period, str | None]:
    """The acceptance report's period when none is given: the last complete service period;
    none complete yet, the current one (the report says it is not over); no service period
    configured (or none begun), last calendar year. The second value is a note for the user."""
    from agent.clock.periods import current_service_period, last_complete_service_period, parse_period

    tz = config.site.tz
    contract = config.contract
    done = last_complete_service_period(contract, tz, now_ms)
    if done is not None:
        return done, None
    current = current_service_period(contract, tz, now_ms)
    if current is not None:
        return current, (
            f"没有已结束的服务期：验收报告取当前服务期 {current.describe()}（尚未结束，统计至现在）/ "
            "no service period has ended yet: the current one, not over, up to now"
        )
    today = datetime.fromtimestamp(now_ms / 1000, tz).date()
    last_year = parse_period(default_period("acceptance", today), tz)
    if not contract.service_periods:
        return last_year, None
    return last_year, (
        f"没有已开始的服务期：验收报告取 {last_year.label} 年 / "
        "no service period has begun yet: the last calendar year"
    )


def _build(
    config: Config, store: Store, kind: str, period: Period, now_ms: int, late: bool
) -> dict[str, Any]:
    long = period.end - period.start > timedelta(days=31)
    progress = _Bar(f"{kind} {period.label}") if long or sys.stderr.isatty() else None
    if kind == "daily":
        from agent.reports.daily import build_daily

        if period.end - period.start != timedelta(days=1):
            raise ValueError("a daily report covers one day: --period YYYY-MM-DD")
        return build_daily(config, store, period.start.date(), now_ms, late=late)
    if kind == "acceptance":
        from agent.reports.acceptance import build_acceptance

        return build_acceptance(config, store, period, now_ms, late=late, progress=progress)
    from agent.reports.periodic import build_periodic

    return build_periodic(config, store, kind, period, now_ms, late=late, progress=progress)


def run(config: Config, args: argparse.Namespace) -> int:
    from agent.clock.periods import PeriodError, resolve_period
    from agent.store.db import Store

    kind = args.report_kind
    if kind == "list":
        return _list(config, args)
    tz = config.site.tz
    try:
        now_ms = at_ms(args.at, tz)
    except ValueError as exc:
        print(f"sentinel: --at: {exc}", file=sys.stderr)
        return 2
    today = datetime.fromtimestamp(now_ms / 1000, tz).date()
    label = args.period
    if getattr(args, "date", None):
        label = args.date.isoformat()
    if getattr(args, "year", None):
        label = str(args.year)
    try:
        if label:
            period = resolve_period(label, tz, config.contract, now_ms)
        elif kind == "acceptance":
            period, note = default_acceptance_period(config, now_ms)
            if note:
                print(f"sentinel: {note}", file=sys.stderr)
        else:
            period = resolve_period(default_period(kind, today), tz, config.contract, now_ms)
    except PeriodError as exc:
        print(f"sentinel: {exc}", file=sys.stderr)
        return 2
    lang = args.lang or getattr(config.reports, "lang", "zh")
    try:
        store = Store(config.storage.path, readonly=True)
    except FileNotFoundError as exc:
        print(f"sentinel: {exc}", file=sys.stderr)
        return 1
    try:
        data = _build(config, store, kind, period, now_ms, bool(args.late))
    except (PeriodError, ValueError) as exc:
        print(f"sentinel: {exc}", file=sys.stderr)
        return 2
    finally:
        store.close()
    from agent.reports.archive import publish
    from agent.reports.pdf import PdfUnavailable

    writer = _writer(config)
    try:
        archived = publish(
            config, data, lang=lang, pdf=args.pdf or kind == "acceptance", out=args.out, recorder=writer
        )
    except PdfUnavailable as exc:
        print(f"sentinel: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        # A full disk or a report directory that is not a directory: one line, and the daemon
        # (which runs this command for scheduled reports) logs it and tries again later.
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"sentinel: cannot write the report: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1
    finally:
        if writer is not None:
            writer.close()
    if args.json:
        files = {"html": archived.html_path, "pdf": archived.pdf_path, "json": archived.json_path}
        print_json(
            {
                "kind": archived.kind,
                "period": archived.period,
                "files": {k: str(v) for k, v in files.items() if v is not None},
            }
        )
    else:
        for p in (archived.html_path, archived.pdf_path, archived.json_path):
            if p is not None:
                print(p)
    if args.send:
        return _send(config, archived)
    return 0


def _writer(config: Config) -> Store | None:
    """A writable store for report_runs, or None (read-only medium, store busy)."""
    import sqlite3

    from agent.cli.output import writer
    from agent.store.evidence import KeyFileError

    try:
        return writer(config)
    except (OSError, sqlite3.Error, KeyFileError) as exc:
        print(f"sentinel: the report is written but not recorded in the store: {exc}", file=sys.stderr)
        return None


def _send(config: Config, archived: ArchivedReport) -> int:
    try:
        from agent.reports.delivery import deliver_unless_agent_runs, send_report
    except ImportError:
        print(
            "sentinel: e-mail delivery of reports is not available in this build "
            "(agent.reports.delivery is missing); the report is archived",
            file=sys.stderr,
        )
        return 1
    import time

    from agent.cli.output import writer

    store = writer(config)
    try:
        # Queued at the real time even with --at: a row due "as of" a future --at would wait.
        try:
            queued = send_report(config, store, archived, int(time.time() * 1000))
        except KeyError as exc:
            print(f"sentinel: report recipient channel(s) not configured: {exc.args[0]}", file=sys.stderr)
            return 1
        except FileNotFoundError as exc:
            print(f"sentinel: the report could not be queued: {exc}", file=sys.stderr)
            return 1
        # stdout lists the report's files (scripts read it); how the sending went is for the user.
        if queued:
            print(deliver_unless_agent_runs(config, store, archived), file=sys.stderr)
        else:
            print(
                f"未发送：没有为 {archived.kind} 配置收件渠道（reports.recipients），或已发送过",
                file=sys.stderr,
            )
    finally:
        store.close()
    return 0


def _list(config: Config, args: argparse.Namespace) -> int:
    from agent.reports.archive import list_archived

    reports = list_archived(config)
    tz = config.site.tz
    if args.json:
        rows = [
            {
                "kind": r.kind,
                "period": r.period,
                "lang": r.lang,
                "generated_at": iso(r.generated_ms, tz),
                "late": r.late,
                "html": str(r.html_path),
                "pdf": str(r.pdf_path) if r.pdf_path else None,
                "json": str(r.json_path),
                "sha256": r.sha256,
                "chain_head": r.chain_head,
            }
            for r in reports
        ]
        print_json(rows)
        return 0
    if not reports:
        print(f"no reports under {config.reports.output_dir}")
        return 0
    print_table(
        ["KIND", "PERIOD", "GENERATED", "LATE", "PDF", "SHA-256 (HTML)", "PATH"],
        [
            [
                r.kind,
                r.period + ("" if r.lang == "zh" else f" ({r.lang})"),
                fmt_time(r.generated_ms, tz),
                "yes" if r.late else "-",
                "yes" if r.pdf_path else "-",
                r.sha256.get(r.html_path.name, "")[:16],
                str(r.html_path.parent),
            ]
            for r in reports
        ],
    )
    return 0
