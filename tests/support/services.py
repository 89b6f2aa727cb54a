"""pytest fixtures for the embedded PostgreSQL server and Kafka-compatible broker.

Load them from ``tests/conftest.py`` with ``from tests.support.services import *``
or on the command line with ``-p tests.support.services``.

- ``embedded_pg`` (session): a started :class:`EmbeddedPostgres`.
- ``kafka_bootstrap`` (session): ``host:port`` of a started embedded broker.
- ``pg_env`` (function): eventsourcing env for a fresh database of its own on
  the session server, dropped after the test. Close your applications
  (``app.close()``) before the test ends; the drop disconnects leftovers.

Both servers start lazily, on first use, so a test run that needs neither
pays nothing.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest

from streams.devkit.embedded_postgres import EmbeddedPostgres
from streams.devkit.embedded_broker import EmbeddedBroker

__all__ = ["embedded_pg", "kafka_bootstrap", "pg_env"]

# The broker keeps topics in memory only, so a graceful exit saves nothing;
# do not let clients that tests left open make tansu's ~5 s drain our wait.
BROKER_STOP_GRACE_S = 2.0
DB_NAME_SLUG_CHARS = 40  # + "t_" + "_" + 12 hex chars stays within 63 bytes


@pytest.fixture(scope="session")
def embedded_pg() -> Iterator[EmbeddedPostgres]:
    """A PostgreSQL 18 server on a private unix socket, for the whole session."""
    with EmbeddedPostgres() as server:
        yield server


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap servers string of a tansu broker (memory storage) for the session."""
    with EmbeddedBroker(stop_grace_s=BROKER_STOP_GRACE_S) as broker:
        yield broker.bootstrap_servers


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
