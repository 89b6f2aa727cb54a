"""A smoke run of the console's page benchmark (``python -m bench.console --quick``), so it cannot rot.

It checks the JSON it writes: every page answered 200 with positive times,
and no process it started is left behind. No speed is asserted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.leftovers import new_mark, processes_marked

pytestmark = pytest.mark.broker  # the benchmark starts its own broker (or the lane's, through LOYALTY_*)

REPO_ROOT = Path(__file__).resolve().parents[2]
SMOKE_TIMEOUT_S = 600
PAGES = {"overview", "member", "member_as_of", "dead_letters", "campaigns", "adjust_form",
         "dead_letters_first_index"}


def test_quick_console_benchmark_times_every_page(tmp_path, lane_broker_env):
    out = tmp_path / "console.json"
    mark = new_mark()
    run = subprocess.run([sys.executable, "-m", "bench.console", "--quick", "--out", str(out)],
                         cwd=REPO_ROOT, capture_output=True, text=True, timeout=SMOKE_TIMEOUT_S,
                         env={**os.environ, **lane_broker_env("console-bench"), **mark})
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads(out.read_text())
    assert PAGES <= set(result["pages"]), result["pages"].keys()
    for name, figures in result["pages"].items():
        assert figures["status"] == 200, (name, figures)
        assert 0 < figures["median_ms"] <= figures["p95_ms"] <= figures["max_ms"], (name, figures)
    assert result["facts"] > result["members"] and result["target_ms"] == 300
    assert "median ms" in run.stdout
    assert processes_marked(mark) == [], "the console benchmark left a process running"
