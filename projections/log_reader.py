"""The ledger's notification log, read in chunks with the next chunk read ahead.

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
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from eventsourcing.persistence import InterfaceError, OperationalError, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.utils import retry
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Composed, Identifier

READ_ATTEMPTS_MAX = 10  # as eventsourcing's select_notifications
READ_RETRY_WAIT_S = 0.2


@dataclass(frozen=True)
class Chunk:
    """Notifications ``(id, StoredEvent)`` after the previous chunk, up to position ``last``.

    ``last`` is the last notification's id, or the stop position when the log
    has no more notifications (of the topics) before it; ``ends_window``: the
    transaction this chunk belongs to ends with it.
    """

    notifications: list[tuple[int, StoredEvent]]
    last: int
    ends_window: bool


class LogReader:
    """Reads notifications of ``topics`` from the ledger's recorder, a chunk per query."""

    def __init__(self, recorder: PostgresApplicationRecorder, topics: Sequence[str]) -> None:
        self.recorder = recorder
        self.topics = list(topics)
        self.statement = _select_statement(recorder)

    @retry((InterfaceError, OperationalError), max_attempts=READ_ATTEMPTS_MAX,
           wait=READ_RETRY_WAIT_S)
    def read(self, after: int, stop: int, limit: int) -> list[tuple[int, StoredEvent]]:
        """At most ``limit`` notifications with ``after < id <= stop``, in id order."""
        with self.recorder.datastore.get_connection() as connection, \
                connection.cursor(row_factory=tuple_row, binary=True) as cursor:
            cursor.execute(self.statement, (after, stop, self.topics, limit), prepare=True)
            return [(id_, StoredEvent(originator_id, version, topic, state))
                    for id_, originator_id, version, topic, state in cursor.fetchall()]


def _select_statement(recorder: PostgresApplicationRecorder) -> Composed:
    return SQL(
        "SELECT notification_id, originator_id, originator_version, topic, state FROM {}.{} "
        "WHERE notification_id > %s AND notification_id <= %s AND topic = ANY(%s) "
        "ORDER BY notification_id LIMIT %s"
    ).format(Identifier(recorder.datastore.schema), Identifier(recorder.events_table_name))


def read_log(reader: LogReader, start: int, stop: int, *, window_notifications_max: int,
             chunk_notifications_max: int) -> Iterator[Chunk]:
    """The chunks after ``start`` up to ``stop``, the next one read while this one is used.

    Close the iterator (``contextlib.closing``) if you stop early: that waits
    for the read ahead, if any, to finish.
    """
    assert window_notifications_max > 0 and chunk_notifications_max > 0
    window = Window(window_notifications_max, chunk_notifications_max)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="log-read-ahead") as pool:
        position = start
        pending = pool.submit(reader.read, position, stop, window.next_limit())
        while position < stop:
            notifications = pending.result()
            chunk = window.chunk(notifications, stop)
            position = chunk.last
            if position < stop:
                pending = pool.submit(reader.read, position, stop, window.next_limit())
            yield chunk


class Window:
    """Cuts the log into windows of ``window_max`` notifications at most, read in chunks of
    ``chunk_max`` at most."""

    def __init__(self, window_max: int, chunk_max: int) -> None:
        self.window_max = window_max
        self.chunk_max = chunk_max
        self.used = 0  # notifications of the current window read so far
        self.limit = 0  # the limit of the read in flight

    def next_limit(self) -> int:
        self.limit = min(self.chunk_max, self.window_max - self.used)
        return self.limit

    def chunk(self, notifications: list[tuple[int, StoredEvent]], stop: int) -> Chunk:
        """The chunk a read of ``self.limit`` returned (fewer: the log ends before ``stop``)."""
        complete = len(notifications) == self.limit
        last = notifications[-1][0] if complete else stop
        self.used += len(notifications)
        ends_window = self.used == self.window_max or last >= stop
        if ends_window:
            self.used = 0
        return Chunk(notifications, last, ends_window)
