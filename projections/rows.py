"""Read-model tables and the rows a read model reads and writes, one transaction at a time.

A ``Table`` names its columns and primary key once; every statement is built
from those names with ``psycopg.sql`` identifiers, and every value (member
ids above all) travels as a query parameter or COPY data, never inside the
SQL text.

``RowBatch`` is how a projection writes, in one of two modes:

- per transaction (``complete=False``, live catch-up of a read model that
  has rows): the rows a batch needs are read once (all rows of the batch's
  members for member-scoped tables, one query per table; other rows by key on
  first use), handlers change them in memory, and ``write`` stores every
  changed row with one upsert per table (arrays through ``unnest``). A batch
  of a thousand facts costs a handful of round trips, a batch of one (a live
  event) three or four. Each transaction gets a new batch.
- complete (``complete=True``, a read model rebuilt from position 0): the
  tables were empty when the batch began, so the batch holds every row there
  is and never reads one; it keeps its rows from one transaction to the next
  (each written at the commit), so it knows which changed rows are stored:
  ``write`` deletes those, then sends every changed row with one binary
  ``COPY`` per table (no upsert, no ``ON CONFLICT``).

Fewer round trips (``read_models_combine_statements``, issue 21): with a
``ReadQueue`` as its ``queue``, a batch's prefetches are queued instead of
run, so one queue sends the reads of every read model of a transaction
together (psycopg's pipeline mode: one round trip), and
``write_statements`` hands the upserts and deletes to the caller, which
sends them with the other read models' in one statement
(``projections.combined``). The statements and their rows are the same
either way.

Array parameters travel in binary format (``%b``): psycopg dumps a Python
list as a text array at about 1 µs per element (8 µs per timestamp) against
0.3 to 0.4 µs in binary, and a profile of the live follower at 1,000 events/s
found the text dumping at a quarter of its main thread's time. Same values,
same rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache, cached_property
from operator import itemgetter
from typing import Any

from psycopg import Cursor
from psycopg.sql import SQL, Composed, Identifier

Key = tuple[Any, ...]
Row = dict[str, Any]
UNKNOWN: Any = object()  # not in memory (None: known to have no row)
Statement = tuple[Composed, Sequence[Any]]  # a statement and its parameters
# psycopg 3.3.9's pipeline mode hangs on a query whose parameters pass about 1 MB (README,
# "Honest limits"): reads whose parameters are larger together run one by one instead.
PIPELINE_PARAMS_BYTES_MAX = 262_144
RENDERED_STATEMENTS_MAX = 4_096  # statement texts ``rendered`` keeps; emptied when full
_rendered: dict[int, tuple[Composed, str]] = {}


@dataclass(frozen=True)
class Table:
    """One read-model table: ``columns`` (name, SQL type) with the key columns first."""

    name: str
    columns: tuple[tuple[str, str], ...]
    key: tuple[str, ...]
    member_scoped: bool = True  # key starts with member_id: prefetch a batch's members

    @cached_property
    def column_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.columns)

    @cached_property
    def key_of(self) -> Callable[[Row], Key]:
        """``key_of(row)``: the row's key as a tuple."""
        if len(self.key) == 1:
            only = self.key[0]
            return lambda row: (row[only],)
        return itemgetter(*self.key)

    @cached_property
    def values_of(self) -> Callable[[Row], tuple[Any, ...]]:
        """``values_of(row)``: the row's values in column order (a COPY record)."""
        return itemgetter(*self.column_names)

    @cached_property
    def copy_types(self) -> tuple[str, ...]:
        """The columns' SQL types without constraints (binary COPY needs them)."""
        return tuple(kind.split()[0] for _, kind in self.columns)

    def _qualified(self, schema: str) -> Composed:
        return SQL("{}.{}").format(Identifier(schema), Identifier(self.name))

    @cache
    def create_statement(self, schema: str) -> Composed:
        columns = [SQL("{} {}").format(Identifier(name), SQL(kind)) for name, kind in self.columns]
        key = SQL(", ").join(map(Identifier, self.key))
        return SQL("CREATE TABLE IF NOT EXISTS {} ({}, PRIMARY KEY ({}))").format(
            self._qualified(schema), SQL(", ").join(columns), key)

    @cache
    def drop_statement(self, schema: str) -> Composed:
        return SQL("DROP TABLE IF EXISTS {}").format(self._qualified(schema))

    @cache
    def is_empty_statement(self, schema: str) -> Composed:
        return SQL("SELECT NOT EXISTS (SELECT FROM {}) AS empty").format(self._qualified(schema))

    def select_statement(self, schema: str, where: Composed) -> Composed:
        columns = SQL(", ").join(map(Identifier, self.column_names))
        order = SQL(", ").join(map(Identifier, self.key))
        return SQL("SELECT {} FROM {} WHERE {} ORDER BY {}").format(
            columns, self._qualified(schema), where, order)

    @cache
    def select_all_statement(self, schema: str) -> Composed:
        return self.select_statement(schema, SQL("TRUE"))

    @cache
    def select_members_statement(self, schema: str) -> Composed:
        return self.select_statement(schema, SQL("member_id = ANY(%b)"))

    @cache
    def select_key_statement(self, schema: str) -> Composed:
        return self.select_statement(schema, self._key_condition())

    @cache
    def upsert_statement(self, schema: str) -> Composed:
        """Insert or update many rows at once: one array parameter per column."""
        names = self.column_names
        updates = [SQL("{0} = EXCLUDED.{0}").format(Identifier(name))
                   for name in names if name not in self.key]
        return SQL("INSERT INTO {} ({}) SELECT * FROM {} ON CONFLICT ({}) DO UPDATE SET {}").format(
            self._qualified(schema), SQL(", ").join(map(Identifier, names)),
            self._unnest(names), SQL(", ").join(map(Identifier, self.key)),
            SQL(", ").join(updates))

    @cache
    def copy_statement(self, schema: str) -> Composed:
        """Insert rows with binary COPY (every key must be new)."""
        return SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
            self._qualified(schema), SQL(", ").join(map(Identifier, self.column_names)))

    @cache
    def delete_statement(self, schema: str) -> Composed:
        """Delete many rows at once: one array parameter per key column."""
        return SQL("DELETE FROM {} WHERE ({}) IN (SELECT * FROM {})").format(
            self._qualified(schema), SQL(", ").join(map(Identifier, self.key)),
            self._unnest(self.key))

    @cache
    def select_keys_statement(self, schema: str) -> Composed:
        """Select many rows by key at once: one array parameter per key column."""
        where = SQL("({}) IN (SELECT * FROM {})").format(
            SQL(", ").join(map(Identifier, self.key)), self._unnest(self.key))
        return self.select_statement(schema, where)

    def _unnest(self, names: tuple[str, ...]) -> Composed:
        types = dict(self.columns)
        arrays = [SQL("%b::{}[]").format(SQL(types[name].split()[0])) for name in names]
        return SQL("unnest({})").format(SQL(", ").join(arrays))

    def _key_condition(self) -> Composed:
        return SQL(" AND ").join(SQL("{} = %s").format(Identifier(name)) for name in self.key)


