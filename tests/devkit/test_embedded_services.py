"""Tests of the embedded PostgreSQL server, the embedded broker and their fixtures.

Run: python -m pytest -q -p tests.support.services tests/devkit/test_embedded_services.py
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import tempfile
import time
import uuid
from pathlib import Path

import psutil
import pytest
from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import Aggregate, event
from eventsourcing.postgres import PostgresApplicationRecorder
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

from ledger.postgres.urls import eventsourcing_env_from_url
from streams.devkit.embedded_broker import BrokerStartError, EmbeddedBroker
from streams.devkit.embedded_postgres import EmbeddedPostgres, PostgresStartError
from tests.support.services import unique_database_name

PARTITIONS = 8
CONSUME_TIMEOUT_S = 10.0
SEND_TIMEOUT_S = 10.0
SHORT_GRACE_S = 0.5


class Card(Aggregate):
    """A tiny aggregate with one custom event, to see real events stored."""

    @event("Registered")
    def __init__(self, holder: str) -> None:
        self.holder = holder
        self.points = 0

    @event("PointsEarned")
    def earn(self, points: int) -> None:
        self.points += points


def process_tree(pid: int) -> list[psutil.Process]:
    parent = psutil.Process(pid)
    return [parent, *parent.children(recursive=True)]


def alive(processes: list[psutil.Process]) -> list[psutil.Process]:
    """Processes still running; psutil compares start times, so reused pids don't count."""
    return [p for p in processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


# -- PostgreSQL ------------------------------------------------------------


def test_postgres_server_answers_on_its_private_socket(embedded_pg: EmbeddedPostgres) -> None:
    settings = embedded_pg.settings
    assert embedded_pg.is_running
    assert settings.host.startswith("/") and Path(settings.host).is_dir()
    assert (Path(settings.host) / f".s.PGSQL.{settings.port}").is_socket()
    with settings.connect() as conn:
        version = conn.execute("SHOW server_version_num").fetchone()[0]
        listen = conn.execute("SHOW listen_addresses").fetchone()[0]
    assert int(version) // 10000 == 18
    assert listen == ""


def test_eventsourcing_round_trip_through_postgres(pg_env: dict[str, str]) -> None:
    writer = Application(env=pg_env)
    try:
        assert isinstance(writer.recorder, PostgresApplicationRecorder)
        card = Card("ada")
        card.earn(120)
        writer.save(card)
    finally:
        writer.close()

    reader = Application(env=pg_env)  # a new pool: the events come from the database
    try:
        copy = reader.repository.get(card.id)
        notifications = reader.notification_log.select(start=1, limit=10)
    finally:
        reader.close()
    assert (copy.holder, copy.points, copy.version) == ("ada", 120, 2)
    assert [n.topic.split(":")[-1] for n in notifications] == [
        "Card.Registered",
        "Card.PointsEarned",
    ]


def test_env_from_url_reaches_the_same_database(embedded_pg: EmbeddedPostgres, pg_env: dict[str, str]) -> None:
    settings = embedded_pg.settings_for(pg_env["POSTGRES_DBNAME"])
    env = eventsourcing_env_from_url(settings.url)
    assert env == pg_env
    app = Application(env=env)
    try:
        app.save(Card("grace"))
        assert len(app.notification_log.select(start=1, limit=10)) == 1
    finally:
        app.close()


def test_databases_are_isolated(embedded_pg: EmbeddedPostgres) -> None:
    names = [unique_database_name("isolated") for _ in range(2)]
    first, second = (Application(env=embedded_pg.create_database(n).env) for n in names)
    try:
        card = Card("alan")
        first.save(card)
        with pytest.raises(AggregateNotFoundError):
            second.repository.get(card.id)
        assert second.notification_log.select(start=1, limit=10) == []
        assert first.repository.get(card.id).holder == "alan"
    finally:
        first.close()
        second.close()
        for name in names:
            embedded_pg.drop_database(name)
    with embedded_pg.settings.connect() as conn:
        rows = conn.execute("SELECT datname FROM pg_database WHERE datname = ANY(%s)", (names,))
        assert rows.fetchall() == []


def test_pg_env_databases_are_new_and_empty(embedded_pg: EmbeddedPostgres, pg_env: dict[str, str]) -> None:
    assert pg_env["POSTGRES_DBNAME"].startswith("t_test_pg_env_databases_are_new")
    with embedded_pg.settings_for(pg_env["POSTGRES_DBNAME"]).connect() as conn:
        tables = conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        ).fetchone()[0]
    assert tables == 0


