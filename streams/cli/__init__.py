"""The ``loyalty`` command line: ``main`` builds the parser from each command
module, turns SIGTERM and SIGHUP into a clean stop, and turns an operator's
mistake (a missing file, an unreachable service, a bad flag) into one line
on standard error and a non-zero status instead of a traceback.

Each command decodes its arguments, calls one application function and
prints; business rules live in ``ledger/``.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from importlib import metadata

from streams.cli import api, audit, devkit, kpis, members, simulate, stream
from streams.cli.options import OperatorParser, operator_error

INTERRUPTED_EXIT_STATUS = 130
SERVICE_COMMANDS = ("worker", "relay")  # long-running: the Kafka client's own warnings stay visible
DESCRIPTION = """\
An event-sourced loyalty ledger fed by Kafka.

Try it:   loyalty demo            (a simulated retail chain, about 90 s)
Keep it:  loyalty up              (a local broker, PostgreSQL, workers; then
                                   setup / produce / member / verify from here)
Connect:  LOYALTY_BOOTSTRAP_SERVERS and LOYALTY_DATABASE_URL point every
          command at your own Kafka and PostgreSQL (README, "Configuration").

`loyalty COMMAND --help` explains each command.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = OperatorParser(prog="loyalty", description=DESCRIPTION,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_package_version()}",
                        help="print the version and exit")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    stream.add_subcommands(commands)
    devkit.add_subcommands(commands)
    simulate.add_subcommand(commands)
    audit.add_subcommands(commands)
    api.add_subcommands(commands)
    kpis.add_subcommand(commands)
    members.add_subcommands(commands)
    return parser


def _package_version() -> str:
    try:
        return metadata.version("loyalty-ledger")
    except metadata.PackageNotFoundError:
        return "(not installed)"


def _interrupt_on_sigterm(signum, frame) -> None:
    """SIGTERM is Ctrl-C: a following service stops cleanly (status 0), a one-shot
    command unwinds (embedded servers and child processes are stopped) with 130."""
    raise KeyboardInterrupt


def _sigterm_on_sighup(signum, frame) -> None:
    """A closed terminal (SIGHUP) stops a command exactly as SIGTERM does, whoever handles
    SIGTERM at that moment (this module, or faust's loop inside a worker)."""
    os.kill(os.getpid(), signal.SIGTERM)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    signal.signal(signal.SIGTERM, _interrupt_on_sigterm)
    signal.signal(signal.SIGHUP, _sigterm_on_sighup)
    args = build_parser().parse_args(argv)
    if args.command not in SERVICE_COMMANDS:  # a one-shot command reports its own one-line error
        logging.getLogger("kafka").setLevel(logging.CRITICAL)
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return INTERRUPTED_EXIT_STATUS
    except Exception as error:  # noqa: BLE001 - only operator mistakes are caught; a bug re-raises
        status = operator_error(error, args.command)
        if status is None:
            raise
        return status


if __name__ == "__main__":
    sys.exit(main())
