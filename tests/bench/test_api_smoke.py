"""A smoke run of the till API benchmark (``python -m bench --quick --only api``), so it cannot rot.

It runs the real command at its smallest size, one run, and checks the JSON it
writes: the redemption round trip (p50, p99) with its produce-and-poll
baseline and the balance lookups (requests/s, p99) with their ``/healthz``
baseline, each positive, the issue's targets judged, and no process the
benchmark started left behind. Nothing here asserts a speed.
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
FIGURES = {"api.redemption_p50", "api.redemption_p99", "api.lookup_rps", "api.lookup_p99"}
TARGETS = {"api.redemption_p99", "api.lookup_rps", "api.lookup_p99"}


def test_quick_api_benchmark_writes_its_figures_with_their_baselines(tmp_path):
    out = tmp_path / "bench.json"
    mark = new_mark()
    lane = ["--broker", "kafka"] if broker_lane() == KAFKA_LANE else []
    finished = subprocess.run([sys.executable, "-m", "bench", "--quick", "--only", "api",
                               "--out", str(out), *lane],
                              cwd=REPO_ROOT, capture_output=True, text=True, timeout=SMOKE_TIMEOUT_S,
                              env={**os.environ, **mark})
    assert finished.returncode == 0, finished.stderr[-4000:]
    assert "API redemption round trip p99" in finished.stdout

    figures = {figure["id"]: figure for figure in json.loads(out.read_text())["figures"]}
    assert set(figures) == FIGURES
    for figure in figures.values():
        for measure in (figure["value"], figure["baseline"]):
            assert measure["what"] and len(measure["runs"]) == 1, figure["id"]
            assert measure["median"] > 0, figure["id"]
    assert {id_ for id_, figure in figures.items() if figure["target"]} == TARGETS
    assert all(isinstance(figures[id_]["target"]["met"], bool) for id_ in TARGETS)
    extra = figures["api.redemption_p99"]["extra"]
    assert extra["background_purchases_per_s"][0] > 0  # purchases streamed in meanwhile
    assert [type(value) for value in extra["baseline_unseen"] + extra["not_200"]] == [int, int]
    previous = extra["previous_design_read_before_wakeup_ms"]  # the same run, reply_read_before_wakeup
    assert previous["p50"][0] > 0 and previous["p99"][0] >= previous["p50"][0]
    gc_default = extra["previous_design_gc_default_ms"]  # the same run, gc_tuned false
    assert gc_default["p50"][0] > 0 and gc_default["p99"][0] >= gc_default["p50"][0]
    assert extra["previous_design_gc_default_lookup_p99_ms"][0] > 0
    assert processes_marked(mark) == []
