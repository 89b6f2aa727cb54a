"""Which Kafka topic the ledger's tracking rows belong to.

A tracking row says "``loyalty.events:3`` is applied up to offset 41 234".
If the topic is deleted and created again (a restarted in-memory broker, an
operator's mistake) its offsets restart at 0, and every new message at or
below the tracked offsets would be skipped as already applied. So the ledger
records, next to its tracking rows, the identity of each topic it tracks
(Kafka's topic id) on first contact, in the table ``loyalty_topic_identities``
of the event store's database; the workers compare it with the broker's
before skipping anything (``streams/topic_identity.py``).

``accept_topic`` is the way out after a deliberate recreation: it records
the new identity and deletes the topic's tracking rows, so the new topic is
applied from its start. Events applied before stay applied and are
recognised by ``event_id`` if they come again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import psycopg
from psycopg import sql

CONNECT_TIMEOUT_S = 5
CREATE_LOCK_KEY = 0x6C6F79616C7479  # advisory lock: workers starting together create the table once
TRACKING_TABLE = "loyalty_tracking"  # eventsourcing's tracking table of the ``loyalty`` application

CREATE = """CREATE TABLE IF NOT EXISTS loyalty_topic_identities (
    topic text PRIMARY KEY,
    topic_id text NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now())"""


SELECT_TRACKED = sql.SQL("SELECT 1 FROM {} WHERE left(application_name, %s) = %s LIMIT 1").format(
    sql.Identifier(TRACKING_TABLE))
DELETE_TRACKED = sql.SQL("DELETE FROM {} WHERE left(application_name, %s) = %s").format(
    sql.Identifier(TRACKING_TABLE))


def _connect(database_url: str) -> psycopg.Connection:
    """A connection, the table created if missing (under an advisory lock: two sessions running
    ``CREATE TABLE IF NOT EXISTS`` at once can both try to create it, and one then fails)."""
    connection = psycopg.connect(database_url, connect_timeout=CONNECT_TIMEOUT_S, autocommit=True)
    with connection.transaction():
        connection.execute("SELECT pg_advisory_xact_lock(%s)", (CREATE_LOCK_KEY,))
        connection.execute(CREATE)
    return connection


def recorded_topic_ids(database_url: str, topics: Sequence[str]) -> dict[str, str]:
    """The identity recorded for each of ``topics`` that has one."""
    with _connect(database_url) as connection:
        rows = connection.execute("SELECT topic, topic_id FROM loyalty_topic_identities "
                                  "WHERE topic = ANY(%s)", (list(topics),)).fetchall()
    return dict(rows)


def record_first_contact(database_url: str, topic_ids: Mapping[str, str]) -> dict[str, str]:
    """Record identities not recorded yet; return what is recorded now (the first writer wins)."""
    with _connect(database_url) as connection:
        for topic, topic_id in topic_ids.items():
            connection.execute("INSERT INTO loyalty_topic_identities (topic, topic_id) VALUES (%s, %s) "
                               "ON CONFLICT (topic) DO NOTHING", (topic, topic_id))
    return recorded_topic_ids(database_url, list(topic_ids))


def tracked_topics(database_url: str, topics: Sequence[str]) -> list[str]:
    """Those of ``topics`` that have tracking rows (something of them was applied)."""
    with _connect(database_url) as connection:
        if connection.execute("SELECT to_regclass(%s)", (TRACKING_TABLE,)).fetchone()[0] is None:
            return []
        return [topic for topic in topics if connection.execute(
            SELECT_TRACKED, (len(topic) + 1, topic + ":")).fetchone()]


def accept_topic(database_url: str, topic: str, topic_id: str) -> int:
    """Track ``topic`` anew: record ``topic_id`` and delete its tracking rows (how many)."""
    with _connect(database_url) as connection, connection.transaction():
        connection.execute("INSERT INTO loyalty_topic_identities (topic, topic_id) VALUES (%s, %s) "
                           "ON CONFLICT (topic) DO UPDATE SET topic_id = excluded.topic_id, "
                           "recorded_at = now()", (topic, topic_id))
        if connection.execute("SELECT to_regclass(%s)", (TRACKING_TABLE,)).fetchone()[0] is None:
            return 0
        deleted = connection.execute(DELETE_TRACKED, (len(topic) + 1, topic + ":"))
        return deleted.rowcount
