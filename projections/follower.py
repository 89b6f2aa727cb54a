"""The live follower: keep the read models caught up with the ledger until stopped.

``follow`` is the loop behind ``loyalty replay --follow``: every
``follow_poll_interval_ms`` when idle it catches the read models up with one
transaction per ``follow_batch_notifications_max`` new facts (the same
locked, tracked catch-up as ``resume``; both limits are ``LedgerSettings``),
instead of eventsourcing's ``ProjectionRunner``, which commits one
transaction per fact and fell minutes behind the stream workers in the
demo. It reports each read model's lag to an optional ``record_lag``
callback (the command line wires it to the Prometheus metrics). A
``loyalty replay`` run meanwhile resets the read models under it: the
follower's window is then abandoned unwritten and it catches up again from
the reset positions.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from ledger.application import LoyaltyLedger
from ledger.settings import LedgerSettings
from projections.runner import ReadModels, ReadModelsMovedBack, resume

LOG = logging.getLogger(__name__)

LagRecorder = Callable[[str, int], None]  # (read model, notifications behind)


def follow(ledger: LoyaltyLedger, models: ReadModels, settings: LedgerSettings,
           record_lag: LagRecorder | None = None) -> None:
    """Follow the ledger live until KeyboardInterrupt (Ctrl-C, or SIGTERM/SIGHUP as the CLI maps them)."""
    while True:
        try:
            done = resume(ledger, models,
                          batch_notifications_max=settings.follow_batch_notifications_max)
        except ReadModelsMovedBack as moved:
            LOG.warning("read models were reset while following (%s); catching up again", moved)
            continue
        if record_lag is not None:
            _record_lag(record_lag, ledger, models)
        if done.notifications == 0:
            time.sleep(settings.follow_poll_interval_ms / 1000)


def _record_lag(record_lag: LagRecorder, ledger: LoyaltyLedger, models: ReadModels) -> None:
    head = ledger.fact_log.head()
    for name, position in models.positions().items():
        record_lag(name, max(head - position, 0))
