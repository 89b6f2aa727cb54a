"""KPIs rebuilt by replay equal the KPIs kept live (hypothesis).

Live: the ``kpis`` read model follows the ledger in small catch-up batches
while each example's stream is applied a few events at a time (purchases,
refunds, redemptions, birthdays, referrals, year ends, adjustments and
transfers, some late; contract 2's test program: pending days, two-month
expiry). Replay: the read model is dropped and rebuilt from the whole log
in one batch. Every row of every table and the report must be equal.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ledger.application import LoyaltyLedger
from ledger.commands import command_from_event
from projections.kpi_report import kpi_report
from projections.runner import catch_up, open_read_models, read_model_digests, replay
from tests.ledger.test_properties_contract2 import contract_2_program, event_streams
from tests.support.properties import property_settings

EXAMPLES_MAX = 15
LIVE_BATCH_NOTIFICATIONS_MAX = 7
REPLAY_BATCH_NOTIFICATIONS_MAX = 100_000


@property_settings(EXAMPLES_MAX)
@given(events=event_streams(), chunk_events=st.integers(1, 6), lifetime=st.booleans())
def test_kpis_by_replay_equal_kpis_kept_live(pg_env, events, chunk_events, lifetime):
    program = contract_2_program(lifetime)
    ledger = LoyaltyLedger(env=pg_env, program=program)
    try:
        with open_read_models(pg_env, ["kpis"], program) as models:
            for start in range(0, len(events), chunk_events):
                chunk = events[start:start + chunk_events]
                ledger.apply_in_order([command_from_event(event) for event in chunk])
                catch_up(ledger, models, batch_notifications_max=LIVE_BATCH_NOTIFICATIONS_MAX)
            live = read_model_digests(models), kpi_report(models.view("kpis"), program)
            replay(ledger, models, batch_notifications_max=REPLAY_BATCH_NOTIFICATIONS_MAX)
            replayed = read_model_digests(models), kpi_report(models.view("kpis"), program)
    finally:
        ledger.close()
    assert replayed == live
    assert live[1], "the stream produced no KPI row"
