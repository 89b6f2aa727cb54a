"""Small steps shared by the projection tests: project, read rows, reach the CLI."""

from __future__ import annotations

import argparse
from datetime import datetime, timezone
from urllib.parse import quote

from ledger.application import LoyaltyLedger
from streams.cli.audit import add_subcommands
from projections.runner import ReadModels, catch_up, open_read_models, read_model_digests, replay
from projections.verify import verify

CATCH_UP_BATCH_NOTIFICATIONS_MAX = 500


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc)


def projected(ledger: LoyaltyLedger, env: dict, names=None) -> ReadModels:
    """The read models (opened on ``env``) caught up with ``ledger``; close them after use."""
    models = open_read_models(env, names, ledger.program)
    catch_up(ledger, models, batch_notifications_max=CATCH_UP_BATCH_NOTIFICATIONS_MAX)
    return models


def rows_by_key(models: ReadModels, name: str, table) -> dict[tuple, dict]:
    return {table.key_of(row): row for row in models.view(name).rows(table)}


def database_url(env: dict) -> str:
    """A libpq URL for the database of a ``pg_env`` (unix socket in ``?host=``)."""
    user = quote(env["POSTGRES_USER"], safe="")
    return (f"postgresql://{user}@/{env['POSTGRES_DBNAME']}"
            f"?host={quote(env['POSTGRES_HOST'], safe='/')}&port={env['POSTGRES_PORT']}")


def run_cli(*argv: str) -> int:
    """Run one projections subcommand as ``loyalty`` would."""
    parser = argparse.ArgumentParser(prog="loyalty")
    add_subcommands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    return args.run(args)


def check_verify_and_replay(ledger: LoyaltyLedger, models: ReadModels) -> None:
    """``verify`` finds no mismatch, and a replay gives the same read-model rows."""
    report = verify(ledger, models)
    assert report.ok, report.mismatches
    before = read_model_digests(models)
    replay(ledger, models)
    assert read_model_digests(models) == before
