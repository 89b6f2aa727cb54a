"""``loyalty demo`` with small settings, then the commands it suggests.

The demo starts its own embedded broker; in the Apache Kafka lane
(LOYALTY_TEST_BROKER=kafka) it is pointed at the session's broker through
``LOYALTY_*`` variables instead, with the same assertions (it then starts no
broker of its own: "no process left running" then covers its workers and
PostgreSQL). What the demo started is found by a mark in its environment,
not by counting brokers, which other work on the machine starts and stops.
"""

from __future__ import annotations

import os
import subprocess
import sys

import shutil
import signal
import time

import psutil
import pytest

from streams.devkit.services import demo_store_dir
from tests.support.leftovers import new_mark, processes_marked

DEMO_TIMEOUT_S = 300
COMMAND_TIMEOUT_S = 120


def loyalty(*args: str, cwd, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``loyalty ARGS`` run to completion; ``env`` is added to this process's environment."""
    return subprocess.run([sys.executable, "-m", "streams.cli", *args], cwd=cwd, text=True,
                          capture_output=True, timeout=DEMO_TIMEOUT_S, env={**os.environ, **(env or {})})


def servers_under(path) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if str(path) in cmdline and ("postgres" in cmdline or "tansu" in cmdline):
            found.append(process)
    return found


@pytest.mark.broker
def test_the_demo_runs_to_completion_and_its_store_replays_and_verifies(tmp_path, lane_broker_env):
    mark = new_mark()  # inherited by the broker, PostgreSQL and workers the demo starts
    demo = loyalty("demo", "--members", "80", "--days", "60", "--rate", "4000", "--seed", "7",
                   cwd=tmp_path, env=lane_broker_env("demo") | mark)
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    assert "verify: OK" in demo.stdout
    assert "programme KPIs" in demo.stdout and "Try next" in demo.stdout
    store = demo_store_dir(tmp_path / ".loyalty-demo")
    assert (store / "data" / "PG_VERSION").exists()
    assert servers_under(store) == [], "the demo left a server running"
    assert processes_marked(mark) == [], "the demo left a process (its broker?) running"
    # The commands it suggests reopen the same store
    replayed = loyalty("replay", "--no-progress", cwd=tmp_path)
    assert replayed.returncode == 0, replayed.stderr[-2000:]
    assert "replayed balances, tiers, annual, kpis" in replayed.stderr
    verified = loyalty("verify", cwd=tmp_path)
    assert verified.returncode == 0, verified.stdout[-2000:]
    assert "no mismatches" in verified.stdout
    member = demo.stdout.split("loyalty member ")[1].split()[0]
    shown = loyalty("member", member, cwd=tmp_path)
    assert shown.returncode == 0 and member in shown.stdout
    assert servers_under(store) == []
    shutil.rmtree(store.parent)


def test_the_demo_is_the_same_for_the_same_seed_size(tmp_path):
    first = loyalty("simulate", "--members", "50", "--days", "30", "--seed", "3",
                    "--out", str(tmp_path / "a.jsonl"), cwd=tmp_path)
    second = loyalty("simulate", "--members", "50", "--days", "30", "--seed", "3",
                     "--out", str(tmp_path / "b.jsonl"), cwd=tmp_path)
    assert first.returncode == second.returncode == 0
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()


WORKERS_STARTED_WAIT_S = 90  # the demo's workers start in 3-8 s when idle; >8 s seen under load
STARTED_POLL_INTERVAL_S = 0.5
STOP_TIMEOUT_S = 60


def started_workers(pid: int) -> list[psutil.Process]:
    """The process tree under ``pid`` once a ``loyalty worker`` is among it (or [] at the limit)."""
    deadline = time.monotonic() + WORKERS_STARTED_WAIT_S
    while time.monotonic() < deadline:
        children = psutil.Process(pid).children(recursive=True)
        if any("worker" in process_cmdline(child) for child in children):
            return children
        time.sleep(STARTED_POLL_INTERVAL_S)
    return []


def process_cmdline(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return []


@pytest.mark.broker
def test_ctrl_c_stops_the_demo_and_leaves_no_process_behind(tmp_path, lane_broker_env):
    mark = new_mark()
    demo = subprocess.Popen([sys.executable, "-m", "streams.cli", "demo", "--members", "300",
                             "--days", "365", "--rate", "500"], cwd=tmp_path, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={**os.environ, **lane_broker_env("demo-interrupted"), **mark})
    children = started_workers(demo.pid)
    assert children, f"the demo started no worker within {WORKERS_STARTED_WAIT_S} s"
    demo.send_signal(signal.SIGINT)
    output, _ = demo.communicate(timeout=STOP_TIMEOUT_S)
    assert demo.returncode == 130, output[-2000:]
    gone, alive = psutil.wait_procs(children, timeout=STOP_TIMEOUT_S)
    assert alive == [], [p.info if hasattr(p, "info") else p for p in alive]
    assert processes_marked(mark) == []
    shutil.rmtree(demo_store_dir(tmp_path / ".loyalty-demo").parent, ignore_errors=True)
