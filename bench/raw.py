"""The machine's raw limits, measured in the same run as the pipeline.

- Kafka: read a pre-loaded topic from its start and decode every value, with
  aiokafka + orjson (what the workers' stack can reach) and, as the baseline,
  kafka-python + the standard ``json`` (the simple client). Partitions are
  assigned by hand: no consumer group, no join wait.
- PostgreSQL: insert event-sized rows (the event store's columns, ``state``
  of ``ROW_STATE_BYTES``) into a fresh table, with COPY in one transaction
  (the bulk limit) and, as the baseline, ``executemany`` of INSERTs in one
  transaction (how eventsourcing's recorder writes a batch's facts). One
  INSERT per transaction, the per-event pipeline's floor, is recorded too.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from typing import Any

import orjson
import psycopg
from aiokafka import AIOKafkaConsumer, TopicPartition as AioTopicPartition
from kafka import KafkaConsumer, TopicPartition

from bench.ingest import Stream

ROW_STATE_BYTES = 500
CONSUME_TIMEOUT_S = 300
FETCH_TIMEOUT_MS = 500
FETCH_RECORDS_MAX = 10_000
KAFKA_PYTHON_MESSAGES_MAX = 50_000  # the baseline reads at most this many (it is 15× slower)
SINGLE_INSERTS_MAX = 2_000          # rows inserted one per transaction (the slow way)
SINGLE_INSERTS_SHARE = 20           # ... or 1/20 of the rows if fewer
RAW_TABLE = "bench_raw_events"


def kafka_consume_rate(bootstrap_servers: str, stream: Stream) -> float:
    """Messages per second, aiokafka + orjson.loads, from offset 0 to the last line."""
    return asyncio.run(_aiokafka_consume(bootstrap_servers, stream))


async def _aiokafka_consume(bootstrap_servers: str, stream: Stream) -> float:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False,
                                auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    try:
        partitions = [AioTopicPartition(stream.topic, p) for p in stream.produced]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        started = time.perf_counter()
        deadline = started + CONSUME_TIMEOUT_S
        received = 0
        while received < stream.events:
            if time.perf_counter() > deadline:
                raise TimeoutError(f"aiokafka read {received} of {stream.events} in {CONSUME_TIMEOUT_S} s")
            batches = await consumer.getmany(timeout_ms=FETCH_TIMEOUT_MS, max_records=FETCH_RECORDS_MAX)
            for records in batches.values():
                for record in records:
                    orjson.loads(record.value)
                received += len(records)
        return received / (time.perf_counter() - started)
    finally:
        await consumer.stop()


def kafka_python_consume_rate(bootstrap_servers: str, stream: Stream) -> float:
    """Messages per second, kafka-python + json.loads (the baseline), over the first
    ``KAFKA_PYTHON_MESSAGES_MAX`` messages at most."""
    wanted = min(stream.events, KAFKA_PYTHON_MESSAGES_MAX)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False,
                             auto_offset_reset="earliest", group_id=None)
    try:
        partitions = [TopicPartition(stream.topic, p) for p in stream.produced]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        started = time.perf_counter()
        deadline = started + CONSUME_TIMEOUT_S
        received = 0
        while received < wanted:
            if time.perf_counter() > deadline:
                raise TimeoutError(f"kafka-python read {received} of {wanted} in {CONSUME_TIMEOUT_S} s")
            batches = consumer.poll(timeout_ms=FETCH_TIMEOUT_MS, max_records=FETCH_RECORDS_MAX)
            for records in batches.values():
                for record in records:
                    json.loads(record.value)
                received += len(records)
        return received / (time.perf_counter() - started)
    finally:
        consumer.close()


def event_rows(count: int) -> list[tuple[Any, ...]]:
    """Rows shaped like the event store's: originator, version, topic, ~500-byte state."""
    topic = "ledger.domain:LoyaltyAccount.PointsEarned"
    return [(uuid.uuid4(), 1, topic, os.urandom(ROW_STATE_BYTES // 2).hex().encode())
            for _ in range(count)]


def postgres_insert_rates(database_url: str, rows: int) -> dict[str, float]:
    """Rows per second: COPY, executemany (one transaction each) and single-row transactions."""
    data = event_rows(rows)
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute(f"DROP TABLE IF EXISTS {RAW_TABLE}")
        connection.execute(
            f"CREATE TABLE {RAW_TABLE} (notification_id bigserial PRIMARY KEY, "
            "originator_id uuid NOT NULL, originator_version integer NOT NULL, "
            "topic text NOT NULL, state bytea NOT NULL, "
            "UNIQUE (originator_id, originator_version))")
        rates = {"copy": _timed_rows(connection, len(data), lambda: _copy(connection, data)),
                 "executemany": _timed_rows(connection, len(data),
                                            lambda: _executemany(connection, data))}
        single = data[:single_insert_rows(rows)]
        rates["insert_per_transaction"] = _timed_rows(connection, len(single),
                                                      lambda: _single_inserts(connection, single))
        connection.execute(f"DROP TABLE {RAW_TABLE}")
    return rates


def single_insert_rows(rows: int) -> int:
    return max(min(SINGLE_INSERTS_MAX, rows // SINGLE_INSERTS_SHARE), 1)


def _timed_rows(connection: psycopg.Connection, count: int, insert: Any) -> float:
    connection.execute(f"TRUNCATE {RAW_TABLE}")
    started = time.perf_counter()
    insert()
    return count / (time.perf_counter() - started)


def _copy(connection: psycopg.Connection, data: list[tuple[Any, ...]]) -> None:
    with connection.transaction(), connection.cursor() as cursor:
        with cursor.copy(f"COPY {RAW_TABLE} (originator_id, originator_version, topic, state) "
                         "FROM STDIN") as copy:
            for row in data:
                copy.write_row(row)


def _executemany(connection: psycopg.Connection, data: list[tuple[Any, ...]]) -> None:
    with connection.transaction(), connection.cursor() as cursor:
        cursor.executemany(f"INSERT INTO {RAW_TABLE} (originator_id, originator_version, topic, state) "
                           "VALUES (%s, %s, %s, %s)", data)


def _single_inserts(connection: psycopg.Connection, data: list[tuple[Any, ...]]) -> None:
    for row in data:
        with connection.transaction():
            connection.execute(f"INSERT INTO {RAW_TABLE} (originator_id, originator_version, topic, "
                               "state) VALUES (%s, %s, %s, %s)", row)
