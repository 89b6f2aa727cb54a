"""Replay: rebuild every read model from the stored facts, against the library's runner.

The store is built once per benchmark run, straight through the ledger
(``LoyaltyLedger.apply`` in batches, simulator events, each batch's referrer
credits applied in the next batch) until it holds at least the requested
number of facts; Kafka is not needed to have facts to replay.

- figure: ``projections.split_replay.replay`` (drop the read models, then
  rebuild them in memory, all at once, committing rows and positions every
  ``REPLAY_BATCH_NOTIFICATIONS_MAX_DEFAULT`` notifications; what
  ``loyalty replay`` runs), split across ``REPLAY_PROCESSES_DEFAULT``
  processes by member, and with ``processes=1`` (the previous design, one
  process) in the same run: the ratio of the two is the figure that counts
  on a shared box. Each run reports its peak memory (this process and its
  children, sampled every ``RSS_SAMPLE_INTERVAL_MS``);
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
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from bench.profiling import Profiler
from bench.services import BenchServices
from ledger.application import LoyaltyLedger
from ledger.commands import command_from_event
from ledger.credits import credit_commands
from ledger.postgres.urls import eventsourcing_env_from_url
from projections.runner import (READ_MODEL_NAMES, REPLAY_BATCH_NOTIFICATIONS_MAX_DEFAULT,
                                live_runner, open_read_models)
from projections.split_replay import replay
from streams.devkit.simulator import SimulationConfig, simulate_events
from streams.worker import account_cache_env

BUILD_BATCH_EVENTS = 1_000
BUILD_EVENTS_PER_MEMBER = 25       # members to simulate: facts wanted / this (a year makes ~33 each)
BUILD_SEED = 61
BASELINE_POLL_INTERVAL_MS = 200
RSS_SAMPLE_INTERVAL_MS = 50
BYTES_PER_MB = 1024 * 1024


@dataclass(frozen=True)
class Store:
    url: str
    env: dict[str, str]
    facts: int
    events: int
    build_s: float


@dataclass(frozen=True)
class ReplayRun:
    facts_per_s: float
    peak_rss_mb: float  # this process and its children (a split replay's shards)
    profile: dict[str, Any]


def build_store(services: BenchServices, facts_min: int) -> Store:
    """A database whose ledger holds at least ``facts_min`` facts of simulated members."""
    url = services.database("replay")
    return build_store_at(url, eventsourcing_env_from_url(url) | account_cache_env(services.base),
                          facts_min)


def build_store_at(url: str, env: dict[str, str], facts_min: int) -> Store:
    """``build_store`` in the database at ``url`` (``env``: its eventsourcing settings)."""
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


def replay_run(store: Store, processes: int, profile_to: Path | None = None) -> ReplayRun:
    """Stored facts per second of ``loyalty replay`` over every read model in ``processes``
    processes (1: the single-process design), and the peak memory.

    With ``profile_to`` this process is sampled by py-spy during the replay;
    the profile's summary is returned with the rate (else an empty dict).
    """
    ledger = LoyaltyLedger(env=store.env)
    profiler = Profiler(os.getpid(), profile_to) if profile_to else None
    profile: dict[str, Any] = {}
    try:
        with open_read_models(store.env, program=ledger.program) as models, \
                PeakRss() as peak:
            started = time.perf_counter()
            done = replay(ledger, models, processes=processes,
                          batch_notifications_max=REPLAY_BATCH_NOTIFICATIONS_MAX_DEFAULT)
            elapsed = time.perf_counter() - started
    finally:
        if profiler is not None:
            profile = profiler.stop()
        ledger.close()
    if done.position != store.facts:
        raise AssertionError(f"replay stopped at {done.position} of {store.facts}")
    return ReplayRun(store.facts / elapsed, peak.mb, profile)


class PeakRss:
    """The largest resident memory of this process plus the children it starts while in the
    block (a split replay's shards; not the embedded PostgreSQL the benchmark started
    before, whose backends share its buffers: children present at the start are left out), sampled every ``RSS_SAMPLE_INTERVAL_MS`` by a
    helper thread."""

    def __init__(self) -> None:
        self.mb = 0.0
        self._before: set[int] = set()
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, name="peak-rss", daemon=True)

    def __enter__(self) -> "PeakRss":
        self._before = {child.pid for child in psutil.Process().children()}
        self._sampler.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._sampler.join()

    def _sample(self) -> None:
        me = psutil.Process()
        while True:
            self.mb = max(self.mb, _rss_bytes(me, self._before) / BYTES_PER_MB)
            if self._stop.wait(RSS_SAMPLE_INTERVAL_MS / 1000):
                return


def _rss_bytes(process: psutil.Process, before: set[int]) -> int:
    """``process``'s resident memory and that of its children not in ``before`` (pids)."""
    total = process.memory_info().rss
    for child in process.children():
        if child.pid not in before:
            with contextlib.suppress(psutil.Error):
                total += child.memory_info().rss
    return total


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
