"""A message near the broker's own size limit, sent by a producer other than ours,
reaches the dead-letter topic byte for byte and the stream goes on.

Our producer refuses lines over ``message_bytes_max`` before Kafka; any other
producer may send up to the inbound topic's limit (about 1 MB by default).
Its dead letter carries the bytes in base64, a third larger: the relay's
request limit and the dead-letter topic's ``max.message.bytes`` allow it
(``DEAD_LETTER_RECORD_BYTES_MAX``), where before the relay stopped at
aiokafka's 1 MiB default and published nothing more.
"""

from __future__ import annotations

import base64
import json
import time
import uuid

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from streams.process import start_workers, stop_workers, wait_until_processed
from streams.settings import Settings
from streams.topics import ensure_topics
from streams.worker import open_ledger
from tests.support import builders as b
from tests.support.services import lane_settings, own_topics

FOREIGN_MESSAGE_BYTES = 1_000_000       # under Kafka's default 1,048,588 for one record
FOREIGN_REQUEST_BYTES_MAX = 2 * 1024 * 1024
CONSUME_TIMEOUT_S = 120
SEND_TIMEOUT_S = 60


@pytest.mark.broker
def test_a_foreign_message_of_a_megabyte_is_dead_lettered_whole_and_the_next_event_applies(
        kafka_bootstrap, embedded_pg, tmp_path):
    database = embedded_pg.create_database(f"large_dead_letter_{uuid.uuid4().hex[:8]}")
    settings = Settings(bootstrap_servers=kafka_bootstrap, database_url=database.url, partitions=1,
                        **own_topics("large-dead-letter"), **lane_settings())
    ensure_topics(settings)
    huge = b'{"type": "purchase", "padding": "' + b"x" * FOREIGN_MESSAGE_BYTES + b'"}'
    good = b.purchase("M-after-huge", "2026-03-01T10:00:00Z", 10_000)
    offsets = _send(settings, [(b"M-huge", huge), (b"M-after-huge", json.dumps(good).encode())])
    ledger = open_ledger(settings)
    workers = start_workers(settings, 1, tmp_path)
    try:
        wait_until_processed(ledger, settings, offsets, workers)
        letter = _first_dead_letter(settings)
    finally:
        stop_workers(workers)
    try:
        assert letter["reason_code"] == "too_large"
        assert base64.b64decode(letter["value_base64"]) == huge
        assert ledger.find_account("M-after-huge").balance > 0
    finally:
        ledger.close()


def _send(settings: Settings, records: list[tuple[bytes, bytes]]) -> dict[int, int]:
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all",
                             max_request_size=FOREIGN_REQUEST_BYTES_MAX)
    try:
        sent = [producer.send(settings.events_topic, key=key, value=value) for key, value in records]
        metadata = [future.get(timeout=SEND_TIMEOUT_S) for future in sent]
    finally:
        producer.close()
    return {0: max(m.offset for m in metadata)}


def _first_dead_letter(settings: Settings) -> dict:
    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap_servers, consumer_timeout_ms=2000,
                             auto_offset_reset="earliest", enable_auto_commit=False,
                             fetch_max_bytes=4 * FOREIGN_REQUEST_BYTES_MAX,
                             max_partition_fetch_bytes=4 * FOREIGN_REQUEST_BYTES_MAX)
    partition = TopicPartition(settings.dead_letter_topic, 0)
    consumer.assign([partition])
    consumer.seek_to_beginning(partition)
    deadline = time.monotonic() + CONSUME_TIMEOUT_S
    try:
        while time.monotonic() < deadline:
            for message in consumer:
                return json.loads(message.value)
    finally:
        consumer.close()
    raise AssertionError(f"no dead letter on {settings.dead_letter_topic} in {CONSUME_TIMEOUT_S} s")
