"""``EventWriter``'s wait for an outcome, with a fake ledger, producer and wake-ups (no services).

By default a write reads the member's facts only once woken after producing
(nothing of its event can be committed before); ``read_before_wakeup``
(``LOYALTY_REPLY_READ_BEFORE_WAKEUP``, the previous design) reads once at
once. Both answer with the outcome and the stages of ``Server-Timing``.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from streams.api.reads import ABSENT, Recorded
from streams.api.writes import EventWriter

OUTCOME = {"outcome": "points_redeemed"}
EVENT = {"event_id": "e-1", "member_id": "m-1", "type": "redemption"}


class FakeReads:
    """The outcome is there once ``committed`` is set; ``outcome_after`` calls are counted."""

    def __init__(self) -> None:
        self.committed = False
        self.outcome_reads = 0

    async def run(self, function, *args):
        return function(*args)

    def recorded(self, event: dict) -> Recorded:
        return Recorded(ABSENT, 3)

    def outcome_after(self, member_id: str, event_id: str, version: int) -> dict | None:
        self.outcome_reads += 1
        return OUTCOME if self.committed else None


class FakeProducer:
    async def send_and_wait(self, topic: str, value: bytes, key: bytes) -> None:
        return None


class FakeWakeups:
    """Wakes a waiter when the test commits: ``commit()`` sets the outcome, then the event."""

    def __init__(self, reads: FakeReads) -> None:
        self.reads = reads
        self.woken = asyncio.Event()
        self.waiting = asyncio.Event()

    @contextlib.contextmanager
    def watch(self, originator_id):
        yield self.woken

    async def wait(self, woken: asyncio.Event, timeout_s: float) -> None:
        self.waiting.set()
        await woken.wait()
        woken.clear()

    def commit(self) -> None:
        self.reads.committed = True
        self.woken.set()


async def write(read_before_wakeup: bool) -> tuple[int, int, dict]:
    reads = FakeReads()
    wakeups = FakeWakeups(reads)
    writer = EventWriter(reads, FakeProducer(), "events", 10_000, wakeups, read_before_wakeup)
    reply = asyncio.ensure_future(writer.submit(EVENT, b"{}"))
    await wakeups.waiting.wait()
    reads_before_commit = reads.outcome_reads
    wakeups.commit()
    answer = await reply
    assert answer.outcome == OUTCOME
    return reads_before_commit, reads.outcome_reads, answer.stages.marks


@pytest.mark.parametrize("read_before_wakeup, reads_before_commit, reads", [(False, 0, 1), (True, 1, 2)])
def test_a_write_reads_its_outcome_once_woken_unless_the_previous_design(read_before_wakeup,
                                                                        reads_before_commit, reads):
    before, total, marks = asyncio.run(write(read_before_wakeup))
    assert (before, total) == (reads_before_commit, reads)
    assert marks == {"recorded": 1, "produced": 1, "ledger": 1, "reread": reads}


def test_server_timing_names_each_stage_with_its_duration_and_count():
    reads = FakeReads()
    reads.committed = True
    writer = EventWriter(reads, FakeProducer(), "events", 10_000, FakeWakeups(reads), True)
    header = asyncio.run(writer.submit(EVENT, b"{}")).stages.server_timing()
    names = [metric.split(";")[0] for metric in header.split(", ")]
    assert names == ["recorded", "produced", "reread"]
    assert all(";dur=" in metric and ';desc="1"' in metric for metric in header.split(", "))
