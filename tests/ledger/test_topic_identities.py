"""The topic-identity table beside the event store (``ledger/postgres/topic_identities.py``)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from ledger.postgres.topic_identities import record_first_contact
from tests.support.services import unique_database_name

SESSIONS = 8  # workers of one `loyalty process` or `up` start at the same moment
ROUNDS = 5


def test_sessions_starting_together_create_the_table_once_and_the_first_writer_wins(embedded_pg):
    for round_number in range(ROUNDS):  # a fresh database each round: the race is on the CREATE
        url = embedded_pg.create_database(unique_database_name(f"identities_{round_number}")).url
        with ThreadPoolExecutor(SESSIONS) as pool:
            recorded = list(pool.map(lambda n: record_first_contact(url, {"events": f"id-{n}"}),
                                     range(SESSIONS)))
        assert len({r["events"] for r in recorded}) == 1, recorded  # every session sees one identity
