"""CPython's cyclic garbage collector, tuned for a long-running process (worker, relay,
follower, API): ``tune_gc`` at start-up, after the imports and the set-up.

By default CPython runs a full collection whenever the objects that survived
since the last one reach a quarter of the old ones. A worker keeps up to
``account_cache_accounts_max`` accounts and evicts the least recently used,
so survivors keep coming and full collections keep running: over 60,000
bench events on PostgreSQL, 9 full collections of about 210 ms each (the
process's 270,000 objects, 170,000 of them from the imports), about 16 % of
the ledger thread's CPU, and each one a pause of a whole batch
(``docs/BENCHMARKS.md``, "Garbage collector pauses"). The ledger path makes
no cyclic garbage at all (a collection after 100,000 events found none), so
the collector's work there is pure cost.

``tune_gc`` (``LOYALTY_GC_TUNED``, default on; off keeps CPython's defaults,
the previous design):

- collects once and freezes what start-up made (``gc.freeze``): imported
  modules, the program, the app are never scanned again;
- collects the young generation only every ``gc_young_objects``
  allocations (CPython: 700), and the middle one every
  ``GC_YOUNG_COLLECTIONS_PER_MIDDLE`` young collections; cycles among
  short-lived objects (asyncio's, an exception's traceback) die there;
- never starts a full collection by itself (the oldest generation's
  threshold is ``GC_FULL_THRESHOLD_NEVER``); a daemon thread runs one every
  ``gc_full_interval_s`` instead, so cyclic garbage that grew old is still
  freed, with a bounded pause at a bounded rate.
"""

from __future__ import annotations

import gc
import logging
import threading
import time

from ledger.settings import LedgerSettings
from streams.thread_names import run_named

log = logging.getLogger(__name__)

GC_YOUNG_COLLECTIONS_PER_MIDDLE = 10  # CPython's default
GC_FULL_THRESHOLD_NEVER = 2**31 - 1   # middle collections before a full one: never reached
GC_FULL_THREAD = "gc-full"


def tune_gc(settings: LedgerSettings) -> threading.Thread | None:
    """Tune the collector as the module says (nothing when ``gc_tuned`` is off); returns the
    daemon thread running the timed full collections."""
    if not settings.gc_tuned:
        return None
    for name in ("gc_young_objects", "gc_full_interval_s"):
        if getattr(settings, name) < 1:
            raise SystemExit(f"error: LOYALTY_{name.upper()} must be at least 1 "
                             f"(got {getattr(settings, name)})")
    gc.collect()
    gc.freeze()
    gc.set_threshold(settings.gc_young_objects, GC_YOUNG_COLLECTIONS_PER_MIDDLE,
                     GC_FULL_THRESHOLD_NEVER)
    thread = threading.Thread(target=run_named, args=(GC_FULL_THREAD, _collect_every,
                                                      settings.gc_full_interval_s),
                              name=GC_FULL_THREAD, daemon=True)
    thread.start()
    return thread


def _collect_every(interval_s: int) -> None:
    """A full collection every ``interval_s``, for the life of the process."""
    while True:
        time.sleep(interval_s)
        found = gc.collect()
        log.debug("full collection: %d unreachable objects", found)
