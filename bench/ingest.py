"""Worker runs: end-to-end ingest, its per-event baseline, scaling and memory.

A run reads a pre-loaded inbound topic with a fresh database, consumer group
and output topics, starts ``loyalty worker`` processes and the outbox relay
exactly as ``loyalty process`` does (``streams.process.start_workers``: the
relay as its own process, or in the first worker with the setting
``relay_in_worker``) and polls the event store every ``POLL_INTERVAL_MS``:

- progress: the sum of the partitions' tracked offsets (the tracking rows the
  workers commit with each batch) gives the events applied at each poll;
- completion: ``streams.process.is_processed`` (every partition tracked up to
  the offset the producer got back, the outbox drained, every referrer
  credit applied) on two polls in a row, timed at the first;
- exactly-once effect: afterwards the store must hold one outcome fact per
  inbound event and per referrer credit, no more and no less.

``sustained`` is the rate between the polls where 10 % and 90 % of the
stream had been applied (interpolated), so worker start-up, the consumer
group join and the last batch's drain are outside it; ``wall`` is the whole
stream over the time from starting the workers to completion. The CPU time
of the workers, PostgreSQL (every backend), the broker and the benchmark
itself is sampled at each poll; ``cores_used`` is each part's share over the
sustained window (1.0 = one core busy), which shows what the box spends, and
``cpu_us_per_event`` the CPU microseconds each part spent per event applied
in that window, the workers split by thread (``bench/cpu_parts.py``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import psycopg
from eventsourcing.utils import get_topic

from bench import cpu_parts
from bench.load import line_count
from bench.profiling import Profiler
from bench.services import BenchServices, cores_used, cpu_seconds
from ledger import holds as hold_rules
from ledger.application import LoyaltyLedger
from ledger.domain import FACT_TYPES, LoyaltyAccount
from streams.process import ProcessError, Worker, exited, is_processed, start_workers, stop_workers
from streams.settings import Settings
from streams.worker import open_ledger

POLL_INTERVAL_MS = 200
STABLE_POLLS_MIN = 2
RUN_TIMEOUT_S = 1_800
SUSTAINED_FROM_PCT = 10
SUSTAINED_TO_PCT = 90
BYTES_PER_MB = 1_048_576
OUTCOME_TOPICS = [get_topic(fact) for fact in FACT_TYPES.values()
                  if issubclass(fact, LoyaltyAccount.Outcome)]


@dataclass(frozen=True)
class Stream:
    """A pre-loaded inbound topic: its name and the last offset of every partition."""

    topic: str
    produced: dict[int, int]

    @property
    def events(self) -> int:
        return line_count(self.produced)


@dataclass
class WorkerRun:
    events: int
    workers: int
    wall_s: float
    first_progress_s: float
    sustained_events_per_s: float
    cores_used: dict[str, float]
    rss_first_batch_mb: float
    cpu_us_per_event: dict[str, float]  # each part over the sustained window (bench.cpu_parts)
    sustained_window_s: float
    rss_final_mb: float
    rss_curve: list[tuple[int, float]] = field(default_factory=list)  # (events applied, worker 0 MB)
    profiles: dict[str, Any] = field(default_factory=dict)

    @property
    def wall_events_per_s(self) -> float:
        return self.events / self.wall_s


def run_workers(services: BenchServices, label: str, stream: Stream, workers: int,
                log_dir: Path, profile_dir: Path | None = None, **overrides: Any) -> WorkerRun:
    """Process ``stream`` with ``workers`` fresh worker processes; see the module notes."""
    settings = services.settings(label, stream.topic, **overrides)
    ledger = open_ledger(settings)  # creates the tables before the workers race to
    try:
        run = _timed(services, settings, ledger, stream, workers, log_dir / label, profile_dir)
        check_exactly_once(settings.database_url, stream.events)
        return run
    finally:
        ledger.close()
        services.drop(settings.database_url)


def _timed(services: BenchServices, settings: Settings, ledger: LoyaltyLedger, stream: Stream,
           workers: int, log_dir: Path, profile_dir: Path | None) -> WorkerRun:
    log_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    running = start_workers(settings, workers, log_dir)
    pids = services.service_pids()
    cpu: list[dict[str, float]] = []
    parts: list[dict[str, float]] = []
    names = [worker.name for worker in running]  # worker-0, worker-1, ..., relay
    profilers = {name: Profiler(worker.process.pid, profile_dir / f"{name}.txt")
                 for name, worker in zip(names, running)} if profile_dir else {}
    series: list[tuple[float, int]] = []
    rss_curve: list[tuple[int, float]] = []
    try:
        first_done_at = None
        stable = 0
        while stable < STABLE_POLLS_MIN:
            _check_alive(running)
            now = time.monotonic() - started
            if now > RUN_TIMEOUT_S:
                raise ProcessError(f"{stream.events} events not processed within {RUN_TIMEOUT_S} s")
            applied = applied_events(ledger, settings, stream)
            series.append((now, applied))
            cpu.append(cpu_seconds(pids, [worker.process.pid for worker in running]))
            parts.append(cpu_parts.sample({name: worker.process.pid for name, worker in zip(names, running)},
                                          cpu[-1]))
            rss_curve.append((applied, rss_mb(running[0])))
            if applied == stream.events and is_processed(ledger, settings, stream.produced):
                stable += 1
                first_done_at = first_done_at if first_done_at is not None else now
            else:
                stable, first_done_at = 0, None
            time.sleep(POLL_INTERVAL_MS / 1000)
        rss_final = max(rss_mb(worker) for worker in running)
    finally:
        stop_workers(running)
        profiles = {name: profiler.stop() for name, profiler in profilers.items()}
    first_progress = next(t for t, applied in series if applied > 0)
    first, last = _window_polls(series, stream.events)
    return WorkerRun(
        events=stream.events, workers=workers, wall_s=first_done_at, first_progress_s=first_progress,
        sustained_events_per_s=sustained_rate(series, stream.events),
        cores_used=cores_used(cpu[first], cpu[last], series[last][0] - series[first][0]),
        cpu_us_per_event=cpu_parts.us_per_event(parts[first], parts[last],
                                                series[last][1] - series[first][1]),
        sustained_window_s=sustained_window_s(series, stream.events),
        rss_first_batch_mb=next(mb for applied, mb in rss_curve if applied > 0),
        rss_final_mb=rss_final, rss_curve=_thinned(rss_curve), profiles=profiles)


def _window_polls(series: list[tuple[float, int]], events: int) -> tuple[int, int]:
    """The polls around the sustained window (``cores_used`` and CPU per event span them)."""
    first = next(i for i, (_, applied) in enumerate(series) if applied >= events * SUSTAINED_FROM_PCT / 100)
    last = next(i for i, (_, applied) in enumerate(series) if applied >= events * SUSTAINED_TO_PCT / 100)
    last = max(last, 1)
    return max(min(first, last - 1), 0), last


def _check_alive(running: list[Worker]) -> None:
    for worker in running:
        if worker.process.poll() is not None:
            raise ProcessError(exited(worker))


def applied_events(ledger: LoyaltyLedger, settings: Settings, stream: Stream) -> int:
    """Inbound events whose partition batch has committed (tracked offsets + 1)."""
    total = 0
    for partition in stream.produced:
        tracked = ledger.tracked_position(settings.tracking_name(stream.topic, partition))
        total += 0 if tracked is None else tracked + 1
    return total


def sustained_rate(series: list[tuple[float, int]], events: int) -> float:
    """Events per second between the 10 % and 90 % marks of the stream."""
    span = events * (SUSTAINED_TO_PCT - SUSTAINED_FROM_PCT) / 100
    return span / max(sustained_window_s(series, events), POLL_INTERVAL_MS / 1000)


def sustained_window_s(series: list[tuple[float, int]], events: int) -> float:
    """Seconds from the 10 % mark of the stream to its 90 % mark (interpolated)."""
    return (crossing_time(series, events * SUSTAINED_TO_PCT / 100)
            - crossing_time(series, events * SUSTAINED_FROM_PCT / 100))


def crossing_time(series: list[tuple[float, int]], level: float) -> float:
    """When ``applied`` reached ``level``, interpolated between the polls around it."""
    previous_t, previous_applied = 0.0, 0
    for t, applied in series:
        if applied >= level:
            if applied == previous_applied:
                return t
            return previous_t + (t - previous_t) * (level - previous_applied) / (applied - previous_applied)
        previous_t, previous_applied = t, applied
    raise ValueError(f"the series never reached {level}")


def rss_mb(worker: Worker) -> float:
    try:
        return psutil.Process(worker.process.pid).memory_info().rss / BYTES_PER_MB
    except psutil.NoSuchProcess:
        return 0.0


def _thinned(curve: list[tuple[int, float]], points_max: int = 50) -> list[tuple[int, float]]:
    step = max(len(curve) // points_max, 1)
    return [(applied, round(mb, 1)) for applied, mb in [*curve[::step], curve[-1]]]


def check_exactly_once(database_url: str, events: int) -> None:
    """One outcome fact per inbound event and per referrer credit: none lost, none twice.

    A ``hold_released`` is its event's outcome only when a void caused it
    (``ledger.domain.is_outcome``): the releases of partial captures and run-out
    holds are not counted (the transcoder stores facts as JSON)."""
    with psycopg.connect(database_url) as connection:
        outcomes, qualified, side_releases = connection.execute(
            "SELECT count(*) FILTER (WHERE topic = ANY(%s)), count(*) FILTER (WHERE topic = %s), "
            "count(*) FILTER (WHERE topic = %s AND convert_from(state, 'UTF8')::jsonb ->> 'reason' <> %s) "
            "FROM loyalty_events", (OUTCOME_TOPICS, get_topic(LoyaltyAccount.ReferralQualified),
                                    get_topic(LoyaltyAccount.HoldReleased), hold_rules.VOIDED),
        ).fetchone()
    outcomes -= side_releases
    if outcomes != events + qualified:
        raise AssertionError(f"exactly-once effect broken: {outcomes} outcome facts for {events} "
                             f"events and {qualified} referrer credits")
