"""The till API's reads of section 7 without services: the member document's
``held`` and open holds, and the outcome a write answers with when holds are
released (a void's release is its outcome; a release by the clock is not)."""

from __future__ import annotations

import pytest

from ledger.application import LoyaltyLedger
from streams.api.reads import LedgerReads
from tests.support import builders as b

M = "till-member"


@pytest.fixture
def reads():
    reads = LedgerReads(LoyaltyLedger(), threads=1, accounts_max=10)
    yield reads
    reads.close()


def test_the_member_document_shows_held_and_the_open_holds(reads):
    reads.ledger.apply_in_order(b.commands(
        b.purchase(M, "2025-03-01T10:00:00Z", 100_000),
        b.hold(M, "2025-03-01T10:01:00Z", 300, "2025-03-01T10:31:00Z", event_id="h-1"),
        b.hold(M, "2025-03-01T10:02:00Z", 200, "2025-03-01T10:20:00Z", event_id="h-2")))
    member = reads.member(M)
    assert (member["balance"], member["held"]) == (500, 500)
    assert member["holds"] == [
        {"hold_event_id": "h-1", "points": 300, "reward_id": "reward-1", "cash_top_up_minor": 0,
         "expires_at": "2025-03-01T10:31:00Z", "lots": [{"lot_id": 1, "points": 300}]},
        {"hold_event_id": "h-2", "points": 200, "reward_id": "reward-1", "cash_top_up_minor": 0,
         "expires_at": "2025-03-01T10:20:00Z", "lots": [{"lot_id": 1, "points": 200}]}]


def test_a_writes_outcome_is_its_own_fact_not_a_release_by_the_clock(reads):
    events = [b.purchase(M, "2025-03-01T10:00:00Z", 100_000),
              b.hold(M, "2025-03-01T10:01:00Z", 300, "2025-03-01T10:31:00Z", event_id="h-1"),
              b.void(M, "2025-03-01T10:02:00Z", "h-1", event_id="v-1"),
              b.hold(M, "2025-03-01T10:03:00Z", 100, "2025-03-01T10:10:00Z", event_id="h-2"),
              b.purchase(M, "2025-03-01T10:30:00Z", 1000, event_id="p-late")]
    reads.ledger.apply_in_order(b.commands(*events))
    voided = reads.outcome_of(M, "v-1")
    assert (voided["outcome"], voided["points"], voided["held"]) == ("hold_released", 300, 0)
    bought = reads.outcome_of(M, "p-late")
    assert (bought["outcome"], bought["points"], bought["balance"], bought["held"]) == (
        "points_earned", 12, 1012, 0)  # silver: 125 %