def test_database_names_longer_than_postgres_allows_are_refused(embedded_pg: EmbeddedPostgres) -> None:
    with pytest.raises(ValueError):
        embedded_pg.create_database("x" * 64)


def test_postgres_stop_leaves_no_process_and_no_files() -> None:
    server = EmbeddedPostgres().start()
    base_dir = server.base_dir
    assert base_dir is not None
    idle_client = server.settings.connect()  # fast shutdown must not wait for it
    processes = process_tree(server.pid)
    assert len(processes) > 1  # postmaster and its auxiliary processes
    server.stop()
    idle_client.close()
    assert alive(processes) == []
    assert not base_dir.exists()
    assert not server.is_running
    server.stop()  # idempotent


def test_postgres_stop_kills_a_server_that_does_not_shut_down() -> None:
    server = EmbeddedPostgres(stop_timeout_s=SHORT_GRACE_S).start()
    processes = process_tree(server.pid)
    os.kill(server.pid, signal.SIGSTOP)  # the postmaster can no longer react to SIGINT
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < SHORT_GRACE_S + 3
    assert alive(processes) == []


def test_given_base_dir_is_kept_and_its_cluster_reused() -> None:
    parent = Path(tempfile.mkdtemp(prefix="pg-reuse-"))
    parent.chmod(0o755)  # under root the server runs as another user
    try:
        with EmbeddedPostgres(parent / "pg", dbname="ledger") as server:
            with server.settings.connect() as conn:
                conn.execute("CREATE TABLE marker (value text)")
                conn.execute("INSERT INTO marker VALUES ('kept')")
        assert (parent / "pg" / "data" / "PG_VERSION").exists()
        with EmbeddedPostgres(parent / "pg", dbname="ledger") as server:
            with server.settings.connect() as conn:
                assert conn.execute("SELECT value FROM marker").fetchone() == ("kept",)
    finally:
        shutil.rmtree(parent)


@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs the server as another user")
def test_unreachable_base_dir_fails_clearly(tmp_path: Path) -> None:
    tmp_path.chmod(0o700)  # the server's user cannot enter it
    server = EmbeddedPostgres(tmp_path / "pg")
    with pytest.raises(PostgresStartError, match="Permission denied(.|\n)*must be able to enter"):
        server.start()
    assert server.pid is None


# -- URL parsing -----------------------------------------------------------


def test_env_from_url_with_tcp_host_password_and_sslmode() -> None:
    env = eventsourcing_env_from_url(
        "postgresql://led%40ger:p%2Fss%3Aw+rd@db.example.com:6543/loyalty"
        "?sslmode=verify-full&sslrootcert=/etc/ca.pem&connect_timeout=7"
    )
    assert env == {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": "loyalty",
        "POSTGRES_HOST": "db.example.com",
        "POSTGRES_PORT": "6543",
        "POSTGRES_USER": "led@ger",
        "POSTGRES_PASSWORD": "p/ss:w+rd",
        "PGSSLMODE": "verify-full",
        "PGSSLROOTCERT": "/etc/ca.pem",
        "PGCONNECT_TIMEOUT": "7",
        "POSTGRES_CONNECT_TIMEOUT": "7",
    }


def test_env_from_url_with_socket_dir_and_defaults() -> None:
    env = eventsourcing_env_from_url("postgres://ledger@/?host=%2Frun%2Fpg%20sock")
    assert env["POSTGRES_HOST"] == "/run/pg sock"
    assert env["POSTGRES_PORT"] == "5432"
    assert env["POSTGRES_DBNAME"] == "ledger"  # libpq: defaults to the user name
    assert env["POSTGRES_PASSWORD"] == ""


def test_env_from_url_with_several_hosts() -> None:
    env = eventsourcing_env_from_url("postgresql+psycopg://u:p@a:5433,[::1],b:5435/db")
    assert env["POSTGRES_HOST"] == "a,::1,b"
    assert env["POSTGRES_PORT"] == "5433,5432,5435"


@pytest.mark.parametrize(
    "url",
    [
        "mysql://u:secret@h/db",
        "postgresql://u:secret@/db",  # no host: libpq's default depends on the build
        "postgresql://u:secret@h/db?sslmod=require",  # a typo must not pass silently
        "postgresql://u:secret@h:54x/db",
    ],
)
def test_env_from_url_rejects_what_it_cannot_honour(url: str) -> None:
    with pytest.raises(ValueError) as error:
        eventsourcing_env_from_url(url)
    assert "secret" not in str(error.value)


