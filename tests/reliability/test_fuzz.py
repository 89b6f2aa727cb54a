"""Bad input, fuzzed: 10,000+ hostile messages through a real ``loyalty worker``.

The messages (``tests/reliability/hostile_messages.py``, drawn with hypothesis) go to the
embedded broker mixed with valid events. Then:

- every hostile message has a dead letter in the event store at its exact
  position, with the original bytes, a reason code its kind allows and a
  reason message, and the relay published it on the dead-letter topic;
- the worker process is still up and its memory (RSS) grew by less than
  ``RSS_GROWTH_MB_MAX``;
- the valid events between them are applied: each member's account equals
  direct application of those events.

A unit test pins the poison case the fuzzer found: a document nested a few
hundred deep makes the schema validator itself raise.
"""

from __future__ import annotations

import base64
import json
import time

import orjson

import psutil
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from ledger.application import LoyaltyLedger
from ledger.commands import command_from_event
from ledger.dead_letters import DeadLetter
from ledger.sealed_dead_letters import open_dead_letter
from streams.batches import InboundMessage, PartitionBatchApplier
from streams.process import wait_until_processed
from streams.settings import Settings
from streams.topics import ensure_topics
from streams.worker import open_ledger
from tests.support import builders as b
from tests.reliability.harness import Fleet, pipeline_settings
from tests.reliability.hostile_messages import EXPECTED_REASONS, hostile_messages
from tests.support.pipeline import read_values

FUZZ_CASES_MIN = 10_000
FUZZ_SEED = 7
PARTITIONS = 4
VALID_EVERY = 40                  # one valid event after every 40 hostile messages
VALID_MEMBERS = 25
RSS_GROWTH_MB_MAX = 300           # generous: faust, the producer and caches warm up too
PRODUCER_MAX_REQUEST_BYTES = 1_048_576
PROCESSED_TIMEOUT_S = 600
CONSUME_TIMEOUT_S = 120
DEEP_NESTING_LEVELS = 500         # parsed by orjson (limit 1024), too deep for the validator


def valid_event(number: int) -> dict:
    member = f"fuzz-valid-{number % VALID_MEMBERS}"
    return b.purchase(member, f"2025-{number // 2000 % 12 + 1:02d}-{number % 28 + 1:02d}T10:00:00Z",
                      1000 + number, event_id=f"fuzz-valid-e{number}")


def rss_mb(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20


def produce(settings: Settings, messages: list[tuple[bytes | None, bytes | None]]) -> list[tuple[int, int]]:
    """Send (key, value) pairs as they are; their (partition, offset) in order."""
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all", linger_ms=5,
                             max_request_size=PRODUCER_MAX_REQUEST_BYTES)
    try:
        futures = [producer.send(settings.events_topic, key=key, value=value) for key, value in messages]
        producer.flush()
        return [(meta.partition, meta.offset) for meta in (f.get(timeout=60) for f in futures)]
    finally:
        producer.close()


