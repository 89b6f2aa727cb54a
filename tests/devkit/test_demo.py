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
import shutil
import signal
import subprocess
import sys
import time

import psutil
import pytest

from streams.devkit.demo import DEMO_PROGRAM_PATH
from streams.devkit.services import stack_store_dir
from tests.support.leftovers import new_mark, processes_marked
from tests.support.processes import assert_all_gone, has_descendant, spawned

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
    # The till API ran beside the stream and its simulated tills held and captured points
    assert "export LOYALTY_API_URL=http://127.0.0.1:" in demo.stdout
    assert "export LOYALTY_API_KEY=lk_" in demo.stdout
    tills = demo.stdout.split("tills through the API: ")[1].split("\n")[0]
    figures = dict(reversed(part.split(" ", 1)) for part in tills.split(", "))
    assert int(figures["holds approved"]) > 0 and int(figures["captured"]) > 0, tills
    birthdays = demo.stdout.split("birthdays (loyalty birthdays' job, day by day): ")[1].split()[0]
    assert int(birthdays) > 0  # section 13: the job, not the simulator's CRM batch
    assert "programme KPIs" in demo.stdout and "then, from this directory, try:" in demo.stdout
    assert "# console: http://127.0.0.1:" in demo.stdout and "/console  (sign in with the key lk_" in demo.stdout
    charts = tmp_path / ".loyalty-demo" / "kpi-charts"
    assert f"KPI charts (PNG, each with its data as JSON): {charts.relative_to(tmp_path)}" in demo.stdout
    assert {path.name for path in charts.iterdir()} >= {"members.png", "members.json", "nps.png"}
    logs = {path.name for path in (tmp_path / ".loyalty-demo" / "logs").iterdir()}
    assert {"worker-0.log", "worker-1.log", "relay.log"} <= logs  # the relay in its own process
    store = stack_store_dir(tmp_path / ".loyalty-demo")
    assert (store / "data" / "PG_VERSION").exists()
    assert servers_under(store) == [], "the demo left a server running"
    assert processes_marked(mark) == [], "the demo left a process (its broker?) running"
    assert not (tmp_path / ".loyalty-demo" / "env").exists(), "the demo's env file outlived it"
    # The commands it suggests, with its store kept running by `loyalty up` as it says
    # (with the demo's program, campaigns included: the store recorded it as version 1)
    assert f"up --dir .loyalty-demo --keep-ledger --program {DEMO_PROGRAM_PATH}" in demo.stdout
    with spawned("up", "--dir", ".loyalty-demo", "--keep-ledger", "--workers", "1", "--relay-in-worker",
                 "--program", str(DEMO_PROGRAM_PATH), cwd=tmp_path,
                 env=lane_broker_env("demo")) as up:
        up.wait_for_line("ready")
        replayed = loyalty("replay", "--no-progress", cwd=tmp_path)
        assert replayed.returncode == 0, replayed.stderr[-2000:]
        assert "replayed balances, tiers, annual, kpis" in replayed.stderr
        verified = loyalty("verify", "--catch-up", cwd=tmp_path)
        assert verified.returncode == 0, verified.stdout[-2000:]
        assert "no mismatches" in verified.stdout
        member = demo.stdout.split("try:")[1].split(" member ")[1].split()[0]
        shown = loyalty("member", member, cwd=tmp_path)
        assert shown.returncode == 0 and member in shown.stdout
        assert up.stop() == 0
        assert_all_gone(up.seen)
    assert servers_under(store) == []
    shutil.rmtree(store.parent)


def test_the_demo_is_the_same_for_the_same_seed_size(tmp_path):
    first = loyalty("simulate", "--members", "50", "--days", "30", "--seed", "3",
                    "--out", str(tmp_path / "a.jsonl"), cwd=tmp_path)
    second = loyalty("simulate", "--members", "50", "--days", "30", "--seed", "3",
                     "--out", str(tmp_path / "b.jsonl"), cwd=tmp_path)
    assert first.returncode == second.returncode == 0
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()


INTERRUPT_AFTER_S = 3
START_TIMEOUT_S = 120


@pytest.mark.broker
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGHUP])
def test_ctrl_c_or_a_closed_terminal_stops_the_demo_and_leaves_no_process_behind(tmp_path, sig,
                                                                                   lane_broker_env):
    mark = new_mark()
    with spawned("demo", "--members", "300", "--days", "365", "--rate", "500", cwd=tmp_path,
                 env=lane_broker_env(f"demo-interrupted-{sig.name}") | mark) as demo:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not has_descendant(demo.process.pid, "worker"):
            assert time.monotonic() < deadline and demo.process.poll() is None, demo.output()[-2000:]
            time.sleep(0.5)
        time.sleep(INTERRUPT_AFTER_S)  # events flowing
        assert demo.stop(sig) == 130, demo.output()[-2000:]
        assert_all_gone(demo.seen)
    assert processes_marked(mark) == []
    shutil.rmtree(stack_store_dir(tmp_path / ".loyalty-demo").parent, ignore_errors=True)
