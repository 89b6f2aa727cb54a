"""Replay: rebuild every read model from the stored facts, against the library's runner.

The store is built once per benchmark run, straight through the ledger
(``LoyaltyLedger.apply`` in batches, simulator events, each batch's referrer
credits applied in the next batch) until it holds at least the requested
number of facts; Kafka is not needed to have facts to replay.

- figure: ``projections.runner.replay`` (drop the read models, then rebuild
  them in memory, all at once, committing rows and positions every
  ``REPLAY_BATCH_NOTIFICATIONS_MAX_DEFAULT`` notifications; what
  ``loyalty replay`` runs);
- baseline: the library's plain runner, eventsourcing's ``ProjectionRunner``
  (``projections.runner.live_runner``, one event per transaction), one per
  read model, all four at once in this process, from position 0 of freshly
  reset read models. It is timed for at most ``baseline_window_s`` (it would
  take minutes for the whole store); its rate is the slowest read model's
  position (a notification id: facts of the log passed) over the time.

Both rates are stored facts (log notifications) per second.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.profiling import Profiler
from bench.services import BenchServices
from ledger.application import LoyaltyLedger
from ledger.commands import command_from_event
from ledger.credits import credit_commands
from ledger.postgres.urls import eventsourcing_env_from_url
from projections.runner import (READ_MODEL_NAMES, REPLAY_BATCH_NOTIFICATIONS_MAX_DEFAULT,
                                live_runner, open_read_models, replay)
from streams.devkit.simulator import SimulationConfig, simulate_events
from streams.worker import account_cache_env

BUILD_BATCH_EVENTS = 1_000
BUILD_EVENTS_PER_MEMBER = 25       # members to simulate: facts wanted / this (a year makes ~33 each)
BUILD_SEED = 61
BASELINE_POLL_INTERVAL_MS = 200


@dataclass(frozen=True)
class Store:
    url: str
    env: dict[str, str]
    facts: int
    events: int
    build_s: float


def build_store(services: BenchServices, facts_min: int) -> Store:
    """A database whose ledger holds at least ``facts_min`` facts of simulated members."""
    url = services.database("replay")
    env = eventsourcing_env_from_url(url) | account_cache_env(services.base)
    ledger = LoyaltyLedger(env=env)
    started = time.perf_counter()
    config = SimulationConfig(seed=BUILD_SEED, members=max(facts_min // BUILD_EVENTS_PER_MEMBER, 10))
    events = simulate_events(config)
    applied = 0
    credits: list[Any] = []
    try:
        while (ledger.recorder.max_notification_id() or 0) < facts_min:
            batch = [command_from_event(event) for _, event in zip(range(BUILD_BATCH_EVENTS), events)]
            if not batch and not credits:
                raise AssertionError(f"the simulated chain ran out before {facts_min} facts")
            results = ledger.apply(*credits, *batch)
            credits = [credit for result in results for credit in credit_commands(result.facts)]
            applied += len(batch)
        facts = ledger.recorder.max_notification_id() or 0
    finally:
        ledger.close()
    return Store(url, env, facts, applied, time.perf_counter() - started)


def replay_rate(store: Store, profile_to: Path | None = None) -> tuple[float, dict[str, Any]]:
    """Stored facts per second of ``projections.runner.replay`` over every read model.

    With ``profile_to`` this process is sampled by py-spy during the replay;
    the profile's summary is returned with the rate (else an empty dict).
    """
    ledger = LoyaltyLedger(env=store.env)
    profiler = Profiler(os.getpid(), profile_to) if profile_to else None
    profile: dict[str, Any] = {}
    try:
        with open_read_models(store.env, program=ledger.program) as models:
            started = time.perf_counter()
            done = replay(ledger, models,
                          batch_notifications_max=REPLAY_BATCH_NOTIFICATIONS_MAX_DEFAULT)
            elapsed = time.perf_counter() - started
    finally:
        if profiler is not None:
            profile = profiler.stop()
        ledger.close()
    if done.position != store.facts:
        raise AssertionError(f"replay stopped at {done.position} of {store.facts}")
    return store.facts / elapsed, profile


def runner_rate(store: Store, window_s: float) -> float:
    """Stored facts per second of eventsourcing's ``ProjectionRunner`` (the baseline)."""
    with open_read_models(store.env) as models:
        for projection in models.projections.values():
            projection.view.reset()
        with contextlib.ExitStack() as runners:
            started = time.perf_counter()
            for name in READ_MODEL_NAMES:
                runners.enter_context(live_runner(store.env, name))
            while True:
                elapsed = time.perf_counter() - started
                slowest = min(models.positions().values())
                if slowest >= store.facts or elapsed >= window_s:
                    break
                time.sleep(BASELINE_POLL_INTERVAL_MS / 1000)
    if slowest <= 0:
        raise AssertionError(f"the projection runners applied nothing in {window_s} s")
    return slowest / elapsed
