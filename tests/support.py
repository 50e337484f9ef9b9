"""Test helpers shared by the e2e and reliability suites: polling, process control."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, TypeVar

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent

# Every secret value a test hands to our code, and every log file a child process wrote: the
# session-wide leak scan in tests/conftest.py checks all of them (and every test report) at the end.
SECRET_CANARIES: set[str] = set()
LOG_FILES: list[Path] = []


def wait_for(
    probe: Callable[[], T],
    predicate: Callable[[T], bool],
    *,
    timeout: float,
    what: str,
    interval: float = 0.1,
) -> T:
    """Poll ``probe`` until ``predicate`` holds; on timeout fail showing the last value seen."""
    deadline = time.monotonic() + timeout
    last: object = "<never probed>"
    while True:
        try:
            value = probe()
            last = value
            if predicate(value):
                return value
        except Exception as exc:
            last = f"{type(exc).__name__}: {exc}"
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last seen: {last!r}")
        time.sleep(interval)


class Process:
    """A child process whose output goes to a log file we can read back (and scan for leaks)."""

    def __init__(self, args: list[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        self.args = args
        self.log_path = log_path
        LOG_FILES.append(log_path)
        self._log: IO[bytes] = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=self._log, env={**os.environ, **(env or {})}, start_new_session=True
        )

    def first_line(self, timeout: float = 30.0) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode().strip()
        if not line:
            raise AssertionError(f"{self.args[:4]} exited before printing; log:\n{self.log_text()[-3000:]}")
        return line

    def log_text(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, sig: int = 15, timeout: float = 20.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.proc.stdout:
            self.proc.stdout.close()
        self._log.close()


def secretstage_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "secretstage.cli", *args]
