"""Every bad configuration gets a clear answer (issue 12, item 7).

A corpus of malformed files, each given to the real `sentinel` process: exit code 2, one clear
message naming the key path and line where there is one, never a traceback, and bounded time
and memory (each process runs under a 512 MiB address-space limit and a 20 s hang guard; that is
a guard, not a timing assertion).
"""

from __future__ import annotations

import os
import re
import resource
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.config.errors import MAX_SHOWN, ConfigError
from agent.config.reader import MAX_BYTES, MAX_NODES, read_yaml
from agent.config.schema import parse
from agent.runtime.health import HealthServer, ListenError
from agent.store.db import acquire_lock
from tests.conftest import REPO

MEMORY_LIMIT = 512 << 20
HANG_GUARD_S = 20


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def sentinel(*args: str, cwd: Path = REPO, timeout: float = HANG_GUARD_S) -> subprocess.CompletedProcess[str]:
    """The real `sentinel` command (as `python -m agent`), memory- and time-bounded."""
    return subprocess.run(
        [sys.executable, "-m", "agent", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        preexec_fn=_limit_memory,
        check=False,
    )


def validate(path: Path) -> str:
    """`sentinel -c PATH config validate`: asserts the clear-answer contract, returns stderr."""
    p = sentinel("-c", str(path), "config", "validate")
    out = p.stdout + p.stderr
    assert p.returncode == 2, out
    assert "Traceback" not in out, out
    assert p.stderr.startswith(f"{path}: "), out  # names the file first
    return p.stderr


def problems(stderr: str) -> list[str]:
    return [line[4:] for line in stderr.splitlines() if line.startswith("  - ")]


def write(tmp_path: Path, text: str, name: str = "sentinel.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# ------------------------------------------------------------------ (a) aliases and size


BILLION_LAUGHS = """\
site: {name: x}
a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]
"""


def test_an_alias_bomb_is_refused_within_bounded_memory(tmp_path: Path) -> None:
    # 9^9 = 387 million strings once expanded; 2.2 GB and counting before the bound.
    (problem,) = problems(validate(write(tmp_path, BILLION_LAUGHS)))
    assert f"more than {MAX_NODES:,} values once its aliases are expanded" in problem


def test_merges_of_merges_stay_linear() -> None:
    # Each level merges the one below twice: 2^40 pairs if every merge were walked as a copy.
    # PyYAML merges each pair once; so does the line index, and the document is accepted.
    levels = ["site: {name: x}", "m0: &m0 {k0: 1}"]
    levels += [f"m{i}: &m{i} {{<<: [*m{i - 1}, *m{i - 1}], k{i}: 1}}" for i in range(1, 40)]
    raw, lines = read_yaml("\n".join(levels) + "\n")
    assert raw["m39"] == {f"k{i}": 1 for i in range(40)}
    assert lines[("m39", "k39")] == 41 and lines[("m39", "k0")] == 2


def test_a_recursive_alias_is_refused_with_its_line(tmp_path: Path) -> None:
    (problem,) = problems(validate(write(tmp_path, "site: {name: x}\nloop: &l\n  - *l\n")))
    assert problem.startswith("loop[0] (line 2): ") and "recursive" in problem  # line of the anchor


def test_a_file_larger_than_the_bound_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    with path.open("w", encoding="utf-8") as f:
        f.write("site: {name: x}\n")
        f.write("# padding\n" * (MAX_BYTES // 10 + 1))
    (problem,) = problems(validate(path))
    assert "larger than 1 MiB" in problem and "right file" in problem


def test_legitimate_aliases_and_merge_keys_still_work() -> None:
    config = parse(
        """\
site: {name: x}
checks:
  - &web {name: a, kind: tcp, host: h, port: 1, interval: 30s, timeout: 5s}
  - <<: *web
    name: b
    timeout: 7s
"""
    )
    a, b = config.checks
    assert (a.name, a.timeout, b.name, b.timeout, b.interval) == ("a", 5.0, "b", 7.0, 30.0)


# ------------------------------------------------------------------ (b) not a regular file


def test_a_named_pipe_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "sentinel.yaml"
    os.mkfifo(fifo)
    # No writer ever opens it: an open() without O_NONBLOCK would wait forever.
    (problem,) = problems(validate(fifo))
    assert problem == "this is a named pipe (FIFO), not a regular file: give the path of the YAML file"


@pytest.mark.parametrize(("path", "what"), [("DIR", "a directory"), ("/dev/zero", "a device")])
def test_a_directory_or_a_device_is_refused(tmp_path: Path, path: str, what: str) -> None:
    (problem,) = problems(validate(tmp_path if path == "DIR" else Path(path)))
    assert problem.startswith(f"this is {what}, not a regular file")


def test_a_missing_file_is_named_in_one_line(tmp_path: Path) -> None:
    (problem,) = problems(validate(tmp_path / "nope.yaml"))
    assert problem == "cannot read the file: No such file or directory"


# ------------------------------------------------------------------ (c) listen addresses


def test_an_impossible_listen_port_is_a_configuration_error(tmp_path: Path) -> None:
    path = write(tmp_path, "site: {name: x}\nagent:\n  listen: 127.0.0.1:99999\n")
    (problem,) = problems(validate(path))
    assert problem.startswith("agent.listen (line 3): ") and "from 1 to 65535" in problem


@pytest.mark.parametrize(
    ("listen", "complaint"),
    [
        ("127.0.0.1:0", "from 1 to 65535"),
        ("127.0.0.1:http", "from 1 to 65535"),
        ("9187", "is not host:port"),
        (":9187", "is not host:port"),
        ("999.1.1.1:9187", "is not an IPv4 address"),
        ("127.1:9187", "is not an IPv4 address"),
        ("::1:9187", "in brackets"),
        ("[::g]:9187", "is not an IPv6 address"),
        ("his_agent:9187", "is not a host name or IP address"),
        ("http://127.0.0.1:9187", "without a scheme"),
    ],
)
def test_listen_addresses_are_validated_fully(listen: str, complaint: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(f"site: {{name: x}}\nagent: {{listen: '{listen}'}}\n")
    (problem,) = info.value.problems
    assert problem.path == "agent.listen" and problem.line == 2 and complaint in problem.message


@pytest.mark.parametrize(
    "listen", ["127.0.0.1:9187", "0.0.0.0:65535", "[::1]:1", "localhost:9187", "his-01.lan:80"]
)
def test_good_listen_addresses_pass(listen: str) -> None:
    assert parse(f"site: {{name: x}}\nagent: {{listen: '{listen}'}}\n").agent.listen == listen


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port another program listens on."""
    with socket.create_server(("127.0.0.1", 0)) as sock:
        yield int(sock.getsockname()[1])


@pytest.mark.parametrize(
    ("where", "reason"),
    [
        ("BUSY", "the address is already in use"),
        ("192.0.2.1:9187", "the address does not belong to this machine"),
    ],
)
def test_the_health_endpoint_turns_bind_errors_into_one_line(busy_port: int, where: str, reason: str) -> None:
    listen = f"127.0.0.1:{busy_port}" if where == "BUSY" else where  # 192.0.2.1: TEST-NET-1
    with pytest.raises(ListenError) as info:
        HealthServer(listen, lambda: {})
    assert str(info.value).startswith(f"cannot listen on {listen} (agent.listen): {reason}")
    assert "\n" not in str(info.value)


def test_the_daemon_refuses_a_busy_address_before_recording_a_run(tmp_path: Path, busy_port: int) -> None:
    from agent.runtime.daemon import Daemon

    db = tmp_path / "s.db"
    config = parse(
        f"site: {{name: x}}\nstorage: {{path: '{db}'}}\nagent: {{listen: '127.0.0.1:{busy_port}'}}\n"
    )
    with pytest.raises(ListenError):
        Daemon(config, tmp_path / "sentinel.yaml")
    assert not db.exists()  # no store opened, no run begun, nothing scheduled
    os.close(acquire_lock(db))  # and the store's lock was let go


def _run_agent(tmp_path: Path, listen: str) -> subprocess.CompletedProcess[str]:
    db = tmp_path / "s.db"
    path = write(tmp_path, f"site: {{name: x}}\nstorage: {{path: '{db}'}}\nagent: {{listen: '{listen}'}}\n")
    try:
        return sentinel("-c", str(path), "run", cwd=tmp_path, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("`sentinel run` kept running on an address it cannot use")


def test_sentinel_run_on_an_impossible_port_exits_2_without_a_traceback(tmp_path: Path) -> None:
    p = _run_agent(tmp_path, "127.0.0.1:99999")
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
    assert "agent.listen" in p.stderr and "65535" in p.stderr


def test_sentinel_run_on_a_busy_address_exits_2_with_one_line(tmp_path: Path, busy_port: int) -> None:
    # Exit 2 is what config/his-sentinel.service names in RestartPreventExitStatus=2: systemd
    # does not restart the agent every 10 s into the same busy port.
    p = _run_agent(tmp_path, f"127.0.0.1:{busy_port}")
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
    assert (
        f"sentinel: cannot listen on 127.0.0.1:{busy_port} (agent.listen): the address is already in use"
        in (p.stderr)
    )


def test_the_unit_does_not_restart_on_exit_2() -> None:
    unit = (REPO / "config/his-sentinel.service").read_text(encoding="utf-8")
    assert re.search(r"^Restart=", unit, re.M) and re.search(r"^RestartPreventExitStatus=2$", unit, re.M)


# ------------------------------------------------------------------ (d) duplicate keys


def test_duplicate_keys_are_refused_naming_both_lines(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
site: {name: x}
checks:
  - name: db
    kind: tcp
    host: 10.0.0.5
    port: 1521
    interval: 30s
    timeout: 5s
    interval: 5m
""",
    )
    (problem,) = problems(validate(path))
    assert problem == (
        "checks[0].interval (line 9): duplicate key 'interval' (lines 7 and 9); "
        "YAML would silently keep only the last one"
    )


def test_duplicate_sections_and_keys_equal_as_data_are_refused() -> None:
    with pytest.raises(ConfigError) as info:
        read_yaml(
            "site: {name: x}\n"
            "faults:\n  levels:\n    1: {respond: 5m}\n    01: {respond: 9m}\n"  # both the number 1
            "site: {name: y}\n"
        )
    assert [(p.path, p.line) for p in info.value.problems] == [("faults.levels.01", 5), ("site", 6)]


def test_a_key_written_next_to_a_merge_is_not_a_duplicate() -> None:
    raw, lines = read_yaml("base: &b {a: 1, b: 2}\nuse:\n  <<: *b\n  a: 3\n")
    assert raw["use"] == {"a": 3, "b": 2} and lines[("use", "a")] == 4


# ------------------------------------------------------------------ (e) paths as written


def test_paths_do_not_leak_pydantic_union_labels(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
site: {name: x}
systems:
  - name: HIS
    schedule:
      mon: ["8-17"]
  - name: LIS
    schedule: 5
notifications:
  channels:
    ding:
      type: dingtalk
      webhok: ${DING}
    mail:
      type: emial
""",
    )
    err = validate(path)
    assert problems(err) == [
        "systems[0].schedule (line 4): mon: '8-17' is not 'HH:MM-HH:MM'",
        "systems[1].schedule (line 7): expected a mapping or '7x24' (got 5)",
        "notifications.channels.ding.webhook (line 10): required key is missing",
        "notifications.channels.ding.webhok (line 12): unknown key 'webhok' (did you mean 'webhook'?)",
        "notifications.channels.mail.type (line 14): unknown type 'emial' (did you mean 'email'?); "
        "expected one of 'email', 'dingtalk', 'wecom', 'webhook'",
    ]
    for leak in ("function-after", "literal[", "ding.dingtalk", "Schedule", "tagged-union"):
        assert leak not in err


def test_unknown_keys_in_a_window_and_a_report_kind_read_as_written(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
site: {name: x}
reports:
  recipients: {dayly: []}
maintenance:
  - name: w
    reason: patch
    approvals: {甲方: 王主任, 乙方: 张工}
    weekly: {days: [sun], at: "02:00", duration: 2h, durations: 1h}
""",
    )
    assert problems(validate(path)) == [
        "reports.recipients.dayly (line 3): expected 'daily', 'weekly', 'monthly', 'quarterly', 'yearly', "
        "'inspection' or 'acceptance' (got 'dayly')",
        "maintenance[0].weekly.durations (line 8): unknown key 'durations' (did you mean 'duration'?)",
    ]


# ------------------------------------------------------------------ (f) not a configuration


def test_a_28_mb_log_file_gets_one_answer(tmp_path: Path) -> None:
    path = tmp_path / "his.log"
    line = "2024-05-01 12:00:00,123 INFO [http-nio-8080-exec-7] c.h.OrderService: order saved id=42\n"
    with path.open("w", encoding="utf-8") as f:
        f.write(line * (28_000_000 // len(line)))
    (problem,) = problems(validate(path))
    assert "(26.7 MiB)" in problem and "this does not look like a Sentinel configuration" in problem


def test_a_small_log_file_that_parses_as_yaml_gets_one_answer(tmp_path: Path) -> None:
    lines = [
        f"2024-05-01 12:{i % 60:02d}:00 INFO worker-{i}: request done, status 200\n" for i in range(5821)
    ]
    path = write(tmp_path, "".join(lines), "his.log")
    (problem,) = problems(validate(path))
    assert problem.startswith("this does not look like a Sentinel configuration: its top-level keys (")
    assert "and 5818 more" in problem


@pytest.mark.parametrize(
    ("text", "holds"),
    [
        ("just a note about the servers\n", "a single text value"),
        ("- site\n- checks\n", "a list"),
        ("version: '3'\nservices:\n  web: {image: nginx}\nvolumes: {}\n", "top-level keys ('version'"),
    ],
)
def test_other_files_are_named_as_not_a_configuration(tmp_path: Path, text: str, holds: str) -> None:
    (problem,) = problems(validate(write(tmp_path, text)))
    assert "this does not look like a Sentinel configuration" in problem and holds in problem


def test_binary_data_is_named_as_not_utf8_text(tmp_path: Path) -> None:
    path = tmp_path / "sentinel.yaml"
    path.write_bytes(b"site: {name: x}\n\xff\xfe\x00\x01")
    (problem,) = problems(validate(path))
    assert problem.startswith("(top level) (line 2): the file is not UTF-8 text")


def test_thousands_of_problems_are_capped(tmp_path: Path) -> None:
    text = "site: {name: x}\n" + "".join(f"junk{i}: {i}\n" for i in range(3000))
    err = validate(write(tmp_path, text))
    assert err.splitlines()[0].endswith("3000 problems in the configuration")
    assert len(problems(err)) == MAX_SHOWN
    assert err.splitlines()[-1].startswith(f"  … and {3000 - MAX_SHOWN} more")


# ------------------------------------------------------------------ the ordinary mistakes


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("checks: []\n", "site (line 1): required key is missing"),
        (
            "site: {name: x}\nagent:\n  workers: many\n",
            "agent.workers (line 3): Input should be a valid integer",
        ),
        ("site: HIS\n", "site (line 1): expected a mapping (got 'HIS')"),
        (
            "site: {name: x}\nagent:\n  worker: 8\n",
            "agent.worker (line 3): unknown key 'worker' (did you mean 'workers'?)",
        ),
        (
            "site: {name: x}\nchecks:\n  - name: a\n    kind: tpc\n",
            "checks[0].kind (line 4): unknown kind 'tpc'",
        ),
        ("site:\n  name: [unclosed\n", "(line 3): not valid YAML"),
    ],
)
def test_ordinary_mistakes_name_the_key_and_line(tmp_path: Path, text: str, expected: str) -> None:
    (problem,) = problems(validate(write(tmp_path, text)))
    assert expected in problem


def test_sentinel_check_answers_a_bad_configuration_with_unknown(tmp_path: Path) -> None:
    # Nagios: 3 = UNKNOWN. A broken file says nothing about the checked systems (not CRIT, 2).
    path = write(tmp_path, BILLION_LAUGHS)
    p = sentinel("-c", str(path), "check")
    assert p.returncode == 3 and "Traceback" not in p.stderr, p.stderr
    assert "aliases are expanded" in p.stderr