def dead_letter_positions(bootstrap: str, topic: str, expected: int) -> set[tuple[int, int]]:
    """Source positions of the dead-letter topic's envelopes (read until ``expected`` distinct)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, consumer_timeout_ms=2000,
                             auto_offset_reset="earliest", enable_auto_commit=False,
                             fetch_max_bytes=8 * 2**20, max_partition_fetch_bytes=2**20)
    partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    seen: set[tuple[int, int]] = set()
    deadline = time.monotonic() + CONSUME_TIMEOUT_S
    while len(seen) < expected and time.monotonic() < deadline:
        for message in consumer:
            envelope = orjson.loads(message.value)
            seen.add((envelope["source_partition"], envelope["source_offset"]))
    consumer.close()
    return seen


def test_ten_thousand_hostile_messages_are_dead_lettered_and_the_worker_stays_up(
        kafka_bootstrap, embedded_pg, tmp_path):
    started = time.monotonic()
    fuzzed = hostile_messages(FUZZ_CASES_MIN, FUZZ_SEED)
    assert len(fuzzed) >= FUZZ_CASES_MIN
    generated_s = time.monotonic() - started
    database = embedded_pg.create_database(f"fuzz_{int(started)}")
    settings = pipeline_settings(kafka_bootstrap, database.url, "fuzz", PARTITIONS, batch_events_max=500)
    ensure_topics(settings)
    ledger = open_ledger(settings)
    fleet = Fleet(settings, tmp_path)
    valid: list[dict] = []
    try:
        worker = fleet.start_worker(relay=True)
        # warm up: a few valid events, then measure the worker's memory
        warm = [valid_event(n) for n in range(VALID_MEMBERS)]
        valid += warm
        positions = produce(settings, [(e["member_id"].encode(), json_bytes(e)) for e in warm])
        wait_until_processed(ledger, settings, last_offsets(positions), fleet.workers, PROCESSED_TIMEOUT_S)
        rss_before = rss_mb(worker.process.pid)
        # the hostile messages, a valid event after every VALID_EVERY of them
        batch, kinds = [], []
        for number, message in enumerate(fuzzed):
            batch.append((message.key, message.value))
            kinds.append(message.kind)
            if number % VALID_EVERY == VALID_EVERY - 1:
                event = valid_event(len(valid))
                valid.append(event)
                batch.append((event["member_id"].encode(), json_bytes(event)))
                kinds.append("valid")
        positions = produce(settings, batch)
        wait_until_processed(ledger, settings, last_offsets(positions), fleet.workers,
                             PROCESSED_TIMEOUT_S)
        assert worker.process.poll() is None, "the worker stayed up"
        rss_after = rss_mb(worker.process.pid)
    finally:
        fleet.close()

    letters = {(f.envelope["source_partition"], f.envelope["source_offset"]): f.envelope
               for f in ledger.fact_log.facts() if isinstance(f, DeadLetter.Recorded)}
    hostile = [(position, kind, value) for position, kind, (_, value)
               in zip(positions, kinds, batch) if kind != "valid"]
    missing = [(kind, value[:120] if value else value) for position, kind, value in hostile
               if position not in letters]
    assert not missing, missing[:5]
    wrong = [(kind, letters[position]["reason_code"], value[:120] if value else value)
             for position, kind, value in hostile
             if letters[position]["reason_code"] not in EXPECTED_REASONS[kind]]
    assert not wrong, wrong[:5]
    assert all(letters[position]["reason_message"] for position, _, _ in hostile)
    assert all(original_value(ledger, letters[position]) == (value or b"")
               for position, _, value in hostile)
    assert len(letters) == len(hostile), "only the hostile messages are dead-lettered"
    published = dead_letter_positions(settings.bootstrap_servers, settings.dead_letter_topic, len(letters))
    assert published == set(letters), "the relay published every dead letter"

    direct = LoyaltyLedger()
    direct.apply_in_order([command_from_event(e) for e in valid])
    for member in {e["member_id"] for e in valid}:
        assert read_values(ledger.find_account(member)) == read_values(direct.find_account(member))
    ledger.close()
    growth = rss_after - rss_before
    print(f"fuzz: {len(hostile)} hostile messages ({generated_s:.1f} s to generate), "
          f"{len(valid)} valid events; worker RSS {rss_before:.0f} -> {rss_after:.0f} MB; "
          f"{time.monotonic() - started:.1f} s")
    assert growth < RSS_GROWTH_MB_MAX, f"worker RSS grew {growth:.0f} MB"


def original_value(ledger: LoyaltyLedger, envelope: dict) -> bytes:
    """A dead letter's original bytes; a sealed one (it may carry a profile, section 13) opened."""
    if "sealed_value" in envelope:
        envelope = open_dead_letter(ledger, envelope)
    return base64.b64decode(envelope["value_base64"] or "")


def json_bytes(event: dict) -> bytes:
    return json.dumps(event).encode()


def last_offsets(positions: list[tuple[int, int]]) -> dict[int, int]:
    last: dict[int, int] = {}
    for partition, offset in positions:
        last[partition] = max(offset, last.get(partition, -1))
    return {p: o for p, o in last.items() if o >= 0}


def test_a_document_too_deep_for_the_validator_is_dead_lettered_not_a_crash(ledger):
    nested = b"[" * DEEP_NESTING_LEVELS + b"1" + b"]" * DEEP_NESTING_LEVELS
    deep = (b'{"type":"birthday","schema_version":1,"event_id":"e","member_id":' + nested
            + b',"occurred_at":"2025-01-01T00:00:00Z"}')
    after = b.purchase("m1", "2025-01-02T10:00:00Z", 1000)
    topic = Settings().events_topic
    batch = [InboundMessage(topic, 0, 0, b"m1", deep),
             InboundMessage(topic, 0, 1, b"m1", json_bytes(after))]
    report = PartitionBatchApplier(ledger, Settings(ledger_retry_backoff_ms=1)).apply(batch)
    assert (report.applied, report.reasons) == (1, {"schema": 1})
    assert ledger.find_account("m1").balance == 10