@dataclass(eq=False)
class TableRows:
    """What a ``RowBatch`` holds of one table."""

    table: Table
    rows: dict[Key, Row | None] = field(default_factory=dict)  # None: known to have no row
    dirty: set[Key] = field(default_factory=set)  # changed in this transaction
    replaced: set[Key] = field(default_factory=set)  # complete: dirty and stored before


class RowBatch:
    """The rows of ``tables`` a read model reads and writes through (see the module doc)."""

    def __init__(self, tables: Iterable[Table], schema: str, *, complete: bool = False) -> None:
        self.cursor: Cursor | None = None  # the current transaction's, set by the caller
        self.queue: ReadQueue | None = None  # set: prefetches wait there (``ReadQueue.run``)
        self.schema = schema
        self.complete = complete
        self._tables = {table.name: TableRows(table) for table in tables}
        self._members: set[str] = set()

    def __len__(self) -> int:
        """Rows held in memory (complete: every row of the read model)."""
        return sum(len(held.rows) for held in self._tables.values())

    def prefetch(self, member_ids: set[str]) -> None:
        """Read every row of ``member_ids`` in the member-scoped tables (one query each)."""
        if self.complete or member_ids <= self._members:
            return
        wanted = sorted(member_ids - self._members)
        self._members.update(wanted)
        for held in self._tables.values():
            if held.table.member_scoped:
                self._fetch(held, held.table.select_members_statement(self.schema), (wanted,))

    def prefetch_keys(self, table: Table, keys: set[Key]) -> None:
        """Read the rows with ``keys`` (one query); keys without a row are remembered as absent."""
        held = self._tables[table.name]
        if self.complete:
            return
        wanted = sorted(keys - held.rows.keys(), key=repr)
        if not wanted:
            return
        held.rows.update(dict.fromkeys(wanted))
        self._fetch(held, table.select_keys_statement(self.schema), list(map(list, zip(*wanted))))

    def _fetch(self, held: TableRows, statement: Composed, params: Sequence[Any]) -> None:
        """Read rows into ``held`` now, or when the queue runs."""
        if self.queue is None:
            self._remember(held, self.cursor.execute(statement, params).fetchall())
        else:
            self.queue.add(statement, params, lambda fetched: self._remember(held, fetched))

    def get(self, table: Table, key: Key) -> Row | None:
        """The row with ``key`` (None if there is none), read at most once per transaction."""
        rows = self._tables[table.name].rows
        row = rows.get(key, UNKNOWN)
        if row is not UNKNOWN:
            return row
        if self.complete or self._is_prefetched(table, key):
            return None
        rows[key] = row = self._read(table, key)
        return row

    def put(self, table: Table, row: Row) -> None:
        held = self._tables[table.name]
        key = table.key_of(row)
        if key not in held.dirty:
            self._first_change(held, key)
        held.rows[key] = row

    def delete(self, table: Table, key: Key) -> None:
        held = self._tables[table.name]
        if key not in held.dirty:
            self._first_change(held, key)
        held.rows[key] = None

    def _first_change(self, held: TableRows, key: Key) -> None:
        """Mark ``key`` changed; complete, note whether it is stored (it is if its row was in
        memory before its first change in this transaction: each was written at the last)."""
        held.dirty.add(key)
        if self.complete and held.rows.get(key) is not None:
            held.replaced.add(key)

    def write(self) -> None:
        """Store every changed row in the current transaction."""
        if not self.complete:
            for statement, params in self.write_statements():
                self.cursor.execute(statement, params)
            return
        for held in self._tables.values():
            if held.dirty:
                self._copy(held)
                held.dirty.clear()

    def write_statements(self) -> list[Statement]:
        """The upserts and deletes that store every changed row (not complete), for the caller
        to run; the rows count as written."""
        assert not self.complete, "a complete batch writes with COPY"
        statements = []
        for held in self._tables.values():
            if held.dirty:
                statements.extend(self._upsert_statements(held))
                held.dirty.clear()
        return statements

    def _upsert_statements(self, held: TableRows) -> list[Statement]:
        """One upsert and one delete statement."""
        table, rows = held.table, held.rows
        ordered = sorted(held.dirty, key=repr)
        changed = [rows[key] for key in ordered if rows[key] is not None]
        gone = [key for key in ordered if rows[key] is None]
        statements = []
        if changed:
            columns = [[row[column] for row in changed] for column in table.column_names]
            statements.append((table.upsert_statement(self.schema), columns))
        if gone:
            statements.append((table.delete_statement(self.schema), list(map(list, zip(*gone)))))
        return statements

    def _copy(self, held: TableRows) -> None:
        """Delete the stored rows among the changed ones, then COPY every changed row."""
        table, rows = held.table, held.rows
        if held.replaced:
            self.cursor.execute(table.delete_statement(self.schema),
                                list(map(list, zip(*held.replaced))))
            held.replaced.clear()
        values_of = table.values_of
        with self.cursor.copy(table.copy_statement(self.schema)) as copy:
            copy.set_types(table.copy_types)
            for key in held.dirty:
                row = rows[key]
                if row is None:
                    del rows[key]
                else:
                    copy.write_row(values_of(row))

    def _remember(self, held: TableRows, fetched: Iterable[Row]) -> None:
        """Rows read from the database, unless this transaction already holds them."""
        rows, key_of = held.rows, held.table.key_of
        for row in fetched:
            key = key_of(row)
            if rows.get(key) is None and key not in held.dirty:
                rows[key] = row

    def _is_prefetched(self, table: Table, key: Key) -> bool:
        return table.member_scoped and key[0] in self._members

    def _read(self, table: Table, key: Key) -> Row | None:
        return self.cursor.execute(table.select_key_statement(self.schema), key).fetchone()


