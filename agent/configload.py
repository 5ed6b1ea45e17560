"""The validated configuration for the monitoring process, with no pydantic or YAML in it.

`sentinel run` and `sentinel check` call `load_plain()`: a helper process (this module run as
`python -m agent.configload FILE`) parses and validates the file with the pydantic models and
sends back the result as plain objects (probes.plain), or the `ConfigError` with every problem.
The helper exits and takes pydantic's memory with it; the daemon stays within its budget.

The helper inherits the environment and working directory, so `${ENV}` secret references and
relative paths resolve as they would in-process. Only secret *references* cross the pipe.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agent.config_errors import ConfigError

HELPER_TIMEOUT_S = 300.0
"""A helper that hangs (a path on a dead network mount, say) is given up after this long."""


class ConfigLoadFailed(RuntimeError):
    """The helper process itself failed (not a problem in the file: that is ConfigError)."""


def load_plain(path: str | Path) -> Any:
    """The validated configuration at `path` as plain objects; raises ConfigError."""
    cmd = [sys.executable, "-m", "agent.configload", str(path)]
    # No pydantic plugin may watch the validation (it would see secret references and cost
    # memory for its entry-point scan).
    env = {**os.environ, "PYDANTIC_DISABLE_PLUGINS": "__all__"}
    try:
        proc = subprocess.run(
            cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=HELPER_TIMEOUT_S, check=False, env=env
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


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m agent.configload CONFIG_FILE", file=sys.stderr)
        return 2
    # Validation never hashes, but pydantic imports `secrets`, whose hmac import would load
    # OpenSSL's libcrypto: 3.5 MiB resident in this short-lived process for nothing. Without
    # `_hashlib`, hashlib and hmac fall back to CPython's built-in implementations.
    sys.modules.setdefault("_hashlib", None)  # type: ignore[arg-type]
    from agent.config_yaml import read_file

    try:
        # The file is read before pydantic is imported: YAML's node tree is gone by the time
        # the models are built, and its memory is reused for them.
        raw, lines = read_file(args[0])
        from agent.config import validate
        from probes.plain import to_plain

        result: Any = to_plain(validate(raw, lines, args[0], base_dir=Path.cwd()))
    except ConfigError as exc:
        result = exc
    # Written in pieces straight to the pipe: a pickle of a large site in one bytes object
    # would raise this process's peak memory, which counts against the agent's budget.
    pickle.dump(result, sys.stdout.buffer, protocol=pickle.HIGHEST_PROTOCOL)
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
