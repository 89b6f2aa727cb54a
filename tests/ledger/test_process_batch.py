"""``LoyaltyLedger.process_batch``: the stream's one call (decide, save, the cache handled)."""

from __future__ import annotations

import pytest
from eventsourcing.persistence import IntegrityError, Tracking

from ledger import domain
from ledger.application import CONFLICT, DecisionFailed, LoyaltyLedger
from ledger.dead_letters import DeadLetter
from tests.support import builders as b

TRACKING = "loyalty.events:0"
# The worker's cache: decided on in place, no copy (streams.worker.account_cache_env)
CACHE_ENV = {"AGGREGATE_CACHE_MAXSIZE": "10", "AGGREGATE_CACHE_FASTFORWARD": "n",
             "DEEPCOPY_FROM_AGGREGATE_CACHE": "n"}


def envelope(offset: int) -> dict:
    return {"source_topic": "loyalty.events", "source_partition": 0, "source_offset": offset}


def test_facts_dead_letters_and_tracking_commit_together(ledger):
    commands = b.commands(b.purchase("m1", "2025-01-01T10:00:00Z", 1000))
    results = ledger.process_batch(commands, [Tracking(TRACKING, 1)], [DeadLetter.record(envelope(1))])
    assert [result.status for result in results] == ["applied"]
    assert ledger.find_account("m1").balance == 10
    assert ledger.tracked_position(TRACKING) == 1
    with pytest.raises(IntegrityError):  # the dead letter is stored: its id is taken
        ledger.process_batch([], None, [DeadLetter.record(envelope(1))])


def test_a_conflict_is_saved_as_the_dead_letter_the_caller_makes(ledger):
    buy = b.purchase("m1", "2025-01-01T10:00:00Z", 1000)
    made = []

    def conflict_dead_letter(index, result):
        made.append((index, result.status))
        return DeadLetter.record(envelope(7))

    results = ledger.process_batch(b.commands(buy, {**buy, "amount_minor": 5000}),
                                   [Tracking(TRACKING, 7)], (), conflict_dead_letter)
    assert [result.status for result in results] == ["applied", CONFLICT]
    assert made == [(1, CONFLICT)]
    assert ledger.repository.get(DeadLetter.record(envelope(7)).id).envelope == envelope(7)
    assert ledger.find_account("m1").balance == 10


def test_a_command_that_raises_is_a_decision_failure_and_nothing_is_saved(ledger, monkeypatch):
    def explode(account, command, program):
        raise RuntimeError("boom")

    monkeypatch.setitem(domain.COMMAND_HANDLERS, domain.cmd.RecordPurchase, explode)
    with pytest.raises(DecisionFailed, match="RuntimeError: boom") as failed:
        ledger.process_batch(b.commands(b.purchase("m1", "2025-01-01T10:00:00Z", 1000)),
                             [Tracking(TRACKING, 0)])
    assert isinstance(failed.value.__cause__, RuntimeError)
    assert ledger.find_account("m1") is None
    assert ledger.tracked_position(TRACKING) is None


def test_a_failed_save_drops_the_cached_accounts_it_decided_on(monkeypatch):
    """Without the drop, the cached account would keep the unsaved purchase and store it later."""
    ledger = LoyaltyLedger(env=CACHE_ENV)
    ledger.process_batch(b.commands(b.purchase("m1", "2025-01-01T10:00:00Z", 1000)), None)
    real_save = ledger.save_batch

    def conflicting(aggregates, tracking):
        raise IntegrityError("another worker committed first")

    monkeypatch.setattr(ledger, "save_batch", conflicting)
    with pytest.raises(IntegrityError):
        ledger.process_batch(b.commands(b.purchase("m1", "2025-01-02T10:00:00Z", 2000)), None)
    monkeypatch.setattr(ledger, "save_batch", real_save)
    ledger.process_batch(b.commands(b.purchase("m1", "2025-01-03T10:00:00Z", 4000)), None)
    assert ledger.find_account("m1").balance == 50
