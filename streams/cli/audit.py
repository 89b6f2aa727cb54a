"""The auditor's commands: ``replay``, ``verify``, ``member``, ``export``, ``close-year``.

``add_subcommands(subparsers)`` registers them on the ``loyalty`` command
line (``streams/cli/__init__.py`` calls it); each sets ``run`` to a function taking
the parsed arguments and returning the exit status. They decode arguments,
call one function of ``projections`` and print: no rule lives here.

Every command takes ``--database-url`` (default: ``LOYALTY_DATABASE_URL``)
and ``--program`` (default: ``LOYALTY_PROGRAM_FILE``, else the default program);
the flags override ``ledger.settings.LedgerSettings``, where every setting is read.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any, TextIO

import orjson
from rich.console import Console
from rich.table import Table

from ledger.application import LoyaltyLedger
from ledger.calendar import parse_timestamp
from ledger.program import ProgramError
from ledger.settings import LedgerSettings, with_stack_env
from projections import follower
from projections.auditor import member_view, member_view_document, render_member_view
from projections.export import EXPORT_KINDS, FORMATS, READ_MODEL_EXPORTS, export
from projections.runner import (BATCH_NOTIFICATIONS_MAX_DEFAULT, READ_MODEL_NAMES,
                                REPLAY_BATCH_NOTIFICATIONS_MAX_DEFAULT, ReadModels,
                                catch_up, open_read_models)
from projections.split_replay import (REPLAY_PROCESSES_DEFAULT, REPLAY_PROCESSES_MAX, replay,
                                      resume)
from projections.verify import VerifyReport, verify
from projections.year_end import year_closed_events
from streams.cli.options import plain_console, positive_int
from streams.gc_tuning import tune_gc
from streams.metrics import default_metrics, start_http

DATABASE_URL_ENV = "LOYALTY_DATABASE_URL"
PROGRAM_FILE_ENV = "LOYALTY_PROGRAM_FILE"
MISMATCHES_SHOWN_MAX_DEFAULT = 50
EXIT_OK, EXIT_MISMATCH, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """A command that cannot run as given; the message says why."""


def add_subcommands(subparsers: Any) -> None:
    """Register replay, verify, member, export and close-year on ``subparsers``."""
    for name, helptext, configure, run in COMMANDS:
        parser = subparsers.add_parser(name, help=helptext, description=helptext)
        _connection_flags(parser)
        configure(parser)
        parser.set_defaults(run=_guarded(run))


def _connection_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--database-url", metavar="URL",
                        help=f"PostgreSQL event store, postgresql://... (default: {DATABASE_URL_ENV})")
    parser.add_argument("--program", metavar="FILE",
                        help=f"program rules, TOML (default: {PROGRAM_FILE_ENV}, else the built-in program)")


def _guarded(run: Any) -> Any:
    def guarded(args: argparse.Namespace) -> int:
        try:
            return run(args)
        except (UsageError, ProgramError, ValueError) as error:
            print(f"error: {error}", file=sys.stderr)
            return EXIT_USAGE
    return guarded


def settings_from(args: argparse.Namespace) -> LedgerSettings:
    """The ``LOYALTY_*`` settings, overridden by the command's flags."""
    return LedgerSettings.from_env(
        with_stack_env(), database_url=args.database_url, program_file=args.program,
        follow_batch_notifications_max=getattr(args, "batch_notifications_max", None))


def eventsourcing_env(args: argparse.Namespace) -> dict[str, str]:
    """The event store's settings from ``--database-url`` / ``LOYALTY_DATABASE_URL``."""
    settings = settings_from(args)
    if not settings.database_url:
        raise UsageError(f"give --database-url or set {DATABASE_URL_ENV} "
                         "(or start a local stack here with `loyalty up`)")
    return settings.store_env()


@contextmanager
def opened(args: argparse.Namespace,
           names: Any = None) -> Iterator[tuple[LoyaltyLedger, ReadModels]]:
    env = eventsourcing_env(args)
    ledger = LoyaltyLedger(env=env)
    try:
        with open_read_models(env, names, ledger.program) as models:
            yield ledger, models
    finally:
        ledger.close()


@contextmanager
def output(path: str | None) -> Iterator[TextIO]:
    if path is None or path == "-":
        yield sys.stdout
        return
    with open(path, "w", encoding="utf-8", newline="") as stream:
        yield stream


# ---------------------------------------------------------------- replay


