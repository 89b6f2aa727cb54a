"""The event store's write ceiling: PostgreSQL alone, through the ledger's own recorder.

No broker, no faust, no deciding: what one PostgreSQL accepts when writers
commit batches the way a worker's batch commit does. Each commit is
``UnpipelinedProcessRecorder.insert_events`` (``ledger/postgres/recorder.py``)
with the batch's stored facts, one tracking record per partition the writer
owns (the first as ``tracking``, the rest as ``MORE_TRACKING``), exactly the
call ``LoyaltyLedger.save_batch`` makes through eventsourcing's ``_record``:
the table lock (``LOCK TABLE ... IN EXCLUSIVE MODE``, which serialises every
writer), the notification, the tracking rows and one INSERT of every fact.

The facts are real: the simulator's stream decided once by an in-memory
ledger and mapped to stored events with the ledger's transcoder
(``facts_pool``), in command order, so a batch spans many accounts like a
worker's. Mapping and deciding are the workers' CPU, not the store's, and are
outside the timing. Each writer is a process of its own (a thread would
measure the GIL), with its own accounts (``writer_facts`` gives each writer
the pool under originator ids of its own) and a fresh database per
measurement. Writers start together (a barrier); the rate is every writer's
events over the time from the first start to the last finish.

After each measurement the events table is counted: it must hold exactly
the events written (``CeilingRun.rows_counted``).
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import time
import traceback
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import orjson
import psycopg
from eventsourcing.persistence import StoredEvent, Tracking

from bench.load import simulated_lines
from bench.report import Figure, Measure, spread_pct
from bench.services import BenchServices
from ledger.application import LoyaltyLedger
from ledger.commands import command_from_event
from ledger.postgres.recorder import more_tracking
from streams.settings import Settings
from streams.worker import open_ledger

STORE_WRITERS = (1, 2)
STORE_BATCH_EVENTS = (100, 500, 2_000)
BASELINE_BATCH_EVENTS = 1           # one fact and its tracking record per transaction
STORE_TOPIC = "bench.store.events"  # the tracking rows' topic (no broker is involved)
WRITER_READY_TIMEOUT_S = 120        # a writer process imported, connected and loaded its facts
WRITER_RUN_TIMEOUT_S = 900          # a writer wrote every batch
WRITER_JOIN_TIMEOUT_S = 30
EVENTS_TABLE = "loyalty_events"
WRITER_NAMESPACE = uuid.UUID("5f1d3c1e-7a39-4d0e-9a51-2b6f8c0e4a11")


@dataclass(frozen=True)
class CeilingRun:
    """One measurement: ``writers`` processes committing batches of ``batch_events``."""

    writers: int
    batch_events: int
    events: int          # written by all writers
    commits: int
    elapsed_s: float     # first writer's start to last writer's finish
    rows_counted: int    # rows in the events table afterwards

    @property
    def events_per_s(self) -> float:
        return self.events / self.elapsed_s

    @property
    def commits_per_s(self) -> float:
        return self.commits / self.elapsed_s


def facts_pool(facts: int) -> list[StoredEvent]:
    """The first ``facts`` stored facts of the simulator's stream, in command order."""
    ledger = LoyaltyLedger()  # in memory: the same transcoder as on PostgreSQL
    try:
        commands = [command_from_event(orjson.loads(line)) for line in simulated_lines(facts)]
        results, _ = ledger.decide(commands)
        stored = [ledger.mapper.to_stored_event(fact) for result in results for fact in result.facts]
    finally:
        ledger.close()
    if len(stored) < facts:
        raise AssertionError(f"the stream made {len(stored)} facts, fewer than {facts}")
    return stored[:facts]


def writer_facts(pool: Sequence[StoredEvent], writer: int) -> list[StoredEvent]:
    """``pool`` under originator ids of ``writer``'s own: no two writers share an account."""
    namespace = uuid.uuid5(WRITER_NAMESPACE, str(writer))
    return [replace(event, originator_id=uuid.uuid5(namespace, str(event.originator_id)))
            for event in pool]


def measure(base: Settings, database_url: str, pool: Sequence[StoredEvent], writers: int,
            batch_events: int) -> CeilingRun:
    """``writers`` processes write ``pool`` each, in batches of ``batch_events``, into the
    empty database at ``database_url``."""
    settings = replace(base, database_url=database_url)
    open_ledger(settings).close()  # the tables, before the writers race to create them
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(writers), context.Queue()
    processes = [context.Process(target=_writer, name=f"store-writer-{number}", daemon=True,
                                 args=(settings, number, writers, batch_events,
                                       writer_facts(pool, number), barrier, results))
                 for number in range(writers)]
    for process in processes:
        process.start()
    try:
        reports = [_report(results) for _ in processes]
    finally:
        for process in processes:
            process.join(WRITER_JOIN_TIMEOUT_S)
            if process.is_alive():
                process.kill()
    started, finished = min(r[0] for r in reports), max(r[1] for r in reports)
    return CeilingRun(writers=writers, batch_events=batch_events, events=writers * len(pool),
                      commits=sum(r[2] for r in reports), elapsed_s=finished - started,
                      rows_counted=count_events(database_url))


