"""The stream commands: ``setup``, ``worker``, ``relay``, ``produce`` and ``check-program``.

Each decodes its flags, calls one function of ``streams`` or ``ledger`` and
prints; no rule lives here.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ledger.program import ProgramError
from ledger.settings import LedgerSettings
from streams.cli.options import connection_flags, settings_from


def _check_program(args: argparse.Namespace) -> int:
    try:
        program = LedgerSettings(program_file=args.file).program()
    except ProgramError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    tiers = ", ".join(f"{t.name} >= {t.threshold_minor} ({t.multiplier_pct}%)" for t in program.tiers)
    print(f"program {program.name!r} OK: currency {program.currency}; tiers {tiers}")
    return 0


def _worker(args: argparse.Namespace) -> int:
    from streams.topics import ensure_topics
    from streams.worker import run_worker

    settings = settings_from(args)
    if not settings.bootstrap_servers or not settings.database_url:
        print("error: a worker needs LOYALTY_BOOTSTRAP_SERVERS and LOYALTY_DATABASE_URL "
              "(or --bootstrap-servers / --database-url)", file=sys.stderr)
        return 2
    ensure_topics(settings)
    run_worker(settings, relay=args.relay, loglevel=args.loglevel)
    return 0


def _relay(args: argparse.Namespace) -> int:
    from streams.worker import run_relay

    settings = settings_from(args)
    if not settings.bootstrap_servers or not settings.database_url:
        print("error: the relay needs LOYALTY_BOOTSTRAP_SERVERS and LOYALTY_DATABASE_URL",
              file=sys.stderr)
        return 2
    run_relay(settings)
    return 0


def _setup(args: argparse.Namespace) -> int:
    """Create the missing topics and the event store's tables; safe to run again."""
    from streams.api.keys import key_store
    from streams.topics import ensure_topics
    from streams.worker import open_ledger

    settings = settings_from(args)
    if not settings.database_url or (not args.no_topics and not settings.bootstrap_servers):
        print("error: setup needs LOYALTY_DATABASE_URL and (unless --no-topics) "
              "LOYALTY_BOOTSTRAP_SERVERS", file=sys.stderr)
        return 2
    if not args.no_topics:
        print("topics created:", ", ".join(ensure_topics(settings)) or "none missing")
    open_ledger(settings).close()
    with key_store(settings.database_url) as keys:
        keys.ensure_table()
    print("event store tables ready (and the till API's keys table)")
    return 0


def _produce(args: argparse.Namespace) -> int:
    from streams.kafka_security import kafka_python_options
    from streams.producer import produce_lines, read_lines
    from streams.topics import ensure_topics

    settings = settings_from(args)
    if not settings.bootstrap_servers:
        print("error: produce needs LOYALTY_BOOTSTRAP_SERVERS or --bootstrap-servers", file=sys.stderr)
        return 2
    ensure_topics(settings)
    last = produce_lines(settings.bootstrap_servers, settings.events_topic, read_lines(args.file),
                         kafka_python_options(settings))
    print(f"sent to {settings.events_topic}: last offsets by partition {dict(sorted(last.items()))}")
    return 0


def add_subcommands(commands: Any) -> None:
    """Register check-program, worker, relay, setup and produce on ``commands``."""
    check = commands.add_parser("check-program", help="validate a program file (TOML)")
    check.add_argument("file", nargs="?", help="program file; the default program when omitted")
    check.set_defaults(run=_check_program)

    worker = commands.add_parser("worker", help="run one worker process of the consumer group")
    connection_flags(worker)
    worker.add_argument("--relay", action="store_true", help="also run the outbox relay")
    worker.add_argument("--loglevel", default="WARNING")
    worker.set_defaults(run=_worker)

    relay = commands.add_parser("relay", help="run the outbox relay alone (publish committed facts)")
    connection_flags(relay)
    relay.set_defaults(run=_relay)

    setup = commands.add_parser("setup", help="create the topics and the event store's tables")
    connection_flags(setup)
    setup.add_argument("--no-topics", action="store_true",
                       help="tables only (topics managed elsewhere, e.g. by Strimzi)")
    setup.set_defaults(run=_setup)

    produce = commands.add_parser("produce", help="send each line of FILE.jsonl, keyed by member_id")
    connection_flags(produce)
    produce.add_argument("file")
    produce.set_defaults(run=_produce)
