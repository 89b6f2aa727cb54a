"""The stream commands: ``setup``, ``worker``, ``relay``, ``produce``, ``adjust`` and ``check-program``.

Each decodes its flags, calls one function of ``streams`` or ``ledger`` and
prints; no rule lives here.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from typing import Any

from ledger.program import ProgramError
from ledger.settings import LedgerSettings
from streams.cli.options import add_command, connection_flags, settings_from


def _check_program(args: argparse.Namespace) -> int:
    try:
        program = LedgerSettings(program_file=args.file).program()
    except ProgramError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    tiers = ", ".join(f"{t.name} >= {t.threshold_minor} ({t.multiplier_pct}%)" for t in program.tiers)
    print(f"program {program.name!r} version {program.version} OK: "
          f"currency {program.currency}; tiers {tiers}; campaigns {len(program.campaigns)}; "
          f"a point costs {program.point_value_minor} minor units when redeemed")
    return 0


def _worker(args: argparse.Namespace) -> int:
    from streams.topics import ensure_topics
    from streams.worker import run_worker

    settings = settings_from(args)
    if not settings.bootstrap_servers or not settings.database_url:
        print("error: a worker needs LOYALTY_BOOTSTRAP_SERVERS and LOYALTY_DATABASE_URL "
              "(or --bootstrap-servers / --database-url)", file=sys.stderr)
        return 2
    if settings.consumer_path_mistake():
        print(f"error: {settings.consumer_path_mistake()}", file=sys.stderr)
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
    open_ledger(replace(settings, database_unavailable_s_max=0)).close()  # one attempt: fail fast
    with key_store(settings.database_url) as keys:
        keys.ensure_table()
    print("event store tables ready (and the till API's keys table)")
    if args.accept_new_topics:
        from streams.topic_identity import accept_new_topics

        for topic, deleted in accept_new_topics(settings).items():
            print(f"{topic}: tracked anew from its start ({deleted} old tracking rows deleted)")
    return 0


def _produce(args: argparse.Namespace) -> int:
    from streams.producer import produce_file
    from streams.topics import ensure_topics

    settings = settings_from(args)
    if not settings.bootstrap_servers:
        print("error: produce needs LOYALTY_BOOTSTRAP_SERVERS or --bootstrap-servers", file=sys.stderr)
        return 2
    ensure_topics(settings)
    report = produce_file(settings, args.file)
    print(f"sent to {settings.events_topic}: last offsets by partition "
          f"{dict(sorted(report.last_offsets.items()))}")
    for line in report.refused:
        print(f"line {line.line_number}: {line.size_bytes} bytes, over message_bytes_max "
              f"({settings.message_bytes_max}): dead-lettered to {settings.dead_letter_topic}")
    return 0


def _adjust(args: argparse.Namespace) -> int:
    """Print the file's totals first; then, unless a dry run, produce its adjustment events."""
    from streams.adjust_file import AdjustFileError, adjustment_events, totals

    try:
        with open(args.file, "rb") as stream:
            events = adjustment_events(stream.read(), args.operator, args.reason, args.at)
    except (OSError, AdjustFileError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(totals(events).line())
    if args.dry_run:
        print("dry run: nothing sent")
        return 0
    return _produce_events(args, events)


def _produce_events(args: argparse.Namespace, events: list[dict]) -> int:
    import orjson

    from streams.kafka_security import kafka_python_options
    from streams.producer import produce_lines
    from streams.topics import ensure_topics

    settings = settings_from(args)
    if not settings.bootstrap_servers:
        print("error: adjust needs LOYALTY_BOOTSTRAP_SERVERS or --bootstrap-servers", file=sys.stderr)
        return 2
    ensure_topics(settings)
    produce_lines(settings.bootstrap_servers, settings.events_topic,
                  [orjson.dumps(event) for event in events], kafka_python_options(settings))
    print(f"sent {len(events)} adjustment events to {settings.events_topic}")
    return 0


def add_subcommands(commands: Any) -> None:
    """Register check-program, worker, relay, setup, produce and adjust on ``commands``."""
    check = add_command(commands, "check-program", "check a program file (TOML) and print its tiers")
    check.add_argument("file", nargs="?", metavar="FILE",
                       help="program file to check (default: the built-in program)")
    check.set_defaults(run=_check_program)

    worker = add_command(commands, "worker", "apply events from Kafka to the ledger until stopped "
                                             "(start up to one per partition)")
    connection_flags(worker)
    worker.add_argument("--relay", action="store_true",
                        help="also publish committed facts to Kafka (run one relay per deployment)")
    worker.add_argument("--loglevel", default="WARNING", metavar="LEVEL",
                        help="DEBUG, INFO, WARNING (default) or ERROR")
    worker.set_defaults(run=_worker)

    relay = add_command(commands, "relay", "publish committed facts to Kafka until stopped (the outbox relay)")
    connection_flags(relay)
    relay.set_defaults(run=_relay)

    setup = add_command(commands, "setup", "create the missing topics and the event store's tables "
                                           "(safe to run again)")
    connection_flags(setup)
    setup.add_argument("--no-topics", action="store_true",
                       help="tables only (topics managed elsewhere, e.g. by Strimzi)")
    setup.add_argument("--accept-new-topics", action="store_true",
                       help="after a topic was recreated on purpose: apply the new events and credits "
                            "topics from their start (workers refuse to run until then)")
    setup.set_defaults(run=_setup)

    produce = add_command(commands, "produce", "send each line of a JSONL file to the events topic, "
                                               "keyed by its member_id")
    connection_flags(produce)
    produce.add_argument("file", metavar="FILE", help="JSONL file, one inbound event per line")
    produce.set_defaults(run=_produce)

    adjust = add_command(commands, "adjust", "bulk adjustments: one adjustment event per row of "
                                             "FILE.csv (member_id, points[, note, occurred_at, "
                                             "allow_debt])")
    connection_flags(adjust)
    adjust.add_argument("file", metavar="FILE", help="CSV file, one adjustment per row")
    adjust.add_argument("--operator", required=True, help="operator_id of every adjustment")
    adjust.add_argument("--reason", required=True, help="reason_code of every adjustment")
    adjust.add_argument("--at", help="occurred_at (RFC 3339) of rows without one")
    adjust.add_argument("--dry-run", action="store_true", help="print the totals, send nothing")
    adjust.set_defaults(run=_adjust)
