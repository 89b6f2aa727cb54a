"""eventsourcing's PostgreSQL process recorder, without psycopg's pipeline mode
and with a faster insert.

``PostgresApplicationRecorder.insert_events`` sends the table lock, the
notification, the tracking upsert and one INSERT of every stored event in
psycopg's pipeline mode. With psycopg 3.3.9 (C and Python implementations
alike) and PostgreSQL 18, a pipelined query whose parameters exceed about
1 MB never completes: the server waits in ``ClientRead`` for the rest of the
message while the client waits in ``Pipeline.sync``. A partition batch of a
few thousand events reaches that size, and a writer that hangs forever is
the worst failure a ledger worker can have. This recorder runs the very same
statements in an ordinary transaction (the pipeline only saved a few round
trips per batch). Reproduction: ``tests/ledger/test_postgres_recorder.py``.

The insert itself is the library's (same table, columns, lock, notification
and ``RETURNING notification_id``) with one change: the rows travel as four
arrays of plain types (uuid, bigint, text, bytea) instead of one array of a
composite type, which psycopg adapts in Python per field; on a 1,000-event
batch that adaptation was a third of the commit's time. They are sent in
binary format (``%b``): in text format psycopg escapes every ``bytea``
element of the array with a regular expression, a tenth of the ledger
thread's time in a profile.

Two additions for batches that span Kafka partitions: ``insert_events``
takes tracking records beyond the library's one ``tracking`` (keyword
``MORE_TRACKING``), all in the same transaction, and ``max_tracking_ids``
reads many positions in one query (``tracked_positions`` every one recorded).
A batch touching budgeted campaigns passes its open, locked transaction
(``BUDGET_SESSION``, ``ledger/postgres/campaign_budgets.py``): the facts,
tracking rows and budget totals are written and committed on it (combined:
the totals in the lock message).
``MultiTrackingPOPORecorder`` does the same for the in-memory store the unit
tests use. Both also create, write and delete member keys in the same
transaction as the facts (``KEY_CHANGES``; ``ledger.postgres.member_keys``).

Round trips (``combine_statements``, ``LOYALTY_LEDGER_COMBINE_STATEMENTS``,
default on; off restores the previous design, one statement each): a
batch's position read is one statement on the pool's autocommit connection
(not BEGIN, SELECT, ROLLBACK); its save sends the lock timeout, the table
lock and the notification as one simple-protocol message (they have no
parameters), then its tracking rows (one upsert of two arrays, not one
statement per Kafka partition) and its facts as one statement (a
data-modifying ``WITH``; the facts are inserted only if every tracking row
moved forward, else ``IntegrityError`` as the library raises for a zombie's
batch). A batch over four partitions goes from 13 round trips to 5: the
read, BEGIN, lock, tracking and facts, COMMIT. Same rows; the tracking rows
are written under the table lock instead of before it.
"""

from __future__ import annotations

from typing import Any, Sequence

from eventsourcing.persistence import IntegrityError, StoredEvent, Tracking
from eventsourcing.popo import POPOProcessRecorder
from eventsourcing.postgres import PostgresProcessRecorder
from psycopg.sql import SQL, Composable, Identifier

from ledger.postgres import member_keys
from ledger.privacy import KEY_CHANGES, apply_key_changes
from ledger.postgres.campaign_budgets import BUDGET_SESSION, create_statement

TOPIC = "ledger.postgres.recorder:UnpipelinedProcessRecorder"
COMBINE_STATEMENTS_DEFAULT = True  # ``LedgerSettings.ledger_combine_statements`` sets it per ledger
MORE_TRACKING = "more_tracking"  # insert_events keyword: tracking records after ``tracking``
LIBRARY_MIGRATION_ROW = "__migration__"  # eventsourcing's marker in the tracking table


