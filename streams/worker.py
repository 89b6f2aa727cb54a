"""The faust worker: ``loyalty.events`` (and referrer credits) -> the ledger.

The consumer takes bounded batches (``batch_events_max`` events or
``batch_wait_ms``, whichever comes first), orders them by partition and
offset and hands the whole batch to ``PartitionBatchApplier`` in a single
worker thread (``BatchRunner``), so no database call ever runs on the event
loop. Exactly-once effect comes from the tracking records (one per
partition) committed with each batch in one transaction, not from Kafka
offsets (committed after the batch, which only saves re-reading).

Two consumer paths (``consumer_path``): ``direct`` (default) is the app's
own aiokafka consumer, a service inside the faust app
(``streams/direct_consumer.py``; faust's consumer is not started);
``faust`` is the previous design, a faust agent over ``take_events``.

With ``relay=True`` the process also runs the outbox relay in a thread.
Run one relay per deployment (more are safe, only wasteful: duplicates).

When the database cannot be reached, the batch applier and the relay wait
and retry (``streams.batches.DatabaseOutage``); if an outage outlasts
``database_unavailable_s_max`` the process logs a CRITICAL message naming
the limit, stops like on SIGTERM and exits with status
``EXIT_DATABASE_UNAVAILABLE`` (3), so a supervisor (Kubernetes, systemd)
sees a failed worker instead of one that spins or hangs.

A worker whose events or credits topic is not the one the ledger tracked (a
recreated topic: ``streams/topic_identity.py``) does not start, or stops
before skipping anything of it, with status ``EXIT_TOPIC_RECREATED`` (4) and
the way out in its message.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from itertools import groupby
from typing import Callable, Iterable

import faust
from eventsourcing.persistence import IntegrityError, InternalError
from faust.types import TP

from ledger.application import LoyaltyLedger
from ledger.program_versions import ProgramVersionRefused
from streams.batches import DatabaseOutage, DatabaseUnavailable, InboundMessage, PartitionBatchApplier
from streams.direct_consumer import direct_service, lean_boot
from streams.faust_transport import LedgerApp
from streams.gc_tuning import tune_gc
from streams.kafka_security import faust_broker_options
from streams.metrics import LedgerMetrics, default_metrics, start_http
from streams.outbox import KafkaSender, OutboxRelay
from streams.settings import CONSUMER_PATH_FAUST, Settings
from streams.thread_names import LEDGER_THREAD, RELAY_THREAD, name_os_thread, run_named
from streams.topic_identity import EXIT_TOPIC_RECREATED, TopicIdentityGuard, TopicRecreated

log = logging.getLogger(__name__)

SCHEMA_SETUP_ATTEMPTS_MAX = 5
SCHEMA_SETUP_BACKOFF_MS = 200
LEDGER_THREADS = 1  # one writer per process: partition batches are applied in order
RELAY_JOIN_TIMEOUT_S = 10.0
EXIT_DATABASE_UNAVAILABLE = 3
EXIT_PROGRAM_REFUSED = 2  # the program is older than the store's newest (CONTRACT section 11)
PROGRAM_RECORD_ATTEMPTS_MAX = 3
FATAL_STOP_TIMEOUT_S = 10.0  # a graceful stop after a fatal error; then the process is ended
CONNECT_TIMEOUT_ENV = "POSTGRES_CONNECT_TIMEOUT"
Highwater = Callable[[str, int], "int | None"]  # (topic, partition) -> the partition's end offset


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
    A database that cannot be reached is waited for up to
    ``database_unavailable_s_max`` (then ``DatabaseUnavailable``). Each call
    waits at most ``database_connect_timeout_s`` for a connection (unless the
    URL sets ``connect_timeout``), so an outage is noticed within seconds.
    """
    env = settings.store_env()
    env.setdefault(CONNECT_TIMEOUT_ENV, str(settings.database_connect_timeout_s))
    env.update(account_cache_env(settings))

    def construct() -> LoyaltyLedger:
        for attempt in range(1, SCHEMA_SETUP_ATTEMPTS_MAX + 1):
            try:
                return LoyaltyLedger(env=env)
            except InternalError:
                if attempt == SCHEMA_SETUP_ATTEMPTS_MAX:
                    raise
                time.sleep(SCHEMA_SETUP_BACKOFF_MS * attempt / 1000)
        raise AssertionError("unreachable")

    return DatabaseOutage(settings, "opening the ledger").call(construct)


