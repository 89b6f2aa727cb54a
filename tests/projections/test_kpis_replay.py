"""KPIs rebuilt by replay equal the KPIs kept live (hypothesis).

Live: the ``kpis`` read model follows the ledger in small catch-up batches
while each example's stream is applied a few events at a time (purchases,
refunds, redemptions, birthdays, referrals, year ends, adjustments and
transfers, some late; contract 2's test program: pending days, two-month
expiry), with section 13's enrollments, NPS answers and erasures put in. Replay: the read model is dropped and rebuilt from the whole log
in one batch. Every row of every table and the report must be equal, and
the KPIs must add up to the ledger's counters as the ``balances`` read
model holds them (points moved, months to years, liability = open points).
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ledger.application import LoyaltyLedger
from ledger.commands import command_from_event
from projections.balances import BALANCES
from projections.kpi_report import kpi_report
from projections.runner import catch_up, open_read_models, read_model_digests, replay
from tests.ledger.test_properties_contract2 import contract_2_program, event_streams
from tests.support.properties import property_settings

EXAMPLES_MAX = 15
LIVE_BATCH_NOTIFICATIONS_MAX = 7
REPLAY_BATCH_NOTIFICATIONS_MAX = 100_000


MEMBER_EVENT_TYPES = ("member_enrolled", "nps_response", "nps_response", "member_erased")


@st.composite
def with_member_events(draw, events: list[dict]) -> list[dict]:
    """``events`` with enrollments, NPS answers and erasures put in, each taking the time and
    member of the event it comes before."""
    mixed = list(events)
    for number in range(draw(st.integers(0, 6))):
        position = draw(st.integers(0, len(mixed) - 1))
        base = mixed[position]
        kind = draw(st.sampled_from(MEMBER_EVENT_TYPES))
        event = {"type": kind, "schema_version": 1, "event_id": f"{base['event_id']}-{kind}-{number}",
                 "member_id": base["member_id"], "occurred_at": base["occurred_at"]}
        if kind == "nps_response":
            event["score"] = draw(st.integers(0, 10))
        mixed.insert(position, event)
    return mixed


@property_settings(EXAMPLES_MAX)
@given(events=event_streams().flatmap(with_member_events), chunk_events=st.integers(1, 6),
       lifetime=st.booleans())
def test_kpis_by_replay_equal_kpis_kept_live(pg_env, events, chunk_events, lifetime):
    program = contract_2_program(lifetime)
    ledger = LoyaltyLedger(env=pg_env, program=program)
    try:
        with open_read_models(pg_env, ["kpis", "balances"], program) as models:
            for start in range(0, len(events), chunk_events):
                chunk = events[start:start + chunk_events]
                ledger.apply_in_order([command_from_event(event) for event in chunk])
                catch_up(ledger, models, batch_notifications_max=LIVE_BATCH_NOTIFICATIONS_MAX)
            live = read_model_digests(models), kpi_report(models.view("kpis"), program)
            balances = models.view("balances").rows(BALANCES)
            replay(ledger, models, batch_notifications_max=REPLAY_BATCH_NOTIFICATIONS_MAX)
            replayed = read_model_digests(models), kpi_report(models.view("kpis"), program)
    finally:
        ledger.close()
    assert replayed == live
    assert live[1], "the stream produced no KPI row"
    assert_kpis_add_up_to_the_balances(live[1], balances)


# KPI figure summed over the years -> the balances column it must equal, summed over members
LIFETIME_COUNTERS = {
    "points_issued": "lifetime_earned", "points_reversed": "lifetime_reversed",
    "points_redeemed": "lifetime_redeemed", "points_expired": "lifetime_expired",
    "points_forfeited": "lifetime_forfeited", "points_adjusted_in": "lifetime_adjusted_in",
    "points_adjusted_out": "lifetime_adjusted_out",
    "points_transferred_in": "lifetime_transferred_in",
    "points_transferred_out": "lifetime_transferred_out",
}


def assert_kpis_add_up_to_the_balances(report: list[dict], balances: list[dict]) -> None:
    """Every point the KPIs count in some period is one the ledger's counters hold; the months
    add up to their years; the liability is every member's open points (balance + debt +
    pending)."""
    months = [row for row in report if row["kind"] == "month"]
    years = [row for row in report if row["kind"] == "year"]
    for figure, column in LIFETIME_COUNTERS.items():
        assert sum(row[figure] for row in years) == sum(row[column] for row in balances), figure
        assert sum(row[figure] for row in months) == sum(row[figure] for row in years), figure
    for figure in ("purchases", "purchase_amount_minor", "net_spend_minor", "enrollments",
                   "nps_responses", "programme_cost_minor"):
        assert sum(row[figure] for row in months) == sum(row[figure] for row in years), figure
    assert sum(row["enrollments"] for row in years) == len(balances)
    open_points = sum(row["balance"] + row["debt"] + row["pending"] for row in balances)
    assert sum(row["outstanding_points"] for row in report if row["kind"] == "liability") == open_points
