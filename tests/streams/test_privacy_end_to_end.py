"""Section 13 end to end, as an attacker reading the topics and the logs would.

A run with enrollments, a profile update, broken profile-bearing messages
(dead letters), an erasure, a transfer to the erased member and events after
it goes through the batch applier, the outbox relay (to a real broker) and
the expiry-notice job. Then, read raw from ``loyalty.ledger``,
``loyalty.dead-letter`` and ``loyalty.notifications`` (keys and values):
no name, e-mail, phone or birth date; and no key (the erased member's,
captured before the erasure, or any left in the key tables), raw, hex or
base64, appears on a topic, in a stored fact, or in any log line of the run
(every logger at DEBUG, tracebacks included).
"""

from __future__ import annotations

import asyncio
import base64
import logging
from datetime import date, datetime, timezone

import orjson
from aiokafka import AIOKafkaConsumer

from ledger.application import LoyaltyLedger
from ledger.member_jobs import expiry_notices
from streams.batches import InboundMessage, PartitionBatchApplier
from streams.kafka_security import kafka_python_options
from streams.outbox import KafkaSender, OutboxRelay
from streams.producer import produce_lines
from streams.settings import Settings
from streams.topics import ensure_topics
from tests.support import builders as b
from tests.support import member_builders as mb
from tests.support.services import lane_settings, own_topics

SECRET = {"name": "Philippa Zanzibar-Holt", "email": "pzh@example.com",
          "phone": "+33 6 12 34 56 78", "birth_date": "1961-08-17"}
IDLE_S = 3.0
READ_TIMEOUT_S = 60


def shapes(key: bytes) -> list[bytes]:
    """How a key could show up: raw, hex, base64 (standard and URL-safe)."""
    return [key, key.hex().encode(), base64.b64encode(key), base64.urlsafe_b64encode(key),
            base64.urlsafe_b64encode(key).rstrip(b"=")]


async def read_topic(bootstrap: str, topic: str) -> list[bytes]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    found, idle_since = [], asyncio.get_running_loop().time()
    try:
        async with asyncio.timeout(READ_TIMEOUT_S):
            while not found or asyncio.get_running_loop().time() - idle_since < IDLE_S:
                batches = await consumer.getmany(timeout_ms=500)
                for records in batches.values():
                    found.extend((r.key or b"") + b"\x00" + (r.value or b"") for r in records)
                    idle_since = asyncio.get_running_loop().time()
    finally:
        await consumer.stop()
    return found


def the_run() -> list:
    broken = {**mb.enrolled("V", "2025-01-01T09:00:00Z", profile=SECRET), "profile": {
        **SECRET, "nickname": "Pip"}}                                     # schema failure
    keyless = orjson.dumps({"type": "profile_updated", "profile": SECRET})  # no member at all
    events = [mb.enrolled("V", "2025-01-01T10:00:00Z", profile=SECRET, marketing=True),
              mb.enrolled("W", "2025-01-01T10:00:00Z", profile={"name": "Witness"}),
              b.purchase("V", "2025-01-02T10:00:00Z", 30_000),
              mb.profile_updated("V", "2025-01-03T10:00:00Z", {"phone": SECRET["phone"]}),
              b.purchase("W", "2025-01-04T10:00:00Z", 30_000),
              broken]
    after = [mb.erased("V", "2025-01-05T10:00:00Z"),
             b.transfer("W", "2025-01-06T10:00:00Z", "V", 50),
             mb.enrolled("V", "2025-01-07T10:00:00Z", profile=SECRET),  # refused, closed
             broken | {"event_id": "broken-again"}]
    return events, keyless, after


def messages_of(events: list, start: int) -> list[InboundMessage]:
    settings = Settings()
    out = []
    for offset, event in enumerate(events, start=start):
        value = event if isinstance(event, bytes) else orjson.dumps(event)
        key = event["member_id"].encode() if isinstance(event, dict) else None
        out.append(InboundMessage(settings.events_topic, 0, offset, key, value))
    return out


def test_no_profile_or_key_on_any_topic_fact_or_log_line(pg_env, kafka_bootstrap, caplog):
    caplog.set_level(logging.DEBUG)
    settings = Settings(bootstrap_servers=kafka_bootstrap, **own_topics("privacy"), **lane_settings())
    ledger = LoyaltyLedger(env=pg_env)
    applier = PartitionBatchApplier(ledger, Settings(ledger_retry_backoff_ms=1))
    before, keyless, after = the_run()
    applier.apply(messages_of([*before, keyless], 0))
    erased_key = ledger.member_keys.key_of("V")
    assert erased_key is not None
    applier.apply(messages_of(after, len(before) + 1))
    # the transfer's credit and its return, as the workers would apply them
    from ledger.credits import credit_commands
    for result in ledger.apply(*credit_commands(
            [f for f in ledger.fact_log.facts() if type(f).__name__ == "PointsTransferredOut"])):
        ledger.apply(*credit_commands(result.facts))
    assert ledger.find_account("W").lifetime_transferred_in == 50  # came back
    ensure_topics(settings)
    sender = KafkaSender(settings)
    try:
        relay = OutboxRelay(ledger, settings, sender)
        while relay.relay_once():
            pass
    finally:
        sender.close()
    notices = expiry_notices(ledger, datetime(2025, 12, 25, tzinfo=timezone.utc), 30)
    assert [n["member_id"] for n in notices] == ["W"]
    produce_lines(kafka_bootstrap, settings.notifications_topic,
                  [orjson.dumps(n) for n in notices], kafka_python_options(settings))

    remaining = list(ledger.member_keys.store.read_keys(["V", "W"]).values())
    remaining += list(ledger.member_keys.store.dead_letter_keys(
        [date.today(), datetime.now(timezone.utc).date()]).values())
    assert len(remaining) == 2  # W's key and today's dead-letter key
    keys = [erased_key, *remaining]
    topics = (settings.ledger_topic, settings.dead_letter_topic, settings.notifications_topic)
    raw = {topic: asyncio.run(read_topic(kafka_bootstrap, topic)) for topic in topics}
    assert all(raw.values())
    assert any(b"member_erased" in record for record in raw[settings.ledger_topic])
    assert sum(b"sealed_value" in record for record in raw[settings.dead_letter_topic]) == 3
    stored = [orjson.dumps(vars(fact), default=str) for fact in ledger.fact_log.facts()]
    lines = [(record.getMessage() + (record.exc_text or "")).encode() for record in caplog.records]
    assert lines  # the run logged (the Kafka clients at least)
    for where, blobs in [*raw.items(), ("facts", stored), ("logs", lines)]:
        for blob in blobs:
            for secret in SECRET.values():
                assert secret.encode() not in blob, (where, secret)
            for key in keys:
                for shape in shapes(key):
                    assert shape not in blob, (where, "a key")
    ledger.close()
