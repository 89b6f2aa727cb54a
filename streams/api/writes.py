"""``POST /v1/events`` behind the HTTP layer: produce to ``loyalty.events``, wait for the outcome.

A valid event is first looked up in the member's ledger: applied with the
same payload, its recorded outcome is the answer and nothing is produced;
applied with another payload, ``EventIdConflict``. Otherwise it is produced
(the posted bytes, keyed by ``member_id``, acknowledged by every in-sync
replica) and the member's facts after the version seen before producing are
read again each time the ledger commits facts of that member
(``streams.api.wakeups``: PostgreSQL ``LISTEN/NOTIFY``), and at least every
``reply_poll_interval_ms``, until the event's outcome fact is there or
``reply_timeout_ms`` has passed (``Reply.timed_out``: the event is in the
log, its outcome will come). The first read waits for the first wake-up
(or ``reply_poll_interval_ms``): a read at once after producing finds the
outcome almost never and takes a read thread from the requests that can;
``reply_read_before_wakeup`` restores that read (the previous design). Each
answer carries its stages (``StageClock``) for ``Server-Timing``. The same ``event_id`` posted again while in
flight in this process shares the first request's produce and wait.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer

from ledger.commands import fingerprint_of
from ledger.domain import account_id
from streams.api.reads import APPLIED, CONFLICT, LedgerReads
from streams.api.wakeups import FactWakeups


class EventIdConflict(Exception):
    """The ``event_id`` was applied (or is in flight) with another payload."""


@dataclass(frozen=True)
class Reply:
    outcome: dict | None  # None: not in the ledger within the reply timeout
    stages: "StageClock | None" = None  # where the time went (the answer's Server-Timing)

    @property
    def timed_out(self) -> bool:
        return self.outcome is None


@dataclass
class InFlight:
    fingerprint: str
    task: asyncio.Task


class EventWriter:
    def __init__(self, reads: LedgerReads, producer: AIOKafkaProducer, topic: str,
                 reply_timeout_ms: int, wakeups: FactWakeups, read_before_wakeup: bool = False) -> None:
        self.reads = reads
        self.producer = producer
        self.topic = topic
        self.reply_timeout_ms = reply_timeout_ms
        self.wakeups = wakeups
        self.read_before_wakeup = read_before_wakeup  # the previous design: read at once after producing
        self._in_flight: dict[tuple[str, str], InFlight] = {}

    async def submit(self, event: dict, raw: bytes) -> Reply:
        key = (event["member_id"], event["event_id"])
        fingerprint = fingerprint_of(event)
        flight = self._in_flight.get(key)
        if flight is None:
            flight = InFlight(fingerprint, asyncio.ensure_future(self._submit(event, raw)))
            self._in_flight[key] = flight
            flight.task.add_done_callback(lambda _: self._in_flight.pop(key, None))
        if flight.fingerprint != fingerprint:
            raise EventIdConflict(f"event_id {event['event_id']!r} is in flight with another payload")
        return await asyncio.shield(flight.task)

    async def _submit(self, event: dict, raw: bytes) -> Reply:
        clock = StageClock()
        deadline_s = clock.started_s + self.reply_timeout_ms / 1000
        with self.wakeups.watch(account_id(event["member_id"])) as woken:
            recorded = await self.reads.run(self.reads.recorded, event)
            clock.mark("recorded")
            if recorded.status == CONFLICT:
                raise EventIdConflict(f"event_id {event['event_id']!r} was applied with another payload")
            if recorded.status == APPLIED:
                return Reply(recorded.outcome, clock)
            await self.producer.send_and_wait(self.topic, raw, key=event["member_id"].encode("utf-8"))
            clock.mark("produced")
            if not self.read_before_wakeup:  # nothing of this event can be committed yet
                await self.wakeups.wait(woken, deadline_s - time.monotonic())
                clock.mark("ledger")
            return await self._wait(event, recorded.version, woken, deadline_s, clock)

    async def _wait(self, event: dict, version: int, woken: asyncio.Event, deadline_s: float,
                    clock: "StageClock") -> Reply:
        while True:
            outcome = await self.reads.run(self.reads.outcome_after, event["member_id"],
                                           event["event_id"], version)
            clock.mark("reread")
            left_s = deadline_s - time.monotonic()
            if outcome is not None or left_s <= 0:
                return Reply(outcome, clock)
            await self.wakeups.wait(woken, left_s)
            clock.mark("ledger")


class StageClock:
    """Milliseconds spent in each named stage of one write, summed when a stage recurs:
    ``recorded`` (the applied-already read), ``produced`` (Kafka's acknowledgement),
    ``ledger`` (waiting for a commit of the member: the worker's fetch and batch, the
    NOTIFY), ``reread`` (reading the member's facts after the version seen)."""

    def __init__(self) -> None:
        self.started_s = self._last_s = time.monotonic()
        self.stages_ms: dict[str, float] = {}
        self.marks: dict[str, int] = {}  # how often each stage ended

    def mark(self, stage: str) -> None:
        now_s = time.monotonic()
        self.stages_ms[stage] = self.stages_ms.get(stage, 0.0) + (now_s - self._last_s) * 1000
        self.marks[stage] = self.marks.get(stage, 0) + 1
        self._last_s = now_s

    def server_timing(self) -> str:
        """The stages as an HTTP ``Server-Timing`` value (durations and counts: no id, no datum)."""
        return ", ".join(f'{stage};dur={duration_ms:.1f};desc="{self.marks[stage]}"'
                         for stage, duration_ms in self.stages_ms.items())
