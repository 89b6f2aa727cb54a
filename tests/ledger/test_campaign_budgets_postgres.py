"""Campaign budgets in PostgreSQL (contract 2, section 12): a record of their own, written in
the transaction of the awards they fund, under row locks: exact when several ledgers (workers)
decide at once, untouched by a failed or redelivered batch."""

from __future__ import annotations

import threading

import pytest
from eventsourcing.persistence import IntegrityError, Tracking

from ledger.application import LoyaltyLedger
from ledger.commands import command_from_event
from ledger.program import DEFAULT_PROGRAM_PATH, parse_program
from tests.support import builders as b

BUDGET_POINTS = 1000
BONUS_POINTS = 30  # 1000 is not a multiple of 30: the last award is partial
WORKERS = 4
BATCHES_PER_WORKER = 6
PURCHASES_PER_BATCH = 10
PROGRAM = parse_program(DEFAULT_PROGRAM_PATH.read_text() + f"""
[[campaigns]]
id = "tight"
name = "Thirty for everyone, while it lasts"
starts_at = "2025-01-01T00:00:00Z"
ends_at = "2026-01-01T00:00:00Z"
bonus_points = {BONUS_POINTS}
budget_points = {BUDGET_POINTS}
""")


def purchases(prefix: str, count: int) -> list:
    return [command_from_event(b.purchase(f"{prefix}-{n}", "2025-06-07T10:00:00Z", 100))
            for n in range(count)]


def campaign_points(ledger: LoyaltyLedger) -> list[int]:
    return [line["points"] for fact in ledger.fact_log.facts()
            if type(fact).__name__ == "PointsEarned" for line in fact.campaigns]


DESIGNS = {"combined": {}, "previous": {"LOYALTY_LEDGER_COMBINE_STATEMENTS": "false"}}


@pytest.fixture(params=list(DESIGNS))
def ledgers(pg_env, request):
    """The workers' ledgers, with the budgets' statements combined (default) or one each."""
    made = [LoyaltyLedger(env=pg_env | DESIGNS[request.param], program=PROGRAM)
            for _ in range(WORKERS)]
    yield made
    for ledger in made:
        ledger.close()


