"""Contract 2 through the stream pipeline: pending points, adjustments and
transfers across partitions, on the shipped retail-example program, with a
worker SIGKILLed mid-stream, equal the direct application of the same events.
"""

from __future__ import annotations

from dataclasses import replace

from ledger.domain import LoyaltyAccount
from ledger.program import RETAIL_EXAMPLE_PROGRAM_PATH, load_program
from streams.producer import produce_lines
from streams.topics import ensure_topics
from streams.worker import open_ledger
from tests.streams.test_stream_pipeline import unique_settings
from tests.support.pipeline import assert_same_as_direct, run_with_a_worker_killed
from tests.support.streamgen import with_faults
from tests.support.streamgen_contract2 import generate_contract_2_events

EVENTS = 3000


def test_contract_2_stream_with_a_sigkill_equals_direct_application(kafka_bootstrap, embedded_pg,
                                                                    tmp_path):
    events = generate_contract_2_events(seed=5, count=EVENTS)
    lines, _ = with_faults(events, seed=5, bad_every=600)
    settings = replace(unique_settings(kafka_bootstrap, embedded_pg, "contract2"),
                       program_file=str(RETAIL_EXAMPLE_PROGRAM_PATH))
    ensure_topics(settings)
    ledger = open_ledger(settings)
    produced = produce_lines(settings.bootstrap_servers, settings.events_topic,
                             [line.encode() for line in lines])
    run_with_a_worker_killed(ledger, settings, produced, tmp_path)
    assert_same_as_direct(ledger, events, load_program(RETAIL_EXAMPLE_PROGRAM_PATH))
    kinds = {type(fact).__name__ for fact in ledger.fact_log.facts()}
    assert {"PointsActivated", "PointsAdjusted", "AdjustmentRejected", "PointsTransferredOut",
            "PointsTransferredIn"} <= kinds
    outs = [f for f in ledger.fact_log.facts() if isinstance(f, LoyaltyAccount.PointsTransferredOut)]
    ins = [f for f in ledger.fact_log.facts() if isinstance(f, LoyaltyAccount.PointsTransferredIn)]
    assert sorted(f.source_event_id for f in ins) == sorted(
        f"transfer-credit:{f.source_event_id}" for f in outs)  # each credit applied exactly once
    assert ledger.program_for(1).name == "retail-example"
    ledger.close()