def _configure_replay(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("read_models", nargs="*", metavar="READ_MODEL",
                        help=f"any of {', '.join(READ_MODEL_NAMES)} (default: all)")
    parser.add_argument("--batch-notifications-max", type=positive_int, default=None, metavar="N",
                        help=f"notifications per transaction (rebuild: "
                             f"{REPLAY_BATCH_NOTIFICATIONS_MAX_DEFAULT:,}; --follow: "
                             f"{BATCH_NOTIFICATIONS_MAX_DEFAULT:,})")
    parser.add_argument("--resume", action="store_true",
                        help="do not drop: catch up from the tracked positions (a restart)")
    parser.add_argument("--processes", type=positive_int, default=None, metavar="N",
                        help=f"rebuild read models from empty in N processes, each over its share "
                             f"of the members, then merge (default {REPLAY_PROCESSES_DEFAULT}, "
                             f"with --follow 1; 1: one process, the previous design)")
    parser.add_argument("--follow", action="store_true",
                        help="then keep following the ledger live until interrupted")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def replay_processes(args: argparse.Namespace) -> int:
    """``--processes``, by default ``REPLAY_PROCESSES_DEFAULT``; a follower (``--follow``)
    rebuilds in one process unless told otherwise: it is restarted while an operator's
    replay may be running (``loyalty up``), and two split rebuilds would share staging
    schemas, while one-process catch-ups coordinate through the read models' positions."""
    if args.processes is not None:
        return args.processes
    return 1 if args.follow else REPLAY_PROCESSES_DEFAULT


def run_replay(args: argparse.Namespace) -> int:
    names = args.read_models or list(READ_MODEL_NAMES)
    args.processes = replay_processes(args)
    if args.processes > REPLAY_PROCESSES_MAX:
        raise UsageError(f"--processes {args.processes}: at most {REPLAY_PROCESSES_MAX}")
    unknown = sorted(set(names) - set(READ_MODEL_NAMES))
    if unknown:
        raise UsageError(f"unknown read model {', '.join(unknown)}; known: "
                         f"{', '.join(READ_MODEL_NAMES)}")
    console = None if args.no_progress else plain_console(stderr=True)
    with opened(args, names) as (ledger, models):
        rebuild = resume if args.resume else replay
        done = rebuild(ledger, models, processes=args.processes,
                       batch_notifications_max=batch_sizes(args)[0], console=console)
        verb = "caught up" if args.resume else "replayed"
        print(f"{verb} {', '.join(names)}: {done.notifications} notifications in "
              f"{done.transactions} transactions ({args.processes} processes), position "
              f"{done.position}", file=sys.stderr)
        if not args.follow:
            return EXIT_OK
        return follow(ledger, models, names, settings_from(args))


def batch_sizes(args: argparse.Namespace) -> tuple[int, int]:
    """Notifications per transaction: (rebuilding or resuming, following live).

    A rebuild commits rarely (it holds rows in memory and writes them with
    COPY, ``projections/runner.py``); following live commits small batches
    (``LOYALTY_FOLLOW_BATCH_NOTIFICATIONS_MAX``). ``--batch-notifications-max``
    sets both.
    """
    rebuild = args.batch_notifications_max or REPLAY_BATCH_NOTIFICATIONS_MAX_DEFAULT
    return rebuild, settings_from(args).follow_batch_notifications_max


def follow(ledger: LoyaltyLedger, models: ReadModels, names: list[str],
           settings: LedgerSettings) -> int:
    """Follow the ledger live (``projections/follower.py``) until Ctrl-C / SIGTERM (then exit 0).

    With ``LOYALTY_METRICS_PORT`` set it serves ``/metrics``
    (``loyalty_projection_lag_notifications``) and ``/healthz``.
    """
    try:
        with ExitStack() as stack:
            record_lag = _serve_health(stack, settings)
            print(f"following {', '.join(names)} live (Ctrl-C stops)", file=sys.stderr)
            tune_gc(settings)
            follower.follow(ledger, models, settings, record_lag)
    except KeyboardInterrupt:
        return EXIT_OK


def _serve_health(stack: ExitStack, settings: LedgerSettings) -> Any:
    """The metrics and health server when ``LOYALTY_METRICS_PORT`` is set; the lag recorder."""
    if not settings.metrics_port:
        return None
    stack.callback(start_http(settings.metrics_port, health=lambda: True).close)
    return default_metrics().set_projection_lag


# ---------------------------------------------------------------- verify


def _configure_verify(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--catch-up", action="store_true",
                        help="catch the read models up with the ledger first")
    parser.add_argument("--mismatches-shown-max", type=positive_int, default=MISMATCHES_SHOWN_MAX_DEFAULT,
                        metavar="N",
                        help="rows of the mismatch table (%(default)s); all are counted")


def run_verify(args: argparse.Namespace) -> int:
    with opened(args, READ_MODEL_EXPORTS) as (ledger, models):
        if args.catch_up:
            catch_up(ledger, models, batch_notifications_max=BATCH_NOTIFICATIONS_MAX_DEFAULT)
        report = verify(ledger, models)
    print_report(report, plain_console(), args.mismatches_shown_max)
    return EXIT_OK if report.ok else EXIT_MISMATCH


def print_report(report: VerifyReport, console: Console, shown_max: int) -> None:
    positions = ", ".join(f"{name} at {position}" for name, position in report.positions.items())
    console.print(f"checked {report.members} members; ledger head {report.head}; {positions}")
    if report.ok:
        console.print("[green]no mismatches[/green]")
        return
    table = Table(title=f"{len(report.mismatches)} mismatches")
    for column in ("read model", "member", "year", "field", "ledger", "read model value"):
        table.add_column(column)
    for m in report.mismatches[:shown_max]:
        table.add_row(m.read_model, m.member_id, _cell(m.year), m.field, _cell(m.ledger),
                      _cell(m.read_model_value))
    console.print(table)


def _cell(value: Any) -> str:
    return "" if value is None else str(value)


# ---------------------------------------------------------------- member


def _configure_member(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("member_id", metavar="MEMBER", help="the member's id, e.g. M-000123")
    when = parser.add_mutually_exclusive_group()
    when.add_argument("--as-of", metavar="TIME",
                      help="RFC 3339 time: the state after the last fact at or before it")
    when.add_argument("--version", type=positive_int, metavar="N",
                      help="the account as it was at ledger version N (1 = its first fact)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument("--profile", action="store_true",
                        help="also decrypt and show the member's profile (personal data: "
                             "for the auditor's eyes only; nothing of it is logged)")


def run_member(args: argparse.Namespace) -> int:
    as_of = parse_timestamp(args.as_of) if args.as_of else None
    ledger = LoyaltyLedger(env=eventsourcing_env(args))
    try:
        view = member_view(ledger, args.member_id, as_of=as_of, version=args.version,
                           with_profile=args.profile)
    finally:
        ledger.close()
    if view is None:
        raise UsageError(f"member {args.member_id!r} has no facts at that point")
    if args.version is not None and view.version != args.version:
        raise UsageError(f"member {args.member_id!r} has versions 1 to {view.version}; "
                         f"there is no version {args.version}")
    if args.json:
        print(orjson.dumps(member_view_document(view), option=orjson.OPT_INDENT_2).decode())
    else:
        render_member_view(view, plain_console())
    return EXIT_OK


# ---------------------------------------------------------------- export


def _configure_export(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("kind", choices=EXPORT_KINDS, metavar="KIND",
                        help=f"what to export: {', '.join(EXPORT_KINDS)}")
    parser.add_argument("--format", choices=FORMATS, default="jsonl",
                        help=f"{' or '.join(FORMATS)} (default jsonl)")
    parser.add_argument("--out", help="file to write (standard output by default)")
    parser.add_argument("--no-catch-up", action="store_true",
                        help="export the read models as they stand, without catching up first")


def run_export(args: argparse.Namespace) -> int:
    with opened(args) as (ledger, models):
        if not args.no_catch_up:
            catch_up(ledger, models, batch_notifications_max=BATCH_NOTIFICATIONS_MAX_DEFAULT)
        with output(args.out) as out:
            count = export(args.kind, ledger, models, out, args.format)
    print(f"exported {count} {args.kind} rows", file=sys.stderr)
    return EXIT_OK


# ---------------------------------------------------------------- close-year


def _configure_close_year(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("year", type=int, metavar="YEAR", help="the year to close, e.g. 2025")
    parser.add_argument("--out", help="JSONL file of the events (standard output by default)")


def run_close_year(args: argparse.Namespace) -> int:
    ledger = LoyaltyLedger(env=eventsourcing_env(args))
    try:
        events = year_closed_events(ledger, args.year)
    finally:
        ledger.close()
    with output(args.out) as out:
        for event in events:
            out.write(orjson.dumps(event).decode() + "\n")
    print(f"{len(events)} year_closed events for {args.year}", file=sys.stderr)
    return EXIT_OK


COMMANDS = (
    ("replay", "drop read models and rebuild them from the event store", _configure_replay,
     run_replay),
    ("verify", "recompute every member from the ledger and compare with the read models",
     _configure_verify, run_verify),
    ("member", "the auditor's view of one member (now, --as-of TIME or --version N)",
     _configure_member, run_member),
    ("export", "write a read model or the ledger's facts as JSONL or CSV", _configure_export,
     run_export),
    ("close-year", "the year-end job's year_closed events, one per known member",
     _configure_close_year, run_close_year),
)