class UnpipelinedProcessRecorder(PostgresProcessRecorder):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sql_create_statements.extend(member_keys.create_statements(
            self.datastore.schema, self.events_table_name))
        self.sql_create_statements.append(create_statement(self.datastore.schema))
        insert_columns = SQL(
            "INSERT INTO {schema}.{table} (originator_id, originator_version, topic, state) "
            "SELECT * FROM unnest(%b::{id_type}[], %b::bigint[], %b::text[], %b::bytea[])"
        ).format(schema=Identifier(self.datastore.schema), table=Identifier(self.events_table_name),
                 id_type=Identifier(self.datastore.originator_id_type))
        self.insert_columns_statement = SQL("{} RETURNING notification_id").format(insert_columns)
        self.max_tracking_ids_statement = SQL(
            "SELECT application_name, MAX(notification_id) AS max FROM {schema}.{table} "
            "WHERE application_name = ANY(%s) GROUP BY application_name"
        ).format(schema=Identifier(self.datastore.schema), table=Identifier(self.tracking_table_name))
        self.combine_statements = COMBINE_STATEMENTS_DEFAULT
        self.insert_trackings_statement = self._trackings_statement()
        self.lock_and_notify_statement = SQL("; ").join(
            [*self.lock_table_statements, SQL("NOTIFY {0}").format(Identifier(self.channel_name))])
        # the facts only if every tracking row was written (the library's guard: a row that
        # does not move forward is a zombie's batch); no fact inserted is told as IntegrityError
        self.insert_with_trackings_statement = SQL(
            "WITH tracked AS ({trackings}) {insert} WHERE (SELECT count(*) FROM tracked) = %s "
            "RETURNING notification_id").format(trackings=self.insert_trackings_statement,
                                                insert=insert_columns)
        self.tracked_positions_statement = SQL(
            "SELECT application_name, MAX(notification_id) AS max FROM {schema}.{table} "
            "GROUP BY application_name"
        ).format(schema=Identifier(self.datastore.schema), table=Identifier(self.tracking_table_name))

    def _trackings_statement(self) -> SQL:
        """Many tracking rows in one statement: the library's upsert (single-row tracking)
        or its plain insert (the legacy multi-row table), from two arrays."""
        names = {"schema": Identifier(self.datastore.schema), "table": Identifier(self.tracking_table_name)}
        forward_only = SQL(" ON CONFLICT (application_name) DO UPDATE "
                           "SET notification_id = EXCLUDED.notification_id "
                           "WHERE {schema}.{table}.notification_id < EXCLUDED.notification_id").format(**names)
        return SQL("INSERT INTO {schema}.{table} (application_name, notification_id) "
                   "SELECT * FROM unnest(%s::text[], %s::bigint[]){forward_only} RETURNING application_name"
                   ).format(forward_only=forward_only if self.datastore.single_row_tracking else SQL(""),
                            **names)

    def max_tracking_ids(self, names: Sequence[str]) -> dict[str, int | None]:
        """The last position recorded under each of ``names`` (None: never), in one query."""
        rows = self._select(self.max_tracking_ids_statement, (list(names),))
        found = {row["application_name"]: row["max"] for row in rows}
        return {name: found.get(name) for name in names}

    def tracked_positions(self) -> dict[str, int]:
        """The last position recorded under every tracking name, in one query (not the
        library's own ``__migration__`` row)."""
        return {row["application_name"]: row["max"] for row in self._select(self.tracked_positions_statement)
                if row["application_name"] != LIBRARY_MIGRATION_ROW}

    def _select(self, statement: SQL, params: tuple = ()) -> list[Any]:
        """One read: a lone statement on the autocommit connection (combined), or in a
        transaction rolled back after it (the previous design: BEGIN and ROLLBACK too)."""
        if self.combine_statements:
            with self.datastore.get_connection() as conn, conn.cursor() as curs:
                return curs.execute(statement, params or None).fetchall()
        with self.datastore.transaction(commit=False) as curs:
            return curs.execute(statement, params or None).fetchall()

    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        book = kwargs.get(BUDGET_SESSION)
        if book is not None:  # the batch's transaction is open, its budgets locked
            ids = self._insert_all(book.session.cursor, stored_events, **kwargs)
            book.session.write(book.spent)  # nothing left when the lock message carried it
            book.session.commit()
            return ids
        with self.datastore.get_connection() as conn, conn.transaction(), conn.cursor() as curs:
            return self._insert_all(curs, stored_events, **kwargs)

    def _insert_all(self, curs: Any, stored_events: Sequence[StoredEvent],
                    **kwargs: Any) -> Sequence[int] | None:
        trackings = _trackings(kwargs)
        member_keys.write_changes(curs, self.datastore.schema, self.events_table_name,
                                  kwargs.get(KEY_CHANGES))
        if self.combine_statements and stored_events and _distinct(trackings):
            return self._insert_combined(curs, stored_events, trackings, kwargs)
        self._insert_trackings(curs, trackings)
        if not stored_events:
            return None
        self._lock_table(curs)
        self._notify_channel(curs)
        curs.execute(self.insert_columns_statement, _columns(stored_events))
        return self._fetch_ids_after_insert_events(curs, stored_events, **kwargs)

    def _insert_combined(self, curs: Any, stored_events: Sequence[StoredEvent],
                         trackings: list[Tracking], kwargs: dict[str, Any]) -> Sequence[int] | None:
        """The lock timeout, table lock and notification (no parameters: one simple-protocol
        message); the tracking rows and the facts in one statement."""
        curs.execute(self._lock_message(kwargs.get(BUDGET_SESSION)))
        if not trackings:
            curs.execute(self.insert_columns_statement, _columns(stored_events))
            return self._fetch_ids_after_insert_events(curs, stored_events, **kwargs)
        self._check_has_multi_row_tracking_table(curs)
        curs.execute(self.insert_with_trackings_statement,
                     (*_tracking_columns(trackings), *_columns(stored_events), len(trackings)))
        ids = [row["notification_id"] for row in curs.fetchall()]
        if len(ids) != len(stored_events):
            raise IntegrityError(_not_recorded(trackings))
        return ids

    def _lock_message(self, book: Any) -> Composable:
        """The lock timeout, table lock and notification; with a budgeted batch's spending
        (``BudgetSession.spending_statement``) after them, in the same message."""
        spending = book.session.spending_statement(book.spent) if book is not None else None
        if spending is None:
            return self.lock_and_notify_statement
        return SQL("; ").join([self.lock_and_notify_statement, spending])

    def _insert_trackings(self, curs: Any, trackings: list[Tracking]) -> None:
        """Tracking records alone: one statement (combined) or the library's, one each."""
        if not self.combine_statements or len(trackings) < 2 or not _distinct(trackings):
            for tracking in trackings:
                self._insert_tracking(curs, tracking)
            return
        self._check_has_multi_row_tracking_table(curs)
        written = curs.execute(self.insert_trackings_statement, _tracking_columns(trackings)).fetchall()
        if len(written) != len(trackings):
            raise IntegrityError(_not_recorded(trackings))


