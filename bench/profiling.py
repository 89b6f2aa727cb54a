"""Optional sampling profiles (``--profile DIR``) with py-spy, summarised for the report.

py-spy is not a dependency of the project: install it into the virtualenv
(``pip install py-spy``) to use ``--profile``. It samples a running process
(a worker, the projection follower, or the benchmark itself during replay)
``PROFILE_RATE_HZ`` times a second without stopping it, and writes collapsed
stacks (``--format raw``): one line per distinct stack, ``frame;frame;... count``.

``summarise`` turns them into the evidence ``docs/BENCHMARKS.md`` quotes:
the share of active samples (idle threads are not sampled) in which a
function is on the stack (inclusive), is the leaf (self), and the self
share by top-level package (``psycopg``, ``eventsourcing``, ``kafka``...);
and, per thread (``--threads``), how busy it was: its active samples over
the samples it would have had running all the time.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

PROFILE_RATE_HZ = 100
PROFILE_STOP_TIMEOUT_S = 30
TOP_FRAMES = 15


class ProfilerMissing(RuntimeError):
    """--profile was given but py-spy is not installed."""


def py_spy_path() -> str:
    beside_python = Path(sys.executable).with_name("py-spy")
    found = str(beside_python) if beside_python.exists() else shutil.which("py-spy")
    if not found:
        raise ProfilerMissing("--profile needs py-spy: pip install py-spy (into this virtualenv)")
    return found


class Profiler:
    """``py-spy record`` attached to one process until it exits or ``stop()`` is called."""

    def __init__(self, pid: int, out: Path) -> None:
        self.out = out
        out.parent.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [py_spy_path(), "record", "--pid", str(pid), "--format", "raw", "--output", str(out),
             "--rate", str(PROFILE_RATE_HZ), "--nonblocking", "--threads"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.started = time.monotonic()

    def stop(self) -> dict[str, Any]:
        """Stop sampling (SIGINT makes py-spy write its file) and summarise."""
        duration_s = time.monotonic() - self.started
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(PROFILE_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if not self.out.exists():
            return {"error": "py-spy wrote nothing"}
        return summarise(self.out, duration_s)


def summarise(path: Path, duration_s: float, top: int = TOP_FRAMES) -> dict[str, Any]:
    inclusive: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        parts = [frame for frame in stack.split(";") if frame.strip()]
        if parts and parts[0].startswith("thread ("):
            thread = parts.pop(0).partition("): ")[2] or "unnamed"
        else:
            thread = "all"
        frames = [_function(frame) for frame in parts]
        if not frames or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        threads[thread] += count
        for frame in set(frames):
            inclusive[frame] += count
        leaf[frames[-1]] += count
        packages[_package(frames[-1])] += count

    def shares(counter: Counter[str]) -> list[dict[str, Any]]:
        return [{"frame": frame, "share": round(count / total, 4)}
                for frame, count in counter.most_common(top)]

    possible = duration_s * PROFILE_RATE_HZ
    return {"file": str(path), "samples": total, "rate_hz": PROFILE_RATE_HZ,
            "duration_s": round(duration_s, 1),
            "thread_busy": [{"thread": name, "samples": count, "busy": round(count / possible, 3)}
                            for name, count in threads.most_common(top)],
            "inclusive": shares(inclusive) if total else [], "self": shares(leaf) if total else [],
            "self_by_package": shares(packages) if total else []}


def _function(frame: str) -> str:
    """``name (path/file.py:123)`` without the line number: one entry per function."""
    name, _, where = frame.strip().partition(" (")
    return f"{name} ({where.rsplit(':', 1)[0]})" if where else name


def _package(frame: str) -> str:
    """The top-level package of a frame's file (``psycopg``), or the file for a script."""
    where = frame.partition(" (")[2].rstrip(")")
    return where.split("/", 1)[0] if "/" in where else (where or "native")
