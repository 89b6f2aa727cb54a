"""CPU time of each part of a worker run, for microseconds of CPU per event.

Read from ``/proc`` (Linux): a process's own user + system time
(``/proc/<pid>/stat``, every thread, those that ended included) and each of
its threads' (``/proc/<pid>/task/<tid>/stat``), grouped by the kernel name
the worker gives them (``streams.thread_names``): the ledger thread (decide
and store), the outbox relay's thread (when the relay runs in the worker) and
faust's Kafka consumer thread; the rest of the process's time is its event
loop (faust's per-message consumer loop on the main thread, with the
metrics and watcher threads). PostgreSQL, the broker and the benchmark come
from ``bench.services.cpu_seconds`` (PostgreSQL with every backend, live or
ended).

``sample`` is taken at every poll of a run; ``us_per_event`` turns two
samples and the events applied between them into microseconds per event for
every part, and ``pipeline``: the product's processes together (workers,
relay, PostgreSQL, broker; not the benchmark).
"""

from __future__ import annotations

import os
from pathlib import Path

from streams.thread_names import CONSUMER_THREAD, LEDGER_THREAD, RELAY_THREAD

CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")
STAT_UTIME_FIELD = 11  # counted after the ")" that ends the command name: fields 14 and 15
US_PER_S = 1_000_000
THREAD_PARTS = {LEDGER_THREAD: "workers.ledger_thread", RELAY_THREAD: "workers.relay_thread",
                CONSUMER_THREAD: "workers.consumer_thread"}
EVENT_LOOP_PART = "workers.event_loop"
SERVICE_PARTS = ("postgresql", "broker")
PIPELINE = "pipeline"


def sample(processes: dict[str, int], services: dict[str, float]) -> dict[str, float]:
    """CPU seconds so far: each named process (``worker-0``, ``relay``), the workers'
    threads grouped by kind (summed over workers), and ``services`` (seconds already read)."""
    parts = dict.fromkeys([*THREAD_PARTS.values(), EVENT_LOOP_PART], 0.0)
    for name, pid in processes.items():
        total = process_cpu_s(pid)
        parts[name] = total
        if not name.startswith("worker"):
            continue
        threads = thread_cpu_s(pid)
        named = 0.0
        for thread, part in THREAD_PARTS.items():
            parts[part] += threads.get(thread, 0.0)
            named += threads.get(thread, 0.0)
        parts[EVENT_LOOP_PART] += total - named
    parts[PIPELINE] = sum(parts[name] for name in processes) + sum(services[s] for s in SERVICE_PARTS)
    return parts | services


def us_per_event(before: dict[str, float], after: dict[str, float], events: int) -> dict[str, float]:
    """Microseconds of CPU per event applied between two samples, for every part."""
    events = max(events, 1)
    return {name: round((after[name] - before[name]) * US_PER_S / events, 1)
            for name in after if name != "box"}


def process_cpu_s(pid: int) -> float:
    """User + system seconds of process ``pid`` (all its threads); 0 once it is gone."""
    return _stat_cpu_s(Path(f"/proc/{pid}/stat"))


def thread_cpu_s(pid: int) -> dict[str, float]:
    """User + system seconds of ``pid``'s live threads, summed by kernel thread name."""
    found: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            name = (task / "comm").read_text().strip()
        except OSError:
            continue
        found[name] = found.get(name, 0.0) + _stat_cpu_s(task / "stat")
    return found


def _stat_cpu_s(path: Path) -> float:
    try:
        fields = path.read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[STAT_UTIME_FIELD]) + int(fields[STAT_UTIME_FIELD + 1])) / CLOCK_TICKS_PER_S
