"""The outbox relay: publish after commit, at least once, routed by fact."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from dataclasses import replace

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.partitioner import DefaultPartitioner

from ledger.application import LoyaltyLedger
from ledger.domain import account_id
from ledger.wire import tier_changed_document
from streams.batches import DatabaseOutage, InboundMessage, PartitionBatchApplier
from streams.outbox import OutboxRelay
from streams.settings import Settings
from streams.validation import validate_outbound
from streams.worker import FatalStop, relay_until_stopped
from tests.ledger.test_fact_schema import every_kind_of_fact
from tests.support import builders as b
from tests.support.inbound_messages import messages
from tests.support.services import lane_settings

SETTINGS = Settings(outbox_batch_notifications_max=3)
READ_TIMEOUT_S = 60


class Collector:
    def __init__(self, fail_times: int = 0) -> None:
        self.sent = []
        self.fail_times = fail_times

    def __call__(self, batch) -> None:
        if self.fail_times:
            self.fail_times -= 1
            raise ConnectionError("broker went away before acknowledging")
        self.sent.extend(batch)

    def on(self, topic: str) -> list[dict]:
        return [json.loads(m.value) for m in self.sent if m.topic == topic]


def relay_all(relay: OutboxRelay) -> None:
    while relay.relay_once():
        pass


def test_every_committed_fact_is_published_once_in_order(ledger):
    ledger.apply(*b.commands(b.purchase("m1", "2025-01-01T10:00:00Z", 60000),
                             b.birthday("m1", "2025-01-02T00:00:00Z")))
    sent = Collector()
    relay = OutboxRelay(ledger, SETTINGS, sent)
    relay_all(relay)
    facts = sent.on(SETTINGS.ledger_topic)
    assert [f["type"] for f in facts] == ["account_opened", "points_earned", "tier_changed",
                                          "birthday_rewarded"]
    assert [f["ledger_version"] for f in facts] == [1, 2, 3, 4]
    for fact in facts:
        validate_outbound("ledger_fact", fact)
    assert all(m.key == b"m1" for m in sent.sent)
    assert relay.caught_up()
    relay_all(relay)  # nothing new: nothing published again
    assert len(sent.on(SETTINGS.ledger_topic)) == 4


def test_tier_changes_follow_the_contract_and_have_stable_ids(ledger):
    ledger.apply(*b.commands(b.purchase("m1", "2025-01-01T10:00:00Z", 60000)))
    first = Collector()
    relay_all(OutboxRelay(ledger, SETTINGS, first))
    (change,) = first.on(SETTINGS.tier_changes_topic)
    validate_outbound("tier_changed", change)
    assert (change["from_tier"], change["to_tier"], change["reason"]) == ("bronze", "silver", "spend")
    assert change["ledger_position"] == 3
    # Republishing the same stored fact yields the same event_id
    stored = list(ledger.events.get(account_id("m1")))[2]
    assert tier_changed_document(stored)["event_id"] == change["event_id"]


def test_a_failed_publish_is_retried_and_loses_nothing(ledger):
    ledger.apply(*b.commands(b.purchase("m1", "2025-01-01T10:00:00Z", 1000)))
    flaky = Collector(fail_times=1)
    relay = OutboxRelay(ledger, SETTINGS, flaky)
    with pytest.raises(ConnectionError):
        relay.relay_once()
    assert relay.position == 0  # not recorded: the batch is published again
    relay_all(relay)
    assert [f["type"] for f in flaky.on(SETTINGS.ledger_topic)] == ["account_opened", "points_earned"]


def test_referral_credits_go_to_the_referrer_key_and_dead_letters_keep_their_key(ledger):
    ledger.apply(*b.commands(b.referral("m1", "2025-01-01T10:00:00Z", "friend"),
                             b.purchase("m1", "2025-01-02T10:00:00Z", 5000)))
    PartitionBatchApplier(ledger, Settings()).apply(messages(b"garbage", start=50))
    sent = Collector()
    relay_all(OutboxRelay(ledger, SETTINGS, sent))
    (credit,) = [m for m in sent.sent if m.topic == SETTINGS.credits_topic]
    assert credit.key == b"friend"
    assert json.loads(credit.value)["event_id"] == "referrer-credit:m1"
    (letter,) = sent.on(SETTINGS.dead_letter_topic)
    validate_outbound("dead_letter", letter)
    assert letter["source_offset"] == 50


def test_transfer_credits_go_to_the_receiver_key_and_apply_there_once(ledger):
    ledger.apply(*b.commands(b.birthday("giver", "2025-01-01T10:00:00Z"),
                             b.transfer("giver", "2025-01-02T10:00:00Z", "taker", 150,
                                        event_id="gift-1")))
    sent = Collector()
    relay_all(OutboxRelay(ledger, SETTINGS, sent))
    (credit,) = [m for m in sent.sent if m.topic == SETTINGS.credits_topic]
    assert credit.key == b"taker"
    assert json.loads(credit.value)["event_id"] == "transfer-credit:gift-1"
    # The receiver's partition owner applies it; a redelivery changes nothing
    applier = PartitionBatchApplier(ledger, Settings())
    for offset in (7, 8):
        applier.apply([InboundMessage(SETTINGS.credits_topic, 0, offset, credit.key, credit.value)])
    assert ledger.find_account("taker").balance == 150
    assert ledger.find_account("taker").lifetime_transferred_in == 150


def test_publishing_from_the_stored_json_sends_what_decoding_every_fact_sends():
    sides, events = {}, every_kind_of_fact()
    for encodes_stored in (True, False):
        ledger = LoyaltyLedger()  # one each: a relay records its position in its ledger
        ledger.apply_in_order(b.commands(*events))
        sides[encodes_stored] = Collector()
        relay_all(OutboxRelay(ledger, replace(SETTINGS, relay_encodes_stored=encodes_stored),
                              sides[encodes_stored]))
    assert len(sides[True].sent) > ledger.fact_log.head()  # tier changes, credits: two messages each
    assert sides[True].sent == sides[False].sent


# ---------------------------------------------------------- the Kafka sender


def test_the_kafka_sender_partitions_like_the_producer_and_keeps_order(kafka_bootstrap):
    """Record batches per partition, more than one batch per partition, every key where
    aiokafka's own ``send`` would put it (referrer credits rely on it). On Apache
    Kafka (LOYALTY_TEST_BROKER=kafka) the producer is idempotent, as deployed."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    from streams.outbox import SENDER_BATCH_BYTES_MAX, KafkaSender, Outbound

    topic, partitions = f"test.sender.{uuid.uuid4().hex[:8]}", 8
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    admin.close()
    value_bytes = 2_000
    per_key = SENDER_BATCH_BYTES_MAX // value_bytes  # two record batches for most keys' partitions
    keys = [f"m{n}".encode() for n in range(12)]
    sent = [Outbound(topic, key, f"{key.decode()}:{n}:".encode().ljust(value_bytes, b"."))
            for n in range(per_key) for key in keys]
    sender = KafkaSender(Settings(bootstrap_servers=kafka_bootstrap, **lane_settings()))
    try:
        sender(sent)
    finally:
        sender.close()
    received = asyncio.run(read_all(kafka_bootstrap, topic, len(sent)))
    assert sorted((k, v) for (k, v, _) in received) == sorted((m.key, m.value) for m in sent)  # each once
    for key in keys:
        values = [value for (k, value, _) in received if k == key]
        assert values == [m.value for m in sent if m.key == key]  # in order
        assert {p for (k, _, p) in received if k == key} == {
            DefaultPartitioner()(key, list(range(partitions)), list(range(partitions)))}


