"""The outbox relay: publish committed facts to Kafka, after commit.

The relay follows the event store's notification log (which holds only
committed facts) from its own tracking position, publishes every fact of a
batch and waits for the broker's acknowledgements, and only then records the
new position. So nothing is published for a transaction that did not commit,
and a crash between publishing and recording the position republishes that
batch on restart: at least once, never lost. Consumers dedupe by
``fact_id`` / ``event_id``, the referrer's account by the credit's event id.

Routing of one fact:

- every ``LoyaltyAccount`` fact -> ``loyalty.ledger`` (key: member id);
- ``tier_changed`` also -> ``loyalty.tier-changes`` (CONTRACT section 5);
- ``referral_qualified`` also -> the internal credits topic, keyed by the
  referrer, where the referrer's partition owner applies the credit;
- a ``DeadLetter`` -> ``loyalty.dead-letter`` with the original key.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import threading
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import orjson
from eventsourcing.persistence import IntegrityError, Tracking

from ledger.application import LoyaltyLedger
from ledger.commands import referrer_credit_event
from ledger.dead_letters import DeadLetter
from ledger.domain import LoyaltyAccount
from ledger.wire import fact_message, tier_changed_document
from streams.settings import Settings

log = logging.getLogger(__name__)

OUTBOX_TRACKING_NAME = "loyalty.outbox"
PUBLISH_TIMEOUT_MS = 30_000
SENDER_LINGER_MS = 5
SENDER_BATCH_BYTES_MAX = 1_048_576  # one record batch per partition and round, up to this size


@dataclass(frozen=True)
class Outbound:
    topic: str
    key: bytes | None
    value: bytes


def _json(document: dict) -> bytes:
    return orjson.dumps(document)


def route(fact: Any, settings: Settings) -> list[Outbound]:
    """The messages one committed fact publishes."""
    if isinstance(fact, DeadLetter.Recorded):
        envelope = fact.envelope
        key = base64.b64decode(envelope["key_base64"]) if envelope["key_base64"] else None
        return [Outbound(settings.dead_letter_topic, key, _json(envelope))]
    key = fact.member_id.encode("utf-8")
    messages = [Outbound(settings.ledger_topic, key, fact_message(fact))]
    if isinstance(fact, LoyaltyAccount.TierChanged):
        messages.append(Outbound(settings.tier_changes_topic, key, _json(tier_changed_document(fact))))
    if isinstance(fact, LoyaltyAccount.ReferralQualified):
        credit = referrer_credit_event(fact.referrer_member_id, fact.referee_member_id,
                                       fact.qualifying_event_id, fact.qualifying_occurred_at)
        messages.append(Outbound(settings.credits_topic, fact.referrer_member_id.encode("utf-8"),
                                 _json(credit)))
    return messages


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
        self.partitioner = DefaultPartitioner()  # murmur2 of the key, as Kafka's clients do

    @staticmethod
    async def _started(settings: Settings):
        from aiokafka import AIOKafkaProducer

        from streams.kafka_security import aiokafka_options

        producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all",
                                    enable_idempotence=settings.producer_idempotent,
                                    linger_ms=SENDER_LINGER_MS, client_id="loyalty-outbox",
                                    max_batch_size=SENDER_BATCH_BYTES_MAX,
                                    request_timeout_ms=PUBLISH_TIMEOUT_MS,
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


class OutboxRelay:
    """Follows the notification log and publishes each committed fact."""

    def __init__(self, ledger: LoyaltyLedger, settings: Settings,
                 send: Callable[[Sequence[Outbound]], None],
                 on_lag: Callable[[int], None] | None = None) -> None:
        self.ledger = ledger
        self.settings = settings
        self.send = send
        self.on_lag = on_lag

    @property
    def position(self) -> int:
        return self.ledger.tracked_position(OUTBOX_TRACKING_NAME) or 0

    def relay_once(self) -> int:
        """Publish the next batch of notifications; return how many were relayed."""
        notifications = self.ledger.recorder.select_notifications(
            start=self.position + 1, limit=self.settings.outbox_batch_notifications_max)
        if not notifications:
            return 0
        messages = [message for notification in notifications
                    for message in route(self.ledger.mapper.to_domain_event(notification),
                                         self.settings)]
        self.send(messages)
        self._record(notifications[-1].id)
        return len(notifications)

    def _record(self, notification_id: int) -> None:
        try:
            self.ledger.recorder.insert_tracking(Tracking(OUTBOX_TRACKING_NAME, notification_id))
        except IntegrityError:
            log.info("another relay recorded outbox position %d first", notification_id)

    def lag(self) -> int:
        """Committed facts not yet published."""
        return max((self.ledger.recorder.max_notification_id() or 0) - self.position, 0)

    def caught_up(self) -> bool:
        return self.lag() == 0

    def run(self, stop: threading.Event) -> None:
        """Relay until ``stop`` is set; wait ``outbox_poll_interval_ms`` when idle."""
        while not stop.is_set():
            if self.relay_once() == 0:
                if self.on_lag is not None:
                    self.on_lag(self.lag())
                stop.wait(self.settings.outbox_poll_interval_ms / 1000)
