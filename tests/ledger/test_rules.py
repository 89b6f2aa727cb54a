"""Every rule and every rejection reason of CONTRACT section 3, as stories.

Each test runs on the in-memory store and on the embedded PostgreSQL
(the ``ledger`` fixture).
"""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from tests.support import builders as b
from tests.support.ledger_steps import account, apply, facts

M = "member-1"


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(timezone.utc)


# ------------------------------------------------------------------ purchases

@pytest.mark.parametrize(
    "spend_first, tier, expected_points",
    [
        (0, "bronze", 123),        # floor(12399 * 100 / 10000) = 123
        (50000, "silver", 154),    # floor(12399 * 125 / 10000) = 154
        (200000, "gold", 185),     # floor(12399 * 150 / 10000) = 185
        (500000, "platinum", 247),  # floor(12399 * 200 / 10000) = 247
    ],
)
def test_purchase_points_round_down_at_each_tier(ledger, spend_first, tier, expected_points):
    # Given a member whose spend this year puts them in a tier
    if spend_first:
        apply(ledger, b.purchase(M, "2025-03-01T10:00:00Z", spend_first))
    assert account(ledger, M).tier == tier if spend_first else True
    # When they buy for 123.99
    results = apply(ledger, b.purchase(M, "2025-03-02T10:00:00Z", 12399))
    # Then the points use that tier's multiplier, rounded down
    (earned,) = facts(results, "points_earned")
    assert earned.points == expected_points
    assert earned.multiplier_pct == {"bronze": 100, "silver": 125, "gold": 150, "platinum": 200}[tier]


def test_the_purchase_that_reaches_a_tier_earns_at_the_old_tier(ledger):
    # A purchase counts at the tier held before it; the upgrade follows it
    results = apply(ledger, b.purchase(M, "2025-01-10T10:00:00Z", 60000))
    (earned,) = facts(results, "points_earned")
    assert earned.points == 600
    (change,) = facts(results, "tier_changed")
    assert (change.from_tier, change.to_tier, change.reason) == ("bronze", "silver", "spend")
    assert account(ledger, M).tier == "silver"


def test_purchase_in_another_currency_is_rejected_but_moves_the_clock(ledger):
    apply(ledger, b.purchase(M, "2025-01-10T10:00:00Z", 1000))
    results = apply(ledger, b.purchase(M, "2025-02-10T10:00:00Z", 5000, currency="USD"))
    (rejected,) = facts(results, "purchase_rejected")
    assert rejected.reason == "currency"
    member = account(ledger, M)
    assert member.balance == 10
    assert member.clock == utc("2025-02-10T10:00:00Z")
    assert member.spend_in_year(2025) == 1000


# -------------------------------------------------------------------- refunds

def test_refund_in_several_parts_reverses_exactly_all_points(ledger):
    buy = b.purchase(M, "2025-01-10T10:00:00Z", 10001)  # 100 points
    results = apply(
        ledger, buy,
        b.refund(M, "2025-01-11T10:00:00Z", buy["event_id"], 3333),  # floor(100*3333/10001)=33
        b.refund(M, "2025-01-12T10:00:00Z", buy["event_id"], 3333),  # floor(100*6666/10001)=66 -> 33
        b.refund(M, "2025-01-13T10:00:00Z", buy["event_id"], 3335),  # 100 -> 34
    )
    assert [fact.points for fact in facts(results, "points_reversed")] == [33, 33, 34]
    member = account(ledger, M)
    assert member.balance == 0
    assert member.lifetime_reversed == 100
    assert member.spend_in_year(2025) == 0


def test_refund_rejections(ledger):
    buy = b.purchase(M, "2025-01-10T10:00:00Z", 5000)
    results = apply(
        ledger, buy,
        b.refund(M, "2025-01-11T10:00:00Z", "no-such-purchase", 100),
        b.refund(M, "2025-01-11T11:00:00Z", buy["event_id"], 100, currency="GBP"),
        b.refund(M, "2025-01-11T12:00:00Z", buy["event_id"], 4000),
        b.refund(M, "2025-01-11T13:00:00Z", buy["event_id"], 1001),  # 4000 + 1001 > 5000
    )
    reasons = [fact.reason for fact in facts(results, "refund_rejected")]
    assert reasons == ["unknown_purchase", "currency", "exceeds_purchase"]
    assert account(ledger, M).balance == 50 - 40


