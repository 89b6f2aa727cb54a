"""Read-model tables and the rows one batch of facts touches.

A ``Table`` names its columns and primary key once; every statement is built
from those names with ``psycopg.sql`` identifiers, and every value (member
ids above all) travels as a query parameter, never inside the SQL text.

``RowBatch`` is how a projection writes: the rows a batch needs are read
once (all rows of the batch's members for member-scoped tables, one query
per table; other rows by key on first use), handlers change them in
memory, and ``write`` stores every changed row with one upsert per
table (arrays through ``unnest``, so one statement whatever the number of
rows). So a batch of a thousand facts costs a handful of round trips, and a
batch of one (a live event) costs three or four.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any

from psycopg import Cursor
from psycopg.sql import SQL, Composed, Identifier

Key = tuple[Any, ...]
Row = dict[str, Any]


@dataclass(frozen=True)
class Table:
    """One read-model table: ``columns`` (name, SQL type) with the key columns first."""

    name: str
    columns: tuple[tuple[str, str], ...]
    key: tuple[str, ...]
    member_scoped: bool = True  # key starts with member_id: prefetch a batch's members

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.columns)

    def key_of(self, row: Row) -> Key:
        return tuple(row[name] for name in self.key)

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
        return self.select_statement(schema, SQL("member_id = ANY(%s)"))

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
        arrays = [SQL("%s::{}[]").format(SQL(types[name].split()[0])) for name in names]
        return SQL("unnest({})").format(SQL(", ").join(arrays))

    def _key_condition(self) -> Composed:
        return SQL(" AND ").join(SQL("{} = %s").format(Identifier(name)) for name in self.key)


class RowBatch:
    """The rows of ``tables`` that one batch reads and writes, inside its transaction."""

    def __init__(self, cursor: Cursor, tables: Iterable[Table], schema: str) -> None:
        self.cursor = cursor
        self.schema = schema
        self.tables = {table.name: table for table in tables}
        self._rows: dict[str, dict[Key, Row | None]] = {name: {} for name in self.tables}
        self._dirty: dict[str, set[Key]] = {name: set() for name in self.tables}
        self._members: set[str] = set()

    def prefetch(self, member_ids: set[str]) -> None:
        """Read every row of ``member_ids`` in the member-scoped tables (one query each)."""
        self._members |= member_ids
        for table in self.tables.values():
            if table.member_scoped and member_ids:
                statement = table.select_members_statement(self.schema)
                for row in self.cursor.execute(statement, (sorted(member_ids),)).fetchall():
                    self._rows[table.name][table.key_of(row)] = row

    def prefetch_keys(self, table: Table, keys: set[Key]) -> None:
        """Read the rows with ``keys`` (one query); keys without a row are remembered as absent."""
        wanted = sorted(keys - self._rows[table.name].keys(), key=repr)
        if not wanted:
            return
        self._rows[table.name].update(dict.fromkeys(wanted))
        statement = table.select_keys_statement(self.schema)
        for row in self.cursor.execute(statement, list(map(list, zip(*wanted)))).fetchall():
            self._rows[table.name][table.key_of(row)] = row

    def get(self, table: Table, key: Key) -> Row | None:
        """The row with ``key`` (None if there is none), read at most once per batch."""
        cached = self._rows[table.name]
        if key not in cached:
            cached[key] = None if self._is_prefetched(table, key) else self._read(table, key)
        return cached[key]

    def put(self, table: Table, row: Row) -> None:
        key = table.key_of(row)
        self._rows[table.name][key] = row
        self._dirty[table.name].add(key)

    def delete(self, table: Table, key: Key) -> None:
        self._rows[table.name][key] = None
        self._dirty[table.name].add(key)

    def write(self) -> None:
        """Store every changed row: one upsert and one delete statement per table."""
        for name, keys in self._dirty.items():
            table, rows = self.tables[name], self._rows[name]
            ordered = sorted(keys, key=repr)
            changed = [rows[key] for key in ordered if rows[key] is not None]
            gone = [key for key in ordered if rows[key] is None]
            if changed:
                columns = [[row[column] for row in changed] for column in table.column_names]
                self.cursor.execute(table.upsert_statement(self.schema), columns)
            if gone:
                key_columns = list(map(list, zip(*gone)))
                self.cursor.execute(table.delete_statement(self.schema), key_columns)
            keys.clear()

    def _is_prefetched(self, table: Table, key: Key) -> bool:
        return table.member_scoped and key[0] in self._members

    def _read(self, table: Table, key: Key) -> Row | None:
        return self.cursor.execute(table.select_key_statement(self.schema), key).fetchone()
