"""The outbox relay: publish committed facts to Kafka, after commit.

The relay follows the event store's notification log (which holds only
committed facts) from its own tracking position, publishes every fact of a
batch and waits for the broker's acknowledgements, and only then records the
new position. So nothing is published for a transaction that did not commit,
and a crash between publishing and recording the position republishes that
batch on restart: at least once, never lost. Consumers dedupe by
``fact_id`` / ``event_id``, the referrer's account by the credit's event id.

Which facts go to which topic, with which key and document, is
``ledger.routing`` (every fact -> ``loyalty.ledger``, ``tier_changed`` also ->
``loyalty.tier-changes``, a fact that owes a credit also -> the internal
credits topic keyed by the receiving member, a dead letter ->
``loyalty.dead-letter`` with its original key, a recorded program version ->
nothing); ``route`` only names each output's topic from the settings. Most
facts are published from their stored JSON without being decoded
(``ledger.stored_wire``; ``relay_encodes_stored`` false: every fact decoded,
the previous design), the same bytes either way. The loop that calls ``relay_once`` is
``streams.worker.relay_until_stopped``.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from eventsourcing.persistence import IntegrityError, StoredEvent, Tracking

from ledger import routing
from ledger.application import LoyaltyLedger
from ledger.stored_wire import StoredWire
from streams.settings import Settings
from streams.validation import DEAD_LETTER_RECORD_BYTES_MAX

log = logging.getLogger(__name__)

OUTBOX_TRACKING_NAME = "loyalty.outbox"
PUBLISH_TIMEOUT_MS = 30_000
SENDER_LINGER_MS = 5
SENDER_BATCH_BYTES_MAX = 1_048_576  # one record batch per partition and round, up to this size
KEY_HASHES_MAX = 100_000  # member keys whose murmur2 hash the sender remembers (emptied when full)


@dataclass(frozen=True)
class Outbound:
    topic: str
    key: bytes | None
    value: bytes


def kafka_topics(settings: Settings) -> dict[str, str]:
    """The Kafka topic of each of ``ledger.routing``'s outputs."""
    return {routing.LEDGER: settings.ledger_topic, routing.TIER_CHANGES: settings.tier_changes_topic,
            routing.CREDITS: settings.credits_topic, routing.DEAD_LETTERS: settings.dead_letter_topic}


def route(fact: Any, topics: dict[str, str]) -> list[Outbound]:
    """The messages one committed fact publishes (``topics``: ``kafka_topics``)."""
    return [Outbound(topics[m.output], m.key, m.value) for m in routing.messages(fact)]


class KafkaSender:
    """Sends a list of messages and returns only when the broker acknowledged all.

    aiokafka, not kafka-python: this is the relay's hot path, and a profile
    of a worker hosting the relay showed kafka-python's producer (its sender
    thread and CRC) taking two thirds of the process (aiokafka produces
    several times faster here, see ``../docs/BENCHMARKS.md``). The relay is a
    plain thread, so the sender owns a private event loop and runs it only
    while a batch is being sent (``run_until_complete``); calls must not
    overlap, which the relay's single thread guarantees. A round's messages
    go as one record batch per partition, partitioned by the key exactly as
    the producer's default partitioner does (referrer credits must land on
    the referrer's partition).

    ``producer_idempotent`` (``LOYALTY_PRODUCER_IDEMPOTENT``, off by default)
    turns on Kafka's idempotent producer: a produce request the client
    retries (a lost acknowledgement, a leader change) is then written once,
    in order. It does not make the relay exactly-once: a relay restarted
    after publishing and before recording its position republishes with a
    new producer id, and consumers still dedupe by id. Apache Kafka has it;
    the embedded broker (tansu) fails idempotent producers, hence the default.
    """

    def __init__(self, settings: Settings) -> None:
        from aiokafka.partitioner import DefaultPartitioner

        self.loop = asyncio.new_event_loop()
        self.producer = self.loop.run_until_complete(self._started(settings))
        self.partitioner = KeyPartitioner(DefaultPartitioner())

    @staticmethod
    async def _started(settings: Settings):
        from aiokafka import AIOKafkaProducer

        from streams.kafka_security import aiokafka_options

        producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all",
                                    enable_idempotence=settings.producer_idempotent,
                                    linger_ms=SENDER_LINGER_MS, client_id="loyalty-outbox",
                                    max_batch_size=SENDER_BATCH_BYTES_MAX,
                                    request_timeout_ms=PUBLISH_TIMEOUT_MS,
                                    max_request_size=DEAD_LETTER_RECORD_BYTES_MAX,
                                    **aiokafka_options(settings))
        await producer.start()
        return producer

    def __call__(self, messages: Sequence[Outbound]) -> None:
        self.loop.run_until_complete(asyncio.wait_for(self._send(messages), PUBLISH_TIMEOUT_MS / 1000))

    async def _send(self, messages: Sequence[Outbound]) -> None:
        """One record batch per partition (in order), not one ``send`` per message."""
        acknowledged = []
        for (topic, partition), group in (await self._by_partition(messages)).items():
            batch = self.producer.create_batch()
            for message in group:
                if batch.append(key=message.key, value=message.value, timestamp=None) is None:
                    acknowledged.append(await self.producer.send_batch(batch, topic, partition=partition))
                    batch = self.producer.create_batch()  # a first message always fits
                    batch.append(key=message.key, value=message.value, timestamp=None)
            acknowledged.append(await self.producer.send_batch(batch, topic, partition=partition))
        await asyncio.gather(*acknowledged)

    async def _by_partition(self, messages: Sequence[Outbound]) -> dict[tuple[str, int], list[Outbound]]:
        """Messages by (topic, partition), chosen as the producer's own partitioner would."""
        partitions = {topic: sorted(await self.producer.partitions_for(topic))
                      for topic in {m.topic for m in messages}}
        grouped: dict[tuple[str, int], list[Outbound]] = {}
        for m in messages:
            partition = self.partitioner(m.key, partitions[m.topic], partitions[m.topic])
            grouped.setdefault((m.topic, partition), []).append(m)
        return grouped

    def close(self) -> None:
        try:
            self.loop.run_until_complete(self.producer.stop())
        finally:
            self.loop.close()