class ReadQueue:
    """Reads of several ``RowBatch``es of one transaction, sent together by ``run``."""

    def __init__(self, cursor: Cursor, params_bytes_max: int | None = None) -> None:
        self.cursor = cursor
        self.params_bytes_max = PIPELINE_PARAMS_BYTES_MAX if params_bytes_max is None else params_bytes_max
        self.queued: list[tuple[Composed, Sequence[Any], Callable[[list[Row]], None]]] = []

    def add(self, statement: Composed, params: Sequence[Any],
            on_rows: Callable[[list[Row]], None]) -> None:
        self.queued.append((statement, params, on_rows))

    def run(self) -> None:
        """Run the queued reads and hand each its rows: in one pipeline (one round trip) when
        there are several and their parameters are small enough, else one by one."""
        queued, self.queued = self.queued, []
        if len(queued) < 2 or _params_bytes(queued) > self.params_bytes_max:
            for statement, params, on_rows in queued:
                on_rows(self.cursor.execute(rendered(statement), params).fetchall())
            return
        connection = self.cursor.connection
        cursors = [connection.cursor() for _ in queued]
        with connection.pipeline():
            for cursor, (statement, params, _) in zip(cursors, queued):
                cursor.execute(rendered(statement), params)
        for cursor, (_, _, on_rows) in zip(cursors, queued):
            with cursor:
                on_rows(cursor.fetchall())


def _params_bytes(queued: list[tuple[Composed, Sequence[Any], Any]]) -> int:
    """About the size of the queued reads' parameters (arrays of keys: texts count their
    length, anything else 8 bytes)."""
    return sum(len(value) if isinstance(value, str) else 8
               for _, params, _ in queued for array in params for value in array)


def rendered(statement: Composed) -> str:
    """The text of a long-lived ``statement`` (a cached one), rendered once: psycopg renders a
    ``Composed`` again at every execute (every identifier quoted anew), a third of a live
    transaction's CPU in a profile, where a text is converted once and then cached by psycopg."""
    held = _rendered.get(id(statement))
    if held is None or held[0] is not statement:
        if len(_rendered) >= RENDERED_STATEMENTS_MAX:
            _rendered.clear()
        held = _rendered[id(statement)] = (statement, statement.as_string())
    return held[1]
