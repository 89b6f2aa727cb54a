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
log, its outcome will come). The same ``event_id`` posted again while in
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

    @property
    def timed_out(self) -> bool:
        return self.outcome is None


@dataclass
class InFlight:
    fingerprint: str
    task: asyncio.Task


class EventWriter:
    def __init__(self, reads: LedgerReads, producer: AIOKafkaProducer, topic: str,
                 reply_timeout_ms: int, wakeups: FactWakeups) -> None:
        self.reads = reads
        self.producer = producer
        self.topic = topic
        self.reply_timeout_ms = reply_timeout_ms
        self.wakeups = wakeups
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
        deadline_s = time.monotonic() + self.reply_timeout_ms / 1000
        with self.wakeups.watch(account_id(event["member_id"])) as woken:
            recorded = await self.reads.run(self.reads.recorded, event)
            if recorded.status == CONFLICT:
                raise EventIdConflict(f"event_id {event['event_id']!r} was applied with another payload")
            if recorded.status == APPLIED:
                return Reply(recorded.outcome)
            await self.producer.send_and_wait(self.topic, raw, key=event["member_id"].encode("utf-8"))
            return await self._wait(event, recorded.version, woken, deadline_s)

    async def _wait(self, event: dict, version: int, woken: asyncio.Event, deadline_s: float) -> Reply:
        while True:
            outcome = await self.reads.run(self.reads.outcome_after, event["member_id"],
                                           event["event_id"], version)
            left_s = deadline_s - time.monotonic()
            if outcome is not None or left_s <= 0:
                return Reply(outcome)
            await self.wakeups.wait(woken, left_s)
