"""Latency at a fixed offered load: produce time to the balance read model showing the event.

One run: a fresh database and topics, ``LATENCY_WORKERS`` worker processes
(product settings) and a follower process keeping the read models live:

- figure: ``loyalty replay --resume --follow`` (the batched follower);
- previous design (issue 21): the same follower with every statement of its
  transactions sent alone and synchronous commits
  (``LOYALTY_READ_MODELS_COMBINE_STATEMENTS=false``,
  ``LOYALTY_FOLLOW_SYNCHRONOUS_COMMIT=true``), in the same run; and the
  follower reading every member's rows again each cycle
  (``LOYALTY_FOLLOW_KEPT_ROWS_MAX=0``, ``batched-unkept``);
- baseline: ``python -m bench.live_runners`` (eventsourcing's
  ``ProjectionRunner`` per read model, one transaction per fact).

A warm-up sends one purchase to each of ``members`` members and waits until
the balances table has all of them (workers joined, accounts open, follower
live). Then purchases go out at ``rate`` events/s for ``seconds`` s, members in
turn, each with an ``occurred_at`` one second after the previous event's, so
every member's clock only moves forward. The benchmark notes when it handed
each event to the producer and polls ``balances`` every ``POLL_INTERVAL_MS``:
an event is shown once its member's ``last_event_at`` (the account clock)
has reached its ``occurred_at``. Its latency is the poll's time minus the
send time, so the polling interval bounds the error. Events still not shown
``DRAIN_TIMEOUT_S`` (or the offered time, if shorter) after the last send count with the time waited (a lower
bound) and are reported as ``unseen``.

The same polls read the partitions' tracking rows, so each event's first
stage is known too: produce time to the ledger's commit of its batch (its
Kafka offset tracked). The rest of the latency is the follower's.

``broker_hop_ms`` measures one hop through the broker alone (produce to a
consumer's fetch) with a given ``fetch_max_wait_ms``: faust fixes it at
1500 ms, and a broker that holds a fetch until data arrives answers at
once whatever the value; the embedded broker answers later.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import os
import signal
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import psycopg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.profiling import Profiler
from bench.services import REPO_ROOT, BenchServices
from ledger.calendar import format_timestamp
from ledger.postgres.urls import eventsourcing_env_from_url
from projections.runner import open_read_models
from streams.process import start_workers, stop_workers
from streams.worker import open_ledger

LATENCY_WORKERS = 2
POLL_INTERVAL_MS = 10
SEND_TICK_MS = 5
PRODUCER_LINGER_MS = 5
WARMUP_TIMEOUT_S = 180
WARMUP_POLL_INTERVAL_MS = 100
DRAIN_TIMEOUT_S = 10               # ... or the offered time if shorter
FOLLOWER_STOP_TIMEOUT_S = 20
STREAM_START = datetime(2025, 6, 2, tzinfo=timezone.utc)
PURCHASE_MINOR = 2_599
FAUST_FETCH_MAX_WAIT_MS = 1_500   # fixed in faust's aiokafka driver
HOP_FETCH_MAX_WAIT_MS = 100      # the comparison: what faust's wait would cost if shorter
HOP_MESSAGES = 40
HOP_INTERVAL_MS = 50
HOP_TIMEOUT_S = 30
FOLLOWERS = {
    "batched": ["-m", "streams.cli", "replay", "--resume", "--follow", "--no-progress",
                "--database-url"],
    "runner": ["-m", "bench.live_runners"],
}
FOLLOWERS["batched-previous"] = FOLLOWERS["batched-unkept"] = FOLLOWERS["batched"]
FOLLOWER_ENV = {  # what a follower kind sets on top of the bench's environment
    "batched-previous": {"LOYALTY_READ_MODELS_COMBINE_STATEMENTS": "false",
                         "LOYALTY_FOLLOW_SYNCHRONOUS_COMMIT": "true"},
    "batched-unkept": {"LOYALTY_FOLLOW_KEPT_ROWS_MAX": "0"},  # every cycle reads its rows again
}


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(math.ceil(pct / 100 * len(ordered)) - 1, 0)]


@dataclass
class LatencyRun:
    latencies_ms: list[float]          # produce to the balances row
    ledger_latencies_ms: list[float]   # produce to the ledger's commit (offset tracked)
    sent: int
    unseen: int
    seconds: float
    profiles: dict[str, Any]

    def percentile(self, pct: float) -> float:
        return percentile(self.latencies_ms, pct)

    def ledger_percentile(self, pct: float) -> float:
        return percentile(self.ledger_latencies_ms, pct) if self.ledger_latencies_ms else 0.0

    @property
    def offered_per_s(self) -> float:
        return self.sent / self.seconds


def measure(services: BenchServices, label: str, follower: str, seconds: float, rate: int,
            members: int, log_dir: Path, profile_dir: Path | None = None,
            gc_tuned: bool = True, **overrides: Any) -> LatencyRun:
    """One run; ``gc_tuned`` False: every process keeps CPython's collector (the previous design);
    ``overrides``: other settings of every process (another previous design)."""
    slug = label.lower()
    settings = services.settings(label, f"bench.{slug}.events", gc_tuned=gc_tuned, **overrides)
    ledger = open_ledger(settings)  # the tables, before the processes race to create them
    env = eventsourcing_env_from_url(settings.database_url)
    open_read_models(env, program=ledger.program).close()
    run_logs = log_dir / label
    run_logs.mkdir(parents=True, exist_ok=True)
    follower_process = _start_follower(follower, settings.database_url, run_logs / "follower.log",
                                       gc_tuned)
    workers = start_workers(settings, LATENCY_WORKERS, run_logs)
    profilers = {}
    try:
        if profile_dir:
            profilers = {"follower": Profiler(follower_process.pid, profile_dir / "follower.txt"),
                         **{w.log_path.stem: Profiler(w.process.pid, profile_dir / f"{w.log_path.stem}.txt")
                            for w in workers}}
        tracking = Tracked(ledger.recorder.tracking_table_name,
                           [settings.tracking_name(settings.events_topic, p) for p in range(settings.partitions)])
        run = asyncio.run(_offer(settings.bootstrap_servers, settings.events_topic,
                                 settings.database_url, seconds, rate, members, tracking,
                                 [follower_process, *(w.process for w in workers)]))
    finally:
        stop_workers(workers)
        _stop(follower_process)
        run_profiles = {name: profiler.stop() for name, profiler in profilers.items()}
        ledger.close()
        services.drop(settings.database_url)
    run.profiles = run_profiles
    return run


def _start_follower(kind: str, database_url: str, log_path: Path,
                    gc_tuned: bool = True) -> subprocess.Popen:
    env = {key: value for key, value in os.environ.items() if key != "LOYALTY_METRICS_PORT"}
    env["LOYALTY_GC_TUNED"] = str(gc_tuned)
    env.update(FOLLOWER_ENV.get(kind, {}))
    with open(log_path, "ab") as log_file:
        return subprocess.Popen([sys.executable, *FOLLOWERS[kind], database_url], env=env,
                                cwd=REPO_ROOT, stdout=log_file, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(FOLLOWER_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def purchase(member: str, number: int, occurred_at: datetime) -> bytes:
    return orjson.dumps({
        "type": "purchase", "schema_version": 1, "event_id": f"bench-lat-{number}",
        "member_id": member, "occurred_at": format_timestamp(occurred_at),
        "amount_minor": PURCHASE_MINOR, "currency": "EUR", "store_id": "S-001",
    })


@dataclass(frozen=True)
class Tracked:
    """Where the ledger records each partition's last applied offset."""

    table: str
    names: list[str]   # tracking names, partition order

    async def offsets(self, db: psycopg.AsyncConnection) -> dict[int, int]:
        cursor = await db.execute(
            f"SELECT application_name, max(notification_id) FROM {self.table} "  # noqa: S608 - our name
            "WHERE application_name = ANY(%s) GROUP BY application_name", (self.names,))
        return {self.names.index(name): offset for name, offset in await cursor.fetchall()}


