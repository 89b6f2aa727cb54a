"""The ``loyalty`` command line: an entry point that decodes arguments, calls
one application function and prints. Business rules live in ``ledger/``.

Every connection setting comes from ``LOYALTY_*`` environment variables
(see ``streams/settings.py`` and the README's table); flags override them.
Without a bootstrap server or database URL, the embedded ones are started.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

from ledger.program import ProgramError, load_program
from projections import cli as projections_cli
from streams import simulate_cli
from streams.settings import Settings

INTERRUPTED_EXIT_STATUS = 130


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.from_env(
        bootstrap_servers=getattr(args, "bootstrap_servers", None),
        database_url=getattr(args, "database_url", None),
        program_file=getattr(args, "program", None),
        partitions=getattr(args, "partitions", None),
    )


def _check_program(args: argparse.Namespace) -> int:
    try:
        program = load_program(args.file)
    except ProgramError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    tiers = ", ".join(f"{t.name} >= {t.threshold_minor} ({t.multiplier_pct}%)" for t in program.tiers)
    print(f"program {program.name!r} OK: currency {program.currency}; tiers {tiers}")
    return 0


def _worker(args: argparse.Namespace) -> int:
    from streams.topics import ensure_topics
    from streams.worker import run_worker

    settings = _settings(args)
    if not settings.bootstrap_servers or not settings.database_url:
        print("error: a worker needs LOYALTY_BOOTSTRAP_SERVERS and LOYALTY_DATABASE_URL "
              "(or --bootstrap-servers / --database-url)", file=sys.stderr)
        return 2
    ensure_topics(settings)
    run_worker(settings, relay=args.relay, loglevel=args.loglevel)
    return 0


def _relay(args: argparse.Namespace) -> int:
    from streams.worker import run_relay

    settings = _settings(args)
    if not settings.bootstrap_servers or not settings.database_url:
        print("error: the relay needs LOYALTY_BOOTSTRAP_SERVERS and LOYALTY_DATABASE_URL",
              file=sys.stderr)
        return 2
    run_relay(settings)
    return 0


def _setup(args: argparse.Namespace) -> int:
    """Create the missing topics and the event store's tables; safe to run again."""
    from streams.topics import ensure_topics
    from streams.worker import open_ledger

    settings = _settings(args)
    if not settings.database_url or (not args.no_topics and not settings.bootstrap_servers):
        print("error: setup needs LOYALTY_DATABASE_URL and (unless --no-topics) "
              "LOYALTY_BOOTSTRAP_SERVERS", file=sys.stderr)
        return 2
    if not args.no_topics:
        print("topics created:", ", ".join(ensure_topics(settings)) or "none missing")
    open_ledger(settings).close()
    print("event store tables ready")
    return 0


def _produce(args: argparse.Namespace) -> int:
    from streams.kafka_security import kafka_python_options
    from streams.producer import produce_lines, read_lines
    from streams.topics import ensure_topics

    settings = _settings(args)
    if not settings.bootstrap_servers:
        print("error: produce needs LOYALTY_BOOTSTRAP_SERVERS or --bootstrap-servers", file=sys.stderr)
        return 2
    ensure_topics(settings)
    last = produce_lines(settings.bootstrap_servers, settings.events_topic, read_lines(args.file),
                         kafka_python_options(settings))
    print(f"sent to {settings.events_topic}: last offsets by partition {dict(sorted(last.items()))}")
    return 0


def _process(args: argparse.Namespace) -> int:
    from streams.process import ProcessError, process

    try:
        process(Path(args.input), Path(args.out), _settings(args), workers=args.workers)
    except ProcessError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"wrote the read models and logs to {args.out}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from streams.demo import DemoOptions, run_demo
    from streams.process import ProcessError

    options = DemoOptions(members=args.members, stores=args.stores, days=args.days,
                          seed=args.seed, workers=args.workers,
                          rate_events_per_s=args.rate, demo_dir=Path(args.dir))
    try:
        return run_demo(options, _settings(args))
    except ProcessError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


def _connection_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bootstrap-servers", help="Kafka bootstrap servers (LOYALTY_BOOTSTRAP_SERVERS)")
    parser.add_argument("--database-url", help="postgresql:// URL (LOYALTY_DATABASE_URL)")
    parser.add_argument("--program", help="program file (LOYALTY_PROGRAM_FILE)")
    parser.add_argument("--partitions", type=int, help="partitions of new topics (LOYALTY_PARTITIONS)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="loyalty", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check-program", help="validate a program file (TOML)")
    check.add_argument("file", nargs="?", help="program file; the default program when omitted")
    check.set_defaults(run=_check_program)

    worker = commands.add_parser("worker", help="run one worker process of the consumer group")
    _connection_flags(worker)
    worker.add_argument("--relay", action="store_true", help="also run the outbox relay")
    worker.add_argument("--loglevel", default="WARNING")
    worker.set_defaults(run=_worker)

    relay = commands.add_parser("relay", help="run the outbox relay alone (publish committed facts)")
    _connection_flags(relay)
    relay.set_defaults(run=_relay)

    setup = commands.add_parser("setup", help="create the topics and the event store's tables")
    _connection_flags(setup)
    setup.add_argument("--no-topics", action="store_true",
                       help="tables only (topics managed elsewhere, e.g. by Strimzi)")
    setup.set_defaults(run=_setup)

    produce = commands.add_parser("produce", help="send each line of FILE.jsonl, keyed by member_id")
    _connection_flags(produce)
    produce.add_argument("file")
    produce.set_defaults(run=_produce)

    run = commands.add_parser("process", help="run INPUT.jsonl through the whole pipeline into DIR")
    _connection_flags(run)
    run.add_argument("input")
    run.add_argument("--out", required=True, help="output directory")
    run.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    run.set_defaults(run=_process)

    simulate_cli.add_subcommand(commands)
    projections_cli.add_subcommands(commands)
    demo = commands.add_parser("demo", help="a simulated retail chain through the whole system, "
                                             "with a live dashboard")
    _connection_flags(demo)
    demo.add_argument("--members", type=int, default=1000, help="members at the start (1000)")
    demo.add_argument("--stores", type=int, default=20, help="stores (20)")
    demo.add_argument("--days", type=int, default=365, help="simulated days (365)")
    demo.add_argument("--seed", type=int, default=42, help="simulation seed (42)")
    demo.add_argument("--workers", type=int, default=2, help="worker processes (2)")
    demo.add_argument("--rate", type=int, default=1500, help="events sent per second (1500)")
    demo.add_argument("--dir", default=".loyalty-demo",
                      help="where the demo keeps its embedded store and logs (.loyalty-demo)")
    demo.set_defaults(run=_demo)
    return parser


def _interrupt_on_sigterm(signum, frame) -> None:
    """SIGTERM is Ctrl-C: a following service stops cleanly (status 0), a one-shot
    command unwinds (embedded servers and child processes are stopped) with 130."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    signal.signal(signal.SIGTERM, _interrupt_on_sigterm)
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return INTERRUPTED_EXIT_STATUS


if __name__ == "__main__":
    sys.exit(main())
