"""The faust worker: ``loyalty.events`` (and referrer credits) -> the ledger.

One agent takes bounded batches (``batch_events_max`` events or
``batch_wait_ms``, whichever comes first), splits them by partition and hands
each partition's messages to ``PartitionBatchApplier`` in a single worker
thread, so no database call ever runs on the event loop. Exactly-once effect
comes from the tracking record committed with each batch, not from Kafka
offsets (faust acknowledges after the batch, which only saves re-reading).

With ``relay=True`` the process also runs the outbox relay in a thread.
Run one relay per deployment (more are safe, only wasteful: duplicates).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from itertools import groupby
from typing import Iterable

import faust
from eventsourcing.persistence import InternalError
from faust.types import TP

from ledger.application import LoyaltyLedger
from ledger.embedded_postgres import eventsourcing_env_from_url
from streams.batches import InboundMessage, PartitionBatchApplier
from streams.kafka_security import faust_broker_options
from streams.metrics import LedgerMetrics, default_metrics, start_http
from streams.outbox import KafkaSender, OutboxRelay
from streams.settings import Settings

log = logging.getLogger(__name__)

SCHEMA_SETUP_ATTEMPTS_MAX = 5
SCHEMA_SETUP_BACKOFF_MS = 200
LEDGER_THREADS = 1  # one writer per process: partition batches are applied in order
RELAY_JOIN_TIMEOUT_S = 10.0


def account_cache_env(settings: Settings) -> dict[str, str]:
    """eventsourcing's LRU aggregate cache, owned by this worker process.

    No fast-forward (the partition owner is the only writer of its accounts)
    and no deep copy (the applier evicts the cache whenever a batch fails).
    """
    if settings.account_cache_accounts_max <= 0:
        return {}
    return {"AGGREGATE_CACHE_MAXSIZE": str(settings.account_cache_accounts_max),
            "AGGREGATE_CACHE_FASTFORWARD": "n", "DEEPCOPY_FROM_AGGREGATE_CACHE": "n"}


def open_ledger(settings: Settings) -> LoyaltyLedger:
    """A ledger on the configured PostgreSQL, with the configured program.

    Opening creates the tables if missing; PostgreSQL can refuse two
    concurrent ``CREATE TABLE IF NOT EXISTS`` ("tuple concurrently updated")
    when several workers start together, so that is retried a few times.
    """
    env = eventsourcing_env_from_url(settings.database_url)
    env.update(account_cache_env(settings))
    if settings.program_file:
        env["LOYALTY_PROGRAM_FILE"] = settings.program_file
    for attempt in range(1, SCHEMA_SETUP_ATTEMPTS_MAX + 1):
        try:
            return LoyaltyLedger(env=env)
        except InternalError:
            if attempt == SCHEMA_SETUP_ATTEMPTS_MAX:
                raise
            time.sleep(SCHEMA_SETUP_BACKOFF_MS * attempt / 1000)
    raise AssertionError("unreachable")


def partition_batches(events: Iterable) -> list[list[InboundMessage]]:
    """Split a faust batch into per-partition lists in offset order."""
    messages = [
        InboundMessage(e.message.topic, e.message.partition, e.message.offset,
                       e.message.key, e.message.value)
        for e in events
    ]
    messages.sort(key=lambda m: (m.topic, m.partition, m.offset))
    return [list(group) for _, group in groupby(messages, key=lambda m: (m.topic, m.partition))]


class WorkerHealth:
    """Healthy until a batch fails; the next committed batch makes it healthy again."""

    def __init__(self) -> None:
        self.failed_batches_in_row = 0

    def __call__(self) -> bool:
        return self.failed_batches_in_row == 0


def create_app(settings: Settings, metrics: LedgerMetrics | None = None,
               health: WorkerHealth | None = None) -> faust.App:
    metrics = metrics or default_metrics()
    health = health or WorkerHealth()
    app = faust.App(
        settings.consumer_group,
        broker=f"kafka://{settings.bootstrap_servers}",
        store="memory://",
        web_enabled=False,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.session_timeout_ms / 1000,
        broker_heartbeat_interval=settings.heartbeat_interval_ms / 1000,
        producer_acks=-1,
        **faust_broker_options(settings),
    )
    topic = app.topic(settings.events_topic, settings.credits_topic,
                      key_serializer="raw", value_serializer="raw")
    applier = PartitionBatchApplier(open_ledger(settings), settings)
    executor = ThreadPoolExecutor(max_workers=LEDGER_THREADS, thread_name_prefix="ledger")

    async def apply_one(batch: list[InboundMessage]) -> None:
        started = time.perf_counter()
        try:
            report = await asyncio.get_running_loop().run_in_executor(executor, applier.apply, batch)
        except Exception:
            health.failed_batches_in_row += 1
            raise
        health.failed_batches_in_row = 0
        metrics.record_batch(report, report.rejections, time.perf_counter() - started)
        last = batch[-1]
        lag = app.consumer.highwater(TP(last.topic, last.partition)) - (last.offset + 1)
        metrics.set_consumer_lag(last.topic, last.partition, max(lag, 0))

    @app.agent(topic)
    async def apply_batches(stream):
        async for events in stream.take_events(settings.batch_events_max,
                                               within=settings.batch_wait_ms / 1000):
            for batch in partition_batches(events):
                await apply_one(batch)

    @app.on_partitions_revoked.connect
    async def forget_accounts(sender, revoked, **kwargs) -> None:
        """Another worker may write these accounts now: drop the cache (in the ledger thread)."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(executor, applier.ledger.evict_cached_accounts)

    return app


def start_relay(settings: Settings) -> tuple[threading.Thread, threading.Event]:
    """Run the outbox relay in a daemon thread until the returned event is set."""
    stop = threading.Event()
    relay = OutboxRelay(open_ledger(settings), settings, KafkaSender(settings),
                        on_lag=default_metrics().set_outbox_lag)
    thread = threading.Thread(target=relay.run, args=(stop,), name="outbox-relay", daemon=True)
    thread.start()
    return thread, stop


def run_worker(settings: Settings, relay: bool = False, loglevel: str = "WARNING") -> None:
    """Run one worker process until SIGTERM / SIGINT (faust handles the signals)."""
    health = WorkerHealth()
    app = create_app(settings, health=health)
    server = start_http(settings.metrics_port, health=health) if settings.metrics_port else None
    relay_thread = start_relay(settings) if relay else None
    worker = faust.Worker(app, loglevel=loglevel, quiet=True)
    try:
        worker.execute_from_commandline()
    finally:
        if relay_thread is not None:
            relay_thread[1].set()
            relay_thread[0].join(RELAY_JOIN_TIMEOUT_S)
        if server is not None:
            server.close()
