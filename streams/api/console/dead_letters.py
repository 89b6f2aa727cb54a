"""Dead letters for the console: an index to list and filter them, and the record of re-drives.

Dead letters live in the event store as ``DeadLetter`` records (one fact
each, ``ledger/dead_letters.py``), published by the outbox to
``loyalty.dead-letter``. Filtering thousands of them by reason and time
from the log at every page would read the whole log, so the console keeps
its own index, ``console_dead_letters`` (one row per dead letter: id,
notification position, reason, time, the ``dead_letter.v1`` envelope),
caught up from the log (``FactLog.chunks``, dead-letter topic only) before
each dead-letters page; ``console_dead_letters_tracking`` holds the log
position it reached. It can be dropped at any time: the next page rebuilds
it from the log.

Every re-drive is a row of ``console_redrives``: who (the key id), when,
which dead letter, the SHA-256 of the payload before (the original bytes)
and after (what was produced, or refused), the event id and the result.
Blocking: called on the API's read threads.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from eventsourcing.utils import get_topic
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from ledger.dead_letters import DeadLetter, envelope_id
from ledger.log import FactLog

INDEX_CHUNK_NOTIFICATIONS_MAX = 5_000  # log ids read per query while catching the index up
INDEX_WINDOW_NOTIFICATIONS_MAX = 50_000  # log ids per index transaction
DEAD_LETTERS_SHOWN_MAX = 500  # rows of one dead-letters page
REDRIVES_SHOWN_MAX = 50

CREATE_TABLES = (
    """CREATE TABLE IF NOT EXISTS console_dead_letters (
        dead_letter_id uuid PRIMARY KEY,
        position bigint NOT NULL,
        reason_code text NOT NULL,
        dead_lettered_at timestamptz NOT NULL,
        envelope jsonb NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS console_dead_letters_by_time ON console_dead_letters (dead_lettered_at)",
    """CREATE TABLE IF NOT EXISTS console_dead_letters_tracking (
        singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
        position bigint NOT NULL)""",
    "INSERT INTO console_dead_letters_tracking (position) VALUES (0) ON CONFLICT DO NOTHING",
    """CREATE TABLE IF NOT EXISTS console_redrives (
        redrive_id bigserial PRIMARY KEY,
        dead_letter_id uuid NOT NULL,
        key_id text NOT NULL,
        redriven_at timestamptz NOT NULL DEFAULT now(),
        payload_sha256_before text,
        payload_sha256_after text NOT NULL,
        event_id text,
        result text NOT NULL,
        message text NOT NULL)""",
)

LIST_SQL = """
SELECT dead_letter_id, position, reason_code, dead_lettered_at, envelope FROM console_dead_letters
WHERE (%(reason)s::text IS NULL OR reason_code = %(reason)s)
  AND (%(since)s::timestamptz IS NULL OR dead_lettered_at >= %(since)s)
  AND (%(until)s::timestamptz IS NULL OR dead_lettered_at < %(until)s)
ORDER BY position DESC LIMIT %(limit)s"""


@dataclass(frozen=True)
class DeadLetterRow:
    dead_letter_id: UUID
    position: int
    reason_code: str
    dead_lettered_at: datetime
    envelope: dict

    @property
    def original(self) -> bytes | None:
        """The message's original bytes (None: a tombstone, or a line refused before Kafka)."""
        encoded = self.envelope.get("value_base64")
        return None if encoded is None else base64.b64decode(encoded)

    @property
    def editable_text(self) -> str:
        """The payload as text to edit: the original bytes decoded, else the preview."""
        original = self.original
        if original is None:
            return self.envelope.get("value_preview") or ""
        return original.decode("utf-8", errors="replace")


@dataclass(frozen=True)
class Redrive:
    dead_letter_id: UUID
    key_id: str
    payload_before: bytes | None
    payload_after: bytes
    event_id: str | None
    result: str  # an outcome fact's type, "accepted" (202), "refused" or "conflict"
    message: str


def payload_sha256(payload: bytes | None) -> str | None:
    return None if payload is None else hashlib.sha256(payload).hexdigest()