def test_libpq_parameters_from_url_take_effect_once_exported(
    embedded_pg: EmbeddedPostgres, pg_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = embedded_pg.settings_for(pg_env["POSTGRES_DBNAME"])
    app_name = f"ledger-{uuid.uuid4().hex[:8]}"
    env = eventsourcing_env_from_url(f"{settings.url}&application_name={app_name}")
    for key, value in env.items():
        monkeypatch.setenv(key, value)  # as production exports its settings
    app = Application(env=env)
    try:
        app.save(Card("barbara"))  # opens eventsourcing's pool
        with settings.connect(application_name="probe") as conn:
            names = conn.execute(
                "SELECT application_name FROM pg_stat_activity WHERE datname = %s",
                (settings.dbname,),
            ).fetchall()
    finally:
        app.close()
    assert (app_name,) in names


# -- Broker ----------------------------------------------------------------


def test_topic_with_8_partitions_round_trip(kafka_bootstrap: str) -> None:
    topic = f"ledger-test-{uuid.uuid4().hex[:8]}"
    with KafkaAdminClient(bootstrap_servers=kafka_bootstrap) as admin:
        admin.create_topics({topic: {"num_partitions": PARTITIONS, "replication_factor": 1}})
        admin.wait_for_topics([topic])
        partitions = admin.describe_topics([topic])[0]["partitions"]
    assert len(partitions) == PARTITIONS

    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    try:
        first = producer.send(topic, key=b"member-42", value=b"earned 10").get(SEND_TIMEOUT_S)
        second = producer.send(topic, key=b"member-42", value=b"earned 5").get(SEND_TIMEOUT_S)
    finally:
        producer.close()
    assert first.partition == second.partition  # same key, same partition
    assert second.offset == first.offset + 1

    records = consume(kafka_bootstrap, TopicPartition(topic, first.partition), first.offset, 2)
    assert [(r.key, r.value) for r in records] == [
        (b"member-42", b"earned 10"),
        (b"member-42", b"earned 5"),
    ]


def consume(bootstrap: str, partition: TopicPartition, offset: int, count: int) -> list:
    """Read ``count`` records by manual assignment: no group join to wait for."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    records: list = []
    try:
        consumer.assign([partition])
        consumer.seek(partition, offset)
        deadline = time.monotonic() + CONSUME_TIMEOUT_S
        while len(records) < count and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
    finally:
        consumer.close()
    return records[:count]


def test_broker_stop_leaves_no_process_and_no_files() -> None:
    broker = EmbeddedBroker().start()
    processes = process_tree(broker.pid)
    work_dir, port = broker.work_dir, broker.port
    assert work_dir is not None and (work_dir / "tansu.log").exists()
    broker.stop()
    assert alive(processes) == []
    assert not work_dir.exists()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    with pytest.raises(RuntimeError):
        broker.bootstrap_servers  # noqa: B018 - the property raises
    broker.stop()  # idempotent


def test_broker_stop_kills_after_grace_when_clients_stay_connected() -> None:
    broker = EmbeddedBroker(stop_grace_s=SHORT_GRACE_S).start()
    processes = process_tree(broker.pid)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers)
    try:
        producer.send("kept-open", b"x").get(SEND_TIMEOUT_S)  # tansu now drains ~5 s on SIGTERM
        started = time.monotonic()
        broker.stop()
        assert time.monotonic() - started < SHORT_GRACE_S + 2
    finally:
        producer.close(timeout=1)
    assert alive(processes) == []


def test_broker_on_a_taken_port_fails_without_leaving_a_process() -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        broker = EmbeddedBroker(port=port)
        with pytest.raises(BrokerStartError, match="Address in use"):
            broker.start()
    assert broker.pid is None and broker.work_dir is None


def test_broker_retries_on_a_fresh_port_when_it_loses_the_port_race(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from streams.devkit import embedded_broker

    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        ports = iter([taken, embedded_broker.find_free_port()])
        monkeypatch.setattr(embedded_broker, "find_free_port", lambda host: next(ports))
        with EmbeddedBroker() as broker:
            assert broker.port != taken
            assert broker.bootstrap_servers == f"127.0.0.1:{broker.port}"
            log_text = broker.log_path.read_text()
    assert "Address in use" in log_text
