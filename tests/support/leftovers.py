"""Finding processes a command left behind: every process it starts inherits
a mark in its environment, so they are found even after being re-parented,
and processes other work on the machine started are never counted."""

from __future__ import annotations

import uuid

import psutil

RUN_MARK_ENV = "LOYALTY_TEST_RUN_MARK"  # read by nothing but processes_marked


def new_mark() -> dict[str, str]:
    """Environment variables that mark a command and everything it starts."""
    return {RUN_MARK_ENV: uuid.uuid4().hex}


def processes_marked(mark: dict[str, str]) -> list[str]:
    """Command lines of live processes whose environment carries ``mark``."""
    found = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        try:
            if process.environ().get(RUN_MARK_ENV) == mark[RUN_MARK_ENV]:
                found.append(" ".join(process.info["cmdline"] or []))
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    return found