def test_refund_of_another_members_purchase_is_unknown(ledger):
    buy = b.purchase("other", "2025-01-10T10:00:00Z", 5000)
    results = apply(ledger, buy, b.refund(M, "2025-01-11T10:00:00Z", buy["event_id"], 100))
    assert [fact.reason for fact in facts(results, "refund_rejected")] == ["unknown_purchase"]


def test_reversal_after_redemption_creates_debt_that_later_earnings_pay(ledger):
    buy = b.purchase(M, "2025-01-10T10:00:00Z", 10000)  # 100 points
    results = apply(
        ledger, buy,
        b.redemption(M, "2025-01-11T10:00:00Z", 80),
        b.refund(M, "2025-01-12T10:00:00Z", buy["event_id"], 10000),
    )
    (reversed_,) = facts(results, "points_reversed")
    # 20 points come from the purchase's lot, 80 become debt
    assert reversed_.points == 100
    assert reversed_.draws == [[1, 20]]
    assert reversed_.debt_created == 80
    assert account(ledger, M).balance == -80
    # New points pay the debt first; only the rest forms a lot
    results = apply(ledger, b.purchase(M, "2025-01-13T10:00:00Z", 5000),
                    b.purchase(M, "2025-01-14T10:00:00Z", 10000))
    first, second = facts(results, "points_earned")
    assert (first.points, first.debt_paid, first.lot) == (50, 50, None)
    assert (second.points, second.debt_paid, second.lot["points"]) == (100, 30, 70)
    member = account(ledger, M)
    assert (member.balance, member.debt) == (70, 0)


def test_reversal_takes_the_purchase_lot_first_then_oldest_lots(ledger):
    older = b.purchase(M, "2025-01-01T10:00:00Z", 3000)  # lot 1: 30
    buy = b.purchase(M, "2025-01-05T10:00:00Z", 5000)    # lot 2: 50
    newer = b.purchase(M, "2025-01-06T10:00:00Z", 4000)  # lot 3: 40
    results = apply(
        ledger, older, buy, newer,
        b.redemption(M, "2025-01-07T10:00:00Z", 70),  # oldest first: lot 1 (30), lot 2 (40)
        b.refund(M, "2025-01-08T10:00:00Z", buy["event_id"], 5000),  # reverse 50
    )
    (redeemed,) = facts(results, "points_redeemed")
    assert redeemed.draws == [[1, 30], [2, 40]]
    (reversed_,) = facts(results, "points_reversed")
    assert reversed_.draws == [[2, 10], [3, 40]]
    assert reversed_.debt_created == 0
    assert account(ledger, M).balance == 0


def test_refund_counts_against_the_year_of_its_purchase(ledger):
    buy = b.purchase(M, "2024-12-20T10:00:00Z", 60000)
    apply(ledger, buy, b.refund(M, "2025-01-05T10:00:00Z", buy["event_id"], 20000))
    member = account(ledger, M)
    assert member.spend_in_year(2024) == 40000
    assert member.spend_in_year(2025) == 0


def test_refund_drops_the_tier_with_reason_refund(ledger):
    buy = b.purchase(M, "2025-02-01T10:00:00Z", 60000)
    results = apply(ledger, buy, b.refund(M, "2025-02-02T10:00:00Z", buy["event_id"], 20000))
    changes = [(f.from_tier, f.to_tier, f.reason) for f in facts(results, "tier_changed")]
    assert changes == [("bronze", "silver", "spend"), ("silver", "bronze", "refund")]


# ---------------------------------------------------------------- redemptions

def test_redemption_takes_oldest_lots_first_and_rejects_beyond_balance(ledger):
    results = apply(
        ledger,
        b.purchase(M, "2025-01-02T10:00:00Z", 2000),  # lot 1: 20
        b.birthday(M, "2025-01-01T00:00:00Z"),        # late: lot 2 dated before lot 1
        b.redemption(M, "2025-01-03T10:00:00Z", 210),
        b.redemption(M, "2025-01-04T10:00:00Z", 11),
    )
    (redeemed,) = facts(results, "points_redeemed")
    assert redeemed.draws == [[2, 200], [1, 10]]
    (rejected,) = facts(results, "redemption_rejected")
    assert (rejected.reason, rejected.balance) == ("insufficient_points", 10)
    assert account(ledger, M).lifetime_redeemed == 210


