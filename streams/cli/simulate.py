"""``loyalty simulate``: a deterministic POS/CRM stream to a JSONL file or to Kafka.

An entry point only: it turns flags into a ``SimulationConfig``, calls
``streams.devkit.simulator`` and prints the summary. ``streams/cli/__init__.py`` registers it
with ``add_subcommand(subparsers)``.
"""

from __future__ import annotations

import argparse
import sys
from datetime import date
from typing import Any

from streams.cli.options import add_command
from streams.kafka_security import kafka_client_options


def add_subcommand(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``simulate`` on the ``loyalty`` parser's subcommands; returns its parser.

    The help shows the simulator's defaults, so the (pure) simulator module is
    imported here; the rest of the dev kit is not.
    """
    from streams.devkit.simulator import SimulationConfig  # the dev kit, lazily

    defaults = SimulationConfig()
    parser = add_command(subparsers, "simulate",
                         "generate a deterministic POS/CRM event stream (FILE.jsonl or Kafka)")
    for field, parse, text in _SIZE_FLAGS:
        default = getattr(defaults, field)
        parser.add_argument("--" + field.replace("_", "-"), type=parse, default=default,
                            help=f"{text} (default {default})")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--out", metavar="FILE.jsonl", help="write the lines to this file")
    target.add_argument("--kafka", action="store_true",
                        help="send to LOYALTY_EVENTS_TOPIC keyed by member_id")
    parser.add_argument("--bootstrap-servers", metavar="HOST:PORT,...",
                        help="Kafka to use with --kafka (default: LOYALTY_BOOTSTRAP_SERVERS)")
    parser.set_defaults(run=run_simulate)
    return parser


def run_simulate(args: argparse.Namespace) -> int:
    from streams.devkit.simulator import write_jsonl  # the dev kit, lazily

    try:
        config = _config(args)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.kafka:
        return _to_kafka(config, args)
    summary = write_jsonl(config, args.out)
    print(f"wrote {args.out}\n{summary.describe()}")
    return 0


def _config(args: argparse.Namespace) -> Any:
    from streams.devkit.simulator import SimulationConfig  # the dev kit, lazily

    return SimulationConfig(
        seed=args.seed, members=args.members, stores=args.stores, start=args.start,
        days=args.days, duplicate_rate_ppm=args.duplicate_rate_ppm,
        malformed_rate_ppm=args.malformed_rate_ppm, hold_rate_ppm=args.hold_rate_ppm,
        hold_void_ppm=args.hold_void_ppm,
    )


def _to_kafka(config: Any, args: argparse.Namespace) -> int:
    from streams.cli.options import settings_from
    from streams.devkit.simulator import SimulationSummary, send_to_kafka  # the dev kit, lazily
    from streams.topics import ensure_topics

    settings = settings_from(args)  # flags, LOYALTY_* variables, a `loyalty up` stack here
    if not settings.bootstrap_servers:
        print("error: --kafka needs LOYALTY_BOOTSTRAP_SERVERS or --bootstrap-servers", file=sys.stderr)
        return 2
    ensure_topics(settings)
    summary = SimulationSummary()
    last = send_to_kafka(config, settings.bootstrap_servers, settings.events_topic, summary,
                         kafka_client_options(settings))
    print(f"sent to {settings.events_topic}: last offsets by partition {dict(sorted(last.items()))}")
    print(summary.describe())
    return 0


def _iso_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {text!r}") from None


_SIZE_FLAGS = (  # (SimulationConfig field, type, one-line help)
    ("seed", int, "random seed: the same seed gives the same stream"),
    ("members", int, "members at the start"),
    ("stores", int, "stores"),
    ("days", int, "simulated days"),
    ("start", _iso_date, "first day, YYYY-MM-DD"),
    ("duplicate_rate_ppm", int, "redelivered lines per million"),
    ("malformed_rate_ppm", int, "malformed lines per million"),
    ("hold_rate_ppm", int, "till holds per million POS visits whose points cover a reward (0: none)"),
    ("hold_void_ppm", int, "voided holds per million holds (the rest are captured)"),
)
