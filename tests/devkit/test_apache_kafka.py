"""The Apache Kafka launcher: a real KRaft node from Maven jars, and its clear errors."""

from __future__ import annotations

import asyncio
import shutil
import socket
import uuid
from pathlib import Path

import psutil
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic

from streams.devkit import apache_kafka
from streams.devkit.apache_kafka import (AUTO_CREATE_PARTITIONS, CACHE_DIR_ENV, GROUP_MIN_SESSION_TIMEOUT_MS,
                                         POM_PATH, ApacheKafka, ApacheKafkaStartError, JarResolutionError,
                                         MissingToolError)
from streams.devkit.embedded_broker import find_free_port
from tests.support.services import KAFKA_LANE, broker_lane

PARTITIONS = 3
MESSAGES = 300
CONSUME_TIMEOUT_S = 60
ADMIN_REQUEST_TIMEOUT_MS = 15_000
SEND_TIMEOUT_S = 30
BENCH_SESSION_TIMEOUT_MS = 2_000  # bench/run.py's small sizes


@pytest.fixture(scope="module")
def kafka(request: pytest.FixtureRequest) -> ApacheKafka:
    """The session's broker in the Apache Kafka lane (one start less); else a broker of its own."""
    if broker_lane() == KAFKA_LANE:
        yield request.getfixturevalue("test_broker")
        return
    with ApacheKafka() as broker:
        yield broker


def unique_topic(label: str) -> str:
    return f"devkit-{label}-{uuid.uuid4().hex[:8]}"


def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=ADMIN_REQUEST_TIMEOUT_MS)
    try:
        admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    finally:
        admin.close()


async def produce_idempotently(bootstrap: str, topic: str, count: int) -> dict[bytes, tuple[int, int]]:
    """Send ``count`` keyed messages; their (partition, offset) by value."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all")
    await producer.start()
    try:
        sent = {}
        for number in range(count):
            value = f"message-{number}".encode()
            meta = await producer.send_and_wait(topic, value, key=f"member-{number % 17}".encode())
            sent[value] = (meta.partition, meta.offset)
        return sent
    finally:
        await producer.stop()


async def consume_all(bootstrap: str, topic: str, partitions: int, expected: int):
    """Read the topic from the beginning; (value -> position, end offsets)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        assigned = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        seen = {}
        async with asyncio.timeout(CONSUME_TIMEOUT_S):
            while len(seen) < expected:
                for records in (await consumer.getmany(timeout_ms=1_000)).values():
                    seen.update((r.value, (r.partition, r.offset)) for r in records)
        return seen, await consumer.end_offsets(assigned)
    finally:
        await consumer.stop()


@pytest.mark.broker
def test_an_idempotent_producer_round_trips_with_exact_end_offsets(kafka: ApacheKafka):
    # Given a topic with three partitions on Apache Kafka
    topic = unique_topic("round-trip")
    create_topic(kafka.bootstrap_servers, topic, PARTITIONS)
    # When an idempotent producer sends 300 keyed messages
    sent = asyncio.run(produce_idempotently(kafka.bootstrap_servers, topic, MESSAGES))
    # Then a consumer reads each of them back at the position the producer was given
    seen, end_offsets = asyncio.run(consume_all(kafka.bootstrap_servers, topic, PARTITIONS, MESSAGES))
    assert seen == sent
    # And end_offsets is exactly the count per partition (tansu can report less)
    per_partition = {p: sum(1 for part, _ in sent.values() if part == p) for p in range(PARTITIONS)}
    assert {tp.partition: offset for tp, offset in end_offsets.items()} == per_partition


@pytest.mark.broker
def test_unknown_topics_are_auto_created_as_on_the_embedded_broker(kafka: ApacheKafka):
    topic = unique_topic("auto")
    producer = KafkaProducer(bootstrap_servers=kafka.bootstrap_servers)
    try:
        producer.send(topic, b"first").get(timeout=SEND_TIMEOUT_S)
        assert len(producer.partitions_for(topic)) == AUTO_CREATE_PARTITIONS
    finally:
        producer.close()


@pytest.mark.broker
def test_a_group_with_the_benchmarks_short_session_timeout_is_accepted(kafka: ApacheKafka):
    """Kafka's default minimum session timeout is 6 s; the launcher lowers it (bench uses 2 s)."""
    assert BENCH_SESSION_TIMEOUT_MS >= GROUP_MIN_SESSION_TIMEOUT_MS
    topic = unique_topic("group")
    create_topic(kafka.bootstrap_servers, topic, PARTITIONS)

    async def join() -> set[TopicPartition]:
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=kafka.bootstrap_servers, group_id=topic,
                                    session_timeout_ms=BENCH_SESSION_TIMEOUT_MS, heartbeat_interval_ms=500)
        await consumer.start()
        try:
            async with asyncio.timeout(CONSUME_TIMEOUT_S):
                while not consumer.assignment():
                    await consumer.getmany(timeout_ms=200)
            return consumer.assignment()
        finally:
            await consumer.stop()

    assert {tp.partition for tp in asyncio.run(join())} == set(range(PARTITIONS))


@pytest.fixture
def taken_port():
    """A loopback port that a listening socket holds for the test."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def test_a_taken_port_fails_with_the_cause_from_kafkas_log(taken_port):
    cause = r"(?s)exited during startup; first errors:.*Address already in use"
    with pytest.raises(ApacheKafkaStartError, match=cause):
        ApacheKafka(port=taken_port).start()


@pytest.mark.broker
def test_a_lost_port_race_is_retried_and_stop_leaves_nothing_behind(taken_port, monkeypatch):
    # Given the first "free" port the launcher picks is taken by the time Kafka binds it
    free_ports = iter([taken_port])
    monkeypatch.setattr(apache_kafka, "find_free_port", lambda host: next(free_ports, None) or find_free_port(host))
    # When the broker starts, it retries on other ports and becomes ready
    broker = ApacheKafka().start()
    pid, work_dir = broker.pid, broker.work_dir
    assert broker.is_running and broker.port != taken_port
    assert "Address already in use" in broker.log_path.read_text()
    # Then stop ends the JVM and removes the temporary directory
    broker.stop()
    assert not psutil.pid_exists(pid)
    assert not work_dir.exists()
    assert not broker.is_running
    with pytest.raises(RuntimeError, match="not running"):
        broker.bootstrap_servers


def path_with_only(tmp_path: Path, *tools: str) -> str:
    """A PATH whose one directory holds links to the named tools only."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in tools:
        (bin_dir / tool).symlink_to(shutil.which(tool))
    return str(bin_dir)


def test_a_missing_mvn_is_named_when_the_jars_are_not_cached(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "empty-cache"))
    monkeypatch.setenv("PATH", path_with_only(tmp_path, "java"))
    with pytest.raises(MissingToolError, match=r"needs java and mvn on PATH; missing: mvn \("):
        ApacheKafka().start()


def test_a_missing_java_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", path_with_only(tmp_path, "mvn"))
    with pytest.raises(MissingToolError, match=r"needs java on PATH; missing: java \("):
        ApacheKafka().start()


def test_a_version_maven_cannot_resolve_quotes_mavens_error(tmp_path, monkeypatch):
    pom = tmp_path / "pom.xml"
    pom.write_text(POM_PATH.read_text().replace("<kafka.version>", "<kafka.version>0.0.0-no-such-"))
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "cache"))
    with pytest.raises(JarResolutionError, match=r"(?s)could not resolve.*0\.0\.0-no-such-"):
        ApacheKafka(pom=pom).start()
    assert not list((tmp_path / "cache").glob("*/lib")), "a failed resolution leaves no cache"