def test_redemption_is_checked_after_expiry(ledger):
    apply(ledger, b.purchase(M, "2024-01-15T10:00:00Z", 10000))  # 100, expires 2025-01-15
    results = apply(ledger, b.redemption(M, "2025-01-15T10:00:00Z", 50))
    assert facts(results, "points_expired")[0].points == 100
    assert facts(results, "redemption_rejected")[0].balance == 0


# --------------------------------------------------------------------- expiry

def test_lot_expires_on_the_clamped_day(ledger):
    # A lot from 29 February expires on 28 February next year at the same time
    results = apply(ledger, b.purchase(M, "2024-02-29T12:00:00Z", 10000))
    assert facts(results, "points_earned")[0].lot["expires_at"] == utc("2025-02-28T12:00:00Z")
    # One second before, nothing expires
    results = apply(ledger, b.birthday(M, "2025-02-28T11:59:59Z"))
    assert facts(results, "points_expired") == []
    # At the expiry time (<= clock) the unspent points expire
    results = apply(ledger, b.redemption(M, "2025-02-28T12:00:00Z", 1))
    (expired,) = facts(results, "points_expired")
    assert (expired.points, expired.lots) == (100, [[1, 100]])
    member = account(ledger, M)
    assert (member.lifetime_expired, member.balance) == (100, 200 - 1)


def test_expired_points_never_come_back_and_only_unspent_points_expire(ledger):
    apply(ledger, b.purchase(M, "2024-03-01T10:00:00Z", 10000),
          b.redemption(M, "2024-04-01T10:00:00Z", 30))
    results = apply(ledger, b.purchase(M, "2025-03-05T10:00:00Z", 1000))
    (expired,) = facts(results, "points_expired")
    assert expired.points == 70
    member = account(ledger, M)
    assert member.balance == 10
    assert member.lifetime_expired == 70


# --------------------------------------------------------------- clock, late

def test_late_event_counts_in_its_own_year_but_does_not_move_the_clock_back(ledger):
    apply(ledger, b.purchase(M, "2025-06-01T10:00:00Z", 1000))
    apply(ledger, b.purchase(M, "2024-12-31T23:00:00Z", 60000))  # late, year 2024
    member = account(ledger, M)
    assert member.clock == utc("2025-06-01T10:00:00Z")
    assert member.spend_in_year(2024) == 60000
    # 2024 spend holds status through 2025: silver at the clock
    assert member.tier == "silver"


def test_late_lot_already_past_its_expiry_never_counts(ledger):
    apply(ledger, b.purchase(M, "2025-06-01T10:00:00Z", 1000))
    results = apply(ledger, b.purchase(M, "2024-05-01T10:00:00Z", 5000))  # expires 2025-05-01
    (earned,) = facts(results, "points_earned")
    (expired,) = facts(results, "points_expired")
    assert expired.lots == [[earned.lot["lot_id"], 50]]
    member = account(ledger, M)
    assert (member.balance, member.lifetime_earned, member.lifetime_expired) == (10, 60, 50)


def test_timestamps_with_offsets_are_read_in_utc(ledger):
    # 2025-01-01T00:30+01:00 is 2024-12-31T23:30Z: the purchase counts in 2024
    apply(ledger, b.purchase(M, "2025-01-01T00:30:00+01:00", 1000))
    member = account(ledger, M)
    assert member.spend_in_year(2024) == 1000
    assert member.clock == utc("2024-12-31T23:30:00Z")


# ---------------------------------------------------------------------- tiers

