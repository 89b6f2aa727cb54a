"""The ``loyalty`` commands that set up and feed the pipeline."""

from __future__ import annotations

import json
import uuid

import psycopg
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

from streams.cli import main
from tests.support import builders as b


def test_setup_creates_topics_and_tables_and_is_idempotent(kafka_bootstrap, embedded_pg, capsys,
                                                           monkeypatch):
    suffix = uuid.uuid4().hex[:8]
    database = embedded_pg.create_database(f"setup_{suffix}")
    monkeypatch.setenv("LOYALTY_EVENTS_TOPIC", f"events-{suffix}")
    monkeypatch.setenv("LOYALTY_PARTITIONS", "3")
    args = ["setup", "--bootstrap-servers", kafka_bootstrap, "--database-url", database.url]
    assert main(args) == 0
    assert f"events-{suffix}" in capsys.readouterr().out
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    assert f"events-{suffix}" in admin.list_topics()
    admin.close()
    with psycopg.connect(database.url) as connection:
        tables = {row[0] for row in connection.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert {"loyalty_events", "loyalty_snapshots", "loyalty_tracking"} <= tables
    assert main(args) == 0
    assert "none missing" in capsys.readouterr().out


def test_setup_without_a_database_says_what_is_missing(capsys, monkeypatch):
    monkeypatch.delenv("LOYALTY_DATABASE_URL", raising=False)
    assert main(["setup", "--no-topics"]) == 2
    assert "LOYALTY_DATABASE_URL" in capsys.readouterr().err


def test_produce_sends_each_line_keyed_by_member(kafka_bootstrap, tmp_path, capsys, monkeypatch):
    topic = f"events-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("LOYALTY_EVENTS_TOPIC", topic)
    monkeypatch.setenv("LOYALTY_PARTITIONS", "2")
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps(b.purchase("m1", "2025-01-01T10:00:00Z", 100)) + "\nnot json\n")
    assert main(["produce", str(path), "--bootstrap-servers", kafka_bootstrap]) == 0
    assert f"sent to {topic}" in capsys.readouterr().out
    consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap, consumer_timeout_ms=3000,
                             auto_offset_reset="earliest", enable_auto_commit=False)
    partitions = [TopicPartition(topic, p) for p in (0, 1)]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    received = {(m.key, m.value) for m in consumer}
    consumer.close()
    assert (b"m1", path.read_text().splitlines()[0].encode()) in received
    assert (None, b"not json") in received


def test_produce_dead_letters_a_line_too_large_for_kafka_by_file_and_line(kafka_bootstrap, tmp_path,
                                                                          capsys, monkeypatch):
    suffix = uuid.uuid4().hex[:8]
    monkeypatch.setenv("LOYALTY_EVENTS_TOPIC", f"events-{suffix}")
    monkeypatch.setenv("LOYALTY_DEAD_LETTER_TOPIC", f"dead-{suffix}")
    path = tmp_path / "in.jsonl"
    huge = '{"member_id": "m1", "padding": "' + "x" * (5 * 1024 * 1024) + '"}'
    path.write_text("\n".join(["not json", huge, json.dumps(b.birthday("m1", "2025-01-01T10:00:00Z"))]))
    assert main(["produce", str(path), "--bootstrap-servers", kafka_bootstrap]) == 0
    assert "line 2: 5242" in capsys.readouterr().out
    consumer = KafkaConsumer(f"dead-{suffix}", bootstrap_servers=kafka_bootstrap, consumer_timeout_ms=3000,
                             auto_offset_reset="earliest", enable_auto_commit=False)
    [letter] = [json.loads(message.value) for message in consumer]
    consumer.close()
    assert (letter["reason_code"], letter["source_file"], letter["source_line"]) == ("too_large", str(path), 2)
    assert letter["source_offset"] is None and letter["value_preview"].startswith('{"member_id": "m1"')