def _report(results: multiprocessing.Queue) -> tuple[float, float, int]:
    try:
        report = results.get(timeout=WRITER_READY_TIMEOUT_S + WRITER_RUN_TIMEOUT_S)
    except queue.Empty:
        raise TimeoutError("a store writer reported nothing in time") from None
    if isinstance(report, str):
        raise RuntimeError(f"a store writer failed:\n{report}")
    return report


def _writer(settings: Settings, number: int, writers: int, batch_events: int,
            facts: list[StoredEvent], barrier: multiprocessing.Barrier,
            results: multiprocessing.Queue) -> None:
    """One writer process: connect, wait for the others, commit every batch, report
    (start, finish, commits) or the traceback."""
    try:
        ledger = open_ledger(settings)
        try:
            names = [settings.tracking_name(STORE_TOPIC, partition)
                     for partition in range(number, settings.partitions, writers)]
            batches = [facts[i:i + batch_events] for i in range(0, len(facts), batch_events)]
            ledger.tracked_positions(names)  # the connection is open before the clock starts
            barrier.wait(WRITER_READY_TIMEOUT_S)
            started = time.monotonic()
            for position, batch in enumerate(batches):
                commit_batch(ledger, batch, [Tracking(name, position) for name in names[:len(batch)]])
            results.put((started, time.monotonic(), len(batches)))
        finally:
            ledger.close()
    except BaseException:  # noqa: BLE001 - reported to the parent, which raises it
        results.put(traceback.format_exc())


def commit_batch(ledger: LoyaltyLedger, batch: Sequence[StoredEvent], trackings: list[Tracking]) -> None:
    """The worker's batch commit at the recorder: facts and tracking rows, one transaction."""
    ledger.recorder.insert_events(list(batch), tracking=trackings[0], **more_tracking(trackings))


def count_events(database_url: str) -> int:
    with psycopg.connect(database_url) as connection:
        return connection.execute(f"SELECT count(*) FROM {EVENTS_TABLE}").fetchone()[0]


def figures(services: BenchServices, runs: int, events_per_writer: int, baseline_events: int,
            log: Callable[[str], None]) -> list[Figure]:
    """Every writer count and batch size, ``runs`` times each, next to one fact per
    transaction with as many writers; a fresh database per measurement."""
    load_before = os.getloadavg()
    pool = facts_pool(events_per_writer)
    measured: dict[tuple[int, int], list[CeilingRun]] = {}
    for number in range(1, runs + 1):
        for writers in STORE_WRITERS:
            for batch_events in (BASELINE_BATCH_EVENTS, *STORE_BATCH_EVENTS):
                facts = pool[:baseline_events] if batch_events == BASELINE_BATCH_EVENTS else pool
                run = _measured_once(services, facts, writers, batch_events, number)
                measured.setdefault((writers, batch_events), []).append(run)
                log(f"store: {writers} writer(s), batches of {batch_events:,}, run {number}/{runs}: "
                    f"{run.commits_per_s:,.0f} commits/s, {run.events_per_s:,.0f} events/s")
    load = {"load_average_before": load_before, "load_average_after": os.getloadavg()}
    return [_figure(measured[(w, b)], measured[(w, BASELINE_BATCH_EVENTS)], load)
            for w in STORE_WRITERS for b in STORE_BATCH_EVENTS]


def _measured_once(services: BenchServices, facts: Sequence[StoredEvent], writers: int,
                   batch_events: int, number: int) -> CeilingRun:
    url = services.database(f"store-w{writers}-b{batch_events}-r{number}")
    try:
        run = measure(services.base, url, facts, writers, batch_events)
    finally:
        services.drop(url)
    if run.rows_counted != run.events:
        raise AssertionError(f"the events table holds {run.rows_counted} rows for {run.events} written")
    return run


def _figure(runs: list[CeilingRun], baseline: list[CeilingRun], load: dict[str, Any]) -> Figure:
    writers, batch_events = runs[0].writers, runs[0].batch_events
    return Figure(
        f"store.writers_{writers}.batch_{batch_events}",
        f"event store, {writers} writer(s), batches of {batch_events:,}", "events/s",
        f"{runs[0].events:,} facts", Measure("batched commits", [r.events_per_s for r in runs]),
        Measure(f"{BASELINE_BATCH_EVENTS} fact/transaction", [r.events_per_s for r in baseline]),
        notes=f"PostgreSQL alone: {writers} process(es) committing simulator facts through the "
              f"ledger's recorder (insert_events with a tracking row per owned partition, the "
              f"table lock serialising writers); baseline: one fact and its tracking row per "
              f"transaction, {baseline[0].events:,} facts, as many writers",
        extra={"commits_per_s": [r.commits_per_s for r in runs],
               "events_per_s_spread_pct": spread_pct([r.events_per_s for r in runs]),
               "baseline_commits_per_s": [r.commits_per_s for r in baseline],
               "rows_counted": [r.rows_counted for r in runs], **load})

