"""The till API's kept accounts and its wake-ups, against the ledger they read.

- ``FreshAccounts`` (in-memory store): after every event of a random stream,
  the kept document of each member equals the document of the account
  rebuilt from the store; at most ``accounts_max`` accounts are kept;
- ``NewerFacts`` (PostgreSQL): questions asked together are answered right,
  per member, from one store;
- ``FactWakeups`` (PostgreSQL): a commit of a member's facts wakes that
  member's waiter long before the re-read interval, and not another member's.
"""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg_pool import AsyncConnectionPool

from ledger.application import LoyaltyLedger
from ledger.domain import account_id
from streams.api.fresh_accounts import FreshAccounts, NewerFacts
from streams.api.reads import kept_document, member_document
from streams.api.wakeups import FactWakeups
from tests.support.ledger_steps import apply
from tests.support.streamgen import generate_events

WAKE_TIMEOUT_S = 20
RECHECK_INTERVAL_MS = 120_000  # far longer than any test: only a notification wakes a waiter
PURCHASE = {"type": "purchase", "schema_version": 1, "amount_minor": 2_599, "currency": "EUR",
            "store_id": "S-001"}


def purchase(member: str, number: int) -> dict:
    return {**PURCHASE, "event_id": f"{member}-p{number}", "member_id": member,
            "occurred_at": f"2025-06-{1 + number:02d}T10:00:00Z"}


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_kept_documents_equal_rebuilt_ones_after_every_event(seed):
    ledger = LoyaltyLedger()
    accounts = FreshAccounts(ledger, accounts_max=4)
    for event in generate_events(seed, count=120, members=6, ambassadors=2):
        apply(ledger, event)
        member = event["member_id"]
        kept = accounts.read(member, lambda kept: kept_document(kept, ledger))
        assert kept == member_document(ledger.find_account(member), ledger)
    assert len(accounts._kept) <= 4


def test_the_least_recently_read_account_is_dropped_past_accounts_max():
    ledger = LoyaltyLedger()
    accounts = FreshAccounts(ledger, accounts_max=2)
    for member in ("m1", "m2", "m3"):
        apply(ledger, purchase(member, 1))
    for member in ("m1", "m2", "m1", "m3"):
        accounts.read(member, lambda kept: kept_document(kept, ledger))
    assert accounts.peek_document("m2") is None
    assert accounts.peek_document("m1")["member_id"] == "m1"
    assert accounts.read("nobody", lambda kept: kept_document(kept, ledger)) is None
    assert accounts.peek_document("nobody") is None


def conninfo(pg_env: dict[str, str]) -> str:
    return (f"host={pg_env['POSTGRES_HOST']} port={pg_env['POSTGRES_PORT']} "
            f"dbname={pg_env['POSTGRES_DBNAME']} user={pg_env['POSTGRES_USER']} "
            f"password={pg_env['POSTGRES_PASSWORD']}")


def test_questions_asked_together_are_each_answered_from_the_store(pg_env):
    ledger = LoyaltyLedger(env=pg_env)
    for number in range(3):
        apply(ledger, purchase("m-three", number))
    apply(ledger, purchase("m-one", 0))
    versions = {member: ledger.find_account(member).version for member in ("m-three", "m-one")}
    recorder = ledger.recorder

    async def ask() -> list[bool]:
        async with AsyncConnectionPool(conninfo(pg_env), min_size=1, max_size=1,
                                       kwargs={"autocommit": True}) as pool:
            newer = NewerFacts(pool, recorder.datastore.schema, recorder.events_table_name,
                               batch_accounts_max=2)
            return await asyncio.gather(
                newer.after("m-three", versions["m-three"]), newer.after("m-three", 1),
                newer.after("m-one", versions["m-one"]), newer.after("m-one", 0),
                newer.after("m-none", 0))

    assert asyncio.run(ask()) == [False, True, False, True, False]
    ledger.close()


def test_a_commit_wakes_its_members_waiter_and_not_another(pg_env):
    ledger = LoyaltyLedger(env=pg_env)
    apply(ledger, purchase("m-woken", 0))
    recorder = ledger.recorder

    async def wait_for_commit() -> tuple[bool, bool]:
        wakeups = FactWakeups(conninfo(pg_env), recorder.datastore.schema, recorder.events_table_name,
                              recorder.channel_name, RECHECK_INTERVAL_MS)
        wakeups.start()
        try:
            with wakeups.watch(account_id("m-woken")) as woken, wakeups.watch(account_id("m-other")) as other:
                await asyncio.wait_for(wakeups.listening.wait(), WAKE_TIMEOUT_S)
                assert woken.is_set() and other.is_set()  # everyone re-reads once a LISTEN opens
                woken.clear()
                other.clear()
                await asyncio.to_thread(apply, ledger, purchase("m-woken", 1))
                await asyncio.wait_for(woken.wait(), WAKE_TIMEOUT_S)
                return woken.is_set(), other.is_set()
        finally:
            await wakeups.stop()

    assert asyncio.run(wait_for_commit()) == (True, False)
    ledger.close()
