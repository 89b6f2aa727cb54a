"""The application service: batches with tracking, auditor reads, wire names."""

from __future__ import annotations

import re
from datetime import datetime, timezone

import pytest
from eventsourcing.persistence import IntegrityError, Tracking

from ledger.domain import FACT_TYPES, LoyaltyAccount, account_id
from tests.support import builders as b
from tests.support.ledger_steps import account, apply

M = "auditor-member"


def test_a_batch_saves_many_accounts_and_its_tracking_in_one_transaction(ledger):
    batch = b.commands(b.purchase("m-a", "2025-01-01T10:00:00Z", 1000),
                       b.purchase("m-b", "2025-01-01T11:00:00Z", 2000),
                       b.birthday("m-a", "2025-01-02T00:00:00Z"))
    results = ledger.apply(*batch, tracking=Tracking("loyalty.events:0", 41))
    assert [r.status for r in results] == ["applied"] * 3
    assert ledger.recorder.max_tracking_id("loyalty.events:0") == 41
    assert account(ledger, "m-a").balance == 210
    assert account(ledger, "m-b").balance == 20


def test_a_batch_whose_tracking_was_already_recorded_saves_nothing(ledger):
    ledger.apply(*b.commands(b.purchase("m-a", "2025-01-01T10:00:00Z", 1000)),
                 tracking=Tracking("loyalty.events:3", 7))
    replayed = b.commands(b.purchase("m-c", "2025-01-01T12:00:00Z", 5000))
    with pytest.raises(IntegrityError):
        ledger.apply(*replayed, tracking=Tracking("loyalty.events:3", 7))
    assert ledger.find_account("m-c") is None
    assert ledger.recorder.max_tracking_id("loyalty.events:3") == 7


def test_a_batch_of_duplicates_still_records_its_tracking(ledger):
    buy = b.purchase("m-d", "2025-01-01T10:00:00Z", 1000)
    ledger.apply(*b.commands(buy), tracking=Tracking("loyalty.events:1", 1))
    results = ledger.apply(*b.commands(buy), tracking=Tracking("loyalty.events:1", 2))
    assert results[0].status == "duplicate"
    assert ledger.recorder.max_tracking_id("loyalty.events:1") == 2


def test_state_at_each_version_and_as_of_each_time(ledger):
    events = [
        b.purchase(M, "2025-01-10T10:00:00Z", 10000),
        b.redemption(M, "2025-02-10T10:00:00Z", 40),
        b.purchase(M, "2025-01-20T10:00:00Z", 5000),   # late: clock stays 2025-02-10
        b.birthday(M, "2025-03-01T00:00:00Z"),
    ]
    balances_after_each = []
    for event in events:
        apply(ledger, event)
        live = account(ledger, M)
        balances_after_each.append((live.version, live.clock, live.balance))
    # Each version reads back as it was
    for version, clock, balance in balances_after_each:
        assert ledger.find_account(M, version=version).balance == balance
    # As of a time: the state after the last fact whose clock is at or before it
    assert ledger.account_as_of(M, datetime(2025, 1, 1, tzinfo=timezone.utc)) is None
    assert ledger.account_as_of(M, datetime(2025, 1, 15, tzinfo=timezone.utc)).balance == 100
    feb = ledger.account_as_of(M, datetime(2025, 2, 28, tzinfo=timezone.utc))
    assert (feb.balance, feb.version) == (110, balances_after_each[2][0])
    assert ledger.account_as_of(M, datetime(2030, 1, 1, tzinfo=timezone.utc)).balance == 310


def test_history_names_every_fact_with_its_cause(ledger):
    buy = b.purchase(M, "2025-01-10T10:00:00Z", 60000, event_id="pos-77")
    ledger.apply(*b.commands(buy))
    history = ledger.history(M)
    assert [(h.version, h.type) for h in history] == [
        (1, "account_opened"), (2, "points_earned"), (3, "tier_changed")]
    assert {h.source_event_id for h in history} == {"pos-77"}
    assert history[1].data["points"] == 600
    assert history[1].data["lot"]["expires_at"] == datetime(2026, 1, 10, 10, tzinfo=timezone.utc)


def test_source_position_is_kept_on_the_outcome_fact(ledger):
    from ledger.commands import command_from_event
    command = command_from_event(b.purchase(M, "2025-01-10T10:00:00Z", 100),
                                 source_position="loyalty.events/4/1234")
    ledger.apply(command)
    assert ledger.history(M)[1].source_position == "loyalty.events/4/1234"


def test_wire_names_cover_every_fact_and_follow_the_class_names():
    fact_classes = {
        value for value in vars(LoyaltyAccount).values()
        if isinstance(value, type) and issubclass(value, LoyaltyAccount.Event)
    } - {LoyaltyAccount.Event, LoyaltyAccount.Fact, LoyaltyAccount.Outcome, LoyaltyAccount.Created}
    assert fact_classes == set(FACT_TYPES.values())
    for name, fact_class in FACT_TYPES.items():
        snake = re.sub(r"(?<!^)(?=[A-Z])", "_", fact_class.__name__).lower()
        assert name == snake or (name, snake) == ("account_opened", "opened")


def test_account_ids_are_stable_per_member():
    assert account_id("m-1") == account_id("m-1") != account_id("m-2")
