"""The campaigns figure's pairwise ratios (bench/run.py ``_pairwise``): each run over the
baseline run of its own round, not the ratio of two medians taken from different rounds."""

import statistics
from types import SimpleNamespace

from bench.ingest import WorkerRun
from bench.run import Bench, _pairwise


def run(rate: float, pipeline_us: float) -> WorkerRun:
    return WorkerRun(events=1, workers=2, wall_s=1.0, first_progress_s=0.1, sustained_events_per_s=rate,
                     cores_used={}, rss_first_batch_mb=1.0, cpu_us_per_event={"pipeline": pipeline_us},
                     sustained_window_s=20.0, rss_final_mb=1.0)


def test_each_run_is_paired_with_the_baseline_run_of_its_round():
    # a box drifting by 2x between rounds: the medians' ratio (90 / 150 = 0.6) mixes rounds
    runs = [run(90, 220), run(180, 110), run(45, 440)]
    baseline = [run(100, 200), run(200, 100), run(150, 400)]
    pairs = _pairwise(runs, baseline)
    assert pairs["pairwise_ratios"] == [0.9, 0.9, 0.3]
    assert pairs["pairwise_ratio_median"] == 0.9
    assert pairs["pairwise_pipeline_cpu_ratios"] == [1.1, 1.1, 1.1]
    assert pairs["pairwise_pipeline_cpu_ratio_median"] == 1.1


def campaigns_target_met(runs: list[WorkerRun], baseline: list[WorkerRun]) -> bool:
    bench = SimpleNamespace(figures=[])
    Bench._campaigns_figure(bench, "campaigns.ingest", "realistic", SimpleNamespace(events=1),
                            "campaigns.toml", runs, baseline, "test")
    return bench.figures[0].met


def test_the_campaigns_target_is_judged_on_each_rounds_cpu_ratio_not_on_the_medians():
    # one round's sides straddle a change of the host's speed: 2 slow rounds of 3 for the
    # campaigns side, 1 for none; the medians say 120 % dearer, every same-speed round 10 %
    runs = [run(90, 220), run(90, 220), run(180, 110)]
    baseline = [run(100, 200), run(200, 100), run(200, 100)]
    medians = [statistics.median(r.cpu_us_per_event["pipeline"] for r in side) for side in (runs, baseline)]
    assert medians == [220, 100]
    assert campaigns_target_met(runs, baseline)
    dearer = [run(80, 240), run(80, 240), run(160, 120)]  # 20 % more CPU in every round
    assert not campaigns_target_met(dearer, baseline)
