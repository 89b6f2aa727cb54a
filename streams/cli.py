"""The ``loyalty`` command line: an entry point that decodes arguments, calls
one application method and prints. Business rules live in ``ledger/``.
"""

from __future__ import annotations

import argparse
import sys

from ledger.program import ProgramError, load_program


def _check_program(args: argparse.Namespace) -> int:
    try:
        program = load_program(args.file)
    except ProgramError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    tiers = ", ".join(f"{t.name} >= {t.threshold_minor} ({t.multiplier_pct}%)" for t in program.tiers)
    print(f"program {program.name!r} OK: currency {program.currency}; tiers {tiers}")
    return 0


def _coming(args: argparse.Namespace) -> int:
    print(f"`loyalty {args.command}` is not built yet: see the open issues.", file=sys.stderr)
    return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="loyalty", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check-program", help="validate a program file (TOML)")
    check.add_argument("file", nargs="?", help="program file; the default program when omitted")
    check.set_defaults(run=_check_program)
    for name in ("demo", "worker", "produce", "process"):
        commands.add_parser(name, help="(coming)").set_defaults(run=_coming)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
