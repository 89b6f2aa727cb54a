"""The till's quote: what a purchase would earn now, decided by the ledger's rules, nothing written.

Each story quotes a purchase, then applies the same purchase and checks the
quote said what the ledger then did (on both stores).
"""

from __future__ import annotations

from ledger.calendar import parse_timestamp
from ledger.quote import quote_purchase
from tests.support import builders as b


def quote_of(ledger, member: str, at: str, amount: int, currency: str = "EUR"):
    return quote_purchase(ledger.find_account(member), ledger.program, amount_minor=amount,
                          currency=currency, occurred_at=parse_timestamp(at))


def earned(ledger, event: dict) -> int:
    [result] = ledger.apply(*b.commands(event))
    return next(fact.points for fact in result.facts if type(fact).__name__ == "PointsEarned")


def test_a_new_member_is_quoted_at_the_base_tier(ledger):
    quote = quote_of(ledger, "q-new", "2025-03-01T10:00:00Z", 12399)
    assert (quote.tier, quote.multiplier_pct, quote.base_points, quote.points) == ("bronze", 100, 123, 123)
    assert quote.campaigns == [] and quote.rejected_reason is None
    assert ledger.find_account("q-new") is None  # nothing written
    assert earned(ledger, b.purchase("q-new", "2025-03-01T10:00:00Z", 12399)) == quote.points


def test_a_silver_member_is_quoted_with_the_multiplier_and_nothing_is_written(ledger):
    ledger.apply(*b.commands(b.purchase("q-silver", "2025-03-01T10:00:00Z", 60000)))
    version = ledger.find_account("q-silver").version
    quote = quote_of(ledger, "q-silver", "2025-03-02T10:00:00Z", 10000)
    assert (quote.tier, quote.multiplier_pct, quote.base_points, quote.points) == ("silver", 125, 100, 125)
    assert ledger.find_account("q-silver").version == version
    assert earned(ledger, b.purchase("q-silver", "2025-03-02T10:00:00Z", 10000)) == quote.points


def test_the_tier_is_judged_at_the_clock_the_purchase_would_move_to(ledger):
    # silver in 2025 holds through 2026; a purchase in 2027 is judged on 2026/2027 spend: bronze
    ledger.apply(*b.commands(b.purchase("q-roll", "2025-06-01T10:00:00Z", 60000)))
    assert quote_of(ledger, "q-roll", "2026-06-01T10:00:00Z", 10000).tier == "silver"
    quote = quote_of(ledger, "q-roll", "2027-06-01T10:00:00Z", 10000)
    assert (quote.tier, quote.points) == ("bronze", 100)
    assert earned(ledger, b.purchase("q-roll", "2027-06-01T10:00:00Z", 10000)) == quote.points


def test_a_foreign_currency_earns_nothing_and_says_why(ledger):
    quote = quote_of(ledger, "q-usd", "2025-03-01T10:00:00Z", 10000, currency="USD")
    assert (quote.points, quote.rejected_reason) == (0, "currency")


def test_points_that_would_pay_debt_are_quoted_as_such(ledger):
    member = "q-debt"
    buy = b.purchase(member, "2025-03-01T10:00:00Z", 10000)
    ledger.apply(*b.commands(buy, b.redemption(member, "2025-03-02T10:00:00Z", 100),
                             b.refund(member, "2025-03-03T10:00:00Z", buy["event_id"], 10000)))
    assert ledger.find_account(member).debt == 100
    quote = quote_of(ledger, member, "2025-03-04T10:00:00Z", 5000)
    assert (quote.points, quote.debt_paid) == (50, 50)