async def _offer(bootstrap_servers: str, topic: str, database_url: str, seconds: float, rate: int,
                 members: int, tracking: Tracked, children: list[subprocess.Popen]) -> LatencyRun:
    names = [f"LAT-{number:06d}" for number in range(members)]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers, acks="all",
                                linger_ms=PRODUCER_LINGER_MS)
    await producer.start()
    try:
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as db:
            for number, member in enumerate(names):
                await producer.send(topic, purchase(member, number, STREAM_START + timedelta(seconds=number)),
                                    key=member.encode())
            await producer.flush()
            await _wait_for_rows(db, members, children)
            return await _measured(producer, db, topic, names, seconds, rate, tracking, children)
    finally:
        await producer.stop()


async def _wait_for_rows(db: psycopg.AsyncConnection, members: int,
                         children: list[subprocess.Popen]) -> None:
    deadline = time.monotonic() + WARMUP_TIMEOUT_S
    while True:
        _check_alive(children)
        row = await (await db.execute("SELECT count(*) FROM balances")).fetchone()
        if row[0] >= members:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"warm-up: {row[0]} of {members} balances within {WARMUP_TIMEOUT_S} s")
        await asyncio.sleep(WARMUP_POLL_INTERVAL_MS / 1000)


async def _measured(producer: AIOKafkaProducer, db: psycopg.AsyncConnection, topic: str,
                    names: list[str], seconds: float, rate: int, tracking: Tracked,
                    children: list[subprocess.Popen]) -> LatencyRun:
    pending: dict[str, deque[tuple[datetime, float]]] = {name: deque() for name in names}
    acked: dict[int, list[tuple[int, float]]] = {}   # partition -> heap of (offset, send time)
    latencies: list[float] = []
    ledger_latencies: list[float] = []
    total = int(seconds * rate)
    sent_all = asyncio.Event()

    async def send() -> None:
        started = time.monotonic()
        acks = []
        number = 0
        while number < total:
            due = min(int((time.monotonic() - started) * rate) + 1, total)
            while number < due:
                member = names[number % len(names)]
                occurred = STREAM_START + timedelta(seconds=len(names) + number)
                sent_at = time.monotonic()
                pending[member].append((occurred, sent_at))
                ack = await producer.send(topic, purchase(member, len(names) + number, occurred),
                                          key=member.encode())
                ack.add_done_callback(lambda done, sent_at=sent_at: heapq.heappush(
                    acked.setdefault(done.result().partition, []), (done.result().offset, sent_at)))
                acks.append(ack)
                number += 1
            await asyncio.sleep(SEND_TICK_MS / 1000)
        await asyncio.gather(*acks)
        sent_all.set()

    async def watch() -> int:
        drain_deadline = None
        while True:
            _check_alive(children)
            oldest = min((queue[0][0] for queue in pending.values() if queue), default=None)
            if oldest is None and sent_all.is_set():
                return 0
            polled_at = time.monotonic()
            if any(acked.values()):
                for partition, offset in (await tracking.offsets(db)).items():
                    heap = acked.get(partition, [])
                    while heap and heap[0][0] <= offset:
                        ledger_latencies.append((polled_at - heapq.heappop(heap)[1]) * 1000)
            if oldest is not None:
                await time_seen_in_balances(db, pending, latencies, oldest, polled_at)
            if sent_all.is_set():
                drain_deadline = drain_deadline or polled_at + min(DRAIN_TIMEOUT_S, seconds)
                if polled_at > drain_deadline:
                    return _give_up(pending, latencies, polled_at)
            await asyncio.sleep(POLL_INTERVAL_MS / 1000)

    started = time.monotonic()
    watcher = asyncio.create_task(watch())
    await send()
    offered_s = time.monotonic() - started
    unseen = await watcher
    return LatencyRun(latencies, ledger_latencies, total, unseen, offered_s, {})


