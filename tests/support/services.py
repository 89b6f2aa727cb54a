"""pytest fixtures for the embedded PostgreSQL server and Kafka-compatible broker.

Load them from ``tests/conftest.py`` with ``from tests.support.services import *``
or on the command line with ``-p tests.support.services``.

- ``embedded_pg`` (session): a started :class:`EmbeddedPostgres`.
- ``test_broker`` (session): the lane's started broker. ``LOYALTY_TEST_BROKER``
  picks the lane: ``embedded`` (the default: tansu, memory only) or ``kafka``
  (Apache Kafka, one KRaft node, ``streams/devkit/apache_kafka.py``).
- ``kafka_bootstrap`` (session): ``host:port`` of that broker.
- ``lane_broker_env`` (session): for tests of a product command that starts
  its own embedded broker when none is configured (``loyalty process``,
  ``demo``): a function of a label giving the ``LOYALTY_*`` variables to run
  it with (none in the embedded lane; in the kafka lane, the session broker
  and topics and a consumer group of the label's own).
- ``lane_settings()`` / ``lane_env()``: what the lane's broker allows beyond
  the defaults (Apache Kafka: the relay's idempotent producer).
- ``pg_env`` (function): eventsourcing env for a fresh database of its own on
  the session server, dropped after the test. Close your applications
  (``app.close()``) before the test ends; the drop disconnects leftovers.

Both servers start lazily, on first use, so a test run that needs neither
pays nothing.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Iterator

import pytest

from streams.devkit.apache_kafka import ApacheKafka
from streams.devkit.embedded_postgres import EmbeddedPostgres
from streams.devkit.embedded_broker import EmbeddedBroker
from streams.settings import ENV_PREFIX

__all__ = ["embedded_pg", "kafka_bootstrap", "lane_broker_env", "pg_env", "test_broker"]

TEST_BROKER_ENV = "LOYALTY_TEST_BROKER"
EMBEDDED_LANE = "embedded"
KAFKA_LANE = "kafka"
LANES = (EMBEDDED_LANE, KAFKA_LANE)

# The broker keeps topics in memory only, so a graceful exit saves nothing;
# do not let clients that tests left open make tansu's ~5 s drain our wait.
BROKER_STOP_GRACE_S = 2.0
DB_NAME_SLUG_CHARS = 40  # + "t_" + "_" + 12 hex chars stays within 63 bytes


@pytest.fixture(scope="session")
def embedded_pg() -> Iterator[EmbeddedPostgres]:
    """A PostgreSQL 18 server on a private unix socket, for the whole session."""
    with EmbeddedPostgres() as server:
        yield server


def broker_lane() -> str:
    """The lane this session runs in: ``$LOYALTY_TEST_BROKER``, ``embedded`` by default."""
    lane = os.environ.get(TEST_BROKER_ENV) or EMBEDDED_LANE
    if lane not in LANES:
        raise pytest.UsageError(f"{TEST_BROKER_ENV}={lane!r}: expected one of {', '.join(LANES)}")
    return lane


def lane_broker() -> EmbeddedBroker | ApacheKafka:
    """A (not yet started) broker of this session's lane."""
    if broker_lane() == KAFKA_LANE:
        return ApacheKafka()
    return EmbeddedBroker(stop_grace_s=BROKER_STOP_GRACE_S)


@pytest.fixture(scope="session")
def test_broker() -> Iterator[EmbeddedBroker | ApacheKafka]:
    """The lane's broker, started once for the session and stopped at its end.

    Stopped by this fixture's teardown, which pytest also runs after a Ctrl-C;
    Apache Kafka's ``stop`` is registered with ``atexit`` as well, and its JVM
    runs in a session of its own, so the terminal's SIGINT reaches only Python.
    """
    with lane_broker() as broker:
        yield broker


@pytest.fixture(scope="session")
def kafka_bootstrap(test_broker: EmbeddedBroker | ApacheKafka) -> str:
    """Bootstrap servers string of the session's broker (tansu or Apache Kafka)."""
    return test_broker.bootstrap_servers


@pytest.fixture(scope="session")
def lane_broker_env(request: pytest.FixtureRequest) -> Callable[[str], dict[str, str]]:
    """``label -> LOYALTY_* variables`` for a command that would start its own broker.

    Embedded lane: no variables; the command starts its own tansu, as a user's
    first ``loyalty process`` or ``demo`` does. Kafka lane: the session's
    Apache Kafka, with topics and a consumer group named after ``label`` (a
    fresh embedded broker has no topics; the shared one must not mix runs).
    """
    if broker_lane() == EMBEDDED_LANE:
        return lambda label: {}
    bootstrap = request.getfixturevalue("kafka_bootstrap")
    return lambda label: own_topics_env(bootstrap, label)


def lane_settings() -> dict[str, bool]:
    """``Settings`` fields this lane's broker allows beyond the defaults: on Apache
    Kafka the relay's producer is idempotent, as the deploy files run it (tansu
    fails idempotent producers, so the default is off)."""
    return {"producer_idempotent": True} if broker_lane() == KAFKA_LANE else {}


def lane_env() -> dict[str, str]:
    """:func:`lane_settings` as ``LOYALTY_*`` variables, for child processes."""
    return {ENV_PREFIX + name.upper(): str(value).lower() for name, value in lane_settings().items()}


def own_topics(label: str) -> dict[str, str]:
    """``Settings`` fields: topics and a consumer group no other test uses (no clean-up needed)."""
    suffix = f"{label}-{uuid.uuid4().hex[:8]}"
    return dict(
        events_topic=f"events-{suffix}", ledger_topic=f"ledger-{suffix}",
        tier_changes_topic=f"tier-changes-{suffix}", dead_letter_topic=f"dead-letter-{suffix}",
        credits_topic=f"credits-{suffix}", consumer_group=f"loyalty-{suffix}",
    )


def own_topics_env(bootstrap: str, label: str) -> dict[str, str]:
    """``LOYALTY_*`` variables: ``bootstrap`` and :func:`own_topics`."""
    values = {"bootstrap_servers": bootstrap, **own_topics(label)}
    return {ENV_PREFIX + name.upper(): value for name, value in values.items()} | lane_env()


@pytest.fixture
def pg_env(embedded_pg: EmbeddedPostgres, request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """eventsourcing env (PERSISTENCE_MODULE, POSTGRES_*) for a new, empty database."""
    name = unique_database_name(request.node.name)
    settings = embedded_pg.create_database(name)
    yield settings.env
    embedded_pg.drop_database(name)


def unique_database_name(label: str) -> str:
    """A valid, unique database name that still shows which test made it."""
    slug = re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_")[:DB_NAME_SLUG_CHARS]
    return f"t_{slug}_{uuid.uuid4().hex[:12]}"