def _trackings(kwargs: dict[str, Any]) -> list[Tracking]:
    """A save's tracking records: ``tracking`` and ``MORE_TRACKING``."""
    first = kwargs.get("tracking")
    return ([first] if first is not None else []) + list(kwargs.get(MORE_TRACKING, ()))


def _distinct(trackings: list[Tracking]) -> bool:
    """No name twice (one upsert cannot update a row twice; a batch has one per partition)."""
    return len({tracking.application_name for tracking in trackings}) == len(trackings)


def _not_recorded(trackings: list[Tracking]) -> str:
    """The library's message when a tracking row did not move forward (a zombie's batch)."""
    return "Failed to record tracking for " + ", ".join(
        f"{tracking.application_name} {tracking.notification_id}" for tracking in trackings)


def _tracking_columns(trackings: list[Tracking]) -> tuple[list, list]:
    return ([tracking.application_name for tracking in trackings],
            [tracking.notification_id for tracking in trackings])


def _columns(stored_events: Sequence[StoredEvent]) -> tuple[list, list, list, list]:
    return ([event.originator_id for event in stored_events],
            [event.originator_version for event in stored_events],
            [event.topic for event in stored_events],
            [event.state for event in stored_events])


class MultiTrackingPOPORecorder(POPOProcessRecorder):
    """The in-memory process recorder, also taking ``MORE_TRACKING`` records atomically,
    and keeping the member key table (``KEY_CHANGES``, ``ledger.privacy``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.member_keys: dict[str, bytes] = {}
        self.dead_letter_keys: dict = {}  # date -> key

    def _assert_uniqueness(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> None:
        super()._assert_uniqueness(stored_events, **kwargs)
        for tracking in kwargs.get(MORE_TRACKING, ()):
            self._assert_tracking_uniqueness(tracking)

    def _update_table(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        notification_ids = super()._update_table(stored_events, **kwargs)
        for tracking in kwargs.get(MORE_TRACKING, ()):
            self._insert_tracking(tracking)
        apply_key_changes(self.member_keys, kwargs.get(KEY_CHANGES))
        return notification_ids

    def max_tracking_ids(self, names: Sequence[str]) -> dict[str, int | None]:
        return {name: self.max_tracking_id(name) for name in names}

    def tracked_positions(self) -> dict[str, int]:
        with self._database_lock:
            return {name: position for name, position in self._max_tracking_ids.items()
                    if position is not None}


def more_tracking(trackings: Sequence[Tracking]) -> dict[str, Any]:
    """``insert_events`` keywords for the tracking records after the first."""
    return {MORE_TRACKING: list(trackings[1:])} if len(trackings) > 1 else {}


def bulk_stored_events(recorder: PostgresProcessRecorder, snapshots_table: str | None,
                       originator_ids: Sequence[Any]) -> tuple[dict, dict]:
    """Latest snapshot and the later stored events of many accounts, in two queries.

    Returns ``({id: snapshot StoredEvent}, {id: [StoredEvent, ...]})``; an id in
    neither has no stored events. Used to load a batch's uncached accounts at
    once instead of two queries per account.
    """
    schema = Identifier(recorder.datastore.schema)
    with recorder.datastore.transaction(commit=False) as curs:
        snapshots = _latest_snapshots(curs, schema, snapshots_table, originator_ids)
        after = [snapshots[i].originator_version if i in snapshots else 0 for i in originator_ids]
        curs.execute(SQL(
            "SELECT e.originator_id, e.originator_version, e.topic, e.state "
            "FROM {schema}.{table} e JOIN unnest(%s::{id_type}[], %s::bigint[]) AS s(id, after) "
            "ON e.originator_id = s.id AND e.originator_version > s.after "
            "ORDER BY e.originator_id, e.originator_version"
        ).format(schema=schema, table=Identifier(recorder.events_table_name),
                 id_type=Identifier(recorder.datastore.originator_id_type)),
            (list(originator_ids), after))
        events: dict = {}
        for row in curs.fetchall():
            events.setdefault(row["originator_id"], []).append(_stored(row))
    return snapshots, events


def _latest_snapshots(curs: Any, schema: Identifier, table: str | None, ids: Sequence[Any]) -> dict:
    if table is None:
        return {}
    curs.execute(SQL(
        "SELECT DISTINCT ON (originator_id) originator_id, originator_version, topic, state "
        "FROM {schema}.{table} WHERE originator_id = ANY(%s) "
        "ORDER BY originator_id, originator_version DESC"
    ).format(schema=schema, table=Identifier(table)), (list(ids),))
    return {row["originator_id"]: _stored(row) for row in curs.fetchall()}


def _stored(row: Any) -> StoredEvent:
    return StoredEvent(row["originator_id"], row["originator_version"], row["topic"],
                       bytes(row["state"]))
