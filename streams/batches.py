"""Apply a batch of Kafka messages to the ledger with an exactly-once effect.

This module runs in a worker thread (never on the faust event loop). For a
batch of messages from one or more partitions (each partition's messages in
offset order) it:

1. reads the tracked offset of every partition in the batch from the event
   store (one query) and skips every message at or below its partition's
   (a redelivery after a crash or rebalance);
2. decodes and validates each message; bad input becomes a ``DeadLetter``
   record (not JSON, schema, unknown type, key that is not the member id);
3. hands the valid commands, the dead letters and one ``Tracking`` record
   per partition (topic:partition -> last offset) to the ledger's one
   method, ``LoyaltyLedger.process_batch``: it decides the commands in order
   and saves every account's facts, the dead letters and the tracking
   records in one database transaction (an ``event_id`` seen with another
   payload becomes a dead letter too, ``event_id_conflict``), and drops its
   account cache itself whenever that fails.

One transaction per worker batch rather than per partition: the event store
serialises writers with a table lock and each transaction costs several
round trips and a WAL flush, so fewer, larger transactions are the cheapest
throughput there is (``docs/BENCHMARKS.md``). A member's messages all come
from one partition of a topic, so nothing about a member's order changes.

A tracking or version conflict (another worker committed first: a zombie
after a rebalance) raises IntegrityError inside the transaction, so nothing
is saved twice; the batch is retried from step 1, which then skips what the
other worker applied. A message that makes the ledger raise anything else is
retried alone ``ledger_attempts_max`` times and then dead-lettered
(``ledger_error``), so it never blocks its partition.

A database that cannot be reached (``OperationalError``/``InterfaceError``:
the server restarting, the network gone) is not a conflict and not a poison
message: ``DatabaseOutage`` retries the whole batch with a doubling back-off
(``database_retry_backoff_ms`` up to ``database_retry_backoff_ms_max``) for
as long as the outage lasts less than ``database_unavailable_s_max``; then it
raises ``DatabaseUnavailable`` and the worker exits non-zero (``worker.py``).
Nothing is committed while the database is away, so a retried batch is the
same batch: the tracking row decides what is still to apply.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Sequence, TypeVar

import orjson
from eventsourcing.persistence import IntegrityError, InterfaceError, OperationalError, Tracking

from ledger.application import CONFLICT, DUPLICATE, DecisionFailed, LoyaltyLedger, Result
from ledger.commands import Command, command_from_event
from ledger.dead_letters import DeadLetter
from ledger.sealed_dead_letters import DeadLetterSealer
from ledger.domain import fact_type
from streams.settings import Settings
from streams.validation import InvalidInput, dead_letter_document, decode_inbound

log = logging.getLogger(__name__)

UNREACHABLE = (OperationalError, InterfaceError)  # the database, not the batch, is the problem
T = TypeVar("T")


def _after(messages: Sequence[InboundMessage], names: dict, tracked: dict) -> list[InboundMessage]:
    """The messages above their partition's tracked position (None: nothing tracked yet)."""
    return [m for m in messages if tracked[names[m]] is None or m.offset > tracked[names[m]]]


class DatabaseUnavailable(RuntimeError):
    """The database could not be reached for longer than ``database_unavailable_s_max``."""


