"""What every read model shares: its tracking recorder and its projection.

- ``ReadModelRecorder`` is eventsourcing's ``PostgresTrackingRecorder`` plus
  the read model's tables: ``create_table`` creates both, and a batch's rows
  and its tracking record commit in one transaction (``commit_batch``), so a
  crash at any point leaves rows and position consistent: the next run
  resumes after the last committed batch, never skipping or counting twice.
  A batch first locks the read model's position row (single-row tracking,
  created at 0), then reads rows and applies only facts past that position:
  two writers at once (a live runner and a catch-up) take turns and never
  count a fact twice.
- ``ReadModelProjection`` is eventsourcing's ``Projection``: the library's
  ``ProjectionRunner`` drives it one event at a time (``process_event``),
  our catch-up and replay drive it a batch at a time (``apply`` to a
  ``RowBatch``, then its ``write``).
  Handlers are methods named after the wire name of the fact they handle
  (``points_earned``); a fact without a handler is ignored, and the
  projection's ``topics`` (the facts it subscribes to) are derived from
  those names, so the database never even sends it the others.

Decisions: rows are keyed by ``member_id`` (every fact carries it); every
time in a row is the account clock (``fact.timestamp``), never the wall
clock; program numbers (tier thresholds, annual bonus) come from the same
program file as the ledger's (``LOYALTY_PROGRAM_FILE``), or from the class
attribute ``program`` (``with_program``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from functools import cached_property
from typing import Any, ClassVar

from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresTrackingRecorder
from eventsourcing.projection import Projection
from eventsourcing.utils import get_topic
from psycopg import Cursor
from psycopg.sql import SQL, Composed, Identifier

from ledger.application import LoyaltyLedger
from ledger.calendar import UTC, year_of
from ledger.domain import FACT_TYPES
from ledger.program import Program
from ledger.settings import LedgerSettings
from projections.rows import Row, RowBatch, Statement, Table

APPLICATION_NAME = LoyaltyLedger.name  # tracking records name the followed application
Handler = Callable[[Any, RowBatch], None]


class ReadModelRecorder(PostgresTrackingRecorder):
    """A tracking recorder that owns a read model's tables."""

    tables: ClassVar[tuple[Table, ...]] = ()

    def __init__(self, datastore: Any, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        schema = self.datastore.schema
        self.sql_create_statements.extend(table.create_statement(schema) for table in self.tables)

    @property
    def schema(self) -> str:
        return self.datastore.schema

    def position(self) -> int:
        """The last notification id of the ledger this read model has processed (0: none)."""
        return self.max_tracking_id(APPLICATION_NAME) or 0

    def create_table(self) -> None:
        """The library's tracking table, our tables, and this read model's position row."""
        super().create_table()
        with self.datastore.transaction(commit=True) as cursor:
            self._insert_position_row(cursor)

    def commit_batch(self, write: Callable[[Cursor], None], tracking: Tracking) -> None:
        """Run ``write`` and record ``tracking`` in one transaction (skip if already past)."""
        with self.datastore.transaction(commit=True) as cursor:
            if tracking.notification_id <= self.lock_position(cursor):
                return
            write(cursor)
            self.track(cursor, tracking)

    def lock_position(self, cursor: Cursor) -> int:
        """The position, locked until the caller's transaction ends.

        Every writer takes this lock before it reads any row, so two writers
        of one read model (a live runner and a catch-up, say) take turns, and
        each reads the rows as they stand at the position it sees.
        """
        row = cursor.execute(self.lock_position_statement, (APPLICATION_NAME,)).fetchone()
        assert row is not None, f"no position row in {self.tracking_table_name}"
        return row["notification_id"]

    @cached_property
    def lock_position_statement(self) -> Composed:
        """``lock_position``'s query (one parameter: the application's name)."""
        return SQL("SELECT notification_id FROM {}.{} WHERE application_name = %s "
                   "FOR UPDATE").format(Identifier(self.schema), Identifier(self.tracking_table_name))

    def track(self, cursor: Cursor, tracking: Tracking) -> None:
        """Record ``tracking`` in the caller's transaction (raises if not past the position)."""
        self._insert_tracking(cursor, tracking)

    def track_statement(self, tracking: Tracking) -> Statement:
        """``track`` as a statement for the caller to send with others: it returns the new
        position, or no row if ``tracking`` is not past the position (single-row tracking,
        whose position row always exists)."""
        position = tracking.notification_id
        return self._track_statement, (position, tracking.application_name, position)

    @cached_property
    def _track_statement(self) -> Composed:
        assert self.datastore.single_row_tracking, self.tracking_table_name
        return SQL("UPDATE {}.{} SET notification_id = %s WHERE application_name = %s "
                   "AND notification_id < %s RETURNING notification_id").format(
            Identifier(self.schema), Identifier(self.tracking_table_name))

    def reset(self) -> None:
        """Drop the tables and set the position to 0, then create empty tables: one transaction."""
        with self.datastore.transaction(commit=True) as cursor:
            self.lock_position(cursor)
            for table in self.tables:
                cursor.execute(table.drop_statement(self.schema))
            self._rewind_position(cursor)
            for table in self.tables:
                cursor.execute(table.create_statement(self.schema))

    def _rewind_position(self, cursor: Cursor) -> None:
        """Position 0, keeping the position row itself (single-row tracking).

        The row is updated, not deleted and re-inserted: a writer waiting for
        its lock (a live follower) then reads 0 and starts over, where a
        deleted row would leave it with no row at all.
        """
        if not self.datastore.single_row_tracking:
            cursor.execute(SQL("DELETE FROM {}.{} WHERE application_name = %s").format(
                Identifier(self.schema), Identifier(self.tracking_table_name)), (APPLICATION_NAME,))
            self._insert_position_row(cursor)
            return
        cursor.execute(SQL("UPDATE {}.{} SET notification_id = 0 WHERE application_name = %s").format(
            Identifier(self.schema), Identifier(self.tracking_table_name)), (APPLICATION_NAME,))

    def _insert_position_row(self, cursor: Cursor) -> None:
        """Position 0 until the first batch: there is always a row to lock."""
        cursor.execute(SQL("INSERT INTO {}.{} (application_name, notification_id) "
                           "VALUES (%s, 0) ON CONFLICT DO NOTHING").format(
            Identifier(self.schema), Identifier(self.tracking_table_name)), (APPLICATION_NAME,))

    def is_empty(self, cursor: Cursor) -> bool:
        """No rows in any of the read model's tables (what a rebuild from position 0 expects)."""
        return all(cursor.execute(table.is_empty_statement(self.schema)).fetchone()["empty"]
                   for table in self.tables)

    def rows(self, table: Table) -> list[Row]:
        """Every row of ``table`` in key order."""
        with self.datastore.transaction(commit=False) as cursor:
            return cursor.execute(table.select_all_statement(self.schema)).fetchall()

    def rows_of_members(self, table: Table, member_ids: Sequence[str]) -> list[Row]:
        with self.datastore.transaction(commit=False) as cursor:
            statement = table.select_members_statement(self.schema)
            return cursor.execute(statement, (list(member_ids),)).fetchall()


class ReadModelProjection(Projection[ReadModelRecorder]):
    """Handlers named after wire names; one transaction per batch with its tracking."""

    view_class: ClassVar[type[ReadModelRecorder]] = ReadModelRecorder
    program: ClassVar[Program | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.topics = tuple(get_topic(fact_class) for name, fact_class in FACT_TYPES.items()
                           if callable(getattr(cls, name, None)))

    # The recorded program of a version (``LoyaltyLedger.program_for``), bound by
    # ``catch_up``: a fact is projected with the program version it names.
    program_of: Callable[[int], Program] | None = None

    def rules_of(self, fact: Any) -> Program:
        """The program that decided ``fact`` (this projection's own for facts without a version)."""
        return self.rules_of_version(getattr(fact, "program_version", self.rules.version))

    def rules_of_version(self, version: int) -> Program:
        if version == self.rules.version or self.program_of is None:
            return self.rules
        return self.program_of(version)

    def __init__(self, view: ReadModelRecorder) -> None:
        super().__init__(view)
        self.rules = type(self).program or LedgerSettings.from_env().program()

    @classmethod
    def with_program(cls, program: Program) -> type["ReadModelProjection"]:
        """This projection bound to ``program`` (what ``ProjectionRunner`` needs: a class)."""
        return type(cls.__name__, (cls,), {"name": cls.name, "program": program})

    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        """eventsourcing's entry point (``ProjectionRunner``): a batch of one."""
        self.process_batch([domain_event], tracking)

    def process_batch(self, facts: Sequence[Any], tracking: Tracking) -> None:
        """Apply ``facts`` and record ``tracking`` in one transaction."""
        self.view.commit_batch(lambda cursor: self.write_rows(cursor, facts), tracking)

    def write_rows(self, cursor: Cursor, facts: Sequence[Any]) -> None:
        """Apply ``facts`` to the rows, inside the caller's transaction."""
        rows = self.row_batch()
        rows.cursor = cursor
        self.apply(facts, rows)
        rows.write()

    def row_batch(self, *, complete: bool = False) -> RowBatch:
        """A ``RowBatch`` over this read model's tables (``complete``: they are empty)."""
        return RowBatch(self.view.tables, self.view.schema, complete=complete)

    def apply(self, facts: Iterable[Any], rows: RowBatch) -> None:
        """Apply ``facts`` to ``rows`` in memory, reading first what they need (not written)."""
        self.handle(self.read_ahead(facts, rows), rows)

    def read_ahead(self, facts: Iterable[Any], rows: RowBatch) -> list[tuple[Any, Handler]]:
        """Read (or, with ``rows.queue``, queue) the rows ``facts`` need; the facts this
        projection handles, with their handlers, for ``handle``."""
        handlers = self.handlers()
        handled = [(fact, handler) for fact in facts if (handler := handlers.get(type(fact)))]
        if not rows.complete:
            rows.prefetch({fact.member_id for fact, _ in handled})
            facts_handled = [fact for fact, _ in handled]
            keys = (self.keys_to_read if rows.queue is None else self.keys_read_ahead)(facts_handled)
            for table, table_keys in keys.items():
                rows.prefetch_keys(table, table_keys)
        return handled

    @staticmethod
    def handle(handled: list[tuple[Any, Handler]], rows: RowBatch) -> None:
        for fact, handler in handled:
            handler(fact, rows)

    def handlers(self) -> dict[type, Handler]:
        """Each handled fact class and its handler (looked up now: tests may patch one)."""
        found = {fact_class: getattr(self, name, None) for name, fact_class in FACT_TYPES.items()}
        return {fact_class: handler for fact_class, handler in found.items() if callable(handler)}

    def keys_to_read(self, facts: Iterable[Any]) -> dict[Table, set[tuple]]:
        """Rows outside the members' prefetch that the batch will read, read in one query."""
        return {}

    def keys_read_ahead(self, facts: Sequence[Any]) -> dict[Table, set[tuple]]:
        """``keys_to_read`` when the reads are queued together (issue 21's fewer round trips):
        a projection may add rows it would otherwise read one by one on first use."""
        return self.keys_to_read(facts)


def utc_year(moment: datetime) -> int:
    """``ledger.calendar.year_of``, without its conversion for a moment already in UTC (every
    fact's clock is): a fifth of the tier and KPI handlers' time."""
    return moment.year if moment.tzinfo is UTC else year_of(moment)


def existing_row(rows: RowBatch, table: Table, key: tuple, fact: Any) -> Row:
    """The row a fact updates; its absence is a bug (``account_opened`` comes first)."""
    row = rows.get(table, key)
    assert row is not None, (table.name, key, type(fact).__name__)
    return row
