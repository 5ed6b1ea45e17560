"""`sentinel` command line. Commands import what they need lazily: `check` and `status`
must start fast and small, the daemon must not carry the report renderer."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

DEFAULT_CONFIG = "config/sentinel.example.yaml"
EXIT_CONFIG = 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sentinel",
        description="HIS Sentinel — monitoring and inspection agent for hospital information systems.",
    )
    p.add_argument(
        "-c",
        "--config",
        default=os.environ.get("SENTINEL_CONFIG", DEFAULT_CONFIG),
        help="configuration file (default: $SENTINEL_CONFIG or %(default)s)",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    sub.add_parser(
        "run",
        help="run the agent (daemon) in the foreground until SIGTERM/SIGINT",
        description="Run the agent: schedule every check, store results, write daily reports.",
    )

    c = sub.add_parser(
        "check",
        help="run checks once and print a table (exit code = worst status)",
        description="Run the named checks (all when none named) once, print the results. "
        "Exit code is the worst status, Nagios-style: 0 OK, 1 WARN, 2 CRIT, 3 UNKNOWN. "
        "Nothing is stored.",
    )
    c.add_argument("names", nargs="*", metavar="NAME", help="check names (default: all enabled)")
    c.add_argument("--json", action="store_true", help="print JSON instead of a table")

    s = sub.add_parser(
        "status",
        help="show every check's current state from the store",
        description="Current confirmed state of every check, since when, and its last result.",
    )
    s.add_argument("--json", action="store_true", help="print JSON instead of a table")

    cfg = sub.add_parser("config", help="configuration commands")
    cfg_sub = cfg.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    cfg_sub.add_parser(
        "validate",
        help="validate the configuration; print every problem; exit 2 if any",
        description="Validate the configuration file and print every problem with its key path "
        "and line. Exit code 0 when valid, 2 otherwise.",
    )

    r = sub.add_parser("report", help="write an inspection report")
    r_sub = r.add_subparsers(dest="report_kind", metavar="KIND", required=True)
    from agent.cli import reports as cli_reports

    cli_reports.add_parser(r_sub)
    from agent.cli import availability as cli_availability
    from agent.cli import ops as cli_ops

    cli_ops.add_parsers(sub)
    cli_availability.add_parsers(sub)
    from agent.cli import evidence as cli_evidence
    from agent.cli import inspect as cli_inspect
    from agent.cli.ssh import add_parser as add_ssh_parser

    add_ssh_parser(sub)
    cli_inspect.add_parser(sub)
    cli_evidence.add_parser(sub)
    return p


def entry() -> None:
    """The `sentinel` command and `python -m agent`: `main()`, allowed to replace the process.

    On POSIX, `run` and `check` hand the process to the validator, which hands it back with the
    validated configuration (agent.configload): one process at a time, never pydantic and the
    running agent together. `main()` itself never replaces the process (tests call it)."""
    raise SystemExit(main(exec_ok=True))


def main(argv: Sequence[str] | None = None, *, exec_ok: bool = False) -> int:
    raw_argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(raw_argv)
    if args.command == "ssh":
        # Recording a host key needs no configuration (it comes before the first SSH check).
        from agent.cli import ssh as cli_ssh

        return cli_ssh.run(args)
    from agent.config.errors import ConfigError
    from agent.config.handoff import ConfigLoadFailed

    try:
        config = _load_config(args, raw_argv, exec_ok)
    except ConfigError as exc:
        print(exc.render(), file=sys.stderr)
        return EXIT_CONFIG
    except ConfigLoadFailed as exc:
        print(f"sentinel: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    handler = {
        "run": _cmd_run,
        "check": _cmd_check,
        "status": _cmd_status,
        "config": _cmd_config,
        "report": _lazy("reports", "run"),
        "faults": _lazy("ops", "cmd_faults"),
        "notifications": _lazy("ops", "cmd_notifications"),
        "maintenance": _lazy("ops", "cmd_maintenance"),
        "availability": _lazy("availability", "cmd_availability"),
        "exclusions": _lazy("availability", "cmd_exclusions"),
        "inspect": _lazy("inspect", "run"),
        "verify": _evidence,
        "evidence": _evidence,
    }[args.command]
    from agent.clock.periods import PeriodError

    try:
        return handler(config, args)
    except PeriodError as exc:
        print(f"sentinel: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130


# Commands that run probes get the configuration in plain form from a validating helper
# process, so neither the daemon nor a `check` round carries pydantic and YAML (memory).
_PLAIN_CONFIG_COMMANDS = ("run", "check")


def _load_config(args: argparse.Namespace, raw_argv: list[str], exec_ok: bool) -> Any:
    if args.command in _PLAIN_CONFIG_COMMANDS:
        from agent.config import handoff as configload

        handed = configload.FD_ENV in os.environ
        validated = configload.take_validated(args.config)
        if validated is not None:
            return validated
        if exec_ok and os.name == "posix" and not handed:
            configload.exec_validating(args.config, raw_argv)
        return configload.load_plain(args.config)
    from agent.config.schema import load

    return load(args.config)


def _lazy(module: str, name: str) -> Any:
    """A command handler imported only when that command runs (keeps `sentinel check` small)."""

    def run(config: Any, args: argparse.Namespace) -> int:
        import importlib

        return int(getattr(importlib.import_module(f"agent.cli.{module}"), name)(config, args))

    return run


def _evidence(config: Any, args: argparse.Namespace) -> int:
    from agent.cli import evidence as cli_evidence

    return cli_evidence.run(args, config)


def _cmd_config(config: Any, args: argparse.Namespace) -> int:
    from agent.notify import preflight

    # Channels are checked without sending: a robot URL in the wrong variable shows up now,
    # not with the first 一级 alert.
    problems = [
        f"notifications.channels.{name}: {problem}"
        for name, channel in config.notifications.channels.items()
        for problem in preflight(channel)
    ]
    if problems:
        print(f"{args.config}: {len(problems)} problem(s) in notification channels", file=sys.stderr)
        for p in problems:
            print(f"  - {p}", file=sys.stderr)
        return EXIT_CONFIG
    print(
        f"{args.config}: valid — {len(config.systems)} systems, {len(config.checks)} checks, "
        f"{len(config.notifications.channels)} notification channels, "
        f"{len(config.maintenance)} maintenance windows"
    )
    return 0


def _cmd_run(config: Any, args: argparse.Namespace) -> int:
    from agent.runtime import logs
    from agent.runtime.daemon import Daemon, limit_malloc_arenas
    from agent.store.db import StoreLocked

    limit_malloc_arenas()
    logs.setup(config.agent.log_level, config.agent.log_file, config.agent.log_json)
    try:
        daemon = Daemon(config, Path(args.config).resolve())
    except StoreLocked as exc:
        print(f"sentinel: {exc}", file=sys.stderr)
        return 1
    rc = daemon.run()
    # Everything is committed and closed by now. A probe thread may still be stuck inside a
    # driver's C code (that is what deadlines are for); letting the interpreter finalise around
    # such daemon threads can crash it at exit. Flush the logs and leave directly.
    import logging

    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)


def _cmd_check(config: Any, args: argparse.Namespace) -> int:
    from agent.runtime.checks import run_checks_now

    try:
        # Probe memory is read, never written: `check` shows what the next run would see
        # (e.g. new log lines) without consuming it.
        rows = run_checks_now(config, args.names)
    except KeyError as exc:
        print(f"sentinel: unknown check(s): {exc.args[0]}", file=sys.stderr)
        return 3
    worst = max((r.status for _, r in rows), default=0)
    if args.json:
        print(json.dumps([_result_json(n, r) for n, r in rows], ensure_ascii=False, indent=2))
    else:
        _print_table(
            ["CHECK", "STATUS", "TIME", "SUMMARY"],
            [[n, r.status.name, f"{r.duration_s * 1000:.0f} ms", r.summary] for n, r in rows],
        )
    return int(worst)


def _result_json(name: str, r: Any) -> dict[str, Any]:
    if r is None:
        return {"check": name, "status": "UNKNOWN", "summary": "no result"}
    return {
        "check": name,
        "status": r.status.name,
        "summary": r.summary,
        "started_at": r.started_at.isoformat(),
        "duration_s": r.duration_s,
        "metrics": [{"name": m.name, "value": m.value, "unit": m.unit} for m in r.metrics],
        "details": dict(r.details),
    }


def _cmd_status(config: Any, args: argparse.Namespace) -> int:
    from agent.store.db import Store
    from agent.clock.timeutil import fmt_local

    try:
        store = Store(config.storage.path, readonly=True)
    except FileNotFoundError as exc:
        print(f"sentinel: {exc}", file=sys.stderr)
        return 1
    tz = config.site.tz
    configured = {c.name for c in config.checks if c.enabled}
    states = [s for s in store.current() if s.check in configured]
    runs = store.runs()
    last = runs[-1] if runs else None
    agent_info: dict[str, Any] = {"running": False}
    if last is not None:
        alive = last.stopped_ts is None and (
            datetime.now(UTC).timestamp() * 1000 - last.heartbeat_ts < 3 * config.agent.heartbeat * 1000
        )
        agent_info = {
            "running": alive,
            "pid": last.pid,
            "started": fmt_local(last.started_ts, tz),
            "last_heartbeat": fmt_local(last.heartbeat_ts, tz),
            "stopped": fmt_local(last.stopped_ts, tz) if last.stopped_ts else None,
        }
    if args.json:
        print(
            json.dumps(
                {
                    "agent": agent_info,
                    "checks": [
                        {
                            "check": s.check,
                            "kind": s.kind,
                            "system": s.system,
                            "state": s.hard.name if s.hard is not None else "PENDING",
                            "since": fmt_local(s.since_ts, tz) if s.since_ts else None,
                            "last_result": fmt_local(s.last_ts, tz) if s.last_ts else None,
                            "last_status": s.last_status.name if s.last_status is not None else None,
                            "summary": s.last_summary,
                        }
                        for s in states
                    ],
                },
                ensure_ascii=False,
                indent=2,
            )
        )
        return 0
    if last is None:
        print("agent: has not run yet")
    else:
        state = "running" if agent_info["running"] else "not running"
        print(
            f"agent: {state} (pid {last.pid}, started {agent_info['started']}, "
            f"last heartbeat {agent_info['last_heartbeat']})"
        )
    _print_table(
        ["CHECK", "SYSTEM", "STATE", "SINCE", "LAST RESULT", "SUMMARY"],
        [
            [
                s.check,
                s.system or "-",
                s.hard.name if s.hard is not None else "PENDING",
                fmt_local(s.since_ts, tz) if s.since_ts else "-",
                fmt_local(s.last_ts, tz) if s.last_ts else "-",
                s.last_summary or "-",
            ]
            for s in states
        ],
    )
    missing = sorted(configured - {s.check for s in states})
    if missing:
        print(f"no results yet: {', '.join(missing)}")
    return 0


def _print_table(header: list[str], rows: list[list[str]]) -> None:
    from unicodedata import east_asian_width

    def width(text: str) -> int:
        return sum(2 if east_asian_width(ch) in "WF" else 1 for ch in text)

    def clip(text: str, limit: int) -> str:
        text = text.replace("\n", " ")
        if width(text) <= limit:
            return text
        out, w = "", 0
        for ch in text:
            cw = width(ch)
            if w + cw > limit - 1:
                break
            out += ch
            w += cw
        return out + "…"

    # Every column but the last is clipped to 40 columns; the last one (a summary) to 120.
    limits = [40] * (len(header) - 1) + [120]
    cells = [[clip(str(c), limits[i]) for i, c in enumerate(r)] for r in rows]
    widths = [max([width(h)] + [width(r[i]) for r in cells]) for i, h in enumerate(header)]
    for r in [header, *cells]:
        print("  ".join(c + " " * (widths[i] - width(c)) for i, c in enumerate(r)).rstrip())
