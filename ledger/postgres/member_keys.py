"""The member key table (and the dead letters' daily key table) beside the event store.

``loyalty_member_keys`` holds one AES key per enrolled member
(``ledger.privacy``); ``loyalty_dead_letter_keys`` one key per UTC day for
dead letters whose member cannot be read (the prefix is the application's
name, like its events table's: ``loyalty_events``). Both are created with the event
store's tables (``create_statements``, run by the recorder's
``create_table``) in the event store's schema. Key creations and deletions
run inside the transaction that inserts a batch's facts (``write_changes``),
so a ``member_erased`` fact and the deletion of its member's key commit
together or not at all. Keys are read outside any batch (``read_keys``).
Nothing here logs.
"""

from __future__ import annotations

from datetime import date
from typing import Any, Iterable

from psycopg.sql import SQL, Composed, Identifier

from ledger.privacy import KeyChanges, KeyStore, MemoryKeyStore

MEMBER_KEYS_TABLE = "loyalty_member_keys"  # the ledger's (application "loyalty")
DEAD_LETTER_KEYS_TABLE = "loyalty_dead_letter_keys"
MEMBER_KEYS_SUFFIX, DEAD_LETTER_KEYS_SUFFIX = "_member_keys", "_dead_letter_keys"


def table_names(events_table_name: str) -> tuple[str, str]:
    """The key tables of the application whose events table is ``events_table_name``."""
    prefix = events_table_name.removesuffix("_events")
    return prefix + MEMBER_KEYS_SUFFIX, prefix + DEAD_LETTER_KEYS_SUFFIX


def create_statements(schema: str, events_table_name: str) -> list[Composed]:
    members, days = table_names(events_table_name)
    return [
        SQL("CREATE TABLE IF NOT EXISTS {schema}.{table} ("
            "member_id text PRIMARY KEY, key bytea NOT NULL)").format(
            schema=Identifier(schema), table=Identifier(members)),
        SQL("CREATE TABLE IF NOT EXISTS {schema}.{table} ("
            "day date PRIMARY KEY, key bytea NOT NULL)").format(
            schema=Identifier(schema), table=Identifier(days)),
    ]


def write_changes(curs: Any, schema: str, events_table_name: str,
                  changes: KeyChanges | None) -> None:
    """Inside a batch's transaction: insert the new keys, then delete the erased members'."""
    if changes is None:
        return
    table = Identifier(schema), Identifier(table_names(events_table_name)[0])
    if changes.created:
        curs.execute(SQL("INSERT INTO {}.{} (member_id, key) SELECT * FROM unnest(%s::text[], %s::bytea[])")
                     .format(*table),
                     (list(changes.created), list(changes.created.values())))
    if changes.deleted:
        curs.execute(SQL("DELETE FROM {}.{} WHERE member_id = ANY(%s)").format(*table),
                     (list(changes.deleted),))


class PostgresKeyStore:
    """Reads the key tables through the event store's datastore."""

    def __init__(self, datastore: Any, events_table_name: str) -> None:
        self.datastore = datastore
        self.schema = Identifier(datastore.schema)
        self.members_table, self.days_table = map(Identifier, table_names(events_table_name))

    def read_keys(self, member_ids: Iterable[str]) -> dict[str, bytes]:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(SQL("SELECT member_id, key FROM {}.{} WHERE member_id = ANY(%s)")
                         .format(self.schema, self.members_table), (list(member_ids),))
            return {row["member_id"]: bytes(row["key"]) for row in curs.fetchall()}

    def dead_letter_key(self, day: date, new_key: bytes) -> bytes:
        """The key of ``day`` (``new_key`` stored first if the day has none yet)."""
        table = self.schema, self.days_table
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(SQL("INSERT INTO {}.{} (day, key) VALUES (%s, %s) ON CONFLICT DO NOTHING")
                         .format(*table), (day, new_key))
            curs.execute(SQL("SELECT key FROM {}.{} WHERE day = %s").format(*table), (day,))
            return bytes(curs.fetchone()["key"])

    def dead_letter_keys(self, days: Iterable[date]) -> dict[date, bytes]:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(SQL("SELECT day, key FROM {}.{} WHERE day = ANY(%s)")
                         .format(self.schema, self.days_table), (list(days),))
            return {row["day"]: bytes(row["key"]) for row in curs.fetchall()}

    def delete_dead_letter_keys_before(self, day: date) -> int:
        """Delete the dead-letter keys of days before ``day``; how many went."""
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(SQL("DELETE FROM {}.{} WHERE day < %s")
                         .format(self.schema, self.days_table), (day,))
            return curs.rowcount


def key_store_for(recorder: Any) -> KeyStore:
    """The key table beside ``recorder``'s event store: the in-memory recorder's dict, or
    the PostgreSQL tables."""
    keys = getattr(recorder, "member_keys", None)
    if isinstance(keys, dict):
        return MemoryKeyStore(keys, recorder.dead_letter_keys)
    return PostgresKeyStore(recorder.datastore, recorder.events_table_name)
