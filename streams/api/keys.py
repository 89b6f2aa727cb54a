"""API keys of the till API: creation, listing, revocation and authentication.

A key is ``lk_<key_id>_<secret>``: ``key_id`` (48 random bits, shown by
``list``, never secret) finds the row, ``secret`` holds 256 random bits. Only
the SHA-256 of the whole key is stored (a random 256-bit secret needs no slow
hash: nothing to brute-force), in ``loyalty_api_keys`` beside the event
store's tables, and compared with ``hmac.compare_digest`` (constant time).
``create`` returns the key once; nothing here logs a key or a hash.

Scopes (CONTRACT section 14): ``scope_for_type`` maps an inbound event type
to the scope that may submit it; a type not listed (a schema added before
this table) needs ``admin``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from psycopg_pool import ConnectionPool

TABLE = "loyalty_api_keys"  # named literally in each statement (tests/reliability/test_sql.py)
KEY_PREFIX = "lk"
KEY_ID_BYTES = 6
KEY_SECRET_BYTES = 32
READ_SCOPE = "read"
CRM_SCOPE = "crm"  # also lets a read see the member's decrypted profile (section 13)
SCOPES = (READ_SCOPE, "earn", "redeem", CRM_SCOPE, "admin")
UNLISTED_TYPE_SCOPE = "admin"
SCOPE_OF_TYPE = {
    "purchase": "earn", "refund": "earn",
    "redemption": "redeem", "redemption_hold": "redeem", "redemption_capture": "redeem",
    "redemption_void": "redeem", "redemption_cancel": "redeem",
    "referral": "crm", "birthday": "crm", "member_enrolled": "crm", "profile_updated": "crm",
    "nps_response": "crm", "member_erased": "crm", "transfer": "crm",
    "adjustment": "admin", "year_closed": "admin",
}

CREATE_TABLE = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    key_id text PRIMARY KEY,
    key_sha256 text NOT NULL,
    scopes text[] NOT NULL,
    stores text[],
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
)"""


class InvalidKeyRequest(ValueError):
    """A bad ``create`` request (an unknown scope, no scope)."""


@dataclass(frozen=True)
class ApiKey:
    """What a key may do: its scopes and, when bound, the stores it may submit for."""

    key_id: str
    scopes: frozenset[str]
    stores: frozenset[str] | None
    created_at: datetime | None = None
    revoked_at: datetime | None = None

    def may_submit(self, event_type: str) -> bool:
        return scope_for_type(event_type) in self.scopes

    def may_submit_for_store(self, store_id: object) -> bool:
        return self.stores is None or store_id in self.stores


def scope_for_type(event_type: str) -> str:
    return SCOPE_OF_TYPE.get(event_type, UNLISTED_TYPE_SCOPE)


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def key_id_of(presented: str) -> str | None:
    """The ``key_id`` part of a presented key, or None when it has not the key's shape."""
    parts = presented.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX or len(parts[1]) != KEY_ID_BYTES * 2:
        return None
    return parts[1]


@contextmanager
def key_store(database_url: str) -> Iterator["KeyStore"]:
    """A ``KeyStore`` on a one-connection pool of its own (the CLI, tests), closed at exit."""
    with ConnectionPool(database_url, min_size=1, max_size=1, open=True) as pool:
        yield KeyStore(pool)


class KeyStore:
    """The keys table, through ``pool`` (blocking: the API calls it from a thread)."""

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def _connect(self):
        return self._pool.connection()

    def ensure_table(self) -> None:
        with self._connect() as connection:
            connection.execute(CREATE_TABLE)

    def create(self, scopes: list[str], stores: list[str] | None = None) -> tuple[str, ApiKey]:
        """A new key (returned once, in clear) and its record."""
        unknown = sorted(set(scopes) - set(SCOPES))
        if not scopes or unknown:
            raise InvalidKeyRequest(f"scopes must be some of {', '.join(SCOPES)}; "
                                    f"unknown: {unknown or 'none given'}")
        key_id = secrets.token_hex(KEY_ID_BYTES)
        key = f"{KEY_PREFIX}_{key_id}_{secrets.token_urlsafe(KEY_SECRET_BYTES)}"
        with self._connect() as connection:
            connection.execute("INSERT INTO loyalty_api_keys (key_id, key_sha256, scopes, stores) "
                               "VALUES (%s, %s, %s, %s)", (key_id, key_digest(key), sorted(set(scopes)),
                                                           sorted(set(stores)) if stores else None))
        return key, ApiKey(key_id, frozenset(scopes), frozenset(stores) if stores else None)

    def list(self) -> list[ApiKey]:
        with self._connect() as connection:
            rows = connection.execute("SELECT key_id, scopes, stores, created_at, revoked_at "
                                      "FROM loyalty_api_keys ORDER BY created_at, key_id").fetchall()
        return [_api_key(*row) for row in rows]

    def revoke(self, key_id: str) -> bool:
        """Revoke ``key_id``; False when there is no such live key."""
        with self._connect() as connection:
            cursor = connection.execute("UPDATE loyalty_api_keys SET revoked_at = now() "
                                        "WHERE key_id = %s AND revoked_at IS NULL", (key_id,))
            return cursor.rowcount == 1

    def authenticate(self, presented: str) -> ApiKey | None:
        """The live key ``presented`` is, or None (unknown, revoked, malformed)."""
        key_id = key_id_of(presented)
        if key_id is None:
            return None
        with self._connect() as connection:
            row = connection.execute("SELECT key_sha256, scopes, stores FROM loyalty_api_keys "
                                     "WHERE key_id = %s AND revoked_at IS NULL", (key_id,)).fetchone()
        if row is None or not hmac.compare_digest(row[0], key_digest(presented)):
            return None
        return _api_key(key_id, row[1], row[2])


def _api_key(key_id: str, scopes: list[str], stores: list[str] | None,
             created_at: datetime | None = None, revoked_at: datetime | None = None) -> ApiKey:
    return ApiKey(key_id, frozenset(scopes), None if stores is None else frozenset(stores),
                  created_at, revoked_at)
