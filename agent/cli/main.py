"""`sentinel` command line: the parser, the dispatch and the conventions every command shares.

- `-c/--config FILE` is accepted before or after the command, on every command and action.
- Every command validates the configuration in its own process (agent.config.schema.load): the
  daemon keeps its PID and shows as `sentinel run` to `pgrep -f` and service checks.
- Exit codes: 0 fine, 1 the command failed, 2 the configuration or an argument is wrong, except
  `sentinel check`, a Nagios plugin, which answers a configuration error with 3 (UNKNOWN).
- Command modules are imported lazily: `check` and `status` must start fast and small, and the
  daemon must not carry the report renderer.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent import __version__
from agent.cli.output import fmt_time, iso, print_json, print_table, result_json

if TYPE_CHECKING:
    from agent.config.errors import ConfigError
    from agent.config.schema import Config

DEFAULT_CONFIG = "config/sentinel.example.yaml"
EXIT_CONFIG = 2
EXIT_CHECK_UNKNOWN = 3
"""`sentinel check` on a configuration error: UNKNOWN to Nagios (2 would page as CRITICAL)."""
EXIT_BROKEN_PIPE = 141
"""128 + SIGPIPE: what a shell reports for a command whose reader (head, less) went away."""

NO_CONFIG_COMMANDS = ("ssh", "completion")
"""Commands that run without a configuration file (a host key comes before the first SSH check)."""

FILE_COMPLETION = {"bash": "_shtab_compgen_files", "zsh": "_files", "tcsh": "f"}
"""shtab.FILE, written out so that building the parser never imports shtab."""


class _Parser(argparse.ArgumentParser):
    """Every parser of the tree takes -c/--config, so it may come before or after the command.

    The option's default is SUPPRESS everywhere: a subcommand that was not given -c leaves the
    value given before it alone; main() fills in $SENTINEL_CONFIG or the default afterwards.
    Subparsers are created with the parent's class, so nested actions get it too."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        action = self.add_argument(
            "-c",
            "--config",
            metavar="FILE",
            default=argparse.SUPPRESS,
            help=f"configuration file (default: $SENTINEL_CONFIG, else {DEFAULT_CONFIG})",
        )
        action.complete = FILE_COMPLETION  # type: ignore[attr-defined]  # read by shtab


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="sentinel",
        description="HIS Sentinel — monitoring and inspection agent for hospital information systems.",
        epilog="Exit codes: 0 OK; 1 the command failed; 2 configuration or argument error "
        "(`sentinel check`: 0 OK, 1 WARN, 2 CRIT, 3 UNKNOWN, also for a configuration error).",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
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
        "Exit code is the worst status, Nagios-style: 0 OK, 1 WARN, 2 CRIT, 3 UNKNOWN "
        "(3 also for an unknown check name or a configuration error). Nothing is stored.",
    )
    c.add_argument("names", nargs="*", metavar="NAME", help="check names (default: all enabled)")
    c.add_argument("--json", action="store_true", help="print JSON instead of a table")

    s = sub.add_parser(
        "status",
        help="show every check's current state from the store",
        description="Current confirmed state of every check, since when, and its last result.",
    )
    s.add_argument("--json", action="store_true", help="print JSON instead of a table")

    cfg = sub.add_parser("config", help="configuration commands: validate, history")
    cfg_sub = cfg.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    v = cfg_sub.add_parser(
        "validate",
        help="validate the configuration; print every problem; exit 2 if any",
        description="Validate the configuration file and print every problem with its key path "
        "and line. Exit code 0 when valid, 2 otherwise.",
    )
    v.add_argument("--json", action="store_true", help="print the result (and every problem) as JSON")
    h = cfg_sub.add_parser(
        "history",
        help="the configuration versions the agent put in force, when, and what changed",
        description="Every agent start records the effective configuration (secrets only as "
        "references) in the evidence-chained store; availability for any instant uses the version "
        "in force then. This lists the versions, from when to when each was in force, and the "
        "changed key paths.",
    )
    h.add_argument("--json", action="store_true", help="print JSON")
    h.add_argument("--all", action="store_true", help="show every changed key path")

    r = sub.add_parser("report", help="write an inspection report, or list the archived ones")
    r_sub = r.add_subparsers(dest="report_kind", metavar="KIND", required=True)
    from agent.cli import (
        availability,
        evidence,
        exclusions,
        faults,
        maintenance,
        notifications,
        reports,
        ssh,
        store,
    )
    from agent.cli import inspect as cli_inspect

    reports.add_parser(r_sub)
    groups = (faults, notifications, maintenance, availability, exclusions, ssh, cli_inspect, evidence, store)
    for group in groups:
        group.add_parser(sub)

    comp = sub.add_parser(
        "completion",
        help="print a shell completion script (bash or zsh)",
        description="Print a completion script generated from this parser. Load it with "
        '`eval "$(sentinel completion bash)"`, or save it as '
        "/etc/bash_completion.d/sentinel (bash) or as _sentinel in a directory of $fpath (zsh).",
    )
    comp.add_argument("shell", choices=["bash", "zsh"], help="the shell to complete for")
    return p


