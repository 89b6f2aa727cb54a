"""Contract 2's everyday rules (sections 8 to 11) and its invariant, as stories.

Each test runs on the in-memory store and on the embedded PostgreSQL (the
``ledger_env`` fixture); ``ledger_on`` builds a ledger with a program that
differs from the default in the fields a story needs. ``apply`` checks
balance + held + pending = in - out after every event.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone

import orjson
import pytest
from eventsourcing.domain import Snapshot

from ledger.application import LoyaltyLedger
from ledger.credits import credit_commands
from ledger.domain import CONTRACT_2_COUNTERS, LoyaltyAccount, account_id, fact_type
from ledger.program import DEFAULT_PROGRAM_PATH, ProgramError, load_program, parse_program
from ledger.program_versions import ProgramVersionRefused
from streams.cli import main
from tests.support import builders as b
from tests.support.ledger_steps import account, apply, facts

M = "member-1"
DEFAULT_TEXT = DEFAULT_PROGRAM_PATH.read_text()


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(timezone.utc)


@pytest.fixture
def ledger_on(ledger_env):
    """``ledger_on(pending_days=14, ...)``: a ledger whose program differs in those fields."""
    opened = []

    def build(**overrides) -> LoyaltyLedger:
        program = dataclasses.replace(load_program(), **overrides)
        opened.append(LoyaltyLedger(env=ledger_env, program=program))
        return opened[-1]

    yield build
    for ledger in opened:
        ledger.close()


# ------------------------------------------------------- program fields (11)

def test_the_default_program_has_contract_2s_defaults():
    program = load_program()
    assert (program.version, program.pending_days, program.tier_basis) == (1, 0, "annual")
    assert [tier.discount_pct for tier in program.tiers] == [0, 0, 0, 0]
    assert program.adjustment_points_max == 1_000_000
    assert program.adjustment_reason_codes == ("goodwill", "correction", "migration", "fraud")
    assert program.transfer_points_per_year_max == 10_000


def test_contract_2_fields_are_read_and_checked():
    text = DEFAULT_TEXT.replace('name = "default"', 'name = "x"\nversion = 3\npending_days = 14\n'
                                'tier_basis = "lifetime"')
    text = text.replace("multiplier_pct = 125", "multiplier_pct = 125\ndiscount_pct = 5")
    text += '\n[adjustments]\npoints_max = 500\nreason_codes = ["goodwill"]\n'
    text += '\n[transfers]\npoints_per_year_max = 0\n'
    program = parse_program(text)
    assert (program.version, program.pending_days, program.tier_basis) == (3, 14, "lifetime")
    assert program.tier("silver").discount_pct == 5
    assert (program.adjustment_points_max, program.adjustment_reason_codes) == (500, ("goodwill",))
    assert program.transfer_points_per_year_max == 0
    for bad, field in [("pending_days = 91", "program.pending_days"),
                       ('tier_basis = "forever"', "program.tier_basis"),
                       ("version = 0", "program.version")]:
        with pytest.raises(ProgramError, match=field):
            parse_program(DEFAULT_TEXT.replace('name = "default"', f'name = "x"\n{bad}'))


def test_check_program_prints_the_version(tmp_path, capsys):
    path = tmp_path / "v7.toml"
    path.write_text(DEFAULT_TEXT.replace('name = "default"', 'name = "default"\nversion = 7'))
    assert main(["check-program", str(path)]) == 0
    assert "version 7" in capsys.readouterr().out


# ----------------------------------------------- program_version on outcomes

def test_every_outcome_fact_records_the_program_version(ledger_on):
    ledger = ledger_on(version=4)
    buy = b.purchase(M, "2025-01-10T10:00:00Z", 60000)
    results = apply(ledger, buy, b.refund(M, "2025-01-11T10:00:00Z", buy["event_id"], 100),
                    b.birthday(M, "2025-01-12T10:00:00Z"),
                    b.redemption(M, "2025-01-13T10:00:00Z", 10**6))
    outcomes = [f for r in results for f in r.facts if isinstance(f, LoyaltyAccount.Outcome)]
    assert [fact_type(f) for f in outcomes] == [
        "points_earned", "points_reversed", "birthday_rewarded", "redemption_rejected"]
    assert {f.program_version for f in outcomes} == {4}
    assert {fact.program_version for fact in ledger.events.get(account_id(M))
            if isinstance(fact, LoyaltyAccount.Outcome)} == {4}


def test_an_outcome_stored_before_versions_reads_as_version_1(ledger):
    [result] = apply(ledger, b.purchase(M, "2025-01-10T10:00:00Z", 5000))
    (earned,) = facts([result], "points_earned")
    stored = ledger.mapper.to_stored_event(earned)
    state = orjson.loads(stored.state)
    assert (state.pop("class_version"), state.pop("program_version"), state.pop("campaigns")) == (
        3, 1, [])  # version 3 added campaign lines (section 12)
    old = dataclasses.replace(stored, state=orjson.dumps(state))
    revived = ledger.mapper.to_domain_event(old)
    assert revived.program_version == 1
    assert revived.points == earned.points


def test_a_snapshot_taken_before_contract_2_reads_with_zero_counters(ledger):
    apply(ledger, b.purchase(M, "2025-01-10T10:00:00Z", 5000))
    stored = ledger.mapper.to_stored_event(Snapshot.take(account(ledger, M)))
    state = orjson.loads(stored.state)
    old_state = state["state"]
    assert old_state.pop("class_version") == 4  # 3: holds (section 7), 4: campaign_uses (12)
    for name in (*CONTRACT_2_COUNTERS, "transferred_by_year", "holds", "redemptions",
                 "cancelled_redemptions", "campaign_uses"):
        del old_state[name]
    old = dataclasses.replace(stored, state=orjson.dumps(state))
    revived = ledger.mapper.to_domain_event(old).mutate(None)
    assert (revived.balance, revived.lifetime_transferred_in, revived.held) == (50, 0, 0)
    assert revived.transferred_by_year == {} and revived.campaign_uses == {}
    revived.check_invariant()


# ---------------------------------------------------- pending points (8)

def test_purchase_points_wait_out_the_return_window_and_activate_on_the_exact_second(ledger_on):
    ledger = ledger_on(pending_days=14)
    # A purchase's lot is pending for 14 days: not spendable
    results = apply(ledger, b.purchase(M, "2025-03-01T10:00:00Z", 10000),
                    b.redemption(M, "2025-03-15T09:59:59Z", 1))
    (earned,) = facts(results, "points_earned")
    assert earned.lot["active_from"] == utc("2025-03-15T10:00:00Z")
    assert [f.reason for f in facts(results, "redemption_rejected")] == ["insufficient_points"]
    assert not facts(results, "points_activated")
    member = account(ledger, M)
    assert (member.balance, member.pending) == (0, 100)
    # One second later any event activates it, before the event's effect
    results = apply(ledger, b.redemption(M, "2025-03-15T10:00:00Z", 30))
    (activated,) = facts(results, "points_activated")
    assert (activated.points, activated.debt_paid, activated.lots) == (100, 0, [[1, 100, 0]])
    assert [fact_type(f) for f in results[0].facts] == ["points_activated", "points_redeemed"]
    member = account(ledger, M)
    assert (member.balance, member.pending, member.lifetime_earned) == (70, 0, 100)


def test_a_late_purchase_past_its_activation_time_is_created_active(ledger_on):
    ledger = ledger_on(pending_days=14)
    results = apply(ledger, b.birthday(M, "2025-04-01T10:00:00Z"),
                    b.purchase(M, "2025-03-01T10:00:00Z", 10000))
    (earned,) = facts(results, "points_earned")
    assert "active_from" not in earned.lot
    assert not facts(results, "points_activated")
    assert (account(ledger, M).balance, account(ledger, M).pending) == (300, 0)


def test_other_awards_are_active_at_once(ledger_on):
    ledger = ledger_on(pending_days=14)
    apply(ledger, b.birthday(M, "2025-04-01T10:00:00Z"))
    assert (account(ledger, M).balance, account(ledger, M).pending) == (200, 0)


def test_a_refund_while_pending_takes_its_own_pending_lot_and_creates_no_debt(ledger_on):
    ledger = ledger_on(pending_days=14)
    buy = b.purchase(M, "2025-03-01T10:00:00Z", 10000)
    results = apply(ledger, b.birthday(M, "2025-02-01T10:00:00Z"), buy,
                    b.refund(M, "2025-03-02T10:00:00Z", buy["event_id"], 10000))
    (reversed_,) = facts(results, "points_reversed")
    assert (reversed_.draws, reversed_.debt_created) == ([[2, 100]], 0)
    member = account(ledger, M)
    assert (member.balance, member.pending, member.debt) == (200, 0, 0)


def test_a_refund_after_activation_and_spending_creates_debt(ledger_on):
    ledger = ledger_on(pending_days=14)
    buy = b.purchase(M, "2025-03-01T10:00:00Z", 10000)
    results = apply(ledger, buy, b.redemption(M, "2025-03-20T10:00:00Z", 80),
                    b.refund(M, "2025-03-21T10:00:00Z", buy["event_id"], 10000))
    (reversed_,) = facts(results, "points_reversed")
    assert (reversed_.draws, reversed_.debt_created) == ([[1, 20]], 80)
    assert (account(ledger, M).balance, account(ledger, M).debt) == (-80, 80)


def test_a_refund_never_draws_other_pending_lots(ledger_on):
    ledger = ledger_on(pending_days=14)
    first = b.purchase(M, "2025-03-01T10:00:00Z", 10000)
    results = apply(ledger, first, b.redemption(M, "2025-03-20T10:00:00Z", 100),
                    b.purchase(M, "2025-03-21T10:00:00Z", 5000),
                    b.refund(M, "2025-03-22T10:00:00Z", first["event_id"], 10000))
    (reversed_,) = facts(results, "points_reversed")
    assert (reversed_.draws, reversed_.debt_created) == ([], 100)
    member = account(ledger, M)
    assert (member.balance, member.pending, member.debt) == (-100, 50, 100)


def test_activated_points_pay_debt_first(ledger_on):
    ledger = ledger_on(pending_days=14)
    first = b.purchase(M, "2025-03-01T10:00:00Z", 10000)
    apply(ledger, first, b.redemption(M, "2025-03-20T10:00:00Z", 100),
          b.purchase(M, "2025-03-21T10:00:00Z", 5000),   # 50 pending
          b.purchase(M, "2025-03-22T10:00:00Z", 8000),   # 80 pending
          b.refund(M, "2025-03-23T10:00:00Z", first["event_id"], 10000))  # debt 100
    # On activation, oldest first: 50 all pay debt, 80 pay the other 50 and keep 30
    results = apply(ledger, b.birthday(M, "2025-04-10T10:00:00Z"))
    (activated,) = facts(results, "points_activated")
    assert activated.lots == [[2, 50, 50], [3, 80, 50]]
    assert activated.debt_paid == 100
    member = account(ledger, M)
    assert (member.balance, member.pending, member.debt) == (30 + 200, 0, 0)


def test_a_pending_lot_that_expires_before_its_activation_never_activates(ledger_on):
    ledger = ledger_on(pending_days=60, expiry_months=1)
    results = apply(ledger, b.purchase(M, "2025-03-01T10:00:00Z", 10000),
                    b.birthday(M, "2025-06-01T10:00:00Z"))
    assert not facts(results, "points_activated")
    (expired,) = facts(results, "points_expired")
    assert (expired.points, expired.lots) == (100, [[1, 100]])
    member = account(ledger, M)
    assert (member.balance, member.pending, member.lifetime_expired) == (200, 0, 100)


def test_pending_purchase_points_count_in_the_annual_incentive(ledger_on):
    ledger = ledger_on(pending_days=90, annual_purchases_min=1)
    results = apply(ledger, b.purchase(M, "2025-12-20T10:00:00Z", 100000),
                    b.year_closed(M, "2026-01-01T00:00:00Z", 2025))
    (closed,) = facts(results, "year_closed")
    assert (closed.net_purchase_points, closed.bonus_points) == (1000, 50)
    assert (account(ledger, M).balance, account(ledger, M).pending) == (50, 1000)


# ------------------------------------------------------- adjustments (9)

def test_a_positive_adjustment_pays_debt_first_then_forms_an_active_lot(ledger):
    buy = b.purchase(M, "2025-01-10T10:00:00Z", 10000)
    apply(ledger, buy, b.redemption(M, "2025-01-11T10:00:00Z", 100),
          b.refund(M, "2025-01-12T10:00:00Z", buy["event_id"], 10000))  # debt 100
    results = apply(ledger, b.adjustment(M, "2025-02-01T10:00:00Z", 250, note="sorry"))
    (adjusted,) = facts(results, "points_adjusted")
    assert (adjusted.points, adjusted.debt_paid, adjusted.lot["points"]) == (250, 100, 150)
    assert adjusted.lot["expires_at"] == utc("2026-02-01T10:00:00Z")
    assert (adjusted.reason_code, adjusted.operator_id, adjusted.note) == ("goodwill", "cs-1", "sorry")
    member = account(ledger, M)
    assert (member.balance, member.debt, member.lifetime_adjusted_in) == (150, 0, 250)
    assert member.lifetime_earned == 100  # an adjustment is not earned


def test_a_negative_adjustment_draws_oldest_first(ledger):
    apply(ledger, b.birthday(M, "2025-01-10T10:00:00Z"), b.purchase(M, "2025-01-11T10:00:00Z", 10000))
    results = apply(ledger, b.adjustment(M, "2025-02-01T10:00:00Z", -250, reason_code="correction"))
    (adjusted,) = facts(results, "points_adjusted")
    assert (adjusted.draws, adjusted.debt_created) == ([[1, 200], [2, 50]], 0)
    member = account(ledger, M)
    assert (member.balance, member.lifetime_adjusted_out) == (50, 250)


def test_a_negative_adjustment_beyond_the_balance_needs_allow_debt(ledger):
    apply(ledger, b.birthday(M, "2025-01-10T10:00:00Z"))
    results = apply(ledger, b.adjustment(M, "2025-02-01T10:00:00Z", -300, reason_code="fraud"))
    (rejected,) = facts(results, "adjustment_rejected")
    assert (rejected.reason, rejected.balance) == ("insufficient_points", 200)
    results = apply(ledger, b.adjustment(M, "2025-02-02T10:00:00Z", -300, reason_code="fraud",
                                         allow_debt=True))
    (adjusted,) = facts(results, "points_adjusted")
    assert (adjusted.draws, adjusted.debt_created) == ([[1, 200]], 100)
    member = account(ledger, M)
    assert (member.balance, member.debt, member.lifetime_adjusted_out) == (-100, 100, 300)


def test_adjustment_rejections_in_the_contracts_order(ledger_on):
    ledger = ledger_on(adjustment_points_max=1000)
    results = apply(
        ledger,
        b.adjustment(M, "2025-02-01T10:00:00Z", -1001, reason_code="whim"),   # too large wins
        b.adjustment(M, "2025-02-02T10:00:00Z", 1000, reason_code="whim"),
        b.adjustment(M, "2025-02-03T10:00:00Z", -1, reason_code="goodwill"),
        b.adjustment(M, "2025-02-04T10:00:00Z", 1000, reason_code="migration"),
    )
    assert [f.reason for f in facts(results, "adjustment_rejected")] == [
        "adjustment_too_large", "unknown_reason_code", "insufficient_points"]
    member = account(ledger, M)
    assert (member.balance, member.clock) == (1000, utc("2025-02-04T10:00:00Z"))


def test_a_negative_adjustment_never_draws_pending_lots(ledger_on):
    ledger = ledger_on(pending_days=14)
    results = apply(ledger, b.purchase(M, "2025-03-01T10:00:00Z", 10000),
                    b.adjustment(M, "2025-03-02T10:00:00Z", -10))
    assert [f.reason for f in facts(results, "adjustment_rejected")] == ["insufficient_points"]


# --------------------------------------------------------- transfers (10)

R = "receiver-1"


def test_a_transfer_moves_points_oldest_first_keeping_their_expiry(ledger):
    apply(ledger, b.birthday(M, "2025-01-10T10:00:00Z"), b.purchase(M, "2025-02-11T10:00:00Z", 10000),
          b.purchase(R, "2025-01-10T10:00:00Z", 5000))
    results = apply(ledger, b.transfer(M, "2025-03-01T10:00:00Z", R, 250))
    (out,) = facts(results, "points_transferred_out")
    assert [(lot["lot_id"], lot["points"]) for lot in out.lots] == [(1, 200), (2, 50)]
    (into,) = facts(results, "points_transferred_in")
    assert into.source_event_id == f"transfer-credit:{out.source_event_id}"
    assert (into.points, into.expired, into.debt_paid) == (250, 0, 0)
    assert [(lot["lot_id"], lot["points"], lot["expires_at"]) for lot in into.lots] == [
        (2, 200, utc("2026-01-10T10:00:00Z")), (3, 50, utc("2026-02-11T10:00:00Z"))]
    sender, receiver = account(ledger, M), account(ledger, R)
    assert (sender.balance, sender.lifetime_transferred_out) == (50, 250)
    assert (receiver.balance, receiver.lifetime_transferred_in) == (300, 250)
    # The gift's lots keep their dates, after the receiver's lot of the same occurred_at
    results = apply(ledger, b.redemption(R, "2025-03-02T10:00:00Z", 220))
    (redeemed,) = facts(results, "points_redeemed")
    assert redeemed.draws == [[1, 50], [2, 170]]


def test_a_transfer_opens_the_receivers_account(ledger):
    apply(ledger, b.birthday(M, "2025-01-10T10:00:00Z"))
    results = apply(ledger, b.transfer(M, "2025-03-01T10:00:00Z", "newcomer", 120))
    assert [f.member_id for f in facts(results, "points_transferred_in")] == ["newcomer"]
    receiver = account(ledger, "newcomer")
    assert (receiver.balance, receiver.tier, receiver.clock) == (120, "bronze", utc("2025-03-01T10:00:00Z"))


def test_transfer_rejections_first_failure_wins(ledger_on):
    ledger = ledger_on(transfer_points_per_year_max=300)
    apply(ledger, b.birthday(M, "2025-01-10T10:00:00Z"))
    results = apply(
        ledger,
        b.transfer(M, "2025-03-01T10:00:00Z", M, 10_000),    # self wins over everything
        b.transfer(M, "2025-03-02T10:00:00Z", R, 301),        # over the yearly limit
        b.transfer(M, "2025-03-03T10:00:00Z", R, 250),        # too many points
        b.transfer(M, "2025-03-04T10:00:00Z", R, 150),
        b.transfer(M, "2025-03-05T10:00:00Z", R, 151),        # 150 + 151 > 300 this year
    )
    assert [f.reason for f in facts(results, "transfer_rejected")] == [
        "self_transfer", "transfer_limit", "insufficient_points", "transfer_limit"]
    apply(ledger, b.birthday(M, "2026-01-10T10:00:00Z"))
    results = apply(ledger, b.transfer(M, "2026-01-11T10:00:00Z", R, 151))  # a new year
    assert [f.points for f in facts(results, "points_transferred_out")] == [151]
    assert account(ledger, M).transferred_by_year == {"2025": 150, "2026": 151}


def test_a_zero_yearly_limit_turns_transfers_off(ledger_on):
    ledger = ledger_on(transfer_points_per_year_max=0)
    results = apply(ledger, b.birthday(M, "2025-01-10T10:00:00Z"),
                    b.transfer(M, "2025-03-01T10:00:00Z", R, 1))
    assert [f.reason for f in facts(results, "transfer_rejected")] == ["transfer_limit"]


def test_a_transfer_never_draws_pending_lots(ledger_on):
    ledger = ledger_on(pending_days=14)
    results = apply(ledger, b.purchase(M, "2025-03-01T10:00:00Z", 10000),
                    b.transfer(M, "2025-03-02T10:00:00Z", R, 1))
    assert [f.reason for f in facts(results, "transfer_rejected")] == ["insufficient_points"]


def test_arriving_points_past_expiry_expire_at_once_and_the_rest_pays_debt(ledger):
    # The receiver's clock is already past the expiry of the sender's oldest lot
    buy = b.purchase(R, "2025-06-01T10:00:00Z", 10000)
    apply(ledger, b.birthday(M, "2024-12-01T10:00:00Z"), b.purchase(M, "2025-02-01T10:00:00Z", 10000),
          buy, b.redemption(R, "2025-06-02T10:00:00Z", 100),
          b.refund(R, "2025-12-05T10:00:00Z", buy["event_id"], 10000))   # receiver owes 100
    results = apply(ledger, b.transfer(M, "2025-03-01T10:00:00Z", R, 250))
    (into,) = facts(results, "points_transferred_in")
    # 200 from a lot that expired 2025-12-01: gone at once; 50 pay debt; nothing is left
    assert (into.points, into.expired, into.debt_paid, into.lots) == (250, 200, 50, [])
    receiver = account(ledger, R)
    assert (receiver.balance, receiver.debt) == (-50, 50)
    assert (receiver.lifetime_transferred_in, receiver.lifetime_expired) == (250, 200)


def test_a_redelivered_transfer_credit_is_a_duplicate(ledger):
    apply(ledger, b.birthday(M, "2025-01-10T10:00:00Z"))
    results = apply(ledger, b.transfer(M, "2025-03-01T10:00:00Z", R, 120))
    (credit,) = credit_commands(results[0].facts)
    assert [r.status for r in ledger.apply(credit)] == ["duplicate"]
    assert account(ledger, R).balance == 120


# ------------------------------------------- tier benefits, lifetime tiers (11)

def test_lifetime_tiers_accumulate_and_never_drop(ledger_on):
    ledger = ledger_on(tier_basis="lifetime")
    buy = b.purchase(M, "2024-03-01T10:00:00Z", 30000, event_id="first")
    results = apply(ledger, buy, b.purchase(M, "2025-06-01T10:00:00Z", 30000))
    (change,) = facts(results, "tier_changed")
    assert (change.to_tier, change.reason, change.qualifying_spend_minor) == ("silver", "spend", 60000)
    # Years later, with no spend in the last two years, and after a refund: still silver
    results = apply(ledger, b.birthday(M, "2028-01-01T10:00:00Z"),
                    b.refund(M, "2028-01-02T10:00:00Z", "first", 30000))
    assert not facts(results, "tier_changed")
    assert account(ledger, M).tier == "silver"


def test_annual_tiers_still_drop_by_default(ledger):
    apply(ledger, b.purchase(M, "2024-03-01T10:00:00Z", 60000))
    results = apply(ledger, b.birthday(M, "2026-01-01T10:00:00Z"))
    assert [(f.to_tier, f.reason) for f in facts(results, "tier_changed")] == [("bronze", "year_rollover")]


# ------------------------------------------------------ program versions (11)

def test_a_program_version_is_recorded_once_and_an_older_one_refused(ledger):
    text = DEFAULT_TEXT.replace('name = "default"', 'name = "default"\nversion = 2')
    second = parse_program(text)
    ledger.program = second
    ledger.record_program_version()
    ledger.record_program_version()  # running it again records nothing new
    # A worker with version 1 after version 2 ran, or with another file as version 2: refused
    ledger.program = load_program()
    with pytest.raises(ProgramVersionRefused, match="lower than version 2"):
        ledger.record_program_version()
    ledger.program = parse_program(text + "\n# changed\n")
    with pytest.raises(ProgramVersionRefused, match="raise program.version"):
        ledger.record_program_version()
    # The recorded file is the program of its version
    ledger.program = load_program()
    assert ledger.program_for(2) == second
    with pytest.raises(KeyError):
        ledger.program_for(3)