def inbound_messages(events: Iterable) -> list[InboundMessage]:
    """A faust batch as messages grouped by partition, each partition in offset order."""
    messages = [
        InboundMessage(e.message.topic, e.message.partition, e.message.offset,
                       e.message.key, e.message.value)
        for e in events
    ]
    messages.sort(key=lambda m: (m.topic, m.partition, m.offset))
    return messages


def last_of_each_partition(messages: list[InboundMessage]) -> list[InboundMessage]:
    return [list(group)[-1] for _, group in groupby(messages, key=lambda m: (m.topic, m.partition))]


class WorkerHealth:
    """Healthy until a batch fails; the next committed batch makes it healthy again."""

    def __init__(self) -> None:
        self.failed_batches_in_row = 0

    def __call__(self) -> bool:
        return self.failed_batches_in_row == 0


class FatalStop:
    """Ends the worker process with a non-zero status after an error it must not outlive.

    ``trigger`` (from any thread) logs the reason at CRITICAL, also prints it
    on standard error, asks faust to stop as on SIGTERM (partitions are
    released, the relay thread is told to stop) and arms a timer that ends
    the process after ``FATAL_STOP_TIMEOUT_S`` if the graceful stop hangs.
    ``run_worker`` then exits with ``status``. Every batch commits atomically
    with its tracking row, so stopping at any point loses nothing.
    """

    def __init__(self) -> None:
        self.status: int | None = None
        self.reason: str | None = None
        self.stopping = threading.Event()   # interrupts the database back-off waits
        self._lock = threading.Lock()

    def trigger(self, status: int, reason: str) -> None:
        with self._lock:
            if self.status is not None:
                return
            self.status, self.reason = status, reason
        log.critical("worker exiting with status %d: %s", status, reason)
        print(f"loyalty worker: fatal: {reason}; exiting with status {status}", file=sys.stderr,
              flush=True)
        self.stopping.set()
        timer = threading.Timer(FATAL_STOP_TIMEOUT_S, os._exit, args=(status,))
        timer.daemon = True
        timer.start()
        os.kill(os.getpid(), signal.SIGTERM)  # faust's own graceful shutdown


class BatchRunner:
    """Applies one batch in the ledger thread and keeps health and metrics; shared by both
    consumer paths. A fatal error (``DatabaseUnavailable``, ``TopicRecreated``) triggers
    the ``FatalStop`` and consumes nothing more."""

    def __init__(self, applier: PartitionBatchApplier, executor: ThreadPoolExecutor,
                 metrics: LedgerMetrics, health: WorkerHealth, fatal: FatalStop) -> None:
        self.applier, self.executor = applier, executor
        self.metrics, self.health, self.fatal = metrics, health, fatal

    async def apply(self, batch: list[InboundMessage], highwater: Highwater) -> None:
        started = time.perf_counter()
        try:
            report = await asyncio.get_running_loop().run_in_executor(self.executor, self.applier.apply,
                                                                      batch)
        except (DatabaseUnavailable, TopicRecreated) as error:
            self.health.failed_batches_in_row += 1
            status = EXIT_TOPIC_RECREATED if isinstance(error, TopicRecreated) else EXIT_DATABASE_UNAVAILABLE
            self.fatal.trigger(status, str(error))
            await asyncio.Event().wait()  # consume nothing more (nothing of the batch committed)
            raise
        except Exception:
            self.health.failed_batches_in_row += 1
            raise
        self.health.failed_batches_in_row = 0
        self.metrics.record_batch(report, report.rejections, time.perf_counter() - started)
        for last in last_of_each_partition(batch):
            end = highwater(last.topic, last.partition)
            if end is not None:
                self.metrics.set_consumer_lag(last.topic, last.partition, max(end - (last.offset + 1), 0))

    async def forget_accounts(self) -> None:
        """Another worker may write the revoked accounts now: drop the cache (in the ledger thread)."""
        await asyncio.get_running_loop().run_in_executor(self.executor,
                                                         self.applier.ledger.evict_cached_accounts)


def consumer_path(settings: Settings) -> str:
    """The checked ``consumer_path``: ``direct`` or ``faust``."""
    mistake = settings.consumer_path_mistake()
    if mistake:
        raise ValueError(mistake)
    return settings.consumer_path


