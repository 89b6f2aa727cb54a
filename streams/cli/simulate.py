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

from streams.kafka_security import kafka_python_options


def add_subcommand(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``simulate`` on the ``loyalty`` parser's subcommands; returns its parser.

    The help shows the simulator's defaults, so the (pure) simulator module is
    imported here; the rest of the dev kit is not.
    """
    from streams.devkit.simulator import SimulationConfig  # the dev kit, lazily

    defaults = SimulationConfig()
    parser = subparsers.add_parser(
        "simulate", help="generate a deterministic POS/CRM event stream (FILE.jsonl or Kafka)")
    parser.add_argument("--seed", type=int, default=defaults.seed, help=f"default {defaults.seed}")
    parser.add_argument("--members", type=int, default=defaults.members,
                        help=f"members at the start (default {defaults.members})")
    parser.add_argument("--stores", type=int, default=defaults.stores,
                        help=f"default {defaults.stores}")
    parser.add_argument("--days", type=int, default=defaults.days, help=f"default {defaults.days}")
    parser.add_argument("--start", type=_iso_date, default=defaults.start,
                        help=f"first day, YYYY-MM-DD (default {defaults.start})")
    parser.add_argument("--duplicate-rate-ppm", type=int, default=defaults.duplicate_rate_ppm,
                        help=f"redelivered lines per million (default {defaults.duplicate_rate_ppm})")
    parser.add_argument("--malformed-rate-ppm", type=int, default=defaults.malformed_rate_ppm,
                        help=f"malformed lines per million (default {defaults.malformed_rate_ppm})")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--out", metavar="FILE.jsonl", help="write the lines to this file")
    target.add_argument("--kafka", action="store_true",
                        help="send to LOYALTY_EVENTS_TOPIC keyed by member_id")
    parser.add_argument("--bootstrap-servers", help="Kafka bootstrap servers (LOYALTY_BOOTSTRAP_SERVERS)")
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
        malformed_rate_ppm=args.malformed_rate_ppm,
    )


def _to_kafka(config: Any, args: argparse.Namespace) -> int:
    from streams.devkit.simulator import SimulationSummary, send_to_kafka  # the dev kit, lazily
    from streams.settings import Settings
    from streams.topics import ensure_topics

    settings = Settings.from_env(bootstrap_servers=args.bootstrap_servers)
    if not settings.bootstrap_servers:
        print("error: --kafka needs LOYALTY_BOOTSTRAP_SERVERS or --bootstrap-servers", file=sys.stderr)
        return 2
    ensure_topics(settings)
    summary = SimulationSummary()
    last = send_to_kafka(config, settings.bootstrap_servers, settings.events_topic, summary,
                         kafka_python_options(settings))
    print(f"sent to {settings.events_topic}: last offsets by partition {dict(sorted(last.items()))}")
    print(summary.describe())
    return 0


def _iso_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {text!r}") from None
