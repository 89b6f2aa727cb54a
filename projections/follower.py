"""The live follower: keep the read models caught up with the ledger until stopped.

``follow`` is the loop behind ``loyalty replay --follow``: it polls the
log's head every ``follow_poll_interval_ms`` when idle and, when the head
moved, catches the read models up to it with one transaction per
``follow_batch_notifications_max`` new facts (the same locked, tracked
catch-up as ``resume``; the limits are ``LedgerSettings``), instead of
eventsourcing's ``ProjectionRunner``, which commits one transaction per fact
and fell minutes behind the stream workers in the demo. It reports each
read model's lag to an optional ``record_lag`` callback (the command line
wires it to the Prometheus metrics).

A cycle costs one query when idle: the follower keeps the positions its
last commit recorded instead of reading every read model's position again
(each read is a round trip to PostgreSQL, and on a busy box these round
trips, about a dozen per cycle for five read models, were most of the
event -> balance latency). A ``loyalty replay`` run meanwhile resets the
read models under it: the next commit sees a position behind its window
(``ReadModelsMovedBack``), abandons the window unwritten and the follower
reads the positions again; an idle follower also re-reads them every
``follow_positions_reread_ms``. ``follow_rereads_positions`` restores the
previous design (``resume`` every cycle: the head and every position read
twice, then again for the lag).

The follower also keeps each read model's rows from one cycle to the next
(up to ``follow_kept_rows_max`` rows a read model; ``catch_up``'s ``kept``):
a transaction whose read model is still at the position the previous one
recorded uses them instead of reading its members' rows again, so a busy
member's rows are read once, not every 25 ms. Any other position (a reset, a
second writer) and the rows are read afresh. 0 restores the previous design.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from ledger.application import LoyaltyLedger
from ledger.settings import LedgerSettings
from projections.runner import Kept, ReadModels, ReadModelsMovedBack, catch_up, resume

LOG = logging.getLogger(__name__)

LagRecorder = Callable[[str, int], None]  # (read model, notifications behind)


def follow(ledger: LoyaltyLedger, models: ReadModels, settings: LedgerSettings,
           record_lag: LagRecorder | None = None) -> None:
    """Follow the ledger live until KeyboardInterrupt (Ctrl-C, or SIGTERM/SIGHUP as the CLI maps them)."""
    if settings.follow_rereads_positions:
        return _follow_rereading(ledger, models, settings, record_lag)
    positions = models.positions()
    read_at = time.monotonic()
    kept: dict[str, Kept] = {}  # each read model's rows from its last commit (``catch_up``)
    while True:
        head = ledger.fact_log.head()
        if head > min(positions.values(), default=head):
            try:
                positions = catch_up(ledger, models, stop=head, positions=positions,
                                     batch_notifications_max=settings.follow_batch_notifications_max,
                                     synchronous_commit=settings.follow_synchronous_commit,
                                     kept=kept, kept_read_rows_max=settings.follow_kept_rows_max
                                     ).positions
            except ReadModelsMovedBack as moved:
                LOG.warning("read models were reset while following (%s); catching up again", moved)
                positions, read_at = models.positions(), time.monotonic()
                kept.clear()
                continue
        elif time.monotonic() - read_at >= settings.follow_positions_reread_ms / 1000:
            positions, read_at = models.positions(), time.monotonic()
            continue
        else:
            time.sleep(settings.follow_poll_interval_ms / 1000)
        if record_lag is not None:
            _report_lag(record_lag, head, positions)


def _follow_rereading(ledger: LoyaltyLedger, models: ReadModels, settings: LedgerSettings,
                      record_lag: LagRecorder | None) -> None:
    """The previous design: ``resume`` every cycle, positions and head read afresh each time."""
    while True:
        try:
            done = resume(ledger, models,
                          batch_notifications_max=settings.follow_batch_notifications_max)
        except ReadModelsMovedBack as moved:
            LOG.warning("read models were reset while following (%s); catching up again", moved)
            continue
        if record_lag is not None:
            _report_lag(record_lag, ledger.fact_log.head(), models.positions())
        if done.notifications == 0:
            time.sleep(settings.follow_poll_interval_ms / 1000)


def _report_lag(record_lag: LagRecorder, head: int, positions: dict[str, int]) -> None:
    for name, position in positions.items():
        record_lag(name, max(head - position, 0))
