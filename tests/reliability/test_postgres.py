"""PostgreSQL goes away under running workers.

1. Restarted mid-stream (stop, wait, start on the same data): the workers
   back off, stay up, resume, and the ledger ends where direct application
   of the same events ends: nothing lost, nothing twice.
2. Gone for longer than ``database_unavailable_s_max``: every worker (the
   one running the outbox relay and one with a batch in hand) exits with
   status 3 and says why, within a bounded time, instead of spinning.

Both use a PostgreSQL of their own (``PrivatePostgres``), never the
session's server, which other tests share.
"""

from __future__ import annotations

import time

import pytest

from streams.process import stop_workers, wait_until_processed
from streams.producer import produce_lines
from streams.topics import ensure_topics
from streams.settings import CONSUMER_PATHS
from streams.worker import EXIT_DATABASE_UNAVAILABLE, open_ledger
from tests.reliability.harness import Fleet, PrivatePostgres, pipeline_settings, produce_with_faults, retrying
from tests.support.streamgen import generate_events, with_faults
from tests.support.pipeline import assert_same_as_direct, progress, total_messages

pytestmark = pytest.mark.broker

PARTITIONS = 4
EVENTS = 12000
OUTAGE_S = 15                     # how long PostgreSQL stays down mid-stream (> eventsourcing's own retries)
UNAVAILABLE_S_MAX = 60            # the workers' limit in the restart test (longer than OUTAGE_S)
SHORT_UNAVAILABLE_S_MAX = 10      # the limit in the give-up test
CONNECT_TIMEOUT_S = 1
EXIT_WAIT_S = SHORT_UNAVAILABLE_S_MAX + 45  # limit + one attempt (eventsourcing retries) + FATAL_STOP_TIMEOUT_S
PROCESSED_TIMEOUT_S = 300


@pytest.fixture
def private_pg():
    server = PrivatePostgres()
    try:
        yield server
    finally:
        server.close()


def wait_for_fraction(ledger, settings, produced, fraction: float, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while progress(ledger, settings, produced) < total_messages(produced) * fraction:
        assert time.monotonic() < deadline, "no progress"
        time.sleep(0.05)


@pytest.mark.parametrize("consumer_path", CONSUMER_PATHS)
def test_postgres_restarted_mid_stream_loses_nothing_and_counts_nothing_twice(
        kafka_bootstrap, private_pg, tmp_path, consumer_path):
    database = private_pg.server.create_database("restart")
    settings = pipeline_settings(kafka_bootstrap, database.url, "pgrestart", PARTITIONS,
                                 database_connect_timeout_s=CONNECT_TIMEOUT_S,
                                 database_unavailable_s_max=UNAVAILABLE_S_MAX,
                                 database_retry_backoff_ms=200, database_retry_backoff_ms_max=2000,
                                 consumer_path=consumer_path)
    events = generate_events(seed=23, count=EVENTS)
    produced = produce_with_faults(settings, events, seed=23, bad_every=500)
    ledger = open_ledger(settings)
    fleet = Fleet(settings, tmp_path)
    try:
        fleet.start_worker(relay=True)
        fleet.start_worker(relay=False)
        wait_for_fraction(ledger, settings, produced, 0.15)
        # PostgreSQL stops mid-stream ...
        private_pg.stop()
        time.sleep(OUTAGE_S)
        assert len(fleet.living_workers()) == 2, fleet.logs()
        # ... and comes back on the same data
        private_pg.start()
        before = retrying(lambda: progress(ledger, settings, produced))
        assert before < total_messages(produced), "the outage was mid-stream"
        retrying(lambda: wait_until_processed(ledger, settings, produced, fleet.workers,
                                              timeout_s=PROCESSED_TIMEOUT_S))
        logs = fleet.logs()
        assert "database unreachable" in logs, "the workers met the outage"
        assert "the database is back" in logs
    finally:
        fleet.close()
    statuses = [w.process.returncode for w in fleet.workers]
    assert statuses == [0, 0], fleet.logs()
    assert_same_as_direct(ledger, events)
    ledger.close()


@pytest.mark.parametrize("consumer_path", CONSUMER_PATHS)
def test_a_worker_that_cannot_reach_postgres_for_longer_than_the_limit_exits_non_zero(
        kafka_bootstrap, private_pg, tmp_path, consumer_path):
    database = private_pg.server.create_database("giveup")
    settings = pipeline_settings(kafka_bootstrap, database.url, "pggiveup", PARTITIONS,
                                 database_connect_timeout_s=CONNECT_TIMEOUT_S,
                                 database_unavailable_s_max=SHORT_UNAVAILABLE_S_MAX,
                                 database_retry_backoff_ms=200, database_retry_backoff_ms_max=1000,
                                 consumer_path=consumer_path)
    events = generate_events(seed=29, count=400)
    ensure_topics(settings)
    ledger = open_ledger(settings)
    first = produce_lines(settings.bootstrap_servers, settings.events_topic,
                          [f'{line}'.encode() for line in with_faults(events[:200], seed=29)[0]])
    fleet = Fleet(settings, tmp_path)
    try:
        fleet.start_worker(relay=True)
        fleet.start_worker(relay=False)
        wait_until_processed(ledger, settings, first, fleet.workers, timeout_s=PROCESSED_TIMEOUT_S)
        ledger.close()
        private_pg.stop()
        stopped_at = time.monotonic()
        # more events arrive: every partition owner now holds a batch it cannot save
        produce_lines(settings.bootstrap_servers, settings.events_topic,
                      [line.encode() for line in with_faults(events[200:], seed=31)[0]])
        for worker in fleet.workers:
            remaining = max(EXIT_WAIT_S - (time.monotonic() - stopped_at), 1)
            worker.process.wait(remaining)
        elapsed_s = time.monotonic() - stopped_at
    finally:
        stop_workers(fleet.workers)
    assert [w.process.returncode for w in fleet.workers] == [EXIT_DATABASE_UNAVAILABLE] * 2, fleet.logs()
    assert elapsed_s >= SHORT_UNAVAILABLE_S_MAX
    for worker in fleet.workers:
        text = worker.log_path.read_text(errors="replace")
        assert "database_unavailable_s_max = 10 s" in text, text[-3000:]
        assert f"exiting with status {EXIT_DATABASE_UNAVAILABLE}" in text
