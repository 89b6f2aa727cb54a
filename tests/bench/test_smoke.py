"""A smoke run of the benchmark (``python -m bench --quick``), so it cannot rot.

It runs the real command at its smallest sizes, one run per figure, and
checks the JSON it writes: every figure is there with a positive median and
a positive baseline from the same run, the machine facts and the targets are
filled, and no process the benchmark started is left behind. Nothing here
asserts a speed: the figures of a smoke run mean nothing. In the Apache Kafka
lane (LOYALTY_TEST_BROKER=kafka) it runs with ``--broker kafka``: the
benchmark then starts its own Kafka through the dev kit's launcher.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.leftovers import new_mark, processes_marked
from tests.support.services import KAFKA_LANE, broker_lane

pytestmark = pytest.mark.broker  # the benchmark starts its own broker

REPO_ROOT = Path(__file__).resolve().parents[2]
SMOKE_TIMEOUT_S = 600
FIGURES = {
    "raw.kafka_consume_decode", "raw.postgres_insert", "ingest.sustained", "ingest.wall",
    "scaling.workers_1", "scaling.workers_2", "scaling.workers_4", "replay", "replay.split",
    "latency.p50", "latency.p99", "latency.max", "memory.small", "memory.large",
    "campaigns.ingest", "campaigns.dense_ingest", "ingest.cpu_per_event", "ingest.relay_in_worker",
    "ingest.consumer_path", "ingest.gc", "campaigns.index", "ingest.batch_cycle", "ingest.relay_encoding",
    "ingest.dense_campaigns",
}
TARGETS = {"ingest.sustained", "replay", "latency.p99", "memory.large", "campaigns.ingest",
           "campaigns.dense_ingest", "ingest.dense_campaigns"}


def test_quick_benchmark_writes_every_figure_with_its_baseline(tmp_path):
    out = tmp_path / "bench.json"
    mark = new_mark()  # inherited by every process the benchmark starts

    # The command the README documents, at smoke size.
    lane = ["--broker", "kafka"] if broker_lane() == KAFKA_LANE else []
    finished = subprocess.run([sys.executable, "-m", "bench", "--quick", "--runs", "1", "--out", str(out), *lane],
                              cwd=REPO_ROOT, capture_output=True, text=True, timeout=SMOKE_TIMEOUT_S,
                              env={**os.environ, **mark})
    assert finished.returncode == 0, finished.stderr[-4000:]
    assert "ingest, sustained" in finished.stdout  # the table

    # Every figure, each with a positive value and baseline in every run.
    report = json.loads(out.read_text())
    figures = {figure["id"]: figure for figure in report["figures"]}
    assert set(figures) == FIGURES
    for figure in figures.values():
        for measure in (figure["value"], figure["baseline"]):
            assert measure["what"], figure["id"]
            assert len(measure["runs"]) == 1, figure["id"]
            assert all(value > 0 for value in measure["runs"]), figure["id"]
            assert measure["median"] > 0, figure["id"]
        assert figure["ratio_to_baseline"] > 0
        assert figure["size"] and figure["unit"]

    # issue 21: the follower's previous design (one statement each, synchronous commits)
    # beside the batched follower, same run
    previous_follower = figures["latency.p99"]["extra"]["previous_design_follower_ms"]
    assert len(previous_follower) == 1 and previous_follower[0] > 0
    # issue 21: the default consumer path beside the previous design, same run
    assert figures["ingest.consumer_path"]["baseline"]["what"] == "faust consumer path (previous design)"
    # ... and the collector's, in ingest and latency; issue 17: the campaign index beside the scan
    assert figures["ingest.gc"]["baseline"]["what"] == "CPython's collector (previous design)"
    assert all(value > 0 for value in figures["latency.p99"]["extra"]["previous_design_gc_default_ms"])
    assert figures["campaigns.index"]["baseline"]["what"].endswith("(previous design)")
    # ... and the worker's batch cycle of before (one round trip per statement, commits awaited)
    assert figures["ingest.batch_cycle"]["baseline"]["what"].endswith("(previous design)")
    # ... and the relay decoding every fact before publishing it
    assert figures["ingest.relay_encoding"]["baseline"]["what"].endswith("(previous design)")
    assert figures["ingest.relay_encoding"]["extra"]["baseline_cpu_us_per_event_median"]["relay"] > 0
    # the ingest headline runs the realistic campaigns; the dense stress set beside it, same run
    assert "realistic 20 campaigns active" in figures["ingest.sustained"]["notes"]
    assert figures["ingest.dense_campaigns"]["baseline"]["what"] == "realistic 20 campaigns (headline)"
    assert all(value > 0 for value in figures["latency.p99"]["extra"]["previous_design_batch_cycle_ms"])
    # ... and the follower reading its rows again every cycle
    assert all(value > 0 for value in figures["latency.p99"]["extra"]["previous_design_kept_rows_ms"])
    # CPU per event by part (issue 21): each of the worker's named threads was seen working,
    # the relay in its own process; in the previous design's runs, in worker-0's relay thread.
    # The direct consumer path consumes on the event loop: faust's consumer thread only works
    # in the faust path's runs.
    parts = figures["ingest.cpu_per_event"]["extra"]["cpu_us_per_event_median"]
    for part in ("workers.ledger_thread", "relay", "workers.event_loop", "postgresql", "broker"):
        assert parts[part] > 0, part
    assert parts["workers.relay_thread"] == 0 and parts["workers.consumer_thread"] == 0
    faust_path = figures["ingest.consumer_path"]["extra"]["baseline_cpu_us_per_event_median"]
    assert faust_path["workers.consumer_thread"] > 0
    assert parts["pipeline"] >= parts["workers"]
    previous = figures["ingest.relay_in_worker"]["extra"]["baseline_cpu_us_per_event_median"]
    assert previous["workers.relay_thread"] > 0 and "relay" not in previous
    assert report["run"]["outbox_relay"] == "own process"

    # The targets are judged; the machine is described.
    assert {id_ for id_, figure in figures.items() if figure["target"]} == TARGETS
    assert all(isinstance(figures[id_]["target"]["met"], bool) for id_ in TARGETS)
    machine = report["machine"]
    assert machine["cores_logical"] > 0
    assert machine["python"] and machine["postgresql"] and machine["broker"]
    assert report["run"]["mode"] == "quick" and report["run"]["runs"] == 1

    # Workers, followers, the broker and PostgreSQL are all gone.
    assert processes_marked(mark) == []
