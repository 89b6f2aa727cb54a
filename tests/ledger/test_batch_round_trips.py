"""A partition batch's round trips to PostgreSQL (issue 21, ``ledger_combine_statements``).

Counted from libpq's own trace of every connection the ledger takes: each
``Query`` (simple protocol) and each ``Sync`` (end of an extended-protocol
statement) the client sends is one round trip, except a statement's first
``Parse`` on a connection of the pool (once per connection, not per batch). The combined design reads the
batch's positions in one (none when the ledger's own last save wrote them all:
``LOYALTY_LEDGER_POSITION_CACHE``) and saves in four; the previous one
(``LOYALTY_LEDGER_COMBINE_STATEMENTS=false``, no position cache) in three and 6 + one per
partition; both store the same facts and tracking rows.
"""

from __future__ import annotations

import contextlib
import tempfile

import pytest
from eventsourcing.persistence import IntegrityError, Tracking
from psycopg import pq

from ledger.application import LoyaltyLedger
from ledger.program import DEFAULT_PROGRAM_PATH, parse_program
from tests.support import builders as b
from tests.support.services import unique_database_name

NO_POSITION_CACHE = {"LOYALTY_LEDGER_POSITION_CACHE": "false"}
PREVIOUS_DESIGN = {"LOYALTY_LEDGER_COMBINE_STATEMENTS": "false"} | NO_POSITION_CACHE
WORKER_CACHE = {"AGGREGATE_CACHE_MAXSIZE": "100", "AGGREGATE_CACHE_FASTFORWARD": "n"}  # as a worker's
PARTITIONS = 4
NAMES = [f"loyalty.events:{partition}" for partition in range(PARTITIONS)]


class RoundTrips:
    """Counts the messages that end a round trip on every connection the datastore lends."""

    def __init__(self, ledger: LoyaltyLedger) -> None:
        self.trace = tempfile.TemporaryFile("w+")
        datastore, lend = ledger.recorder.datastore, ledger.recorder.datastore.get_connection

        @contextlib.contextmanager
        def traced():
            with lend() as conn:
                conn.pgconn.trace(self.trace.fileno())
                conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)
                try:
                    yield conn
                finally:
                    conn.pgconn.untrace()

        datastore.get_connection = traced

    def since_last(self) -> int:
        """Round trips since the last call; not the ``Parse``-only ones psycopg sends the first
        time a connection of the pool prepares a statement."""
        self.trace.seek(0)
        sent = [line.split()[2] for line in self.trace.read().splitlines() if line.startswith("F\t")]
        self.trace.seek(0)
        self.trace.truncate()
        return sum(1 for before, message in zip(["", *sent], sent)
                   if message == "Query" or (message == "Sync" and before != "Parse"))


def _batch(ledger: LoyaltyLedger, round_trips: RoundTrips, first_offset: int) -> tuple[int, int]:
    """One batch over every partition (a purchase each): the position read's and the save's
    round trips."""
    round_trips.since_last()
    positions = ledger.tracked_positions(NAMES)
    read = round_trips.since_last()
    assert all(position in (None, first_offset - 1) for position in positions.values())
    commands = b.commands(*[b.purchase(f"M{partition}", f"2025-01-0{first_offset + 1}T10:00:00Z", 5_000)
                            for partition in range(PARTITIONS)])
    ledger.process_batch(commands, [Tracking(name, first_offset) for name in NAMES])
    return read, round_trips.since_last()


def _stored(ledger: LoyaltyLedger) -> tuple[list, dict]:
    facts = [(n.originator_id, n.originator_version, n.topic)
             for n in ledger.recorder.select_notifications(start=1, limit=1_000)]
    return facts, ledger.all_tracked_positions()


def _two_batches(env: dict) -> tuple[list[tuple[int, int]], tuple[list, dict]]:
    ledger = LoyaltyLedger(env=env | WORKER_CACHE)
    try:
        round_trips = RoundTrips(ledger)
        counts = [_batch(ledger, round_trips, offset) for offset in (0, 1)]
        return counts, _stored(ledger)
    finally:
        ledger.close()


def test_a_batch_knows_its_positions_from_the_last_save_and_saves_in_four(pg_env):
    counts, (facts, positions) = _two_batches(pg_env)
    assert counts[0][0] == 1  # the first batch reads its positions: no save of this ledger yet
    # the second batch: accounts cached, positions known, the library's tracking-table check done
    assert counts[1] == (0, 4)  # BEGIN; lock timeout, lock, notification; tracking and facts; COMMIT
    assert positions == {name: 1 for name in NAMES}
    assert len(facts) >= 2 * PARTITIONS


