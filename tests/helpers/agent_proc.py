"""Run the real agent as a child process against a config written by the test."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.conftest import REPO, wait_until


class AgentProcess:
    def __init__(self, workdir: Path, config_text: str) -> None:
        self.workdir = workdir
        self.config = workdir / "sentinel.yaml"
        self.config.write_text(config_text, encoding="utf-8")
        self.proc: subprocess.Popen[str] | None = None
        self.log = workdir / "agent.log"

    @property
    def db_path(self) -> Path:
        return self.workdir / "var" / "sentinel.db"

    def start(self) -> subprocess.Popen[str]:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        logf = open(self.log, "a", encoding="utf-8")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agent", "-c", str(self.config), "run"],
            cwd=self.workdir,
            env=env,
            stdout=logf,
            stderr=subprocess.STDOUT,
            text=True,
        )
        return self.proc

    def rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        """Read the agent's store read-only, rows by column name; [] while it does not exist yet
        or the agent is still creating the schema."""
        if not self.db_path.exists():
            return []
        try:
            with sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=5) as db:
                db.row_factory = sqlite3.Row
                return list(db.execute(sql, args))
        except sqlite3.OperationalError:
            return []

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """`sentinel -c <this agent's config> ARGS` as a user runs it, in the agent's directory."""
        return subprocess.run(
            [sys.executable, "-m", "agent", "-c", str(self.config), *args],
            cwd=self.workdir,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def result_count(self) -> int:
        found = self.rows("SELECT count(*) AS n FROM results")
        return int(found[0]["n"]) if found else 0

    def wait_results(self, n: int, timeout: float) -> int:
        wait_until(lambda: self.result_count() >= n, timeout, f"{n} results in the store")
        return self.result_count()

    def threads(self) -> int:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("Threads:"):
                return int(line.split()[1])
        raise AssertionError("no Threads line")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> tuple[int, float]:
        assert self.proc is not None
        t0 = time.monotonic()
        self.proc.send_signal(sig)
        rc = self.proc.wait(timeout)
        return rc, time.monotonic() - t0

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def text_log(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""
