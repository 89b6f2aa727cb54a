"""What every ``loyalty`` command that talks to Kafka or the event store shares:
its connection flags and the ``Settings`` they override."""

from __future__ import annotations

import argparse

from streams.settings import Settings


def settings_from(args: argparse.Namespace) -> Settings:
    return Settings.from_env(
        bootstrap_servers=getattr(args, "bootstrap_servers", None),
        database_url=getattr(args, "database_url", None),
        program_file=getattr(args, "program", None),
        partitions=getattr(args, "partitions", None),
    )


def connection_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bootstrap-servers", help="Kafka bootstrap servers (LOYALTY_BOOTSTRAP_SERVERS)")
    parser.add_argument("--database-url", help="postgresql:// URL (LOYALTY_DATABASE_URL)")
    parser.add_argument("--program", help="program file (LOYALTY_PROGRAM_FILE)")
    parser.add_argument("--partitions", type=int, help="partitions of new topics (LOYALTY_PARTITIONS)")
