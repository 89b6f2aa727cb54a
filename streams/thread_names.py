"""Operating-system names for the worker's threads, so CPU time can be read per thread.

Python 3.11 names its threads for Python only: every thread of a worker shows
as ``python`` in ``/proc/<pid>/task/<tid>/comm``. ``name_os_thread`` sets
the calling thread's kernel name (``prctl(PR_SET_NAME)``, at most 15 bytes)
on Linux and does nothing elsewhere; the benchmark (``bench/cpu_parts.py``)
reads each named thread's CPU time to split a worker's cost between its
consumer loop, its ledger thread and the outbox relay. Never called on a
process's main thread (that would rename the process).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from collections.abc import Callable
from typing import Any

PR_SET_NAME = 15
OS_THREAD_NAME_BYTES_MAX = 15
LEDGER_THREAD = "ledger"
RELAY_THREAD = "outbox-relay"
CONSUMER_THREAD = "kafka-consumer"


def name_os_thread(name: str) -> None:
    """Give the calling thread ``name`` in the kernel (Linux only; best effort)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_NAME, name.encode()[:OS_THREAD_NAME_BYTES_MAX], 0, 0, 0)
    except OSError:
        return


def run_named(name: str, target: Callable[..., None], *args: Any) -> None:
    """A thread's body: name the thread ``name``, then run ``target(*args)``."""
    name_os_thread(name)
    target(*args)