class KeyPartitioner:
    """The producer's default partitioner (murmur2 of the key, as Kafka's clients do), with
    each key's hash remembered: aiokafka's murmur2 is pure Python, about a twentieth of the
    relay process's CPU, and a member's facts come again and again. Up to
    ``KEY_HASHES_MAX`` keys; a message without a key goes to the library's partitioner."""

    def __init__(self, partitioner: Any, hashes_max: int = KEY_HASHES_MAX) -> None:
        from aiokafka.partitioner import murmur2

        self.partitioner = partitioner
        self.murmur2 = murmur2
        self.hashes_max = hashes_max
        self.hashes: dict[bytes, int] = {}

    def __call__(self, key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
        if key is None:
            return self.partitioner(key, all_partitions, available)
        hashed = self.hashes.get(key)
        if hashed is None:
            if len(self.hashes) >= self.hashes_max:
                self.hashes.clear()
            hashed = self.hashes[key] = self.murmur2(key) & 0x7FFFFFFF
        return all_partitions[hashed % len(all_partitions)]


class OutboxRelay:
    """Follows the notification log and publishes each committed fact."""

    def __init__(self, ledger: LoyaltyLedger, settings: Settings,
                 send: Callable[[Sequence[Outbound]], None],
                 on_lag: Callable[[int], None] | None = None) -> None:
        self.ledger = ledger
        self.settings = settings
        self.send = send
        self.on_lag = on_lag
        self.topics = kafka_topics(settings)
        self.stored_wire = StoredWire(ledger.mapper) if settings.relay_encodes_stored else None

    @property
    def position(self) -> int:
        return self.ledger.tracked_position(OUTBOX_TRACKING_NAME) or 0

    def relay_once(self) -> int:
        """Publish the next batch of notifications; return how many were relayed."""
        stored = self.ledger.fact_log.next_stored(self.position,
                                                  self.settings.outbox_batch_notifications_max)
        if not stored:
            return 0
        self.send([message for _, fact in stored for message in self._messages(fact)])
        self._record(stored[-1][0])
        return len(stored)

    def _messages(self, stored: StoredEvent) -> list[Outbound]:
        """From the stored JSON where ``ledger.stored_wire`` can, else from the decoded fact."""
        fast = self.stored_wire.ledger_message(stored) if self.stored_wire is not None else None
        if fast is None:
            return route(self.ledger.fact_log.decode(stored), self.topics)
        return [Outbound(self.topics[fast.output], fast.key, fast.value)]

    def _record(self, notification_id: int) -> None:
        try:
            self.ledger.recorder.insert_tracking(Tracking(OUTBOX_TRACKING_NAME, notification_id))
        except IntegrityError:
            log.info("another relay recorded outbox position %d first", notification_id)

    def lag(self) -> int:
        """Committed facts not yet published."""
        return max(self.ledger.fact_log.head() - self.position, 0)

    def caught_up(self) -> bool:
        return self.lag() == 0