async def time_seen_in_balances(db: Any, pending: dict[str, deque[tuple[datetime, float]]],
                                timings: list[float], oldest: datetime, polled_at: float) -> None:
    """Time each pending (occurred_at, sent) whose member's ``balances`` row now shows it
    (``last_event_at`` reached its ``occurred_at``), in ms since sent; drop it from ``pending``."""
    cursor = await db.execute("SELECT member_id, last_event_at FROM balances "
                              "WHERE last_event_at >= %s", (oldest,))
    for member, clock in await cursor.fetchall():
        queue = pending.get(member)
        while queue and queue[0][0] <= clock:
            timings.append((polled_at - queue.popleft()[1]) * 1000)


def _give_up(pending: dict[str, deque[tuple[datetime, float]]], latencies: list[float],
             now: float) -> int:
    """Count what never showed with the time waited (a lower bound); return how many."""
    unseen = 0
    for queue in pending.values():
        while queue:
            latencies.append((now - queue.popleft()[1]) * 1000)
            unseen += 1
    return unseen


def _check_alive(children: list[subprocess.Popen]) -> None:
    for child in children:
        if child.poll() is not None:
            raise RuntimeError(f"a pipeline process ({child.args}) exited with {child.returncode}")


def broker_hop_ms(bootstrap_servers: str, topic: str, partitions: int,
                  fetch_max_wait_ms: int) -> list[float]:
    """Produce to consumer latency of ``HOP_MESSAGES`` messages, one every ``HOP_INTERVAL_MS``,
    through an empty ``topic``."""
    return asyncio.run(_hop(bootstrap_servers, topic, partitions, fetch_max_wait_ms))


async def _hop(bootstrap_servers: str, topic: str, partitions: int, fetch_max_wait_ms: int) -> list[float]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers, linger_ms=0)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, group_id=None,
                                fetch_max_wait_ms=fetch_max_wait_ms)
    await producer.start()
    await consumer.start()
    try:
        assigned = [TopicPartition(topic, partition) for partition in range(partitions)]
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        sent: dict[bytes, float] = {}
        hops: list[float] = []

        async def receive() -> None:
            while len(hops) < HOP_MESSAGES:
                for records in (await consumer.getmany(timeout_ms=HOP_INTERVAL_MS)).values():
                    now = time.monotonic()
                    hops.extend((now - sent[record.value]) * 1000 for record in records)

        receiving = asyncio.create_task(receive())
        for number in range(HOP_MESSAGES):
            value = str(number).encode()
            sent[value] = time.monotonic()
            await producer.send_and_wait(topic, value, key=value)
            await asyncio.sleep(HOP_INTERVAL_MS / 1000)
        await asyncio.wait_for(receiving, HOP_TIMEOUT_S)
        return hops
    finally:
        await consumer.stop()
        await producer.stop()