def test_without_the_position_cache_every_batch_reads_its_positions_in_one(pg_env):
    counts, _ = _two_batches(pg_env | NO_POSITION_CACHE)
    assert counts[1] == (1, 4)


def test_the_previous_design_takes_a_round_trip_per_statement(pg_env):
    counts, _ = _two_batches(pg_env | PREVIOUS_DESIGN)
    assert counts[1] == (3, 6 + PARTITIONS)


def test_both_designs_store_the_same_facts_and_positions(pg_env, embedded_pg):
    second = embedded_pg.create_database(unique_database_name("previous-round-trips")).env
    stored = [_two_batches(pg_env)[1], _two_batches(second | PREVIOUS_DESIGN)[1]]
    assert stored[0][1] == {name: 1 for name in NAMES}
    assert stored[0] == stored[1]


@pytest.mark.parametrize("table", ["t", "f"], ids=["single-row tracking", "legacy multi-row tracking"])
@pytest.mark.parametrize("with_facts", [False, True], ids=["tracking only", "tracking and facts"])
def test_a_position_that_does_not_move_forward_fails_the_whole_save(pg_env, with_facts, table):
    """The library's guard against a zombie's batch, kept by the combined statements with
    either tracking table: the batch raises IntegrityError and nothing of it is stored."""
    ledger = LoyaltyLedger(env=pg_env | {"SINGLE_ROW_TRACKING": table})
    try:
        assert ledger.recorder.datastore.single_row_tracking is (table == "t")
        ledger.process_batch([], [Tracking(NAMES[0], 7), Tracking(NAMES[1], 3)])
        stored = _stored(ledger)
        commands = b.commands(b.purchase("Z", "2025-01-01T10:00:00Z", 5_000)) if with_facts else []
        with pytest.raises(IntegrityError, match=NAMES[0]):
            ledger.process_batch(commands, [Tracking(NAMES[0], 7), Tracking(NAMES[1], 4)])
        assert _stored(ledger) == stored
        assert ledger.tracked_positions(NAMES[:2]) == {NAMES[0]: 7, NAMES[1]: 3}
    finally:
        ledger.close()


BUDGETED = parse_program(DEFAULT_PROGRAM_PATH.read_text() + """
[[campaigns]]
id = "ten"
name = "Ten for everyone, while it lasts"
starts_at = "2025-01-01T00:00:00Z"
ends_at = "2026-01-01T00:00:00Z"
bonus_points = 10
budget_points = 75
""")


def _budgeted_batches(env: dict) -> tuple[list[tuple[int, int]], tuple[list, dict], dict, list[int]]:
    """Two batches' round trips; the facts and positions, the budget's total, the awards."""
    ledger = LoyaltyLedger(env=env | WORKER_CACHE, program=BUDGETED)
    try:
        round_trips = RoundTrips(ledger)
        counts = [_batch(ledger, round_trips, offset) for offset in (0, 1)]
        awards = [line["points"] for fact in ledger.fact_log.facts()
                  if type(fact).__name__ == "PointsEarned" for line in fact.campaigns]
        return counts, _stored(ledger), ledger.budgets.awarded(), awards
    finally:
        ledger.close()


def test_a_budgeted_batch_adds_two_round_trips_and_the_previous_design_five(pg_env, embedded_pg):
    """The budgets' read and their lock; their new totals travel in the lock message (the
    budget transaction's BEGIN and COMMIT are the save's). The previous design: idle timeout,
    insert, select, lock, update. Same facts, positions and totals: the second batch spends
    what the first left (40 of 75, then 35: its last award cut to 5)."""
    counts, stored, awarded, awards = _budgeted_batches(pg_env)
    assert counts[1] == (0, 4 + 2)
    second = embedded_pg.create_database(unique_database_name("previous-budgets")).env
    previous_counts, previous_stored, previous_awarded, previous_awards = _budgeted_batches(
        second | PREVIOUS_DESIGN)
    assert previous_counts[1] == (3, 6 + PARTITIONS + 5)
    assert awarded == previous_awarded == {"ten": 75}
    assert sorted(awards) == sorted(previous_awards) == [5] + [10] * 7
    assert stored == previous_stored

