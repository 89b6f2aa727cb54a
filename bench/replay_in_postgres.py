"""What a read-model build inside PostgreSQL would start from: ``python -m bench.replay_in_postgres``.

Issue 21's replay target (50,000 facts/s on two cores) needs the work per
fact about halved, and one candidate is building the read models in
PostgreSQL instead of Python. Before any of it is written, this measures its
floor on the same store: a store of ``--facts`` facts is built through the
ledger (``bench.replay.build_store_at``) in an embedded PostgreSQL, then

- ``python``: today's rebuild in one process (``projections.runner.replay``,
  every read model), this process's CPU microseconds per stored fact;
- ``postgres.decode``: PostgreSQL parsing every stored fact's JSON
  (``convert_from(state, 'UTF8')::jsonb``), one backend;
- ``postgres.points_by_month``: the simplest KPI, points issued per month over
  the ``points_earned`` facts (decode, two fields, one GROUP BY);
- ``postgres.spend_by_member_month``: the ``kpi_member_months`` shape (decode,
  three fields, GROUP BY member and month).

Each PostgreSQL figure is a query's elapsed time per stored fact, the least
of ``--rounds`` (the query runs in one backend, so elapsed is its CPU). The
read models have 12 tables, several with an order-dependent rule (a member's
lots drawn oldest first, the tier a purchase was made in), so a build in
PostgreSQL costs at least one such pass per table.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import psycopg
from psycopg.sql import SQL, Identifier

from bench.replay import build_store_at
from ledger.application import LoyaltyLedger
from projections.runner import open_read_models, replay
from streams.devkit.embedded_postgres import EmbeddedPostgres
from streams.settings import Settings
from streams.worker import account_cache_env

FACTS_DEFAULT = 200_000
ROUNDS_DEFAULT = 3
US_PER_S = 1_000_000
DATABASE = "replay_in_postgres"
EARNED_TOPIC = "%PointsEarned"
DECODED = "SELECT convert_from(state, 'UTF8')::jsonb AS j FROM {events}"
QUERIES = {  # name: (query text, its parameters)
    "postgres.decode": ("SELECT count(*) FROM (" + DECODED + ") s WHERE j ? 'member_id'", None),
    "postgres.points_by_month": (
        "SELECT substr(j->'occurred_at'->>'_data_', 1, 7), sum((j->>'points')::bigint) FROM ("
        + DECODED + " WHERE topic LIKE %s) s GROUP BY 1", (EARNED_TOPIC,)),
    "postgres.spend_by_member_month": (
        "SELECT j->>'member_id', substr(j->'occurred_at'->>'_data_', 1, 7), count(*), "
        "sum((j->>'amount_minor')::bigint) FROM (" + DECODED + " WHERE topic LIKE %s) s GROUP BY 1, 2",
        (EARNED_TOPIC,)),
}


def measure(env: dict[str, str], url: str, facts: int, rounds: int) -> dict[str, float]:
    """Microseconds per stored fact of each figure (least of ``rounds``)."""
    figures = {"python": min(_python_us_per_fact(env) for _ in range(rounds))}
    ledger = LoyaltyLedger(env=env)
    events = ledger.recorder.events_table_name
    ledger.close()
    with psycopg.connect(url, autocommit=True) as connection:
        for name, (text, params) in QUERIES.items():
            query = SQL(text).format(events=Identifier(events))
            figures[name] = min(_elapsed_s(connection, query, params) for _ in range(rounds)) * US_PER_S / facts
    return figures


def _python_us_per_fact(env: dict[str, str]) -> float:
    ledger = LoyaltyLedger(env=env)
    try:
        with open_read_models(env) as models:
            started = time.process_time()
            done = replay(ledger, models)
            return (time.process_time() - started) * US_PER_S / done.notifications
    finally:
        ledger.close()


def _elapsed_s(connection: psycopg.Connection[Any], query: Any, params: tuple | None) -> float:
    started = time.perf_counter()
    connection.execute(query, params).fetchall()
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.replay_in_postgres",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--facts", type=int, default=FACTS_DEFAULT)
    parser.add_argument("--rounds", type=int, default=ROUNDS_DEFAULT)
    args = parser.parse_args(argv)
    if args.facts <= 0 or args.rounds <= 0:
        parser.error("facts and rounds must be positive")
    with EmbeddedPostgres() as postgres:
        database = postgres.create_database(DATABASE)
        env = database.env | account_cache_env(Settings())
        store = build_store_at(database.url, env, args.facts)
        figures = measure(env, database.url, store.facts, args.rounds)
    print(f"{store.facts:,} stored facts ({store.events:,} events)")
    for name, value in figures.items():
        print(f"{name}: {value:.2f} us per stored fact")


if __name__ == "__main__":
    main()