def create_app(settings: Settings, metrics: LedgerMetrics | None = None,
               health: WorkerHealth | None = None, fatal: FatalStop | None = None,
               guard: TopicIdentityGuard | None = None) -> faust.App:
    """The faust app; with ``guard`` nothing is skipped as applied unless its topic is the tracked one."""
    path = consumer_path(settings)
    fatal = fatal or FatalStop()
    app = LedgerApp(
        settings.consumer_group,
        fetch_max_wait_ms=settings.consumer_fetch_max_wait_ms,
        monitor=settings.faust_monitor,
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
    applier = PartitionBatchApplier(open_ledger(settings), settings,
                                    DatabaseOutage(settings, "partition batches", fatal.stopping),
                                    confirm_topic=guard.confirm if guard is not None else None)
    executor = ThreadPoolExecutor(max_workers=LEDGER_THREADS, thread_name_prefix=LEDGER_THREAD,
                                  initializer=name_os_thread, initargs=(LEDGER_THREAD,))
    runner = BatchRunner(applier, executor, metrics or default_metrics(), health or WorkerHealth(), fatal)
    if path == CONSUMER_PATH_FAUST:
        add_faust_agent(app, settings, runner)
    else:
        app.boot_strategy = lean_boot(app)
        app.service(direct_service(settings, runner.apply, runner.forget_accounts))
    return app


def add_faust_agent(app: faust.App, settings: Settings, runner: BatchRunner) -> None:
    """The previous design (``consumer_path`` ``faust``): an agent taking bounded batches."""
    topic = app.topic(settings.events_topic, settings.credits_topic,
                      key_serializer="raw", value_serializer="raw")

    def highwater(topic_name: str, partition: int) -> int | None:
        return app.consumer.highwater(TP(topic_name, partition))

    @app.agent(topic)
    async def apply_batches(stream):
        async for events in stream.take_events(settings.batch_events_max,
                                               within=settings.batch_wait_ms / 1000):
            await runner.apply(inbound_messages(events), highwater)  # every partition in one transaction

    @app.on_partitions_revoked.connect
    async def forget_accounts(sender, revoked, **kwargs) -> None:
        await runner.forget_accounts()


def watch_topic_identity(guard: TopicIdentityGuard, fatal: FatalStop, interval_ms: int) -> threading.Thread:
    """Check every ``interval_ms`` that the topics were not recreated under the worker.

    The consumer of a recreated topic may keep fetching at its old position
    and never see the new topic's first messages, so the applier's check
    before a skip is not enough alone.
    """
    def watch() -> None:
        while not fatal.stopping.wait(interval_ms / 1000):
            try:
                guard.check()
            except TopicRecreated as recreated:
                fatal.trigger(EXIT_TOPIC_RECREATED, str(recreated))
                return
            except Exception as error:  # noqa: BLE001 - an unreachable broker: the consumer reports it
                log.warning("could not check the topics' identity: %s", error)

    thread = threading.Thread(target=watch, name="topic-identity", daemon=True)
    thread.start()
    return thread


def relay_until_stopped(relay: OutboxRelay, stop: threading.Event, outage: DatabaseOutage,
                        fatal: FatalStop) -> None:
    """The relay's loop: relay until ``stop`` is set, waiting ``outbox_poll_interval_ms`` when
    idle (reporting the lag to ``on_lag``), with database outages waited out (bounded). When
    it ends it closes the relay's sender and its ledger (both entry points open them for it)."""
    try:
        while not stop.is_set():
            if outage.call(relay.relay_once) == 0:
                if relay.on_lag is not None:
                    relay.on_lag(outage.call(relay.lag))
                stop.wait(relay.settings.outbox_poll_interval_ms / 1000)
    except DatabaseUnavailable as error:
        if not stop.is_set():
            fatal.trigger(EXIT_DATABASE_UNAVAILABLE, str(error))
    finally:
        close_sender = getattr(relay.send, "close", None)
        try:
            if close_sender is not None:
                close_sender()
        finally:
            relay.ledger.close()


def start_relay(settings: Settings,
                fatal: FatalStop | None = None) -> tuple[threading.Thread, threading.Event]:
    """Run the outbox relay in a daemon thread until the returned event is set."""
    fatal = fatal or FatalStop()
    stop = fatal.stopping  # a fatal stop also stops the relay
    relay = OutboxRelay(open_ledger(settings), settings, KafkaSender(settings),
                        on_lag=default_metrics().set_outbox_lag)
    outage = DatabaseOutage(settings, "outbox relay", stop)
    thread = threading.Thread(target=run_named, args=(RELAY_THREAD, relay_until_stopped, relay, stop,
                                                      outage, fatal), name=RELAY_THREAD, daemon=True)
    thread.start()
    return thread, stop


def run_relay(settings: Settings) -> None:
    """``loyalty relay``: the outbox relay alone, in this thread, until SIGTERM / Ctrl-C.

    Database outages are waited out like in the worker; past
    ``database_unavailable_s_max`` it exits with ``EXIT_DATABASE_UNAVAILABLE``.
    ``LOYALTY_METRICS_PORT`` serves ``/metrics`` (outbox lag) and ``/healthz``.
    """
    fatal = FatalStop()
    relay = OutboxRelay(open_ledger(settings), settings, KafkaSender(settings),
                        on_lag=default_metrics().set_outbox_lag)
    outage = DatabaseOutage(settings, "outbox relay", fatal.stopping)
    healthy = lambda: fatal.status is None  # noqa: E731 - a health callback
    server = start_http(settings.metrics_port, health=healthy) if settings.metrics_port else None
    tune_gc(settings)
    try:
        relay_until_stopped(relay, fatal.stopping, outage, fatal)
    except KeyboardInterrupt:  # SIGTERM too (the CLI turns it into Ctrl-C): a clean stop
        fatal.stopping.set()
    finally:
        if server is not None:
            server.close()
    if fatal.status is not None:
        raise SystemExit(fatal.status)


def record_program_version(settings: Settings) -> None:
    """Record the program's version in the event store, or exit: a worker never runs an
    older version than the store's newest (CONTRACT section 11)."""
    ledger = open_ledger(settings)
    try:
        for attempt in range(1, PROGRAM_RECORD_ATTEMPTS_MAX + 1):
            try:
                ledger.record_program_version()
                return
            except IntegrityError:  # another worker recorded it at the same moment: read again
                if attempt == PROGRAM_RECORD_ATTEMPTS_MAX:
                    raise
    except ProgramVersionRefused as refused:
        print(f"loyalty worker: refusing to start: {refused}", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_PROGRAM_REFUSED) from refused
    finally:
        ledger.close()


def run_worker(settings: Settings, relay: bool = False, loglevel: str = "WARNING") -> None:
    """Run one worker process until SIGTERM / SIGINT (faust handles the signals).

    Exits with ``EXIT_DATABASE_UNAVAILABLE`` when the database stayed
    unreachable for longer than ``database_unavailable_s_max``.
    """
    health, fatal, guard = WorkerHealth(), FatalStop(), TopicIdentityGuard(settings)
    try:
        guard.check()  # TopicRecreated: the worker does not start
        record_program_version(settings)
        app = create_app(settings, health=health, fatal=fatal, guard=guard)
        relay_thread = start_relay(settings, fatal) if relay else None
    except DatabaseUnavailable as error:
        log.critical("worker exiting with status %d: %s", EXIT_DATABASE_UNAVAILABLE, error)
        print(f"loyalty worker: fatal: {error}; exiting with status {EXIT_DATABASE_UNAVAILABLE}",
              file=sys.stderr, flush=True)
        raise SystemExit(EXIT_DATABASE_UNAVAILABLE) from error
    except TopicRecreated as error:
        print(f"loyalty worker: error: {error}", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_TOPIC_RECREATED) from error
    watch_topic_identity(guard, fatal, settings.topic_identity_check_interval_ms)
    server = start_http(settings.metrics_port, health=health) if settings.metrics_port else None
    worker = faust.Worker(app, loglevel=loglevel, quiet=True)
    tune_gc(settings)
    try:
        worker.execute_from_commandline()
    finally:
        fatal.stopping.set()  # ends back-off waits and the relay
        if relay_thread is not None:
            relay_thread[0].join(RELAY_JOIN_TIMEOUT_S)
        if server is not None:
            server.close()
        if fatal.status is not None:
            raise SystemExit(fatal.status)
