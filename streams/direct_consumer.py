"""The worker's direct consumer path: its own aiokafka consumer inside the faust app.

``consumer_path`` ``direct`` (the default; ``faust`` restores the agent with
``take_events``). faust keeps the process: signals, graceful stop, logging
(``faust.Worker``); but faust's own consumer, conductor, leader assignor and
producer are not started (``lean_boot``), so faust neither joins the group
nor subscribes. ``DirectConsumer``, a mode service started with the app,
consumes ``loyalty.events`` and the credits topic with one
``AIOKafkaConsumer``:

- same group id as the faust path, ``auto_offset_reset="earliest"``, fetch
  wait ``consumer_fetch_max_wait_ms``, the Kafka security options of
  ``streams/kafka_security.py``;
- ``getmany(timeout_ms=batch_wait_ms, max_records=batch_events_max)``: it
  returns what is there, so a lone event does not wait for a batch to fill;
- each batch (grouped by partition, each in offset order) goes to the
  worker's ``BatchRunner`` (the ledger thread, never a database call on the
  loop); then the offsets after it are committed by hand, in the background
  while the next batch is fetched and applied (``consumer_commit_in_background``;
  one commit in flight, awaited before the next starts, so they land in
  order; ``false`` awaits each before fetching again, the previous design: a
  broker round trip, 2.5 ms at the median and 14 ms at p99 on the bench's
  busy box, in every batch's cycle). As on the faust path, offsets only save
  re-reading: the tracking rows committed with each batch decide what is
  applied, so a failed commit (a rebalance under way) is logged and left;
- a rebalance listener waits for the batch and the commit in flight before
  partitions are revoked, then drops the ledger's account cache (another worker may write
  those accounts now).

Bounds: ``batch_events_max`` records and ``batch_wait_ms`` per poll, one
batch in flight, ``consumer_fetch_max_wait_ms`` per fetch,
``DIRECT_STOP_TIMEOUT_S`` for the consumer to leave the group on stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Awaitable, Callable

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import ConsumerStoppedError, KafkaError
from faust.app.base import BootStrategy
from mode import Service

from streams.batches import InboundMessage
from streams.kafka_security import aiokafka_options
from streams.settings import Settings

log = logging.getLogger(__name__)

DIRECT_STOP_TIMEOUT_S = 10.0  # the consumer's commit and leave-group on stop
ApplyBatch = Callable[[list[InboundMessage], Callable[[str, int], int | None]], Awaitable[None]]
Evict = Callable[[], Awaitable[None]]
Settle = Callable[[], Awaitable[None]]


def lean_boot(app: Any) -> BootStrategy:
    """faust's boot strategy without its Kafka consumer (nor conductor, leader assignor,
    tables) and producer: the direct consumer is the process's only Kafka client."""
    return BootStrategy(app, enable_kafka_consumer=False, enable_kafka_producer=False)


def batch_messages(records: dict[TopicPartition, list[Any]]) -> list[InboundMessage]:
    """A ``getmany`` result as messages grouped by partition, each partition in offset order."""
    messages = [InboundMessage(record.topic, record.partition, record.offset, record.key, record.value)
                for tp in sorted(records) for record in records[tp]]
    messages.sort(key=lambda m: (m.topic, m.partition, m.offset))
    return messages


def next_offsets(messages: list[InboundMessage]) -> dict[TopicPartition, int]:
    """The offset to commit for each partition of a batch: after its last message."""
    offsets: dict[TopicPartition, int] = {}
    for message in messages:
        offsets[TopicPartition(message.topic, message.partition)] = message.offset + 1
    return offsets


def new_consumer(settings: Settings) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        group_id=settings.consumer_group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=settings.consumer_fetch_max_wait_ms,
        max_poll_records=settings.batch_events_max,
        session_timeout_ms=settings.session_timeout_ms,
        heartbeat_interval_ms=settings.heartbeat_interval_ms,
        **aiokafka_options(settings),
    )


class _Revocations(ConsumerRebalanceListener):
    """Before partitions go: wait for the batch and the commit in flight, then drop the
    account cache."""

    def __init__(self, in_flight: asyncio.Lock, settle: Settle, evict: Evict) -> None:
        self.in_flight = in_flight
        self.settle = settle
        self.evict = evict

    async def on_partitions_revoked(self, revoked) -> None:
        async with self.in_flight:
            await self.settle()
            await self.evict()

    async def on_partitions_assigned(self, assigned) -> None:
        return None


