"""The developer-facing commands: ``process`` and ``demo``.

They start embedded services from the dev kit (``streams/devkit/``), which
is imported here lazily, inside each command, so no production path loads it.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from streams.cli.options import (add_command, connection_flags, non_negative_int, positive_int,
                                  relay_in_worker_flag, settings_from)

DEMO_PLAIN_WIDTH_CHARS = 120  # without a terminal: the dashboard's panels and tables fit, uncut


def _process(args: argparse.Namespace) -> int:
    from streams.process import ProcessError, process

    keep = Path(args.keep) if args.keep else None
    progress = terminal_progress()
    try:
        process(Path(args.input), Path(args.out), settings_from(args, stack=False), workers=args.workers,
                keep_dir=keep, progress=progress)
    except ProcessError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        if progress is not None:
            sys.stderr.write("\n")
    print(f"wrote the read models, the ledger, the dead letters, kpis.jsonl and logs/ to {args.out}")
    if keep is not None:
        print(f"kept the store: `loyalty up --dir {keep} --keep-ledger` reopens it for member, verify, export")
    return 0


def terminal_progress():
    """A progress line rewritten in place on a terminal's standard error; None without a terminal."""
    if not sys.stderr.isatty():
        return None

    def show(text: str) -> None:
        sys.stderr.write(f"\r\033[K{text}")
        sys.stderr.flush()
    return show


def demo_console():
    """The demo's console: the terminal's; without one plain text as wide as the dashboard needs."""
    from rich.console import Console

    if sys.stdout.isatty():
        return Console()
    return Console(width=DEMO_PLAIN_WIDTH_CHARS, no_color=True, highlight=False, emoji=False)


def _demo(args: argparse.Namespace) -> int:
    from streams.devkit.demo import DEMO_PROGRAM_PATH, DemoOptions, run_demo
    from streams.process import ProcessError

    options = DemoOptions(members=args.members, stores=args.stores, days=args.days,
                          seed=args.seed, workers=args.workers,
                          rate_events_per_s=args.rate, demo_dir=Path(args.dir),
                          till_sessions_per_s=args.till_sessions_per_s)
    if args.program is None and not os.environ.get("LOYALTY_PROGRAM_FILE"):
        args.program = str(DEMO_PROGRAM_PATH)  # the demo's campaigns (section 12)
    try:
        return run_demo(options, settings_from(args, stack=False), demo_console())
    except ProcessError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


def _up(args: argparse.Namespace) -> int:
    from streams.devkit.stack import StackError, UpOptions, run_up
    from streams.process import ProcessError

    options = UpOptions(stack_dir=Path(args.dir), workers=args.workers, broker=args.broker,
                        fresh=args.fresh, keep_ledger=args.keep_ledger)
    try:
        return run_up(options, settings_from(args, stack=False))
    except (StackError, ProcessError) as error:
        print(f"loyalty up: error: {error}", file=sys.stderr)
        return 1


def add_subcommands(commands: Any) -> None:
    """Register process, demo and up on ``commands``."""
    up = add_command(commands, "up", "keep a local broker, PostgreSQL, workers and projections running "
                                     "for other commands run from this directory")
    up.add_argument("--dir", default=".loyalty", metavar="DIR",
                    help="where the stack keeps its env file, logs and (by name) its store (.loyalty)")
    up.add_argument("--workers", type=positive_int, default=2, metavar="N", help="worker processes (2)")
    up.add_argument("--partitions", type=positive_int, metavar="N",
                    help="partitions of the topics (default: LOYALTY_PARTITIONS, 8)")
    up.add_argument("--program", metavar="FILE",
                    help="program rules, TOML (default: LOYALTY_PROGRAM_FILE, else the built-in program)")
    up.add_argument("--broker", choices=("embedded", "kafka"), default="embedded",
                    help="embedded: tansu, topics in memory (default); kafka: Apache Kafka (needs java, mvn); "
                         "LOYALTY_BOOTSTRAP_SERVERS set: that broker")
    keep = up.add_mutually_exclusive_group()
    keep.add_argument("--fresh", action="store_true", help="delete the store of DIR first: an empty ledger")
    keep.add_argument("--keep-ledger", action="store_true",
                      help="keep the store of DIR and apply the new (empty) topics from their start")
    relay_in_worker_flag(up)
    up.set_defaults(run=_up)

    run = add_command(commands, "process", "run a JSONL file through the whole pipeline and write "
                                           "the results to a directory")
    connection_flags(run)
    run.add_argument("input", metavar="INPUT", help="JSONL file, one inbound event per line")
    run.add_argument("--out", required=True, metavar="DIR",
                     help="directory for the read models, the ledger and the dead letters")
    run.add_argument("--workers", type=positive_int, default=2, metavar="N",
                     help="worker processes (default 2)")
    run.add_argument("--keep", metavar="DIR",
                     help="keep the embedded store for DIR (then `loyalty up --dir DIR --keep-ledger` "
                          "reopens it); default: removed at exit")
    relay_in_worker_flag(run)
    run.set_defaults(run=_process)

    demo = add_command(commands, "demo", "a simulated retail chain through the whole system, "
                                         "with a live dashboard")
    connection_flags(demo)
    demo.add_argument("--members", type=positive_int, default=1000, metavar="N",
                      help="members at the start (1000)")
    demo.add_argument("--stores", type=positive_int, default=20, metavar="N", help="stores (20)")
    demo.add_argument("--days", type=positive_int, default=365, metavar="N", help="simulated days (365)")
    demo.add_argument("--seed", type=int, default=42, metavar="N", help="simulation seed (42)")
    demo.add_argument("--workers", type=positive_int, default=2, metavar="N", help="worker processes (2)")
    demo.add_argument("--rate", type=positive_int, default=1500, metavar="N",
                      help="events sent per second (1500)")
    demo.add_argument("--dir", default=".loyalty-demo", metavar="DIR",
                      help="where the demo keeps its embedded store and logs (.loyalty-demo)")
    demo.add_argument("--till-sessions-per-s", type=non_negative_int, default=5, metavar="N",
                      help="simulated till sessions per second through the till API "
                           "(hold, then capture, void or run out; 0: none) (5)")
    relay_in_worker_flag(demo)
    demo.set_defaults(run=_demo)
