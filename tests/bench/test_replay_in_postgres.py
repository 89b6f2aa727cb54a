"""``bench/replay_in_postgres.py`` at a smoke size: every figure is measured per stored fact,
and its queries read the fields they name (the sum of the ``points_earned`` facts' points in
PostgreSQL is the sum the decoded facts give). Nothing here asserts a speed."""

from __future__ import annotations

import psycopg
from psycopg.sql import SQL, Identifier

from bench.replay import build_store_at
from bench.replay_in_postgres import QUERIES, measure
from ledger.application import LoyaltyLedger
from ledger.domain import LoyaltyAccount
from ledger.postgres.urls import eventsourcing_env_from_url
from tests.support.services import unique_database_name

STORE_FACTS_MIN = 2_000


def test_every_figure_is_per_stored_fact_and_the_sql_reads_the_facts_fields(embedded_pg):
    url = embedded_pg.create_database(unique_database_name("bench-in-pg")).url
    store = build_store_at(url, eventsourcing_env_from_url(url), STORE_FACTS_MIN)
    figures = measure(store.env, url, store.facts, rounds=1)
    assert set(figures) == {"python", *QUERIES}
    assert all(value > 0 for value in figures.values())

    ledger = LoyaltyLedger(env=store.env)
    try:
        earned = [fact for fact in ledger.fact_log.facts() if isinstance(fact, LoyaltyAccount.PointsEarned)]
        events = ledger.recorder.events_table_name
    finally:
        ledger.close()
    text, params = QUERIES["postgres.points_by_month"]
    query = SQL(text).format(events=Identifier(events))
    with psycopg.connect(url) as connection:
        by_month = connection.execute(query, params).fetchall()
    assert sum(points for _, points in by_month) == sum(fact.points for fact in earned) > 0
    assert {month for month, _ in by_month} == {f"{f.occurred_at:%Y-%m}" for f in earned}
