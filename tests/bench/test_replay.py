"""The replay benchmark (``bench/replay.py``) at a smoke size: both designs in one run.

Nothing here asserts a speed. It checks that each measurement rebuilds the
whole store (split in processes, and in one process as before), that the
two designs end with the same rows, and that the peak memory counts the
split replay's shard processes too.
"""

from __future__ import annotations

from bench.replay import build_store_at, replay_run
from ledger.postgres.urls import eventsourcing_env_from_url
from projections.runner import open_read_models, read_model_digests
from tests.support.services import unique_database_name

STORE_FACTS_MIN = 3_000
SHARD_PROCESS_RSS_MB_MIN = 30  # a spawned Python with the ledger imported holds more than this


def test_the_replay_benchmark_measures_the_split_and_the_single_process_replay(embedded_pg):
    url = embedded_pg.create_database(unique_database_name("bench-replay")).url
    store = build_store_at(url, eventsourcing_env_from_url(url), STORE_FACTS_MIN)
    assert store.facts >= STORE_FACTS_MIN

    single = replay_run(store, 1)
    with open_read_models(store.env) as models:
        rows = read_model_digests(models)
    split = replay_run(store, 2)
    with open_read_models(store.env) as models:
        assert read_model_digests(models) == rows

    assert single.facts_per_s > 0 and split.facts_per_s > 0
    # the split run's peak includes its two shard processes
    assert split.peak_rss_mb > single.peak_rss_mb + 2 * SHARD_PROCESS_RSS_MB_MIN