class DeadLetterIndex:
    """``console_dead_letters`` and ``console_redrives`` through ``pool``; the log through ``log``."""

    def __init__(self, pool: ConnectionPool, log: FactLog) -> None:
        self._pool = pool
        self._log = log
        self._topic = get_topic(DeadLetter.Recorded)

    def ensure_tables(self) -> None:
        with self._pool.connection() as connection:
            for statement in CREATE_TABLES:
                connection.execute(statement)

    def catch_up(self) -> int:
        """Index the dead letters committed since the last catch-up; the position reached."""
        stop = self._log.head()
        with self._pool.connection() as connection, connection.transaction():
            position = connection.execute("SELECT position FROM console_dead_letters_tracking "
                                          "FOR UPDATE").fetchone()[0]
            if stop <= position:
                return position
            chunks = self._log.chunks(position, stop, [self._topic],
                                      window_notifications_max=INDEX_WINDOW_NOTIFICATIONS_MAX,
                                      chunk_notifications_max=INDEX_CHUNK_NOTIFICATIONS_MAX)
            for chunk in chunks:
                rows = [_index_row(id_, fact.envelope) for id_, fact in zip(chunk.ids, chunk.facts)]
                if rows:
                    connection.cursor().executemany(
                        "INSERT INTO console_dead_letters (dead_letter_id, position, reason_code, "
                        "dead_lettered_at, envelope) VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                        rows)
            connection.execute("UPDATE console_dead_letters_tracking SET position = %s", (stop,))
        return stop

    def list(self, reason: str | None, since: datetime | None, until: datetime | None,
             limit: int = DEAD_LETTERS_SHOWN_MAX) -> list[DeadLetterRow]:
        with self._pool.connection() as connection:
            rows = connection.execute(LIST_SQL, {"reason": reason, "since": since, "until": until,
                                                 "limit": limit}).fetchall()
        return [DeadLetterRow(*row) for row in rows]

    def reasons(self) -> list[str]:
        with self._pool.connection() as connection:
            rows = connection.execute("SELECT DISTINCT reason_code FROM console_dead_letters "
                                      "ORDER BY reason_code").fetchall()
        return [row[0] for row in rows]

    def find(self, dead_letter_ids: list[UUID]) -> list[DeadLetterRow]:
        with self._pool.connection() as connection:
            rows = connection.execute(
                "SELECT dead_letter_id, position, reason_code, dead_lettered_at, envelope "
                "FROM console_dead_letters WHERE dead_letter_id = ANY(%s) ORDER BY position",
                (dead_letter_ids,)).fetchall()
        return [DeadLetterRow(*row) for row in rows]

    def count_since(self, since: datetime) -> int:
        with self._pool.connection() as connection:
            return connection.execute("SELECT count(*) FROM console_dead_letters "
                                      "WHERE dead_lettered_at >= %s", (since,)).fetchone()[0]

    def record(self, redrive: Redrive) -> None:
        with self._pool.connection() as connection:
            connection.execute(
                "INSERT INTO console_redrives (dead_letter_id, key_id, payload_sha256_before, "
                "payload_sha256_after, event_id, result, message) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (redrive.dead_letter_id, redrive.key_id, payload_sha256(redrive.payload_before),
                 payload_sha256(redrive.payload_after), redrive.event_id, redrive.result, redrive.message))

    def redrives(self, limit: int = REDRIVES_SHOWN_MAX) -> list[dict]:
        with self._pool.connection() as connection, connection.cursor() as cursor:
            cursor.execute(
                "SELECT redrive_id, dead_letter_id, key_id, redriven_at, payload_sha256_before, "
                "payload_sha256_after, event_id, result, message FROM console_redrives "
                "ORDER BY redrive_id DESC LIMIT %s", (limit,))
            names = [column.name for column in cursor.description]
            return [dict(zip(names, row)) for row in cursor.fetchall()]


def _index_row(position: int, envelope: dict) -> tuple:
    return (envelope_id(envelope), position, envelope["reason_code"], envelope["dead_lettered_at"],
            Jsonb(envelope))
