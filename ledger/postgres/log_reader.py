"""The ledger's notification log as the event store holds it: every query that reads it.

``LogReader`` is the only code that reads the event store's notification log
(``ledger.log.FactLog`` decodes what it returns): bounded id ranges for the
projections' catch-up (``read``, and ``read_log``, which reads the next chunk
ahead), the relay's next batch (``read_next``), and a few figures (facts per
topic, the newest facts of some topics, every account's version at a
position). On PostgreSQL with its own queries; on any other recorder (the
in-memory store the unit tests and reference runs use) through its
``select_notifications``.

``catch_up`` works through the log in windows (one transaction each, at most
``window_notifications_max`` notifications) made of chunks (at most
``chunk_notifications_max`` notifications: one query, decoded and applied
together). ``read_log`` yields those chunks in order; while the caller decodes
and projects one, a helper thread already reads the next, so the database's
half of a read (the index scan, sending the rows) overlaps the Python half of
the catch-up. At most one read is ahead.

A chunk is one prepared query returning plain tuples in binary format, each
made a ``StoredEvent`` for the ledger's mapper (which applies upcasters);
eventsourcing's ``select_notifications`` returns the same notifications, but
through a dict row and a ``Notification`` per fact, which cost as much again
as the database did to send them. Like ``select_notifications``, a read is
retried on a lost connection.

A chunk is a range of notification ids (``chunk_notifications_max`` ids at
most, so as many notifications at most), not ``LIMIT`` on an open range as
``select_notifications`` does: on a freshly written log, before autovacuum
has analysed it, PostgreSQL plans ``id > start ORDER BY id LIMIT n`` as a
bitmap scan of every later notification and a sort spilled to disk, and
that for every chunk (measured on 100,000 facts: 330 ms per query and 14 us
of PostgreSQL CPU per fact read, against 4 us with bounded ranges). The
relay's read stays eventsourcing's ``LIMIT`` read: it starts near the head,
where the later notifications are few.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from uuid import UUID

from eventsourcing.persistence import (ApplicationRecorder, InterfaceError, OperationalError,
                                      StoredEvent)
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.utils import retry
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Composed, Identifier

READ_ATTEMPTS_MAX = 10  # as eventsourcing's select_notifications
READ_RETRY_WAIT_S = 0.2

RANGE_SQL = ("SELECT notification_id, originator_id, originator_version, topic, state FROM {table} "
             "WHERE notification_id > %s AND notification_id <= %s{topics}{shard} "
             "ORDER BY notification_id")
# A shard's facts: the last byte of the originator id (an account's uuid5: uniform) modulo the
# shard count; ``Shard.holds`` is the same test in Python.
SHARD_SQL = " AND get_byte(uuid_send(originator_id), 15) %% %s = %s"
COUNT_SQL = "SELECT topic, count(*) FROM {table} WHERE topic = ANY(%s) GROUP BY topic"
LATEST_SQL = ("SELECT notification_id, originator_id, originator_version, topic, state FROM {table} "
              "WHERE topic = ANY(%s) ORDER BY notification_id DESC LIMIT %s")
VERSIONS_SQL = ("SELECT originator_id, max(originator_version) FROM {table} "
                "WHERE notification_id <= %s AND topic = ANY(%s) GROUP BY originator_id")

Notifications = list[tuple[int, StoredEvent]]  # (notification id, stored fact), in id order
SHARDS_MAX = 256  # the shard of a fact is one byte of its originator id modulo the count


@dataclass(frozen=True)
class Shard:
    """The facts of one in ``count`` disjoint sets of accounts (``index`` from 0): a split
    replay's process reads only its shard of the log. Every fact of an account is in one
    shard (the test is on the originator id), so member-keyed rows never cross shards."""

    index: int
    count: int

    def __post_init__(self) -> None:
        assert 0 < self.count <= SHARDS_MAX and 0 <= self.index < self.count, self

    def holds(self, originator_id: UUID) -> bool:
        return originator_id.bytes[15] % self.count == self.index


@dataclass(frozen=True)
class Chunk:
    """Notifications ``(id, StoredEvent)`` after the previous chunk, up to position ``last``.

    ``last`` is the last notification's id, or the stop position when the log
    has no more notifications (of the topics) before it; ``ends_window``: the
    transaction this chunk belongs to ends with it.
    """

    notifications: Notifications
    last: int
    ends_window: bool


class LogReader:
    """Reads the ledger recorder's notification log; ``topics`` None (or empty, as in
    eventsourcing) reads every topic."""

    def __init__(self, recorder: ApplicationRecorder) -> None:
        self.recorder = recorder
        on_postgres = isinstance(recorder, PostgresApplicationRecorder)
        self.table = _table(recorder) if on_postgres else None

    def read(self, after: int, last: int, topics: Sequence[str] | None,
             shard: Shard | None = None) -> Notifications:
        """The notifications with ``after < id <= last`` (of ``shard`` only, if given), in id
        order."""
        if self.table is None:
            selected = self._selected(after, last - after, last, topics)
            return [n for n in selected if shard is None or shard.holds(n[1].originator_id)]
        return self._fetch(_range_sql(self.table, topics, shard),
                           (after, last, *_topics_param(topics), *_shard_param(shard)))

    def read_next(self, after: int, limit: int) -> Notifications:
        """At most ``limit`` notifications after ``after``, of every topic (the relay's batch)."""
        return self._selected(after, limit, None, None)

    def count(self, topics: Sequence[str]) -> dict[str, int]:
        """How many notifications of each of ``topics`` the log holds."""
        if self.table is None:
            head = self.recorder.max_notification_id() or 0
            found = Counter(stored.topic for _, stored in self._selected(0, head, head, topics))
        else:
            found = dict(self._rows(SQL(COUNT_SQL).format(table=self.table), (list(topics),)))
        return {topic: found.get(topic, 0) for topic in topics}

    def latest(self, topics: Sequence[str], limit: int) -> Notifications:
        """The ``limit`` newest notifications of ``topics``, newest first."""
        if self.table is None:
            head = self.recorder.max_notification_id() or 0
            return self._selected(0, head, head, topics)[::-1][:limit]
        return self._fetch(SQL(LATEST_SQL).format(table=self.table), (list(topics), limit))

    def versions_at(self, position: int, topics: Sequence[str]) -> dict[str, int]:
        """Each originator's last version among ``topics`` up to ``position`` (ids as str)."""
        if self.table is None:
            versions: dict[str, int] = {}
            for _, stored in self._selected(0, position, position, topics):
                versions[str(stored.originator_id)] = stored.originator_version
            return versions
        rows = self._rows(SQL(VERSIONS_SQL).format(table=self.table), (position, list(topics)))
        return {str(originator_id): version for originator_id, version in rows}

    def _selected(self, after: int, limit: int, stop: int | None,
                  topics: Sequence[str] | None) -> Notifications:
        if limit <= 0:
            return []
        notifications = self.recorder.select_notifications(
            start=after, limit=limit, stop=stop, topics=list(topics or ()),
            inclusive_of_start=False)
        return [(notification.id, notification) for notification in notifications]

    def _fetch(self, statement: Composed, params: tuple) -> Notifications:
        return [(id_, StoredEvent(originator_id, version, topic, state))
                for id_, originator_id, version, topic, state in self._rows(statement, params)]

    @retry((InterfaceError, OperationalError), max_attempts=READ_ATTEMPTS_MAX,
           wait=READ_RETRY_WAIT_S)
    def _rows(self, statement: Composed, params: tuple) -> list[tuple]:
        with self.recorder.datastore.get_connection() as connection, \
                connection.cursor(row_factory=tuple_row, binary=True) as cursor:
            cursor.execute(statement, params, prepare=True)
            return cursor.fetchall()


def _table(recorder: PostgresApplicationRecorder) -> Composed:
    return SQL("{}.{}").format(Identifier(recorder.datastore.schema),
                               Identifier(recorder.events_table_name))


def _range_sql(table: Composed, topics: Sequence[str] | None, shard: Shard | None) -> Composed:
    return SQL(RANGE_SQL).format(table=table,
                                 topics=SQL(" AND topic = ANY(%s)" if topics else ""),
                                 shard=SQL(SHARD_SQL if shard else ""))


def _shard_param(shard: Shard | None) -> tuple:
    return (shard.count, shard.index) if shard else ()


def _topics_param(topics: Sequence[str] | None) -> tuple:
    return (list(topics),) if topics else ()


def read_log(reader: LogReader, start: int, stop: int, topics: Sequence[str] | None, *,
             window_notifications_max: int, chunk_notifications_max: int,
             shard: Shard | None = None) -> Iterator[Chunk]:
    """The chunks after ``start`` up to ``stop`` (of ``shard`` only, if given), the next one
    read while this one is used. The first is read in the caller's thread, so a range of one
    chunk starts no thread (the live follower's cycles: previously a thread pool each).

    Close the iterator (``contextlib.closing``) if you stop early: that waits
    for the read ahead, if any, to finish.
    """
    assert window_notifications_max > 0 and chunk_notifications_max > 0
    window = Window(window_notifications_max, chunk_notifications_max)
    last = window.next_last(start, stop)
    chunk = window.chunk(reader.read(start, last, topics, shard), last, stop)
    if chunk.last >= stop:  # one chunk (a live follower's usual cycle): no helper thread
        yield chunk
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="log-read-ahead") as pool:
        while chunk.last < stop:
            last = window.next_last(chunk.last, stop)
            pending = pool.submit(reader.read, chunk.last, last, topics, shard)
            yield chunk
            chunk = window.chunk(pending.result(), last, stop)
        yield chunk


class Window:
    """Cuts the log into windows of ``window_max`` notifications at most, read in chunks of
    ``chunk_max`` ids at most."""

    def __init__(self, window_max: int, chunk_max: int) -> None:
        self.window_max = window_max
        self.chunk_max = chunk_max
        self.used = 0  # notifications of the current window read so far

    def next_last(self, after: int, stop: int) -> int:
        """The end of the next chunk's range of ids."""
        return min(stop, after + min(self.chunk_max, self.window_max - self.used))

    def chunk(self, notifications: Notifications, last: int, stop: int) -> Chunk:
        """The chunk read up to ``last``; it ends its window when that is full or at ``stop``."""
        self.used += len(notifications)
        ends_window = self.used == self.window_max or last >= stop
        if ends_window:
            self.used = 0
        return Chunk(notifications, last, ends_window)
