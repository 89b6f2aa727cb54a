"""CPU time by part (``bench/cpu_parts.py``): a worker's threads are told apart by the
kernel names ``streams.thread_names`` gives them, and per-event figures add up."""

from __future__ import annotations

import subprocess
import sys
import time

from bench.cpu_parts import EVENT_LOOP_PART, PIPELINE, sample, thread_cpu_s, us_per_event
from streams.thread_names import LEDGER_THREAD

BURN_S = 0.6
SETTLE_TIMEOUT_S = 20

# A stand-in worker: its "ledger" thread burns CPU, its main thread sleeps.
STAND_IN = f"""
import threading, time
from streams.thread_names import name_os_thread, run_named

def burn():
    while time.thread_time() < {BURN_S}:  # this thread's own CPU time, however busy the box
        pass
    print("done", flush=True)
    time.sleep(60)

threading.Thread(target=run_named, args=({LEDGER_THREAD!r}, burn), daemon=True).start()
time.sleep(60)
"""


def test_the_ledger_threads_cpu_is_its_own_part():
    process = subprocess.Popen([sys.executable, "-c", STAND_IN], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "done"
        threads = thread_cpu_s(process.pid)
        assert threads[LEDGER_THREAD] >= BURN_S / 2         # the named thread burnt the CPU...
        others = sum(cpu for name, cpu in threads.items() if name != LEDGER_THREAD)
        assert others < BURN_S / 2                          # ... not the main thread

        parts = sample({"worker-0": process.pid}, {"postgresql": 1.0, "broker": 2.0})
        assert parts["workers.ledger_thread"] == threads[LEDGER_THREAD]
        assert parts[EVENT_LOOP_PART] < parts["workers.ledger_thread"]
        assert parts[PIPELINE] == parts["worker-0"] + 3.0   # the process and both services
    finally:
        process.kill()
        process.wait(SETTLE_TIMEOUT_S)


def test_microseconds_per_event_between_two_samples():
    before = {"worker-0": 1.0, "postgresql": 0.5, "box": 10.0}
    after = {"worker-0": 1.3, "postgresql": 0.6, "box": 99.0}
    assert us_per_event(before, after, 1_000) == {"worker-0": 300.0, "postgresql": 100.0}


def test_a_gone_process_reads_as_no_time():
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait(SETTLE_TIMEOUT_S)
    time.sleep(0.1)
    assert sample({"relay": process.pid}, {"postgresql": 0.0, "broker": 0.0})["relay"] == 0.0
