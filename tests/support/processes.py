"""Run ``loyalty`` commands as real processes and make sure none outlives its test.

``loyalty(...)`` runs a command to completion; ``spawned(...)`` starts one in
the background as a context manager that, on the way out (failure
included), stops it and every process it started, so a failing test never
leaves a broker, a PostgreSQL or a worker behind. ``descendants`` and
``assert_all_gone`` let a test check that a command cleaned up after itself.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import psutil

COMMAND_TIMEOUT_S = 120
STOP_TIMEOUT_S = 60
LINE_WAIT_S = 180


def loyalty(*args: str, cwd: Path, env: dict | None = None,
            timeout_s: float = COMMAND_TIMEOUT_S) -> subprocess.CompletedProcess:
    """Run ``loyalty ARGS`` to completion; text output captured."""
    return subprocess.run([sys.executable, "-m", "streams.cli", *args], cwd=cwd, text=True,
                          capture_output=True, timeout=timeout_s, env=_env(env))


def _env(extra: dict | None) -> dict:
    repository = str(Path(__file__).resolve().parents[2])
    path = os.pathsep.join(filter(None, [repository, os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, **(extra or {})}


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def has_descendant(pid: int, word: str) -> bool:
    """Whether a live descendant of ``pid`` has ``word`` in its command line.

    A child that exits or turns zombie between listing and reading its
    command line is simply not counted.
    """
    return any(word in _cmdline(process) for process in descendants(pid))


def assert_all_gone(processes: list[psutil.Process], timeout_s: float = STOP_TIMEOUT_S) -> None:
    _, alive = psutil.wait_procs(processes, timeout=timeout_s)
    assert alive == [], f"left running: {[(p.pid, _cmdline(p)) for p in alive]}"


def _cmdline(process: psutil.Process) -> str:
    try:
        return " ".join(process.cmdline())[:200]
    except psutil.Error:
        return "?"


class Spawned:
    """A background ``loyalty`` command whose output goes to a file (read it with ``output()``)."""

    def __init__(self, args: tuple[str, ...], cwd: Path, env: dict | None, log_path: Path) -> None:
        self.log_path = log_path
        with open(log_path, "wb") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "streams.cli", *args], cwd=cwd,
                                            env=_env(env), stdout=log, stderr=subprocess.STDOUT)
        self.seen: list[psutil.Process] = []

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_line(self, text: str, timeout_s: float = LINE_WAIT_S) -> str:
        """Wait until a line holding ``text`` is printed; fail if the command exits first."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.remember_descendants()
            for line in self.output().splitlines():
                if text in line:
                    return line
            if self.process.poll() is not None:
                raise AssertionError(f"exited {self.process.returncode} before {text!r}:\n"
                                     f"{self.output()[-3000:]}")
            time.sleep(0.2)
        raise AssertionError(f"no {text!r} within {timeout_s} s:\n{self.output()[-3000:]}")

    def remember_descendants(self) -> None:
        known = {p.pid for p in self.seen}
        self.seen += [p for p in descendants(self.process.pid) if p.pid not in known]

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """Send ``sig``, wait for the exit; the status."""
        self.remember_descendants()
        self.process.send_signal(sig)
        return self.process.wait(timeout_s)

    def kill_everything(self) -> None:
        """SIGKILL the command and what it started, if still running (psutil checks a pid was not reused)."""
        self.remember_descendants()
        if self.process.poll() is None:
            self.process.kill()
        for process in self.seen:
            with contextlib.suppress(psutil.Error):
                process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(STOP_TIMEOUT_S)


@contextlib.contextmanager
def spawned(*args: str, cwd: Path, env: dict | None = None) -> Iterator[Spawned]:
    """Start ``loyalty ARGS``; whatever happens, nothing it started survives the block."""
    command = Spawned(args, cwd, env, cwd / f"loyalty-{args[0]}-{time.monotonic_ns()}.log")
    try:
        yield command
    finally:
        command.kill_everything()
