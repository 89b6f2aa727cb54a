"""Workloads and pre-loading them into the broker.

- ``simulated_lines``: the first N events of ``streams.devkit.simulator`` (a retail
  chain's POS and CRM traffic, valid events only), as JSON lines.
- ``member_lines``: one purchase for each of N members (the memory figure:
  a stream "over N members").
- ``preload``: produce lines keyed by ``member_id`` with aiokafka (the
  producer of ``loyalty produce`` is kafka-python at about 5,000 lines/s,
  too slow to pre-load a million lines) and return the acknowledged offset
  of the last line of every partition: what ``streams.process.is_processed``
  needs, never the broker's ``end_offsets``. aiokafka's default partitioner
  is murmur2 like kafka-python's, so a member's partition is the one the
  outbox relay uses for its referrer credits.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator
from datetime import date, datetime, timedelta, timezone

import orjson
from aiokafka import AIOKafkaProducer

from ledger.calendar import format_timestamp
from streams.producer import member_key
from streams.devkit.simulator import SimulationConfig, simulate_events

SIMULATED_EVENTS_PER_MEMBER_YEAR = 25  # the simulator's default chain makes about 33
SIMULATION_SEED = 6
SIMULATION_DAYS = 365
MEMBER_STREAM_START = datetime(2025, 3, 1, tzinfo=timezone.utc)
MEMBER_PURCHASE_MINOR = 4_250
PRELOAD_LINGER_MS = 20
PRELOAD_MAX_BATCH_BYTES = 1_048_576
PRELOAD_CHUNK_LINES_MAX = 20_000      # lines in flight before waiting for their acknowledgements
PRELOAD_REQUEST_TIMEOUT_MS = 60_000


def simulated_lines(count: int, seed: int = SIMULATION_SEED) -> list[bytes]:
    """The first ``count`` events of a chain big enough to make them in one year."""
    members = max(count // SIMULATED_EVENTS_PER_MEMBER_YEAR, 10)
    config = SimulationConfig(seed=seed, members=members, days=SIMULATION_DAYS,
                              start=date(2025, 1, 1))
    lines = []
    for event in simulate_events(config):
        lines.append(orjson.dumps(event))
        if len(lines) == count:
            return lines
    raise AssertionError(f"the simulated chain made only {len(lines)} of {count} events")


def member_lines(members: int) -> Iterator[bytes]:
    """One purchase per member, members in order, each a second after the last."""
    for number in range(members):
        member = f"MEM-{number:07d}"
        yield orjson.dumps({
            "type": "purchase", "schema_version": 1, "event_id": f"bench-mem-{number}",
            "member_id": member,
            "occurred_at": format_timestamp(MEMBER_STREAM_START + timedelta(seconds=number)),
            "amount_minor": MEMBER_PURCHASE_MINOR, "currency": "EUR", "store_id": "S-001",
        })


def preload(bootstrap_servers: str, topic: str, lines: Iterable[bytes]) -> dict[int, int]:
    """Produce every line; return {partition: offset of its last line}."""
    return asyncio.run(_preload(bootstrap_servers, topic, lines))


async def _preload(bootstrap_servers: str, topic: str, lines: Iterable[bytes]) -> dict[int, int]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers, acks="all",
                                linger_ms=PRELOAD_LINGER_MS, max_batch_size=PRELOAD_MAX_BATCH_BYTES,
                                request_timeout_ms=PRELOAD_REQUEST_TIMEOUT_MS)
    await producer.start()
    last: dict[int, int] = {}
    try:
        pending = []
        for line in lines:
            pending.append(await producer.send(topic, value=line, key=member_key(line)))
            if len(pending) == PRELOAD_CHUNK_LINES_MAX:
                await _settle(pending, last)
        await _settle(pending, last)
    finally:
        await producer.stop()
    return last


async def _settle(pending: list[asyncio.Future], last: dict[int, int]) -> None:
    for sent in await asyncio.gather(*pending):
        last[sent.partition] = max(last.get(sent.partition, -1), sent.offset)
    pending.clear()


def line_count(produced: dict[int, int]) -> int:
    """Lines in a topic that held nothing before ``preload`` (offsets start at 0)."""
    return sum(offset + 1 for offset in produced.values())