async def read_all(bootstrap: str, topic: str, count: int) -> list[tuple[bytes, bytes, int]]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    received = []
    try:
        async with asyncio.timeout(READ_TIMEOUT_S):
            while len(received) < count:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    received.extend((r.key, r.value, r.partition) for r in records)
    finally:
        await consumer.stop()
    return received


class StoppingSender(Collector):
    """Collects one batch, then stops the relay loop; ``close`` is recorded."""

    def __init__(self, stop) -> None:
        super().__init__()
        self.stop = stop
        self.closed = False

    def __call__(self, batch) -> None:
        super().__call__(batch)
        self.stop.set()

    def close(self) -> None:
        self.closed = True


def test_the_relay_loop_closes_its_sender_and_its_ledger_when_it_stops(ledger, monkeypatch):
    """``relay_until_stopped`` (the ``loyalty relay`` process and the relay thread) owns what
    its entry point opened for it: a stopped relay leaves no producer or connection pool."""
    ledger.apply(*b.commands(b.purchase("m1", "2025-01-01T10:00:00Z", 60000)))
    ledger_closed = []
    monkeypatch.setattr(ledger, "close", lambda: ledger_closed.append(True))
    stop = threading.Event()
    sender = StoppingSender(stop)
    relay = OutboxRelay(ledger, SETTINGS, sender)
    relay_until_stopped(relay, stop, DatabaseOutage(SETTINGS, "outbox relay", stop), FatalStop())
    assert sender.on(SETTINGS.ledger_topic), "the relay published before it stopped"
    assert sender.closed and ledger_closed == [True]


def test_the_key_partitioner_picks_what_the_producers_partitioner_picks_within_its_bound():
    """The relay's partitioner remembers keys' hashes, up to its bound, and always agrees
    with aiokafka's ``DefaultPartitioner`` (referrer credits rely on the partition)."""
    from streams.outbox import KeyPartitioner

    library = DefaultPartitioner()
    mine = KeyPartitioner(library, hashes_max=50)
    keys = [f"M-{n:06d}".encode() for n in range(120)] + ["é-ü".encode(), b""]
    for partitions in ([0, 1, 2, 3, 4, 5, 6, 7], [0, 1, 2], [0, 2, 5]):
        for key in keys + keys[:40]:  # hits as well as misses
            assert mine(key, partitions, partitions) == library(key, partitions, partitions), key
            assert len(mine.hashes) <= 50
    assert mine(None, [0, 1, 2], [1]) == 1  # no key: the library's choice among the available
