"""A large partition batch commits (psycopg's pipeline mode hangs on > ~1 MB)."""

from __future__ import annotations

import threading

from eventsourcing.persistence import Tracking

from ledger.application import LoyaltyLedger
from tests.support import builders as b

BATCH_EVENTS = 4000
COMMIT_TIMEOUT_S = 60


def test_a_multi_megabyte_batch_commits(pg_env):
    ledger = LoyaltyLedger(env=pg_env)
    commands = b.commands(*[b.purchase(f"big-{n}", "2025-01-01T10:00:00Z", 60000 + n)
                            for n in range(BATCH_EVENTS)])
    done = threading.Event()

    def commit() -> None:
        ledger.apply(*commands, tracking=Tracking("loyalty.events:0", BATCH_EVENTS - 1))
        done.set()

    threading.Thread(target=commit, daemon=True).start()
    assert done.wait(COMMIT_TIMEOUT_S), "the batch's transaction never completed"
    assert ledger.recorder.max_tracking_id("loyalty.events:0") == BATCH_EVENTS - 1
    # three facts each: account opened, points earned, tier changed
    assert ledger.find_account(f"big-{BATCH_EVENTS - 1}").balance == (60000 + BATCH_EVENTS - 1) // 100
    assert (ledger.recorder.max_notification_id() or 0) >= 3 * BATCH_EVENTS
