"""The developer-facing commands: ``process`` and ``demo``.

They start embedded services from the dev kit (``streams/devkit/``), which
is imported here lazily, inside each command, so no production path loads it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from streams.cli.options import add_command, connection_flags, positive_int, settings_from


def _process(args: argparse.Namespace) -> int:
    from streams.process import ProcessError, process

    try:
        process(Path(args.input), Path(args.out), settings_from(args, stack=False), workers=args.workers)
    except ProcessError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"wrote the read models and logs to {args.out}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from streams.devkit.demo import DemoOptions, run_demo
    from streams.process import ProcessError

    options = DemoOptions(members=args.members, stores=args.stores, days=args.days,
                          seed=args.seed, workers=args.workers,
                          rate_events_per_s=args.rate, demo_dir=Path(args.dir))
    try:
        return run_demo(options, settings_from(args, stack=False))
    except ProcessError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


def add_subcommands(commands: Any) -> None:
    """Register process and demo on ``commands``."""
    run = add_command(commands, "process", "run a JSONL file through the whole pipeline and write "
                                           "the results to a directory")
    connection_flags(run)
    run.add_argument("input", metavar="INPUT", help="JSONL file, one inbound event per line")
    run.add_argument("--out", required=True, metavar="DIR",
                     help="directory for the read models, the ledger and the dead letters")
    run.add_argument("--workers", type=positive_int, default=2, metavar="N",
                     help="worker processes (default 2)")
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
    demo.set_defaults(run=_demo)
