"""The validated configuration for the monitoring process, with no pydantic or YAML in it.

`sentinel run` and `sentinel check` never validate in their own process: the validating code
(this module) reads and checks the file with the pydantic models and hands over the result as
plain objects (probes.plain), or the `ConfigError` with every problem. Its memory goes with it;
the monitoring process stays within its budget. Two ways, one validation:

- `exec_validating()` (the `sentinel` command on POSIX): the process replaces itself by the
  validator, which replaces itself by the agent and passes the result in an unlinked file whose
  descriptor it names in SENTINEL_VALIDATED_FD. One process (one PID, for systemd too), and at no
  moment both pydantic and the running agent in memory.
- `load_plain()` (library callers, Windows): a helper child process, result over a pipe.

Either way the validator inherits the environment and working directory, so `${ENV}` secret
references and relative paths resolve as they would in-process. Only secret *references* are
handed over, never values.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from agent.config.errors import ConfigError

HELPER_TIMEOUT_S = 300.0
"""A helper that hangs (a path on a dead network mount, say) is given up after this long."""


class ConfigLoadFailed(RuntimeError):
    """The helper process itself failed (not a problem in the file: that is ConfigError)."""


def load_plain(path: str | Path) -> Any:
    """The validated configuration at `path` as plain objects; raises ConfigError."""
    cmd = [sys.executable, "-m", "agent.config.handoff", str(path)]
    try:
        proc = subprocess.run(
            cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=HELPER_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        raise ConfigLoadFailed(f"validating {path} took longer than {HELPER_TIMEOUT_S:g} s") from None
    except OSError as exc:
        raise ConfigLoadFailed(f"cannot start the configuration helper: {exc.strerror}") from None
    if proc.returncode != 0 or not proc.stdout:
        detail = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-5:]
        raise ConfigLoadFailed(
            f"the configuration helper failed (exit {proc.returncode}): {' / '.join(detail) or 'no output'}"
        )
    # Our own child wrote this pickle a moment ago from the validated file: trusted input.
    result = pickle.loads(proc.stdout)
    if isinstance(result, ConfigError):
        raise result
    return result


FD_ENV = "SENTINEL_VALIDATED_FD"
_EXEC_FLAG = "--exec"


def exec_validating(config_path: str, agent_args: Sequence[str]) -> NoReturn:
    """Replace this process by the validator; it runs `python -m agent AGENT_ARGS` next."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", "agent.config.handoff", _EXEC_FLAG, config_path, *agent_args])


def take_validated(config_path: str) -> Any:
    """The configuration the validator handed to this process, or None if it did not.

    The variable is removed at once so no child (a report process) mistakes it for its own."""
    fd = os.environ.pop(FD_ENV, None)
    if fd is None:
        return None
    with os.fdopen(int(fd), "rb") as fh:
        # Written by the validator that exec'd this very process: trusted input.
        path, result = pickle.load(fh)
    return result if path == config_path else None


def _validate(path: str) -> Any:
    """The plain configuration, or the ConfigError, of the file at `path`."""
    # Validation never hashes, but pydantic imports `secrets`, whose hmac import would load
    # OpenSSL's libcrypto: 3.5 MiB resident in this short-lived process for nothing. Without
    # `_hashlib`, hashlib and hmac fall back to CPython's built-in implementations.
    sys.modules.setdefault("_hashlib", None)  # type: ignore[arg-type]
    # No pydantic plugin may watch the validation (it would see secret references and cost
    # memory for its entry-point scan).
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    from agent.config.reader import read_file

    try:
        # The file is read before pydantic is imported: YAML's node tree is gone by the time
        # the models are built, and its memory is reused for them.
        raw, lines = read_file(path)
        from agent.config.schema import validate
        from probes.plain import to_plain

        return to_plain(validate(raw, lines, path, base_dir=Path.cwd()))
    except ConfigError as exc:
        return exc


def _exec_agent(path: str, agent_args: list[str]) -> NoReturn:
    had_plugins_env = "PYDANTIC_DISABLE_PLUGINS" in os.environ
    result = _validate(path)
    if isinstance(result, ConfigError):
        print(result.render(), file=sys.stderr)
        sys.exit(2)
    fh = tempfile.TemporaryFile()  # noqa: SIM115 - stays open: the exec'd process reads it
    pickle.dump((path, result), fh, protocol=pickle.HIGHEST_PROTOCOL)
    fh.flush()
    fh.seek(0)
    os.set_inheritable(fh.fileno(), True)
    env = dict(os.environ)
    env[FD_ENV] = str(fh.fileno())
    if not had_plugins_env:
        env.pop("PYDANTIC_DISABLE_PLUGINS", None)
    os.execve(sys.executable, [sys.executable, "-m", "agent", *agent_args], env)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) >= 2 and args[0] == _EXEC_FLAG:
        _exec_agent(args[1], args[2:])
    if len(args) != 1:
        print("usage: python -m agent.configload CONFIG_FILE", file=sys.stderr)
        return 2
    result = _validate(args[0])
    # Written in pieces straight to the pipe: a pickle of a large site in one bytes object
    # would raise this process's peak memory, which counts against the agent's budget.
    pickle.dump(result, sys.stdout.buffer, protocol=pickle.HIGHEST_PROTOCOL)
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