def test_status_holds_through_the_next_year_and_drops_after_it(ledger):
    results = apply(ledger, b.purchase(M, "2024-05-01T10:00:00Z", 250000))
    assert account(ledger, M).tier == "gold"
    # Through 2025 the 2024 spend still counts
    results = apply(ledger, b.purchase(M, "2025-12-31T23:59:59Z", 1000))
    assert facts(results, "tier_changed") == []
    assert account(ledger, M).tier == "gold"
    # In 2026 it runs out: the change is recorded before the event's own effect
    results = apply(ledger, b.purchase(M, "2026-01-01T00:00:00Z", 1000))
    (change,) = facts(results, "tier_changed")
    assert (change.from_tier, change.to_tier, change.reason) == ("gold", "bronze", "year_rollover")
    # and the purchase after it earns at the bronze rate
    assert facts(results, "points_earned")[0].multiplier_pct == 100
    # a rejected event triggers the rollover evaluation too
    member = account(ledger, M)
    assert member.tier == "bronze"
    assert member.tier_since == utc("2026-01-01T00:00:00Z")


def test_rollover_is_evaluated_on_a_rejected_event(ledger):
    apply(ledger, b.purchase(M, "2024-05-01T10:00:00Z", 60000))
    results = apply(ledger, b.redemption(M, "2026-02-01T10:00:00Z", 999999))
    assert [f.reason for f in facts(results, "tier_changed")] == ["year_rollover"]
    assert len(facts(results, "redemption_rejected")) == 1


def test_a_new_member_starts_in_the_base_tier_without_a_tier_change(ledger):
    results = apply(ledger, b.birthday(M, "2025-04-01T00:00:00Z"))
    assert facts(results, "tier_changed") == []
    assert facts(results, "account_opened")[0].tier == "bronze"


# ------------------------------------------------------------------- birthday

def test_birthday_at_most_once_per_year(ledger):
    results = apply(
        ledger,
        b.birthday(M, "2025-04-01T00:00:00Z"),
        b.birthday(M, "2025-04-02T00:00:00Z"),
        b.birthday(M, "2026-04-01T00:00:00Z"),
    )
    assert [f.points for f in facts(results, "birthday_rewarded")] == [200, 200]
    assert [f.year for f in facts(results, "birthday_already_rewarded")] == [2025]
    assert account(ledger, M).lifetime_earned == 400


# ------------------------------------------------------------------- referral

def test_self_referral_and_second_referral_are_rejected(ledger):
    results = apply(
        ledger,
        b.referral(M, "2025-01-01T10:00:00Z", M),
        b.referral(M, "2025-01-02T10:00:00Z", "friend-1"),
        b.referral(M, "2025-01-03T10:00:00Z", "friend-2"),
    )
    assert [f.reason for f in facts(results, "referral_rejected")] == [
        "self_referral", "already_referred"]
    assert account(ledger, M).referrer_member_id == "friend-1"


def test_referral_qualifies_on_first_large_enough_purchase(ledger):
    results = apply(
        ledger,
        b.purchase(M, "2025-01-01T10:00:00Z", 5000),          # before the referral: no effect
        b.referral(M, "2025-01-02T10:00:00Z", "friend-1"),
        b.purchase(M, "2025-01-03T10:00:00Z", 1999),          # too small: neither qualifies nor cancels
        b.purchase(M, "2025-01-04T10:00:00Z", 2000, event_id="qualifying"),
        b.purchase(M, "2025-01-05T10:00:00Z", 9000),          # only the first qualifies
    )
    (qualified,) = facts(results, "referral_qualified")
    assert (qualified.qualifying_event_id, qualified.points) == ("qualifying", 250)
    (credited,) = facts(results, "referrer_credited")
    assert (credited.points, credited.referee_member_id) == (500, M)
    assert credited.lot["occurred_at"] == utc("2025-01-04T10:00:00Z")
    assert account(ledger, "friend-1").balance == 500
    assert account(ledger, M).balance == 50 + 19 + 20 + 250 + 90


def test_referrer_bonus_is_capped_per_year_of_the_qualifying_purchase(ledger):
    events = []
    for n in range(12):
        referee = f"referee-{n}"
        year = 2025 if n < 11 else 2026
        events.append(b.referral(referee, f"{year}-01-01T10:00:00Z", "referrer"))
        events.append(b.purchase(referee, f"{year}-02-{n + 1:02d}T10:00:00Z", 3000))
    results = apply(ledger, *events)
    assert len(facts(results, "referrer_credited")) == 11  # 10 in 2025, 1 in 2026
    (capped,) = facts(results, "referrer_capped")
    assert (capped.year, capped.bonuses_in_year) == (2025, 10)
    referrer = account(ledger, "referrer")
    assert referrer.lifetime_earned == 11 * 500
    # every referee still gets their own points
    assert len(facts(results, "referral_qualified")) == 12


