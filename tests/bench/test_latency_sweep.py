"""``bench/latency_sweep.py`` at a smoke size: one run per rate and round, on fresh services,
each with its percentiles to the balance row and to the ledger's commit; bad arguments are a
one-line error. Nothing here asserts a speed."""

from __future__ import annotations

import orjson
import pytest

from bench import latency_sweep


def test_a_sweep_measures_every_rate_in_every_round(tmp_path):
    out = tmp_path / "sweep.json"
    latency_sweep.main(["--rates", "50,100", "--rounds", "1", "--seconds", "2", "--members", "10",
                        "--out", str(out)])
    runs = orjson.loads(out.read_bytes())["runs"]
    assert [(run["rate"], run["round"]) for run in runs] == [(50, 1), (100, 1)]
    for run in runs:
        assert run["offered_per_s"] > 0 and run["unseen"] == 0
        assert 0 < run["p50_ms"] <= run["p99_ms"]
        assert 0 < run["ledger_p50_ms"] <= run["ledger_p99_ms"]


def test_a_rate_of_zero_is_refused(capsys):
    with pytest.raises(SystemExit) as refused:
        latency_sweep.main(["--rates", "0"])
    assert refused.value.code != 0
    assert "must be positive" in capsys.readouterr().err
