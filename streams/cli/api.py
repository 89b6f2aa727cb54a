"""The till API's commands: ``api`` (serve it) and ``api-key create|list|revoke``.

``api-key create`` prints the new key once, on standard output; nothing else
ever shows a key (``list`` shows ids, scopes and stores).
"""

from __future__ import annotations

import argparse
import sys
from contextlib import contextmanager
from typing import Any

from streams.cli.options import connection_flags, settings_from


def _api(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from streams.api.server import run_api

    settings = settings_from(args)
    if not settings.bootstrap_servers or not settings.database_url:
        print("error: the API needs LOYALTY_BOOTSTRAP_SERVERS and LOYALTY_DATABASE_URL", file=sys.stderr)
        return 2
    try:
        run_api(replace(settings, api_port=args.port or settings.api_port))
    except ValueError as error:  # a setting out of its range, named
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # uvicorn re-raises SIGTERM/SIGINT once it has shut down cleanly
        return 0
    return 0


@contextmanager
def _key_store(args: argparse.Namespace):
    """The keys table (created if missing), or None without a database URL (after saying so)."""
    from streams.api.keys import key_store

    settings = settings_from(args)
    if not settings.database_url:
        print("error: api-key needs LOYALTY_DATABASE_URL or --database-url", file=sys.stderr)
        yield None
        return
    with key_store(settings.database_url) as store:
        store.ensure_table()
        yield store


def _split(text: str | None) -> list[str]:
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def _create(args: argparse.Namespace) -> int:
    from streams.api.keys import InvalidKeyRequest

    with _key_store(args) as store:
        if store is None:
            return 2
        try:
            key, record = store.create(_split(args.scopes), _split(args.stores) or None)
        except InvalidKeyRequest as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
    print(key)
    print(f"key id {record.key_id}: shown once, store it now", file=sys.stderr)
    return 0


def _list(args: argparse.Namespace) -> int:
    with _key_store(args) as store:
        if store is None:
            return 2
        keys = store.list()
    for key in keys:
        stores = ",".join(sorted(key.stores)) if key.stores is not None else "any store"
        state = f"revoked {key.revoked_at.isoformat()}" if key.revoked_at else "live"
        print(f"{key.key_id}  {','.join(sorted(key.scopes))}  {stores}  {state}")
    return 0


def _revoke(args: argparse.Namespace) -> int:
    with _key_store(args) as store:
        if store is None:
            return 2
        revoked = store.revoke(args.key_id)
    if not revoked:
        print(f"error: no live key {args.key_id}", file=sys.stderr)
        return 1
    print(f"revoked {args.key_id}")
    return 0


def add_subcommands(commands: Any) -> None:
    """Register ``api`` and ``api-key`` on ``commands``."""
    api = commands.add_parser("api", help="serve the till API (HTTP)")
    connection_flags(api)
    api.add_argument("--port", type=int, help="port to listen on (LOYALTY_API_PORT)")
    api.set_defaults(run=_api)

    keys = commands.add_parser("api-key", help="create, list or revoke till API keys")
    actions = keys.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="create a key and print it once")
    connection_flags(create)
    create.add_argument("--scopes", required=True, help="comma-separated: read,earn,redeem,crm,admin")
    create.add_argument("--stores", help="comma-separated store ids the key may submit for")
    create.set_defaults(run=_create)
    listing = actions.add_parser("list", help="key ids, scopes, stores, state")
    connection_flags(listing)
    listing.set_defaults(run=_list)
    revoke = actions.add_parser("revoke", help="revoke a key by its id")
    connection_flags(revoke)
    revoke.add_argument("key_id")
    revoke.set_defaults(run=_revoke)
