"""The launchers' shared child-process helpers: spawn, readiness wait, log reading, stop."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from streams.devkit.child_process import (NO_LOG, NotReady, describe, latest_attempt, log_tail, run_bounded,
                                          spawn, terminate, wait_until_ready)

SHORT_GRACE_S = 0.3
KILL_TIMEOUT_S = 5.0
SLEEP_SCRIPT = "import time; time.sleep(60)"
IGNORES_SIGTERM_SCRIPT = (
    "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('ready', flush=True); time.sleep(60)"
)


def python(script: str) -> list[str]:
    return [sys.executable, "-c", script]


def wait_for_line(path: Path, line: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while line not in path.read_text():
        assert time.monotonic() < deadline, f"{line!r} never appeared in {path}"
        time.sleep(0.02)


def test_spawn_appends_output_to_the_log_in_a_new_session(tmp_path):
    log_path = tmp_path / "child.log"
    log_path.write_text("earlier\n")
    process = spawn(python("import os; print('pgid', os.getpgid(0) == os.getpid())"), log_path=log_path)
    assert process.wait(timeout=10) == 0
    assert log_path.read_text() == "earlier\npgid True\n"


def test_terminate_kills_a_child_that_ignores_the_stop_signal(tmp_path):
    log_path = tmp_path / "child.log"
    process = spawn(python(IGNORES_SIGTERM_SCRIPT), log_path=log_path)
    wait_for_line(log_path, "ready")
    started = time.monotonic()
    terminate(process, name="stubborn", grace_s=SHORT_GRACE_S, kill_timeout_s=KILL_TIMEOUT_S)
    assert process.returncode == -9
    assert SHORT_GRACE_S <= time.monotonic() - started < SHORT_GRACE_S + KILL_TIMEOUT_S


def test_terminate_stops_a_child_with_the_stop_signal_within_the_grace(tmp_path):
    process = spawn(python(SLEEP_SCRIPT), log_path=tmp_path / "child.log")
    terminate(process, name="sleeper", grace_s=KILL_TIMEOUT_S, kill_timeout_s=KILL_TIMEOUT_S)
    assert process.returncode == -15


def test_wait_until_ready_reports_a_child_that_exits(tmp_path):
    process = spawn(python("raise SystemExit(3)"), log_path=tmp_path / "child.log")
    with pytest.raises(NotReady, match="^exited during startup$"):
        wait_until_ready(process, lambda: 1 / 0, deadline=time.monotonic() + 10, probe_interval_s=0.01,
                         limit="start_timeout_s=10")


def test_wait_until_ready_names_the_limit_and_the_last_probe_error(tmp_path):
    process = spawn(python(SLEEP_SCRIPT), log_path=tmp_path / "child.log")
    try:
        with pytest.raises(NotReady, match=r"not ready within start_timeout_s=0.2 \(last error: ZeroDivisionError"):
            wait_until_ready(process, lambda: 1 / 0, deadline=time.monotonic() + 0.2, probe_interval_s=0.01,
                             limit="start_timeout_s=0.2")
        wait_until_ready(process, lambda: None, deadline=time.monotonic() + 1, probe_interval_s=0.01,
                         limit="start_timeout_s=1")  # returns: the probe answers and the child runs
    finally:
        terminate(process, name="sleeper", grace_s=KILL_TIMEOUT_S, kill_timeout_s=KILL_TIMEOUT_S)


def test_run_bounded_returns_the_status_or_names_the_limit(tmp_path):
    log_path = tmp_path / "run.log"
    assert run_bounded(python("raise SystemExit(4)"), timeout_s=10, log_path=log_path, cwd=tmp_path,
                       limit_name="format_timeout_s") == 4
    outcome = run_bounded(python(SLEEP_SCRIPT), timeout_s=0.2, log_path=log_path, cwd=tmp_path,
                          limit_name="format_timeout_s")
    assert describe(outcome) == "killed: format_timeout_s=0.2 passed"


def test_log_reading_keeps_the_tail_and_the_latest_attempt(tmp_path):
    log_path = tmp_path / "service.log"
    log_path.write_text("--- try 1\nAddress in use\n--- try 2\nline a\n\x1b[31mline b\x1b[0m\n")
    assert log_tail(log_path, 2) == "line a\nline b"
    assert latest_attempt(log_path, "--- try ") == "2\nline a\n\x1b[31mline b\x1b[0m\n"
    assert log_tail(tmp_path / "missing.log", 2) == NO_LOG
    assert log_tail(None, 2) == NO_LOG
    assert latest_attempt(None, "--- try ") == ""
