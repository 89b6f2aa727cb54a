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

from streams.cli import api, audit, devkit, simulate, stream

INTERRUPTED_EXIT_STATUS = 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="loyalty", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    stream.add_subcommands(commands)
    devkit.add_subcommands(commands)
    simulate.add_subcommand(commands)
    audit.add_subcommands(commands)
    api.add_subcommands(commands)
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