class DatabaseOutage:
    """Bounded retries while the database cannot be reached.

    ``call(operation)`` runs ``operation`` until it returns; each time it
    raises ``OperationalError`` or ``InterfaceError`` the caller waits
    (``database_retry_backoff_ms``, doubling up to ``database_retry_backoff_ms_max``)
    and tries again, until the outage (from the first failure of this call)
    has lasted ``database_unavailable_s_max``: then ``DatabaseUnavailable``.
    Setting ``stop`` ends the waiting early (a worker shutting down) with
    ``DatabaseUnavailable`` too. ``on_retry`` runs before each wait, for a
    caller with state to reset between attempts (the batch applier passes
    none: the ledger drops its cached accounts itself when deciding or
    saving fails). The check runs between attempts, so the outage can
    overrun the limit by one attempt (at most eventsourcing's own retries of
    one call, each waiting ``database_connect_timeout_s`` for a connection).
    """

    def __init__(self, settings: Settings, what: str, stop: threading.Event | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.what = what
        self.stop = stop or threading.Event()
        self.clock = clock
        self.outages = 0          # outages survived (for logs and tests)
        self.retries = 0          # attempts that failed because the database was away

    def call(self, operation: Callable[[], T], on_retry: Callable[[], None] = lambda: None) -> T:
        first_failure_at: float | None = None
        failures = 0
        while True:
            try:
                result = operation()
            except UNREACHABLE as error:
                now = self.clock()
                first_failure_at = now if first_failure_at is None else first_failure_at
                failures += 1
                self.retries += 1
                on_retry()
                self._wait_or_give_up(error, now - first_failure_at, failures)
                continue
            if failures:
                self.outages += 1
                log.warning("%s: the database is back after %.1f s and %d failed attempts",
                            self.what, self.clock() - first_failure_at, failures)
            return result

    def _wait_or_give_up(self, error: Exception, unavailable_s: float, failures: int) -> None:
        limit_s = self.settings.database_unavailable_s_max
        if unavailable_s >= limit_s:
            raise DatabaseUnavailable(
                f"{self.what}: the database has been unreachable for {unavailable_s:.1f} s "
                f"(database_unavailable_s_max = {limit_s} s, {failures} attempts); "
                f"last error: {error}") from error
        backoff_ms = min(self.settings.database_retry_backoff_ms * 2 ** min(failures - 1, 30),
                         self.settings.database_retry_backoff_ms_max)
        wait_s = min(backoff_ms / 1000, max(limit_s - unavailable_s, 0))
        log.warning("%s: database unreachable for %.1f s (attempt %d; giving up after %d s): %s; "
                    "retrying in %.1f s", self.what, unavailable_s, failures, limit_s,
                    str(error).splitlines()[0] if str(error) else type(error).__name__, wait_s)
        if self.stop.wait(wait_s):
            raise DatabaseUnavailable(f"{self.what}: stopped while the database was unreachable "
                                      f"({unavailable_s:.1f} s)") from error


@dataclass(frozen=True)
class InboundMessage:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None

    @property
    def position(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}"


@dataclass
class BatchReport:
    """What one partition batch did (for metrics and logs)."""

    applied: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    skipped: int = 0
    conflicts_retried: int = 0
    reasons: dict[str, int] = field(default_factory=dict)      # dead letters by reason
    rejections: dict[str, int] = field(default_factory=dict)   # business rejections by reason

    def count_dead_letter(self, reason: str) -> None:
        self.dead_letters += 1
        self.reasons[reason] = self.reasons.get(reason, 0) + 1

    def add(self, other: "BatchReport") -> None:
        """Merge a committed attempt's counts (only committed work is counted)."""
        self.applied += other.applied
        self.duplicates += other.duplicates
        self.dead_letters += other.dead_letters
        self.skipped += other.skipped
        for mine, theirs in ((self.reasons, other.reasons), (self.rejections, other.rejections)):
            for reason, count in theirs.items():
                mine[reason] = mine.get(reason, 0) + count


class Rejected(Exception):
    """A message that cannot become a command: it goes to the dead-letter topic."""

    def __init__(self, reason_code: str, message: str) -> None:
        super().__init__(message)
        self.reason_code = reason_code
        self.message = message


class PartitionBatchApplier:
    """Applies partition batches to one ``LoyaltyLedger``; thread-confined use."""

    def __init__(self, ledger: LoyaltyLedger, settings: Settings,
                 outage: DatabaseOutage | None = None,
                 confirm_topic: Callable[[str, dict[int, int]], None] | None = None) -> None:
        self.ledger = ledger
        self.settings = settings
        self.outage = outage or DatabaseOutage(settings, "partition batches")
        self.confirm_topic = confirm_topic  # raises (TopicRecreated) before a skip of another topic
        self.sealer = DeadLetterSealer(ledger)  # profile-bearing dead letters: encrypted (section 13)

    def apply(self, messages: Sequence[InboundMessage]) -> BatchReport:
        """Apply messages of one or more partitions (each in ascending offsets) exactly once in effect.

        Raises ``DatabaseUnavailable`` if the database stays unreachable for
        ``database_unavailable_s_max``; nothing of the batch is then committed.
        """
        return self.outage.call(lambda: self._apply_with_conflict_retries(messages))

    def _apply_with_conflict_retries(self, messages: Sequence[InboundMessage]) -> BatchReport:
        report = BatchReport()
        attempts_max = self.settings.ledger_attempts_max
        for attempt in range(1, attempts_max + 1):
            try:
                report.add(self._apply_once(messages))
                return report
            except IntegrityError as conflict:
                if attempt == attempts_max:
                    raise
                report.conflicts_retried += 1
                log.warning("batch %s attempt %d: %s (another worker committed these offsets or "
                            "accounts first: a zombie or a rebalance); retrying",
                            messages[0].position, attempt, conflict)
                time.sleep(self.settings.ledger_retry_backoff_ms * attempt / 1000)
        raise AssertionError("unreachable: the last attempt returns or raises")

    # ----------------------------------------------------------------- steps

    def _apply_once(self, messages: Sequence[InboundMessage], isolate: bool = True) -> BatchReport:
        """One attempt: returns what it committed; raises (counting nothing) if it did not."""
        report = BatchReport()
        fresh = self._fresh(messages)
        report.skipped = len(messages) - len(fresh)
        if not fresh:
            return report
        decoded, dead = self._decode_all(fresh, report)

        def conflict_dead_letter(index: int, result: Result) -> DeadLetter:
            return self._dead_letter(decoded[index][0], "event_id_conflict", result.error, 1)

        try:
            results = self.ledger.process_batch([command for _, command in decoded],
                                                self._tracking(fresh), dead, conflict_dead_letter)
        except DecisionFailed:  # the database's trouble is not caught: retried by ``apply``
            if not isolate:
                raise
            log.exception("batch %s: the ledger raised; applying its messages one by one",
                          fresh[0].position)
            return self._apply_isolated(fresh, BatchReport(skipped=report.skipped))
        self._count(results, report)
        return report

    def _fresh(self, messages: Sequence[InboundMessage]) -> list[InboundMessage]:
        """The messages after their partitions' positions. The ledger may know the positions
        from its own last save (``LOYALTY_LEDGER_POSITION_CACHE``); that only ever admits a
        message: a skip is decided on the positions read from the store just before (an
        operator's ``setup --accept-new-topics`` deletes them, for one), whatever the ledger
        cached (a redelivery, the one case with skips, reads them once more)."""
        names = {message: self._tracking_name(message) for message in messages}
        wanted = sorted(set(names.values()))
        tracked = self.ledger.tracked_positions(wanted)
        fresh = _after(messages, names, tracked)
        if len(fresh) < len(messages):
            tracked = self.ledger.stored_positions(wanted)
            fresh = _after(messages, names, tracked)
        if len(fresh) < len(messages) and self.confirm_topic is not None:
            kept = {id(m) for m in fresh}
            self._confirm_skipped_topics([m for m in messages if id(m) not in kept], names, tracked)
        return fresh

    def _confirm_skipped_topics(self, skipped: list[InboundMessage], names: dict, tracked: dict) -> None:
        """Nothing is skipped as already applied unless its topic is the one that was tracked."""
        by_topic: dict[str, dict[int, int]] = {}
        for message in skipped:
            by_topic.setdefault(message.topic, {})[message.partition] = tracked[names[message]]
        for topic, partitions in by_topic.items():
            self.confirm_topic(topic, partitions)

    def _tracking_name(self, message: InboundMessage) -> str:
        return self.settings.tracking_name(message.topic, message.partition)

    def _tracking(self, messages: Sequence[InboundMessage]) -> list[Tracking]:
        """One record per partition: the last (highest) offset of its messages."""
        last: dict[str, int] = {}
        for message in messages:
            name = self._tracking_name(message)
            last[name] = max(last.get(name, message.offset), message.offset)
        return [Tracking(name, offset) for name, offset in last.items()]

    def _decode_all(self, messages: list[InboundMessage], report: BatchReport):
        decoded: list[tuple[InboundMessage, Command]] = []
        dead: list[DeadLetter] = []
        for message in messages:
            try:
                decoded.append((message, self._decode(message)))
            except Rejected as rejected:
                dead.append(self._dead_letter(message, rejected.reason_code, rejected.message, 1))
                report.count_dead_letter(rejected.reason_code)
        return decoded, dead

    def _decode(self, message: InboundMessage) -> Command:
        if message.topic == self.settings.credits_topic:
            return self._decode_credit(message)
        try:
            event = decode_inbound(message.value, message_bytes_max=self.settings.message_bytes_max)
        except InvalidInput as invalid:
            raise Rejected(str(invalid.reason_code), invalid.message) from None
        if message.key != event["member_id"].encode("utf-8"):
            raise Rejected("key_mismatch",
                           f"the Kafka key must be the member_id {event['member_id']!r}")
        return command_from_event(event, source_position=message.position)

    def _decode_credit(self, message: InboundMessage) -> Command:
        """Internal credits (referrer, transfer) come from our own outbox: JSON, trusted shape."""
        try:
            return command_from_event(orjson.loads(message.value or b""), message.position)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as error:
            raise Rejected("internal_invalid", f"bad credit: {error}") from None

    @staticmethod
    def _count(results, report: BatchReport) -> None:
        for result in results:
            if result.status == DUPLICATE:
                report.duplicates += 1
            elif result.status == CONFLICT:
                report.count_dead_letter("event_id_conflict")
            else:
                report.applied += 1
            for fact in result.facts:
                if fact_type(fact).endswith("_rejected"):
                    report.rejections[fact.reason] = report.rejections.get(fact.reason, 0) + 1

    def _apply_isolated(self, messages: list[InboundMessage], report: BatchReport) -> BatchReport:
        """One message per transaction; a message that keeps failing is dead-lettered."""
        for message in messages:
            self._apply_alone(message, report)
        return report

    def _apply_alone(self, message: InboundMessage, report: BatchReport) -> None:
        last_error = ""
        for attempt in range(1, self.settings.ledger_attempts_max + 1):
            try:
                report.add(self._apply_once([message], isolate=False))
                return
            except (IntegrityError, *UNREACHABLE):
                raise
            except Exception as error:  # noqa: BLE001 - poison message
                last_error = _described(error)
                log.warning("message %s attempt %d failed: %s", message.position, attempt, last_error)
        dead = self._dead_letter(message, "ledger_error", last_error, self.settings.ledger_attempts_max)
        report.count_dead_letter("ledger_error")
        self.ledger.process_batch([], self._tracking([message]), [dead])

    def _dead_letter(self, message: InboundMessage, reason: str, text: str, attempts: int) -> DeadLetter:
        envelope = dead_letter_document(
            value=message.value, key=message.key, reason_code=reason, reason_message=text,
            source_topic=message.topic, source_partition=message.partition,
            source_offset=message.offset, attempts=attempts,
            dead_lettered_at=datetime.now(timezone.utc),
        )
        return DeadLetter.record(self.sealer.seal(envelope, message.value, message.key))


def _described(error: Exception) -> str:
    """``Type: message`` of the error (a ``DecisionFailed`` already reads so, for its cause)."""
    return str(error) if isinstance(error, DecisionFailed) else f"{type(error).__name__}: {error}"
