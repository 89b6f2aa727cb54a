"""What every ``loyalty`` command shares: its connection flags and the
``Settings`` they override, the parser that reports a bad flag in one line,
the one-line messages for operators' mistakes, and the console that prints
plain, uncut text when the output is not a terminal."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from rich.console import Console

from ledger.settings import with_stack_env
from streams.settings import Settings

USAGE_EXIT_STATUS = 2          # a bad flag, a missing or unreadable file, a version or year that does not exist
UNREACHABLE_EXIT_STATUS = 1    # Kafka or PostgreSQL cannot be reached
PLAIN_OUTPUT_WIDTH_CHARS = 10_000  # without a terminal nothing is cut (tables are as wide as their rows)
ERROR_LINE_CHARS_MAX = 1000


class OperatorParser(argparse.ArgumentParser):
    """An argument parser whose mistakes are one line: what is wrong, and where the help is."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_EXIT_STATUS, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def settings_from(args: argparse.Namespace, stack: bool = True) -> Settings:
    """Flags over ``LOYALTY_*`` variables over (``stack``) a local ``loyalty up`` stack's env file."""
    return Settings.from_env(
        with_stack_env() if stack else None,
        bootstrap_servers=getattr(args, "bootstrap_servers", None),
        database_url=getattr(args, "database_url", None),
        program_file=getattr(args, "program", None),
        partitions=getattr(args, "partitions", None),
        relay_in_worker=True if getattr(args, "relay_in_worker", False) else None,
    )


def connection_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bootstrap-servers", metavar="HOST:PORT,...",
                        help="Kafka to use (default: LOYALTY_BOOTSTRAP_SERVERS)")
    parser.add_argument("--database-url", metavar="URL",
                        help="PostgreSQL event store, postgresql://... (default: LOYALTY_DATABASE_URL)")
    parser.add_argument("--program", metavar="FILE",
                        help="program rules, TOML (default: LOYALTY_PROGRAM_FILE, else the built-in program)")
    parser.add_argument("--partitions", type=positive_int, metavar="N",
                        help="partitions of topics this command creates (default: LOYALTY_PARTITIONS, 8)")


def relay_in_worker_flag(parser: argparse.ArgumentParser) -> None:
    """``--relay-in-worker``: the previous design, the relay in the first worker's thread."""
    parser.add_argument("--relay-in-worker", action="store_true",
                        help="run the outbox relay in the first worker (the previous design), not as its "
                             "own `loyalty relay` process (default: LOYALTY_RELAY_IN_WORKER, false)")


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    return _whole_number(text, 1)


def non_negative_int(text: str) -> int:
    """An argparse type: a whole number of at least 0."""
    return _whole_number(text, 0)


def _whole_number(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"{value} is not allowed: at least {minimum}")
    return value


def plain_console(stderr: bool = False) -> Console:
    """A rich console: styled on a terminal; else plain text whose tables are never cut."""
    stream = sys.stderr if stderr else sys.stdout
    if stream.isatty():
        return Console(stderr=stderr)
    return Console(stderr=stderr, width=PLAIN_OUTPUT_WIDTH_CHARS, no_color=True, highlight=False,
                   emoji=False)


def operator_error(error: Exception, command: str) -> int | None:
    """Print an operator's mistake as one line and return the exit status; None for a bug."""
    found = _describe(error)
    if found is None:
        return None
    status, text = found
    first_line = (text.strip().splitlines() or [type(error).__name__])[0][:ERROR_LINE_CHARS_MAX]
    print(f"loyalty {command}: error: {first_line}", file=sys.stderr)
    return status


def _describe(error: Exception) -> tuple[int, str] | None:
    from ledger.program import ProgramError
    from streams.batches import DatabaseUnavailable
    from streams.topic_identity import EXIT_TOPIC_RECREATED, TopicRecreated

    if isinstance(error, ProgramError):
        return USAGE_EXIT_STATUS, str(error)
    if isinstance(error, TopicRecreated):
        return EXIT_TOPIC_RECREATED, str(error)
    if isinstance(error, DatabaseUnavailable):
        return UNREACHABLE_EXIT_STATUS, f"the database cannot be reached: {error}"
    if _is_database_unreachable(error):
        return UNREACHABLE_EXIT_STATUS, f"the database cannot be reached: {_first_line(error)}"
    if _is_kafka_unreachable(error):
        return UNREACHABLE_EXIT_STATUS, f"Kafka cannot be reached: {_first_line(error)}"
    if isinstance(error, OSError) and error.filename is not None:
        return USAGE_EXIT_STATUS, f"{error.strerror or error}: {error.filename}"
    return None


def _first_line(error: Exception) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def _is_database_unreachable(error: Exception) -> bool:
    import psycopg
    from eventsourcing.persistence import InterfaceError, OperationalError

    return isinstance(error, (psycopg.OperationalError, OperationalError, InterfaceError))


def _is_kafka_unreachable(error: Exception) -> bool:
    import aiokafka.errors
    import kafka.errors

    unreachable = (kafka.errors.BrokerNotAvailableError, kafka.errors.KafkaTimeoutError,
                   kafka.errors.KafkaConnectionError, aiokafka.errors.KafkaConnectionError)
    return isinstance(error, unreachable)


def add_command(commands, name: str, helptext: str) -> argparse.ArgumentParser:
    """A subcommand whose one-line help is also its description (``loyalty NAME --help``)."""
    return commands.add_parser(name, help=helptext, description=helptext)
