"""The console's sign-in sessions and CSRF tokens, in a table beside the API keys.

A session is a row of ``console_sessions``: the SHA-256 of a random 256-bit
token (the cookie holds the token, never the API key; the table holds only
its hash), the ``key_id`` that signed in, a CSRF token and an expiry
``SESSION_LIFETIME_S`` after sign-in. Server-side rather than a signed
cookie: sign-out and a revoked key end the session at once (every lookup
joins ``loyalty_api_keys`` on a live key, so the key's scopes and stores
are read fresh), and there is no signing secret to share between API
processes. Blocking: the console calls it on the API's read threads.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from psycopg_pool import ConnectionPool

from streams.api.keys import ApiKey

SESSION_TOKEN_BYTES = 32
CSRF_TOKEN_BYTES = 32
SESSION_LIFETIME_S = 8 * 3600  # a working day; then sign in again

CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS console_sessions (
    session_sha256 text PRIMARY KEY,
    key_id text NOT NULL,
    csrf_token text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
)"""


@dataclass(frozen=True)
class Session:
    """A live session: the key that signed in (scopes and stores as they are now) and its CSRF token."""

    key: ApiKey
    csrf_token: str

    def csrf_matches(self, presented: str | None) -> bool:
        return tokens_match(self.csrf_token, presented)


def tokens_match(expected: str, presented: str | None) -> bool:
    """Constant-time comparison of a token with what a form sent (None or empty never matches)."""
    return bool(presented) and hmac.compare_digest(expected.encode(), presented.encode())


def new_token() -> str:
    return secrets.token_urlsafe(CSRF_TOKEN_BYTES)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class SessionStore:
    """``console_sessions`` through ``pool`` (blocking)."""

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def ensure_table(self) -> None:
        with self._pool.connection() as connection:
            connection.execute(CREATE_TABLE)

    def open(self, key: ApiKey) -> str:
        """A new session for ``key``: its token, for the cookie (returned once)."""
        token = secrets.token_urlsafe(SESSION_TOKEN_BYTES)
        with self._pool.connection() as connection:
            connection.execute("DELETE FROM console_sessions WHERE expires_at < now()")
            connection.execute(
                "INSERT INTO console_sessions (session_sha256, key_id, csrf_token, expires_at) "
                "VALUES (%s, %s, %s, now() + make_interval(secs => %s))",
                (_digest(token), key.key_id, new_token(), SESSION_LIFETIME_S))
        return token

    def find(self, token: str) -> Session | None:
        """The live session of ``token``: not expired, its key not revoked; else None."""
        with self._pool.connection() as connection:
            row = connection.execute(
                "SELECT console_sessions.key_id, console_sessions.csrf_token, loyalty_api_keys.scopes, "
                "loyalty_api_keys.stores FROM console_sessions JOIN loyalty_api_keys "
                "ON loyalty_api_keys.key_id = console_sessions.key_id "
                "WHERE console_sessions.session_sha256 = %s AND console_sessions.expires_at > now() "
                "AND loyalty_api_keys.revoked_at IS NULL", (_digest(token),)).fetchone()
        if row is None:
            return None
        key_id, csrf_token, scopes, stores = row
        return Session(ApiKey(key_id, frozenset(scopes), None if stores is None else frozenset(stores)),
                       csrf_token)

    def close(self, token: str) -> None:
        with self._pool.connection() as connection:
            connection.execute("DELETE FROM console_sessions WHERE session_sha256 = %s", (_digest(token),))
