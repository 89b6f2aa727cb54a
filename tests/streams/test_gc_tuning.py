"""``streams/gc_tuning.py``: a long-running process freezes what start-up made, collects its
young generation every ``gc_young_objects`` allocations, never starts a full collection by
itself, and frees old cyclic garbage with its timed full collection; ``LOYALTY_GC_TUNED=false``
keeps CPython's defaults. Each case runs in a fresh interpreter (the collector is global)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

PROBE = r"""
import gc, json, sys, time, weakref
from ledger.settings import LedgerSettings
from streams.gc_tuning import tune_gc

defaults = gc.get_threshold()
timer = tune_gc(LedgerSettings.from_env())

class Node:
    pass

def old_cycle():
    a, b = Node(), Node()
    a.other, b.other = b, a
    gc.collect(1)  # survives the young and middle generations: the cycle is old now
    return weakref.ref(a)

ref = old_cycle()
for _ in range(50):  # many young collections: an old cycle is not theirs to free
    [Node() for _ in range(20_000)]
freed_young = ref() is None
waited_s = 0.0
while ref() is not None and waited_s < 10:
    time.sleep(0.1)
    waited_s += 0.1
print(json.dumps({"defaults": defaults, "threshold": gc.get_threshold(),
                  "frozen": gc.get_freeze_count(), "timer": timer is not None,
                  "freed_by_young": freed_young, "freed": ref() is None}))
"""


def _probe(**env: str) -> dict:
    done = subprocess.run([sys.executable, "-c", PROBE], env=os.environ | env, capture_output=True,
                          text=True, timeout=60, check=True)
    return json.loads(done.stdout)


def test_a_tuned_process_freezes_start_up_and_frees_old_cycles_on_its_timer():
    found = _probe(LOYALTY_GC_YOUNG_OBJECTS="5000", LOYALTY_GC_FULL_INTERVAL_S="1")
    assert found["threshold"][0] == 5000 and found["threshold"][2] >= 2**31 - 1
    assert found["frozen"] > 10_000  # the imports' objects are never scanned again
    assert not found["freed_by_young"]  # no automatic full collection reached the old cycle
    assert found["freed"]  # the timed full collection did


def test_the_previous_design_keeps_cpythons_defaults():
    found = _probe(LOYALTY_GC_TUNED="false")
    assert found["threshold"] == found["defaults"]
    assert found["frozen"] == 0 and not found["timer"]
    assert found["freed_by_young"]  # CPython's own full collections free the old cycle


def test_a_setting_below_1_is_a_one_line_mistake():
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60,
                          env=os.environ | {"LOYALTY_GC_YOUNG_OBJECTS": "0"})
    assert done.returncode != 0
    assert done.stderr.strip() == "error: LOYALTY_GC_YOUNG_OBJECTS must be at least 1 (got 0)"
