"""``loyalty birthdays`` and ``loyalty expiry-notices``: section 13's daily jobs.

Each decodes its flags, calls one function of ``ledger.member_jobs`` on the
event store, and either prints the messages (``--dry-run``: JSONL on
standard output, nothing sent) or sends them: birthday events to the events
topic (the workers apply them; a second run is all duplicates), expiry
notices to the notifications topic (the same ids on a second run). Neither
prints a profile field.
"""

from __future__ import annotations

import argparse
import sys
from datetime import date, datetime
from typing import Any

import orjson

from ledger.calendar import to_utc
from streams.cli.options import add_command, connection_flags, positive_int, settings_from

USAGE_EXIT_STATUS = 2


def _birthdays(args: argparse.Namespace) -> int:
    from ledger.member_jobs import birthday_events, daily_birthdays

    job = birthday_events if args.dry_run else daily_birthdays
    return _run(args, lambda ledger: job(ledger, args.date), "events_topic", "birthday events")


def _expiry_notices(args: argparse.Namespace) -> int:
    from ledger.member_jobs import expiry_notices

    return _run(args, lambda ledger: expiry_notices(ledger, args.as_of, args.within_days),
                "notifications_topic", "points_expiring notices")


def _run(args: argparse.Namespace, job: Any, topic_field: str, what: str) -> int:
    from streams.worker import open_ledger

    settings = settings_from(args)
    if not settings.database_url or (not args.dry_run and not settings.bootstrap_servers):
        print("error: needs LOYALTY_DATABASE_URL and (unless --dry-run) LOYALTY_BOOTSTRAP_SERVERS",
              file=sys.stderr)
        return USAGE_EXIT_STATUS
    ledger = open_ledger(settings)
    try:
        messages = job(ledger)
    finally:
        ledger.close()
    if args.dry_run:
        for message in messages:
            print(orjson.dumps(message).decode())
        print(f"dry run: {len(messages)} {what}, nothing sent", file=sys.stderr)
        return 0
    _send(settings, getattr(settings, topic_field), messages)
    print(f"sent {len(messages)} {what} to {getattr(settings, topic_field)}")
    return 0


def _send(settings: Any, topic: str, messages: list[dict]) -> None:
    from streams.kafka_security import kafka_python_options
    from streams.producer import produce_lines
    from streams.topics import ensure_topics

    ensure_topics(settings)
    produce_lines(settings.bootstrap_servers, topic, [orjson.dumps(m) for m in messages],
                  kafka_python_options(settings))


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date YYYY-MM-DD") from None


def _time(text: str):
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not an RFC 3339 time with an offset")
    return to_utc(moment)


def add_subcommands(commands: Any) -> None:
    """Register birthdays and expiry-notices on ``commands``."""
    birthdays = add_command(commands, "birthdays", "send a birthday event for every enrolled, not "
                                                   "erased member born on --date (daily job)")
    connection_flags(birthdays)
    birthdays.add_argument("--date", type=_day, required=True, metavar="YYYY-MM-DD",
                           help="the day celebrated (29 February falls on 28 February otherwise)")
    birthdays.add_argument("--dry-run", action="store_true", help="print the events, send nothing")
    birthdays.set_defaults(run=_birthdays)

    notices = add_command(commands, "expiry-notices", "publish points_expiring notices for lots "
                                                      "expiring within N days of --as-of")
    connection_flags(notices)
    notices.add_argument("--as-of", type=_time, required=True, metavar="TIME",
                         help="RFC 3339 time with an offset, e.g. 2026-03-01T00:00:00Z")
    notices.add_argument("--within-days", type=positive_int, required=True, metavar="N",
                         help="days after --as-of (1..366)")
    notices.add_argument("--dry-run", action="store_true", help="print the notices, send nothing")
    notices.set_defaults(run=_expiry_notices)