class DirectConsumer(Service):
    """Consume, apply, commit; one batch at a time (see the module notes)."""

    def __init__(self, settings: Settings, apply_batch: ApplyBatch, evict: Evict, **kwargs: Any) -> None:
        self.settings = settings
        self.apply_batch = apply_batch
        self.evict = evict
        self.consumer: AIOKafkaConsumer | None = None
        self.in_flight = asyncio.Lock()
        self.commits_failed = 0   # commits refused (a rebalance under way): re-reads, nothing more
        self._consuming: asyncio.Task | None = None
        self._committing: asyncio.Future | None = None  # the offsets commit in the background
        super().__init__(**kwargs)

    async def on_start(self) -> None:
        self.consumer = new_consumer(self.settings)
        self.consumer.subscribe([self.settings.events_topic, self.settings.credits_topic],
                                listener=_Revocations(self.in_flight, self.settle_commit, self.evict))
        await self.consumer.start()  # joins the group: seconds, during which a stop may come
        if self.should_stop:  # on_stop ran meanwhile and found no loop to cancel
            return
        self._consuming = asyncio.ensure_future(self._consume())

    async def on_stop(self) -> None:
        if self._consuming is not None:
            self._consuming.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._consuming
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.settle_commit()
        if self.consumer is not None:
            with contextlib.suppress(asyncio.TimeoutError, KafkaError):
                await asyncio.wait_for(self.consumer.stop(), DIRECT_STOP_TIMEOUT_S)

    async def _consume(self) -> None:
        """The loop; a consumer error it cannot retry crashes the worker (it exits non-zero,
        as when faust's own consumer fails) instead of leaving a process that reads nothing."""
        try:
            await self._consume_batches()
        except asyncio.CancelledError:
            raise
        except Exception as error:  # noqa: BLE001 - anything here ends the worker
            if isinstance(error, ConsumerStoppedError) and self.should_stop:
                log.info("the consumer stopped while the worker stops")  # a shutdown race, no crash
                return
            log.critical("the consumer failed: %s", error)
            with contextlib.suppress(Exception):
                await self.settle_commit()
            await self.crash(error)

    async def _consume_batches(self) -> None:
        consumer = self.consumer
        while True:
            records = await consumer.getmany(timeout_ms=self.settings.batch_wait_ms,
                                             max_records=self.settings.batch_events_max)
            if not records:
                continue
            batch = batch_messages(records)
            try:
                async with self.in_flight:
                    await self.apply_batch(batch, self._highwater)
            except Exception:  # noqa: BLE001 - unexpected (the applier handles bad input): retry later
                log.exception("a batch of %d messages failed; it is read again in %d ms",
                              len(batch), self.settings.ledger_retry_backoff_ms)
                self._rewind(batch)
                await asyncio.sleep(self.settings.ledger_retry_backoff_ms / 1000)
                continue
            await self._commit_after(next_offsets(batch))

    async def _commit_after(self, offsets: dict[TopicPartition, int]) -> None:
        """A batch's offsets: committed in the background (the previous commit awaited first),
        or at once when ``consumer_commit_in_background`` is off (the previous design)."""
        if not self.settings.consumer_commit_in_background:
            await self._commit(offsets)
            return
        await self.settle_commit()
        self._committing = asyncio.ensure_future(self._commit(offsets))

    async def settle_commit(self) -> None:
        """Wait for the offsets commit in flight, if any."""
        committing, self._committing = self._committing, None
        if committing is not None:
            await committing

    def _rewind(self, batch: list[InboundMessage]) -> None:
        """Read a failed batch again: each partition back to its first message in it."""
        firsts: dict[TopicPartition, int] = {}
        for message in batch:
            firsts.setdefault(TopicPartition(message.topic, message.partition), message.offset)
        for tp, offset in firsts.items():
            if tp in self.consumer.assignment():
                self.consumer.seek(tp, offset)

    def _highwater(self, topic: str, partition: int) -> int | None:
        return self.consumer.highwater(TopicPartition(topic, partition))

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        try:
            await self.consumer.commit(offsets)
        except KafkaError as error:  # the tracking rows already hold the batch: only re-reads
            self.commits_failed += 1
            log.info("offsets not committed (%s); the next owner skips what is tracked", error)


def direct_service(settings: Settings, apply_batch: ApplyBatch, evict: Evict) -> type[DirectConsumer]:
    """A ``DirectConsumer`` class bound to this worker, for ``app.service`` (which instantiates it)."""

    class WorkerConsumer(DirectConsumer):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(settings, apply_batch, evict, **kwargs)

    return WorkerConsumer