def test_referrer_credit_is_idempotent(ledger):
    results = apply(ledger, b.referral(M, "2025-01-01T10:00:00Z", "friend"),
                    b.purchase(M, "2025-01-02T10:00:00Z", 3000))
    credit = [r for r in results if r.member_id == "friend"][0]
    from ledger.credits import credit_commands
    from ledger.domain import LoyaltyAccount
    (again,) = credit_commands(
        f for r in results for f in r.facts if isinstance(f, LoyaltyAccount.ReferralQualified))
    assert again.event_id == credit.event_id
    assert ledger.apply(again)[0].status == "duplicate"
    assert account(ledger, "friend").balance == 500


# ------------------------------------------------------------ annual incentive

def _purchases(member: str, count: int, amount: int) -> list[dict]:
    return [b.purchase(member, f"2025-{month:02d}-10T10:00:00Z", amount)
            for month in range(1, count + 1)]


def test_annual_incentive_with_exactly_twelve_purchases(ledger):
    buys = _purchases(M, 12, 3333)  # 33 points each, bronze all year (39 996 spend)
    results = apply(ledger, *buys, b.year_closed(M, "2026-01-01T00:05:00Z", 2025))
    (closed,) = facts(results, "year_closed")
    assert (closed.purchases, closed.net_purchase_points, closed.eligible) == (12, 396, True)
    (award,) = facts(results, "annual_incentive_awarded")
    assert award.points == 396 * 5 // 100 == 19
    assert award.lot["occurred_at"] == utc("2026-01-01T00:05:00Z")


def test_annual_incentive_not_awarded_with_eleven_not_fully_refunded(ledger):
    buys = _purchases(M, 12, 3333)
    results = apply(
        ledger, *buys,
        b.refund(M, "2025-12-01T10:00:00Z", buys[0]["event_id"], 3333),  # fully refunded
        b.refund(M, "2025-12-02T10:00:00Z", buys[1]["event_id"], 1000),  # partly: still counts
        b.year_closed(M, "2026-01-01T00:05:00Z", 2025),
    )
    (closed,) = facts(results, "year_closed")
    assert (closed.purchases, closed.eligible, closed.bonus_points) == (11, False, 0)
    # 12*33 - 33 (full) - floor(33*1000/3333)=9
    assert closed.net_purchase_points == 396 - 33 - 9
    assert facts(results, "annual_incentive_awarded") == []


def test_a_second_year_closed_awards_nothing(ledger):
    buys = _purchases(M, 12, 10000)
    results = apply(ledger, *buys,
                    b.year_closed(M, "2026-01-01T00:05:00Z", 2025),
                    b.year_closed(M, "2026-01-02T00:05:00Z", 2025))
    assert len(facts(results, "annual_incentive_awarded")) == 1
    assert [f.year for f in facts(results, "year_already_closed")] == [2025]


# ---------------------------------------------------------------- idempotency

def test_a_redelivered_event_is_a_duplicate_and_changes_nothing(ledger):
    buy = b.purchase(M, "2025-01-10T10:00:00Z", 10000)
    apply(ledger, buy)
    before = account(ledger, M)
    results = apply(ledger, dict(buy))
    assert [r.status for r in results] == ["duplicate"]
    assert account(ledger, M).version == before.version


def test_the_same_event_id_with_another_payload_is_a_conflict(ledger):
    buy = b.purchase(M, "2025-01-10T10:00:00Z", 10000)
    apply(ledger, buy)
    results = apply(ledger, {**buy, "amount_minor": 99999})
    assert results[0].status == "conflict"
    assert "another payload" in results[0].error
    assert account(ledger, M).balance == 100


def test_rejections_mark_their_event_id_applied(ledger):
    bad = b.redemption(M, "2025-01-10T10:00:00Z", 5)
    first = apply(ledger, bad)
    second = apply(ledger, bad)
    assert first[0].status == "applied" and second[0].status == "duplicate"
