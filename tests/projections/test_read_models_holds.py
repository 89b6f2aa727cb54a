"""The read models with section 7 (holds, captures, voids, cancellations): ``held``
and ``lifetime_cancelled`` in the balance rows, the points liability, the auditor's
view, ``verify`` (balance + held + pending = in - out) and a replay that gives the
same rows, on the embedded PostgreSQL. A late stream leaves one hold open.
"""

from __future__ import annotations

import dataclasses

import pytest

from ledger.application import LoyaltyLedger
from ledger.program import load_program
from projections.auditor import member_view, member_view_document
from projections.balances import BALANCES
from projections.kpis import KPI_OPEN_LOTS
from projections.runner import read_model_digests, replay
from projections.tiers import TIERS
from projections.verify import verify
from tests.projections.steps import projected, rows_by_key
from tests.support import builders as b
from tests.support.ledger_steps import apply

SHORT_EXPIRY = dataclasses.replace(load_program(), expiry_months=1)


def at(clock: str, day: int = 1) -> str:
    return f"2025-03-{day:02d}T{clock}:00Z"


@pytest.fixture
def holds_ledger(pg_env):
    ledger = LoyaltyLedger(env=pg_env, program=SHORT_EXPIRY)
    yield ledger
    ledger.close()


def a_till_stream(ledger: LoyaltyLedger) -> None:
    """H: 1,000 points; a partial capture, a void, a hold run out past its lot's expiry,
    a cancelled capture, a debt paid by a release, and one hold still open."""
    buy = b.purchase("H", "2025-02-01T09:00:00Z", 100_000, event_id="h-buy")  # expires 1 March 09:00
    apply(ledger, buy,
          b.birthday("H", at("08:00")),                                      # 200, expires 1 April
          b.hold("H", at("08:10"), 500, at("08:40"), event_id="h-1"),
          b.capture("H", at("08:11"), "h-1", 300, event_id="cap-1"),           # 200 released
          b.hold("H", at("08:12"), 100, at("08:40"), event_id="h-2"),
          b.void("H", at("08:13"), "h-2"),
          b.hold("H", at("08:50"), 400, at("09:10"), event_id="h-3"),         # runs out after 09:00
          b.cancel("H", at("08:55"), "cap-1"),                                 # 300 back
          b.redemption("H", at("09:20"), 1),                                   # releases h-3: expired
          b.hold("H", at("09:30"), 150, at("09:55"), event_id="h-4"),
          b.refund("H", at("09:31"), "h-buy", 100_000),                         # debt while held
          b.hold("H", at("09:40"), 10, at("10:00"), event_id="h-5"),           # refused
          b.void("H", at("09:41"), "h-4"),                                     # pays debt
          b.birthday("H", at("10:00", day=2)),                                  # refused: same year
          b.adjustment("H", at("10:05", day=2), 1000, reason_code="goodwill"),  # the rest of it
          b.hold("H", at("10:06", day=2), 60, at("10:30", day=2), event_id="h-open"))


def test_balance_rows_carry_held_and_cancelled(holds_ledger, pg_env):
    a_till_stream(holds_ledger)
    account = holds_ledger.find_account("H")
    assert (account.held, account.lifetime_cancelled) == (60, 300)
    with projected(holds_ledger, pg_env, ["balances"]) as models:
        row = rows_by_key(models, "balances", BALANCES)[("H",)]
    assert (row["balance"], row["held"], row["lifetime_cancelled"]) == (
        account.balance, 60, 300)
    assert (row["lifetime_redeemed"], row["lifetime_expired"], row["debt"]) == (
        account.lifetime_redeemed, account.lifetime_expired, account.debt)


def test_verify_is_clean_and_replay_gives_the_same_rows(holds_ledger, pg_env):
    a_till_stream(holds_ledger)
    with projected(holds_ledger, pg_env) as models:
        report = verify(holds_ledger, models)
        assert report.ok, report.mismatches
        before = read_model_digests(models)
        replay(holds_ledger, models)
        assert read_model_digests(models) == before


def test_verify_reports_a_held_column_that_disagrees(holds_ledger, pg_env):
    a_till_stream(holds_ledger)
    with projected(holds_ledger, pg_env, ["balances"]) as models:
        with models.view("balances").datastore.transaction(commit=True) as cursor:
            cursor.execute("UPDATE balances SET held = held + 1 WHERE member_id = 'H'")
        fields = {m.field for m in verify(holds_ledger, models).mismatches}
    assert {"held", "balance_invariant"} <= fields


def test_the_points_liability_leaves_out_held_points_and_takes_back_released_ones(holds_ledger,
                                                                                   pg_env):
    a_till_stream(holds_ledger)
    with projected(holds_ledger, pg_env, ["kpis"]) as models:
        lots = models.view("kpis").rows(KPI_OPEN_LOTS)
    account = holds_ledger.find_account("H")
    assert {(r["lot_id"], r["remaining"]) for r in lots if r["member_id"] == "H"} == {
        (lot.lot_id, lot.remaining) for lot in account.lots}


def test_the_auditors_view_shows_the_open_hold(holds_ledger):
    a_till_stream(holds_ledger)
    view = member_view(holds_ledger, "H")
    assert view.balance["held"] == 60 and view.balance["lifetime_cancelled"] == 300
    [hold] = member_view_document(view)["holds"]
    assert (hold["hold_event_id"], hold["points"], hold["expires_at"]) == (
        "h-open", 60, "2025-03-02T10:30:00Z")
    kinds = [row["type"] for row in view.history]
    assert kinds.count("hold_released") == 4 and "redemption_cancelled" in kinds


def test_a_hold_in_a_new_year_moves_the_tier_rows_year(holds_ledger, pg_env):
    apply(holds_ledger, b.purchase("T", "2025-12-30T10:00:00Z", 60_000),
          b.hold("T", "2026-01-02T10:00:00Z", 10, "2026-01-02T10:20:00Z"))
    with projected(holds_ledger, pg_env) as models:
        row = rows_by_key(models, "tiers", TIERS)[("T",)]
        assert verify(holds_ledger, models).ok
    assert (row["spend_current_year"], row["spend_previous_year"]) == (0, 60_000)
