"""The demo's dashboard figures, read through the ledger and the read models only."""

from __future__ import annotations

import base64

from eventsourcing.persistence import Tracking

from ledger.application import LoyaltyLedger
from ledger.dead_letters import DeadLetter
from projections.runner import catch_up, open_read_models
from streams.devkit.dashboard import DASHBOARD_READ_MODELS, PipelineProbe
from streams.outbox import OUTBOX_TRACKING_NAME
from streams.settings import Settings
from tests.support import builders as b

SETTINGS = Settings()


def test_a_snapshot_shows_what_is_committed(pg_env):
    ledger = LoyaltyLedger(env=pg_env)
    ledger.apply(*b.commands(b.purchase("m1", "2025-01-01T10:00:00Z", 60000)),
                 tracking=Tracking(SETTINGS.tracking_name(SETTINGS.events_topic, 0), 4))
    ledger.apply(*b.commands(b.purchase("m2", "2025-01-05T10:00:00Z", 1000)),
                 tracking=Tracking(SETTINGS.tracking_name(SETTINGS.events_topic, 1), 2))
    envelope = {"source_topic": SETTINGS.events_topic, "source_partition": 1, "source_offset": 3,
                "key_base64": base64.b64encode(b"m3").decode(), "reason": "invalid_json"}
    ledger.save_batch([DeadLetter.record(envelope)],
                      Tracking(SETTINGS.tracking_name(SETTINGS.events_topic, 1), 3))
    ledger.recorder.insert_tracking(Tracking(OUTBOX_TRACKING_NAME, 2))
    with open_read_models(pg_env, DASHBOARD_READ_MODELS, ledger.program) as models:
        catch_up(ledger, models, batch_notifications_max=100)
        shot = PipelineProbe(ledger, SETTINGS, models).snapshot(produced=9)
    ledger.close()
    assert (shot.applied, shot.consumer_lag) == (5 + 4, 0)  # offsets 0..4 and 0..3
    assert shot.dead_letters == 1
    assert shot.outbox_lag == 6 - 2  # five facts and a dead letter, two published
    assert shot.tiers == {"silver": 1, "bronze": 1}
    assert (shot.issued, shot.liability, shot.members) == (600 + 10, 610, 2)
    assert shot.event_time == "2025-01-05 10:00"
    assert shot.recent_tier_changes == [("2025-01-01", "m1", "bronze", "silver", "spend")]
