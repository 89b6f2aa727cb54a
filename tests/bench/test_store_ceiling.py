"""The event store's write ceiling (``bench/store_ceiling.py``) at a smoke size.

Nothing here asserts a speed. It checks that a measurement writes what it
counts: every fact lands in the events table once (none lost to a writer
that died, none written twice), each writer's tracking rows commit with its
batches, two writers never share an account, and the figures are positive.
"""

from __future__ import annotations

import math

import pytest

from bench.report import spread_pct
from bench.store_ceiling import facts_pool, measure, writer_facts
from ledger.application import LoyaltyLedger
from streams.settings import Settings
from tests.support.services import unique_database_name

POOL_FACTS = 1_000
BATCH_EVENTS = 100
PARTITIONS = 4


@pytest.fixture(scope="module")
def pool():
    return facts_pool(POOL_FACTS)


def test_the_pool_is_the_simulators_facts_across_many_accounts(pool):
    assert len(pool) == POOL_FACTS
    first_batch_accounts = {fact.originator_id for fact in pool[:BATCH_EVENTS]}
    assert len(first_batch_accounts) > BATCH_EVENTS // 10  # a batch spans many members
    assert len({fact.topic for fact in pool}) > 2         # opened, earned, ... not one kind


def test_each_writer_has_accounts_of_its_own(pool):
    first, second = writer_facts(pool, 0), writer_facts(pool, 1)
    assert not {f.originator_id for f in first} & {f.originator_id for f in second}
    assert [f.state for f in first] == [f.state for f in pool]  # only the ids change


@pytest.mark.parametrize("writers", [1, 2])
def test_a_measurement_writes_every_fact_once_with_its_tracking_rows(embedded_pg, pool, writers):
    name = unique_database_name(f"store-{writers}")
    url = embedded_pg.create_database(name).url
    try:
        run = measure(Settings.from_env(partitions=PARTITIONS), url, pool, writers, BATCH_EVENTS)

        # Every fact of every writer is in the table, once.
        assert run.events == writers * POOL_FACTS
        assert run.rows_counted == run.events
        assert run.commits == writers * math.ceil(POOL_FACTS / BATCH_EVENTS)
        assert run.events_per_s > 0 and run.commits_per_s > 0

        # Each writer committed a tracking row per partition it owns with every batch.
        settings = Settings.from_env(partitions=PARTITIONS, database_url=url)
        ledger = LoyaltyLedger(env=settings.store_env())
        try:
            positions = ledger.all_tracked_positions()
        finally:
            ledger.close()
        assert len(positions) == PARTITIONS
        assert set(positions.values()) == {math.ceil(POOL_FACTS / BATCH_EVENTS) - 1}
    finally:
        embedded_pg.drop_database(name)


def test_spread_is_the_runs_range_over_their_median():
    assert spread_pct([90.0, 100.0, 110.0]) == 20.0
    assert spread_pct([5.0]) == 0.0
