"""The read models with contract 2's rules (sections 8 to 11): pending points,
adjustments, transfers and tier benefits in the balance and tier rows, the
auditor's view, ``verify`` and a replay that gives the same rows.

The program is the shipped ``retail-example.toml`` (14 pending days, lifetime
tiers with discounts, transfers, reason codes).
"""

from __future__ import annotations

import pytest

from ledger.application import LoyaltyLedger
from ledger.program import RETAIL_EXAMPLE_PROGRAM_PATH, load_program, parse_program
from projections.annual import ANNUAL
from projections.auditor import member_view
from projections.balances import BALANCES
from projections.kpis import KPI_OPEN_LOTS
from projections.runner import read_model_digests, replay
from projections.tiers import TIERS
from projections.verify import verify
from tests.support import builders as b
from tests.support.ledger_steps import apply
from tests.projections.steps import check_verify_and_replay, projected, rows_by_key

RETAIL = load_program(RETAIL_EXAMPLE_PROGRAM_PATH)


@pytest.fixture
def retail_ledger(pg_env):
    ledger = LoyaltyLedger(env=pg_env, program=RETAIL)
    yield ledger
    ledger.close()


def a_retail_stream(ledger: LoyaltyLedger) -> None:
    first = b.purchase("P", "2025-03-01T10:00:00Z", 60000, event_id="p-buy")   # 600 pending
    apply(ledger,
          first,
          b.refund("P", "2025-03-02T10:00:00Z", "p-buy", 10000),               # -100 while pending
          b.birthday("P", "2025-03-03T10:00:00Z"),                              # 200 active
          b.transfer("P", "2025-03-04T10:00:00Z", "Q", 150),                    # 150 to Q
          b.adjustment("P", "2025-03-05T10:00:00Z", -100, reason_code="correction",
                       allow_debt=True),                                        # 50 drawn, 50 debt
          b.purchase("P", "2025-03-06T10:00:00Z", 10000),                       # 125 pending (silver)
          b.adjustment("P", "2025-03-20T10:00:00Z", 30, reason_code="service_recovery"),
          b.refund("P", "2026-02-01T10:00:00Z", "p-buy", 50000))                # lifetime tier stays
    apply(ledger, b.birthday("Q", "2025-01-02T10:00:00Z"),
          b.adjustment("Q", "2025-03-07T10:00:00Z", 5, reason_code="whim"))     # rejected


def test_balance_and_tier_rows_carry_contract_2s_columns(retail_ledger, pg_env):
    a_retail_stream(retail_ledger)
    with projected(retail_ledger, pg_env, ["balances", "tiers"]) as models:
        balances = rows_by_key(models, "balances", BALANCES)
        tiers = rows_by_key(models, "tiers", TIERS)
    p_account = retail_ledger.find_account("P")
    assert balances[("P",)]["pending"] == p_account.pending == 0
    assert balances[("P",)]["balance"] == p_account.balance
    assert balances[("P",)]["lifetime_adjusted_in"] == 30
    assert balances[("P",)]["lifetime_adjusted_out"] == 100
    assert balances[("P",)]["lifetime_transferred_out"] == 150
    assert balances[("Q",)]["lifetime_transferred_in"] == 150
    assert balances[("Q",)]["balance"] == 350
    # P reached silver on lifetime spend; the refund lowers the spend, never the tier
    assert tiers[("P",)]["tier"] == "silver" and tiers[("P",)]["discount_pct"] == 3
    assert tiers[("P",)]["spend_to_next_tier"] == 200000 - (60000 - 10000 + 10000 - 50000)
    assert tiers[("Q",)]["discount_pct"] == 0


def test_pending_points_in_the_balance_row_before_activation(retail_ledger, pg_env):
    apply(retail_ledger, b.purchase("P", "2025-03-01T10:00:00Z", 10000, event_id="p-buy"),
          b.purchase("P", "2025-03-02T10:00:00Z", 4000),
          b.refund("P", "2025-03-03T10:00:00Z", "p-buy", 5000))
    with projected(retail_ledger, pg_env, ["balances"]) as models:
        row = rows_by_key(models, "balances", BALANCES)[("P",)]
    assert (row["balance"], row["pending"], row["lifetime_earned"], row["lifetime_reversed"]) == (
        0, 90, 140, 50)
    view = member_view(retail_ledger, "P")
    assert view.balance["pending"] == 90
    assert [lot["active_from"] is not None for lot in view.lots] == [True, True]
    assert view.tier["discount_pct"] == 0


def test_verify_is_clean_and_replay_gives_the_same_rows(retail_ledger, pg_env):
    a_retail_stream(retail_ledger)
    with projected(retail_ledger, pg_env) as models:
        check_verify_and_replay(retail_ledger, models)


def test_replay_after_a_program_change_gives_the_rows_the_live_run_gave(pg_env):
    # Version 1 (the default program) decides the first events; the read models follow live
    first = LoyaltyLedger(env=pg_env)
    first.record_program_version()
    apply(first, *[b.purchase("V", f"2025-{m:02d}-02T10:00:00Z", 60000) for m in range(1, 13)])
    with projected(first, pg_env) as models:
        pass
    first.close()
    # Version 2 changes the tier discounts and the annual incentive; workers run it from now on
    second_text = RETAIL.source_text.replace("version = 1", "version = 2").replace(
        "bonus_pct = 5", "bonus_pct = 9").replace("purchases_min = 12", "purchases_min = 13")
    second = LoyaltyLedger(env=pg_env, program=parse_program(second_text))
    second.record_program_version()
    apply(second, b.purchase("W", "2026-02-01T10:00:00Z", 60000),
          b.birthday("V", "2026-02-02T10:00:00Z"))
    with projected(second, pg_env) as models:
        live = read_model_digests(models)
        annual = rows_by_key(models, "annual", ANNUAL)
        tiers = rows_by_key(models, "tiers", TIERS)
        assert verify(second, models).ok
        replay(second, models)
        assert read_model_digests(models) == live
    # V's 2025 row was decided by version 1 (12 purchases are enough, 5 %); W's tier row by 2
    v_2025 = annual[("V", 2025)]
    assert (v_2025["purchases"], v_2025["eligible"]) == (12, True)  # version 2 would need 13
    assert v_2025["projected_bonus"] == v_2025["net_purchase_points"] * 5 // 100  # not 9 %
    assert tiers[("W",)]["discount_pct"] == 3 and tiers[("V",)]["discount_pct"] == 10
    second.close()


def test_the_points_liability_follows_pending_lots_adjustments_and_transfers(retail_ledger, pg_env):
    a_retail_stream(retail_ledger)
    with projected(retail_ledger, pg_env, ["kpis"]) as models:
        lots = models.view("kpis").rows(KPI_OPEN_LOTS)
    unspent = {m: sum(lot.remaining for lot in retail_ledger.find_account(m).lots) for m in "PQ"}
    assert {m: sum(r["remaining"] for r in lots if r["member_id"] == m) for m in "PQ"} == unspent