def entry() -> None:
    """The `sentinel` console script and `python -m agent`.

    A reader that goes away early (`sentinel faults list | head`) is not an error of ours: no
    traceback. Python would flush stdout again at exit and complain a second time, so stdout is
    pointed at /dev/null first (Python docs, signal module, "Note on SIGPIPE")."""
    try:
        try:
            code: int | str | None = main()
        except SystemExit as exc:  # argparse: --help, --version and usage errors end here
            code = exc.code
        sys.stdout.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        code = EXIT_BROKEN_PIPE
    raise SystemExit(code)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "config"):
        args.config = os.environ.get("SENTINEL_CONFIG") or DEFAULT_CONFIG
    if args.command == "completion":
        return _cmd_completion(parser, args)
    if args.command == "ssh":
        from agent.cli import ssh

        return ssh.run(args)
    from agent.config.errors import ConfigError
    from agent.config.schema import load

    try:
        config = load(args.config)
    except ConfigError as exc:
        return _config_error(exc, args)
    handlers: dict[str, Callable[[Config, argparse.Namespace], int]] = {
        "run": _cmd_run,
        "check": _cmd_check,
        "status": _cmd_status,
        "config": _cmd_config,
        "report": _lazy("reports"),
        "faults": _lazy("faults"),
        "notifications": _lazy("notifications"),
        "maintenance": _lazy("maintenance"),
        "availability": _lazy("availability"),
        "exclusions": _lazy("exclusions"),
        "inspect": _lazy("inspect"),
        "verify": _lazy("evidence"),
        "evidence": _lazy("evidence"),
        "store": _lazy("store"),
    }
    from agent.clock.periods import PeriodError
    from agent.store.evidence import KeyFileError

    try:
        return handlers[args.command](config, args)
    except (PeriodError, KeyFileError) as exc:
        print(f"sentinel: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130


def _config_error(exc: ConfigError, args: argparse.Namespace) -> int:
    if args.command == "config" and args.json:
        print_json(
            {
                "file": args.config,
                "valid": False,
                "problems": [{"path": p.path, "line": p.line, "message": p.message} for p in exc.problems],
            }
        )
    else:
        print(exc.render(), file=sys.stderr)
    return EXIT_CHECK_UNKNOWN if args.command == "check" else EXIT_CONFIG


def _lazy(module: str) -> Callable[[Config, argparse.Namespace], int]:
    """A command module's `run`, imported only when that command runs (keeps `check` small)."""

    def run(config: Config, args: argparse.Namespace) -> int:
        import importlib

        return int(importlib.import_module(f"agent.cli.{module}").run(config, args))

    return run


def _cmd_completion(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    import shtab

    print(shtab.complete(parser, shell=args.shell))
    return 0


def _cmd_config(config: Config, args: argparse.Namespace) -> int:
    if args.config_command == "history":
        return _lazy("config_history")(config, args)
    from agent.notify import preflight

    # Channels are checked without sending: a robot URL in the wrong variable shows up now,
    # not with the first 一级 alert.
    problems = [
        (f"notifications.channels.{name}", problem)
        for name, channel in config.notifications.channels.items()
        for problem in preflight(channel)
    ]
    summary = {
        "systems": len(config.systems),
        "checks": len(config.checks),
        "notification_channels": len(config.notifications.channels),
        "maintenance_windows": len(config.maintenance),
    }
    if args.json:
        print_json(
            {
                "file": args.config,
                "valid": not problems,
                "problems": [{"path": path, "line": None, "message": text} for path, text in problems],
                **({} if problems else {"summary": summary}),
            }
        )
        return EXIT_CONFIG if problems else 0
    if problems:
        print(f"{args.config}: {len(problems)} problem(s) in notification channels", file=sys.stderr)
        for path, text in problems:
            print(f"  - {path}: {text}", file=sys.stderr)
        return EXIT_CONFIG
    print(
        f"{args.config}: valid — {summary['systems']} systems, {summary['checks']} checks, "
        f"{summary['notification_channels']} notification channels, "
        f"{summary['maintenance_windows']} maintenance windows"
    )
    return 0


def _cmd_run(config: Config, args: argparse.Namespace) -> int:
    from agent.runtime import logs
    from agent.runtime.daemon import Daemon, limit_malloc_arenas
    from agent.runtime.health import ListenError
    from agent.store.db import StoreLocked
    from agent.store.evidence import KeyFileError

    limit_malloc_arenas()
    logs.setup(config.agent.log_level, config.agent.log_file, config.agent.log_json, config.site.tz)
    try:
        daemon = Daemon(config, Path(args.config).resolve())
    except StoreLocked as exc:
        print(f"sentinel: {exc}", file=sys.stderr)
        return 1
    except KeyFileError as exc:
        # Exit 2: restarting cannot fix a key file that is too open or missing.
        print(f"sentinel: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except ListenError as exc:
        # Exit 2 like a configuration error: the unit's RestartPreventExitStatus=2 keeps systemd
        # from restarting into the same busy address every few seconds.
        print(f"sentinel: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    rc = daemon.run()
    # Everything is committed and closed by now. A probe thread may still be stuck inside a
    # driver's C code (that is what deadlines are for); letting the interpreter finalise around
    # such daemon threads can crash it at exit. Flush the logs and leave directly.
    import logging

    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)


def _cmd_check(config: Config, args: argparse.Namespace) -> int:
    from agent.runtime.checks import run_checks_now

    try:
        # Probe memory is read, never written: `check` shows what the next run would see
        # (e.g. new log lines) without consuming it.
        rows = run_checks_now(config, args.names)
    except KeyError as exc:
        print(f"sentinel: unknown check(s): {exc.args[0]}", file=sys.stderr)
        return EXIT_CHECK_UNKNOWN
    worst = max((r.status for _, r in rows), default=0)
    if args.json:
        print_json([result_json(n, r, config.site.tz) for n, r in rows])
    else:
        print_table(
            ["CHECK", "STATUS", "TIME", "SUMMARY"],
            [[n, r.status.name, f"{r.duration_s * 1000:.0f} ms", r.summary] for n, r in rows],
        )
    return int(worst)


def _cmd_status(config: Config, args: argparse.Namespace) -> int:
    from agent.store.db import Store

    try:
        store = Store(config.storage.path, readonly=True)
    except FileNotFoundError as exc:
        print(f"sentinel: {exc}", file=sys.stderr)
        return 1
    tz = config.site.tz
    try:
        configured = {c.name for c in config.checks if c.enabled}
        states = [s for s in store.current() if s.check in configured]
        runs = store.runs()
    finally:
        store.close()
    last = runs[-1] if runs else None
    # The liveness rule availability and the reports use: alive up to heartbeat + grace.
    running = last is not None and last.alive(
        int(datetime.now(UTC).timestamp() * 1000), config.agent.grace_ms
    )
    if args.json:
        agent_info: dict[str, Any] = {"running": False}
        if last is not None:
            agent_info = {
                "running": running,
                "pid": last.pid,
                "started_at": iso(last.started_ts, tz),
                "last_heartbeat_at": iso(last.heartbeat_ts, tz),
                "stopped_at": iso(last.stopped_ts, tz),
                "liveness_grace_s": config.agent.grace_ms / 1000,
            }
        print_json(
            {
                "agent": agent_info,
                "checks": [
                    {
                        "check": s.check,
                        "kind": s.kind,
                        "system": s.system,
                        "state": s.hard.name if s.hard is not None else "PENDING",
                        "since": iso(s.since_ts or None, tz),
                        "last_result_at": iso(s.last_ts or None, tz),
                        "last_status": s.last_status.name if s.last_status is not None else None,
                        "summary": s.last_summary,
                    }
                    for s in states
                ],
            }
        )
        return 0
    if last is None:
        print("agent: has not run yet")
    else:
        print(
            f"agent: {'running' if running else 'not running'} (pid {last.pid}, "
            f"started {fmt_time(last.started_ts, tz)}, last heartbeat {fmt_time(last.heartbeat_ts, tz)})"
        )
    print_table(
        ["CHECK", "SYSTEM", "STATE", "SINCE", "LAST RESULT", "SUMMARY"],
        [
            [
                s.check,
                s.system or "-",
                s.hard.name if s.hard is not None else "PENDING",
                fmt_time(s.since_ts or None, tz, "-"),
                fmt_time(s.last_ts or None, tz, "-"),
                s.last_summary or "-",
            ]
            for s in states
        ],
    )
    missing = sorted(configured - {s.check for s in states})
    if missing:
        print(f"no results yet: {', '.join(missing)}")
    return 0