def test_concurrent_ledgers_award_the_budget_exactly(ledgers):
    errors = []

    def worker(index: int, ledger: LoyaltyLedger) -> None:
        try:
            for batch in range(BATCHES_PER_WORKER):
                ledger.process_batch(purchases(f"w{index}-b{batch}", PURCHASES_PER_BATCH),
                                     Tracking(f"topic:{index}", batch + 1))
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(i, ledger)) for i, ledger in enumerate(ledgers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []  # a budget conflict is a wait, never a failed batch
    awarded = campaign_points(ledgers[0])
    assert WORKERS * BATCHES_PER_WORKER * PURCHASES_PER_BATCH * BONUS_POINTS > 5 * BUDGET_POINTS
    assert sum(awarded) == BUDGET_POINTS
    assert awarded.count(BONUS_POINTS) == BUDGET_POINTS // BONUS_POINTS
    assert sorted(set(awarded)) == [BUDGET_POINTS % BONUS_POINTS, BONUS_POINTS]  # one partial
    assert ledgers[0].budgets.awarded() == {"tight": BUDGET_POINTS}


def test_a_failed_batch_spends_nothing_and_a_redelivered_one_nothing_twice(ledgers):
    ledger, first = ledgers[0], purchases("first", 2)
    ledger.process_batch(first, Tracking("topic:0", 5))
    assert ledger.budgets.awarded() == {"tight": 2 * BONUS_POINTS}
    with pytest.raises(IntegrityError):  # a zombie's batch: its tracking row is taken
        ledgers[1].process_batch(purchases("zombie", 3), Tracking("topic:0", 5))
    assert ledger.budgets.awarded() == {"tight": 2 * BONUS_POINTS}
    ledger.process_batch(first, Tracking("topic:0", 6))  # the same events redelivered
    assert ledger.budgets.awarded() == {"tight": 2 * BONUS_POINTS}
    assert sum(campaign_points(ledger)) == 2 * BONUS_POINTS


def test_a_batch_outside_every_budgeted_window_takes_no_budget_lock(ledgers):
    ledger = ledgers[0]
    late = command_from_event(b.purchase("late", "2026-02-01T10:00:00Z", 100))
    with ledger.budgets.reserve(ledger._budget_ids([late])) as book:
        assert type(book).__name__ == "BudgetBook" and book.awarded == {}
    ledger.process_batch([late], Tracking("topic:9", 1))
    assert ledger.budgets.awarded() == {}


LIBRARY_IDLE_TIMEOUT_S = 5  # eventsourcing's idle_in_transaction_session_timeout default


def test_a_batch_deciding_longer_than_the_librarys_idle_timeout_keeps_its_budget_locks(ledgers):
    import time

    with ledgers[0].budgets.reserve(["tight"]) as book:
        time.sleep(LIBRARY_IDLE_TIMEOUT_S + 1)  # the transaction idle, as while accounts decide
        assert book.awarded == {"tight": 0}
    assert ledgers[0].budgets.awarded() == {"tight": 0}  # committed, not cut by the server


def deciding_while_another_commits(monkeypatch, ledger, other, meanwhile) -> list[int]:
    """Make ``other`` commit ``meanwhile`` while ``ledger`` decides its first round; the
    rounds ``ledger`` decides are counted in the list returned."""
    rounds: list[int] = []
    decide = ledger.decide

    def decide_and_interleave(commands, budgets=None):
        rounds.append(len(commands))
        if len(rounds) == 1:
            other.process_batch(meanwhile, Tracking("topic:other", len(rounds)))
        return decide(commands, budgets)
    monkeypatch.setattr(ledger, "decide", decide_and_interleave)
    return rounds


def test_decisions_stand_when_what_another_batch_spent_meanwhile_changes_none(ledgers, monkeypatch):
    ledger, other = ledgers[0], ledgers[1]
    with other.budgets.reserve(["tight"]):
        pass  # the row exists (a batch creating it holds it until it commits)
    rounds = deciding_while_another_commits(monkeypatch, ledger, other, purchases("other", 1))
    ledger.process_batch(purchases("mine", 2), Tracking("topic:0", 1))
    assert rounds == [2]  # decided once: the budget covered both batches
    assert ledger.budgets.awarded() == {"tight": 3 * BONUS_POINTS}
    assert sum(campaign_points(ledger)) == 3 * BONUS_POINTS


def test_a_round_whose_budget_another_batch_drew_down_meanwhile_decides_again(ledgers, monkeypatch):
    ledger, other = ledgers[0], ledgers[1]
    other.process_batch(purchases("early", 31), Tracking("topic:early", 1))  # 930 of 1000
    rounds = deciding_while_another_commits(monkeypatch, ledger, other, purchases("other", 1))
    ledger.process_batch(purchases("mine", 2), Tracking("topic:0", 1))  # wanted 60 of the 70
    assert rounds == [2, 2]  # only 40 left once the other batch committed: decided again
    assert ledger.budgets.awarded() == {"tight": BUDGET_POINTS}
    mine = [line["points"] for fact in ledger.fact_log.facts() if type(fact).__name__ == "PointsEarned"
            and fact.member_id.startswith("mine") for line in fact.campaigns]
    assert mine == [BONUS_POINTS, BUDGET_POINTS - 33 * BONUS_POINTS]  # 30, then the 10 left
    assert sum(campaign_points(ledger)) == BUDGET_POINTS


CACHE_ENV = {"AGGREGATE_CACHE_MAXSIZE": "100", "AGGREGATE_CACHE_FASTFORWARD": "n",
             "DEEPCOPY_FROM_AGGREGATE_CACHE": "n"}  # a worker's account cache (streams/worker.py)


def test_deciding_again_drops_only_the_rounds_accounts_from_the_cache(pg_env, monkeypatch):
    """A round decided again drops only the accounts it decided on (they hold facts never
    saved); the worker's other cached accounts stay (no reload of its whole working set)."""
    ledger = LoyaltyLedger(env=pg_env | CACHE_ENV, program=PROGRAM)
    other = LoyaltyLedger(env=pg_env, program=PROGRAM)
    try:
        ledger.process_batch(purchases("mine", 1) + purchases("bystander", 1), Tracking("topic:0", 1))
        before = ledger._preload({"mine-0", "bystander-0"})
        version = before["mine-0"].version  # the first decision advances that object in place
        other.process_batch(purchases("early", 29), Tracking("topic:early", 1))  # 930 of 1000
        rounds = deciding_while_another_commits(monkeypatch, ledger, other, purchases("other", 1))
        again = [command_from_event(b.purchase("mine-0", "2025-06-08T10:00:00Z", 100, event_id=f"again-{n}"))
                 for n in range(2)]  # 60 of the 70 left
        ledger.process_batch(again, Tracking("topic:0", 2))
        assert rounds == [2, 2]  # only 40 left once the other batch committed: decided again
        after = ledger._preload({"mine-0", "bystander-0"})
        assert after["bystander-0"] is before["bystander-0"]  # still cached, not reloaded
        assert after["mine-0"] is not before["mine-0"]  # the first decision's object is gone
        assert after["mine-0"].version == version + 2  # two facts saved, once
        assert ledger.budgets.awarded() == {"tight": BUDGET_POINTS}
    finally:
        ledger.close()
        other.close()


def test_the_spending_in_the_lock_message_is_quoted_by_psycopg(pg_env):
    """The combined design sends the totals as literal values: psycopg quotes them (a
    campaign id cannot hold a quote today; the statement would not break if one did)."""
    ledger = LoyaltyLedger(env=pg_env, program=PROGRAM)
    try:
        with ledger.recorder.datastore.get_connection() as conn:
            text = ledger.budgets.statements.add_spending_literal({"o'x": 5, "tight": 7}).as_string(conn)
    finally:
        ledger.close()
    assert "VALUES ('o''x', 5::bigint), ('tight', 7::bigint)" in text
