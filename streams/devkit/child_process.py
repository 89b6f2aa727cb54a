"""Child processes of the dev kit's launchers (PostgreSQL, tansu, Apache Kafka).

Lives here what the three launchers share: :class:`ChildService` (the
child's process, ``with`` support, a start that stops on failure), a free
loopback port, spawning a child in its own session (process group) with its
output appended to a log file, a bounded run, polling a readiness probe until
a deadline, reading the log back (its tail, the latest start attempt), and
stopping the child: a stop signal, a bounded grace, then SIGKILL to the whole
group and a bounded reap.

Decisions:

- Every child runs in a new session, so a Ctrl-C in the terminal reaches only
  Python, whose launcher decides how to stop it; SIGKILL goes to the group, so
  no helper process (PostgreSQL backends, Maven's forks) survives.
- When the child has already exited before ``terminate`` is called, the group
  is still sent SIGKILL: it reaches orphans the leader left behind.
- Every wait for a running child is bounded by a limit the caller names
  (``grace_s``, ``kill_timeout_s``, ``timeout_s``, a deadline from
  ``time.monotonic()``); only ``run_bounded`` reaps its killed child without
  a limit (a SIGKILLed process exits at once).
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

__all__ = [
    "LOOPBACK_HOST",
    "NO_LOG",
    "ChildService",
    "NotReady",
    "describe",
    "find_free_port",
    "latest_attempt",
    "log_tail",
    "run_bounded",
    "signal_group",
    "spawn",
    "terminate",
    "wait_until_ready",
]

log = logging.getLogger(__name__)

LOOPBACK_HOST = "127.0.0.1"
NO_LOG = "<no log>"
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")  # Maven 3.8 colours even in batch mode


class NotReady(Exception):
    """The child exited, or the deadline passed, before its probe succeeded; the message says which."""


class ChildService:
    """The base of a launcher that owns one long-running child process.

    A subclass names itself in ``display_name`` (for errors), sets ``_process``
    when it spawns the child, implements ``start()`` (refusing a second start
    with :meth:`_refuse_restart`, running its steps through :meth:`_start_guarded`)
    and an idempotent ``stop()``.
    """

    display_name = "the child process"
    _process: subprocess.Popen[bytes] | None = None

    @property
    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        """Process id of the child; it leads a process group that holds its helpers."""
        return self._process.pid if self._process is not None else None

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _refuse_restart(self) -> None:
        if self._process is not None:
            raise RuntimeError(f"{self.display_name} was already started")

    def _start_guarded(self, start: Callable[..., object], *args: Any) -> None:
        """Register ``stop()`` with ``atexit``, run ``start(*args)``; on any failure ``stop()`` and re-raise."""
        atexit.register(self.stop)
        try:
            start(*args)
        except BaseException:
            self.stop()
            raise


def find_free_port(host: str = LOOPBACK_HOST) -> int:
    """Return a TCP port that was free on ``host`` a moment ago.

    Found by binding port 0 and closing the socket, which leaves a small race
    with other processes: a launcher that loses it retries on a fresh port.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def spawn(command: Sequence[str], *, log_path: Path, **options: Any) -> subprocess.Popen[bytes]:
    """Start ``command`` in a new session, stdin closed, stdout and stderr appended to ``log_path``.

    ``options`` go to ``subprocess.Popen`` (``env``, ``cwd``, ``user``, ...).
    """
    with open(log_path, "ab") as log_file:
        return subprocess.Popen(
            list(command), stdin=subprocess.DEVNULL, stdout=log_file,
            stderr=subprocess.STDOUT, start_new_session=True, **options,
        )  # fmt: skip


def run_bounded(
    command: Sequence[str], *, timeout_s: float, log_path: Path, cwd: Path, limit_name: str
) -> int | str:
    """Run ``command`` with output to ``log_path``; its exit status, or a text naming the limit.

    On timeout the whole process group is killed (mvn and java fork helpers).
    """
    process = spawn(command, log_path=log_path, cwd=cwd)
    try:
        return process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _kill_and_reap(process)
        return f"killed: {limit_name}={timeout_s} passed"
    except BaseException:
        _kill_and_reap(process)
        raise


def describe(outcome: int | str) -> str:
    """``run_bounded``'s outcome as text: ``exit status N`` or the limit that passed."""
    return f"exit status {outcome}" if isinstance(outcome, int) else outcome


def wait_until_ready(
    process: subprocess.Popen[bytes],
    probe: Callable[[], object],
    *,
    deadline: float,
    probe_interval_s: float,
    limit: str,
    not_yet: tuple[type[BaseException], ...] = (Exception,),
    exited: str = "exited during startup",
    describe_error: Callable[[BaseException | None], str] = repr,
) -> None:
    """Call ``probe()`` every ``probe_interval_s`` until it returns while ``process`` runs.

    An exception in ``not_yet`` means "not yet"; others propagate. Raises
    :class:`NotReady` with ``exited`` when the process exits first, or naming
    ``limit`` (for example ``start_timeout_s=20.0``) and the last probe error
    (as ``describe_error`` writes it) when ``deadline`` (``time.monotonic()``) passes.
    """
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise NotReady(exited)
        try:
            probe()
        except not_yet as error:
            last_error = error
            time.sleep(probe_interval_s)
            continue
        if process.poll() is None:  # if another listener answered, the child has exited
            return
    raise NotReady(f"not ready within {limit} (last error: {describe_error(last_error)})")


def log_tail(path: Path | None, lines_max: int) -> str:
    """The last ``lines_max`` lines of a text file without colour codes, or ``<no log>``."""
    try:
        text = path.read_text(errors="replace")  # type: ignore[union-attr]
    except (OSError, AttributeError):
        return NO_LOG
    return "\n".join(ANSI_ESCAPE.sub("", text).splitlines()[-lines_max:])


def latest_attempt(path: Path | None, marker: str) -> str:
    """What the log holds after the last line starting with ``marker`` ("" without a log)."""
    try:
        text = path.read_text(errors="replace")  # type: ignore[union-attr]
    except (OSError, AttributeError):
        return ""
    return text.rpartition(marker)[2]


def terminate(
    process: subprocess.Popen[bytes],
    *,
    name: str,
    grace_s: float,
    kill_timeout_s: float,
    stop_signal: signal.Signals = signal.SIGTERM,
    leader_only: bool = False,
    slow_stop_level: int = logging.INFO,
) -> None:
    """Send ``stop_signal``, wait ``grace_s``, then SIGKILL the process group and reap.

    ``stop_signal`` goes to the whole group, or with ``leader_only`` to the
    child alone (PostgreSQL's postmaster stops its backends itself). A slow
    stop is logged at ``slow_stop_level`` with ``name``.
    """
    if process.poll() is None:
        (_signal_leader if leader_only else signal_group)(process.pid, stop_signal)
        try:
            process.wait(timeout=grace_s)
            return
        except subprocess.TimeoutExpired:
            log.log(slow_stop_level, "%s (pid %s) still running %.1f s after %s, killing it",
                    name, process.pid, grace_s, stop_signal.name)
    signal_group(process.pid, signal.SIGKILL)  # also reaches orphans the leader left
    process.wait(timeout=kill_timeout_s)


def signal_group(pid: int, sig: signal.Signals) -> None:
    """Signal the process group led by ``pid`` (it was started in a new session)."""
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass


def _signal_leader(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _kill_and_reap(process: subprocess.Popen[bytes]) -> None:
    signal_group(process.pid, signal.SIGKILL)
    process.wait()
