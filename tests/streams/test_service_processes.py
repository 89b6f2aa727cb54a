"""Worker, outbox relay and projection follower as separate processes,
configured only through environment variables: metrics move as events flow,
health answers, and SIGTERM stops each cleanly within a named limit."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
import uuid

import pytest

from streams.devkit.embedded_broker import find_free_port
from tests.support import builders as b
from tests.support.services import lane_env

STOP_TIMEOUT_S = 30
METRICS_WAIT_S = 120
EVENTS = 200

pytestmark = pytest.mark.broker


def scrape(port: int, path: str = "/metrics") -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
            return response.status, response.read().decode()
    except OSError:
        return 0, ""


def metric(text: str, name: str) -> float:
    values = [float(v) for v in re.findall(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+]+)$", text, re.M)]
    return sum(values)


def spawn(args: list[str], env: dict, log) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "streams.cli", *args], env=env,
                            stdout=log, stderr=subprocess.STDOUT)


def wait_for(check, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return False


def test_services_by_environment_report_metrics_and_stop_on_sigterm(
        kafka_bootstrap, embedded_pg, tmp_path):
    suffix = uuid.uuid4().hex[:8]
    database = embedded_pg.create_database(f"svc_{suffix}")
    env = {**os.environ, "LOYALTY_BOOTSTRAP_SERVERS": kafka_bootstrap,
           "LOYALTY_DATABASE_URL": database.url, "LOYALTY_PARTITIONS": "4",
           "LOYALTY_EVENTS_TOPIC": f"events-{suffix}", "LOYALTY_LEDGER_TOPIC": f"ledger-{suffix}",
           "LOYALTY_TIER_CHANGES_TOPIC": f"tiers-{suffix}", "LOYALTY_CREDITS_TOPIC": f"cred-{suffix}",
           "LOYALTY_DEAD_LETTER_TOPIC": f"dead-{suffix}", "LOYALTY_CONSUMER_GROUP": f"g-{suffix}",
           **lane_env()}
    subprocess.run([sys.executable, "-m", "streams.cli", "setup"], env=env, check=True,
                   capture_output=True, timeout=60)
    worker_port, relay_port, follower_port = find_free_port(), find_free_port(), find_free_port()
    log = open(tmp_path / "services.log", "wb")
    worker = spawn(["worker"], {**env, "LOYALTY_METRICS_PORT": str(worker_port)}, log)
    relay = spawn(["relay"], {**env, "LOYALTY_METRICS_PORT": str(relay_port)}, log)
    follower = spawn(["replay", "--resume", "--follow", "--no-progress"],
                     {**env, "LOYALTY_METRICS_PORT": str(follower_port)}, log)
    try:
        assert wait_for(lambda: scrape(worker_port, "/healthz")[0] == 200, METRICS_WAIT_S)
        before = metric(scrape(worker_port)[1], "loyalty_events_applied_total")
        events = [b.purchase(f"svc-{n % 20}", f"2025-01-{n % 28 + 1:02d}T10:00:00Z", 30000 + n)
                  for n in range(EVENTS)]
        (tmp_path / "in.jsonl").write_text("\n".join(json.dumps(e) for e in events) + "\nbad\n")
        subprocess.run([sys.executable, "-m", "streams.cli", "produce", str(tmp_path / "in.jsonl")],
                       env=env, check=True, capture_output=True, timeout=60)
        assert wait_for(lambda: metric(scrape(worker_port)[1], "loyalty_events_applied_total")
                        >= before + EVENTS, METRICS_WAIT_S), (tmp_path / "services.log").read_text()
        text = scrape(worker_port)[1]
        assert metric(text, "loyalty_dead_letters_total") == 1
        assert metric(text, "loyalty_commit_latency_seconds_count") >= 1
        assert wait_for(lambda: scrape(follower_port, "/healthz")[0] == 200, METRICS_WAIT_S)
        assert wait_for(lambda: "loyalty_projection_lag_notifications" in scrape(follower_port)[1],
                        METRICS_WAIT_S)
        assert scrape(relay_port, "/healthz")[0] == 200, (tmp_path / "services.log").read_text()[-3000:]
        assert wait_for(lambda: "loyalty_outbox_lag_notifications 0.0"
                        in scrape(relay_port)[1], METRICS_WAIT_S)
    finally:
        statuses = [stop(process) for process in (worker, relay, follower)]
        log.close()
    assert statuses == [0, 0, 0], (tmp_path / "services.log").read_text()[-3000:]


def stop(process: subprocess.Popen) -> int | None:
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return None
