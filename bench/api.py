"""The till API's figures: a redemption's round trip and balance lookups (issue 15).

One run: a fresh database and topics, ``API_WORKERS`` worker processes, a
projection follower (``loyalty replay --resume --follow``, for the baseline)
and one ``loyalty api`` process (``streams.devkit.till_api``) whose key may
make ``API_RATE_REQUESTS_PER_S`` requests a second. A warm-up sends one
purchase (1,000 points) to each of ``members`` round-trip members and as many
baseline members through Kafka and waits until the balances read model has
them all (workers joined, accounts open, follower live). Then, while
``purchase_rate`` purchases a second stream in through Kafka to other
members (``BG-...``, a background stream produced by this process):

- redemption round trip: ``redemption_rate`` redemptions a second, each a
  ``POST /v1/events`` of a 1-point redemption (members in turn, event times
  moving forward), timed from sending the request to its 200 answer (HTTP in,
  Kafka, the worker, the ledger, HTTP out); each request is sent on time
  whether or not the earlier ones were answered;
- baseline: the same redemptions, to the baseline members, produced to Kafka as
  ``loyalty produce`` does and timed until the balances read model shows them
  (the member's ``last_event_at`` reaches the event's ``occurred_at``, polled
  every ``POLL_INTERVAL_MS``);
- balance lookups: ``LOOKUP_CLIENTS`` concurrent clients (keep-alive
  connections, ``bench.http_load``) ``GET /v1/members/{id}`` for
  ``lookup_seconds``, after the background stream has stopped; requests/s
  and the p99 of each request;
- its baseline: ``GET /healthz`` the same way (the HTTP stack without a
  ledger read: the ceiling of one API process on this box).

Requests carry a till's key (``TILL_SCOPES``: no ``crm`` scope, so no
profile is decrypted). The load generator is this Python process (aiohttp
for the redemptions, ``bench.http_load`` for the lookups), on the same cores
as everything else: its own cost is in the figures.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import deque
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import psycopg
from aiokafka import AIOKafkaProducer

from bench.http_load import hammer
from bench.latency import _give_up, _start_follower, _stop, percentile, time_seen_in_balances
from bench.services import BenchServices
from ledger.calendar import format_timestamp
from ledger.postgres.urls import eventsourcing_env_from_url
from projections.runner import open_read_models
from streams.api.keys import key_store
from streams.devkit.till_api import TillApi
from streams.process import start_workers, stop_workers
from streams.topics import ensure_topics
from streams.worker import open_ledger

API_WORKERS = 2
API_RATE_REQUESTS_PER_S = 100_000   # the bench's key must not be the limit
API_READ_THREADS = 8
POLL_INTERVAL_MS = 10
SEND_TICK_MS = 5
WARMUP_TIMEOUT_S = 180
WARMUP_POLL_INTERVAL_MS = 100
DRAIN_TIMEOUT_S = 10
HTTP_TIMEOUT_S = 30
LOOKUP_CLIENTS = 16
PRODUCER_LINGER_MS = 5
WARM_UP_MINOR = 100_000             # 1,000 points each: enough for every 1-point redemption
PURCHASE_MINOR = 2_599
STREAM_START = datetime(2025, 6, 2, tzinfo=timezone.utc)
TILL_SCOPES = ["read", "earn", "redeem"]


@dataclass
class ApiRun:
    round_trip_ms: list[float]      # POST /v1/events to its 200
    stages_ms: list[dict]           # each round trip's Server-Timing stages, and "http": the rest
    produced_ms: list[float]        # baseline: produce to the balances row
    lookup_ms: list[float]          # GET /v1/members/{id}
    lookup_per_s: float
    health_ms: list[float]          # GET /healthz
    health_per_s: float
    not_200: int                    # redemptions answered otherwise (202: reply timeout)
    unseen: int                     # baseline redemptions never shown (counted with the time waited)
    purchases_per_s: float          # the background stream, as offered


def measure(services: BenchServices, label: str, seconds: float, redemption_rate: int,
            purchase_rate: int, members: int, lookup_seconds: float, log_dir: Path,
            read_before_wakeup: bool = False, gc_tuned: bool = True, **overrides: Any) -> ApiRun:
    """One run; ``read_before_wakeup``: the API's previous design (``reply_read_before_wakeup``);
    ``gc_tuned`` False: every process keeps CPython's collector (issue 21's previous design);
    ``overrides``: other settings of every process (another previous design)."""
    settings = services.settings(label, f"bench.{label}.events", gc_tuned=gc_tuned, **overrides,
                                 api_rate_requests_per_s=API_RATE_REQUESTS_PER_S,
                                 api_rate_burst_requests=API_RATE_REQUESTS_PER_S,
                                 api_read_threads=API_READ_THREADS,
                                 reply_read_before_wakeup=read_before_wakeup)
    ensure_topics(settings)
    ledger = open_ledger(settings)
    open_read_models(eventsourcing_env_from_url(settings.database_url), program=ledger.program).close()
    ledger.close()
    run_logs = log_dir / label
    run_logs.mkdir(parents=True, exist_ok=True)
    follower = _start_follower("batched", settings.database_url, run_logs / "follower.log", gc_tuned)
    workers = start_workers(settings, API_WORKERS, run_logs)
    api = None
    try:
        api = TillApi.start(replace(settings, metrics_port=None), run_logs / "api.log")
        with key_store(settings.database_url) as keys:
            till_key, _ = keys.create(TILL_SCOPES)
        plan = Plan(settings.bootstrap_servers, settings.events_topic, settings.database_url,
                    api.url, till_key, members, seconds, redemption_rate, purchase_rate, lookup_seconds)
        return asyncio.run(plan.run())
    finally:
        if api is not None:
            api.stop()
        stop_workers(workers)
        _stop(follower)
        services.drop(settings.database_url)


def event(kind: str, member: str, event_id: str, at: datetime, **fields) -> bytes:
    return orjson.dumps({"type": kind, "schema_version": 1, "event_id": event_id, "member_id": member,
                         "occurred_at": format_timestamp(at), **fields})


def redemption(member: str, event_id: str, at: datetime) -> bytes:
    return event("redemption", member, event_id, at, points=1, reward_id="RW-BENCH")


@dataclass
class Plan:
    bootstrap_servers: str
    topic: str
    database_url: str
    api_url: str
    key: str
    members: int
    seconds: float
    redemption_rate: int
    purchase_rate: int
    lookup_seconds: float

    async def run(self) -> ApiRun:
        self.http = [f"RT-{n:06d}" for n in range(self.members)]
        self.produced = [f"PB-{n:06d}" for n in range(self.members)]
        self.producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap_servers, acks="all",
                                         linger_ms=PRODUCER_LINGER_MS)
        await self.producer.start()
        headers = {"Authorization": f"Bearer {self.key}"}
        try:
            async with await psycopg.AsyncConnection.connect(self.database_url, autocommit=True) as db, \
                    aiohttp.ClientSession(base_url=self.api_url, headers=headers,
                                          timeout=aiohttp.ClientTimeout(total=HTTP_TIMEOUT_S),
                                          connector=aiohttp.TCPConnector(limit=0)) as client:
                await self._warm_up(db)
                stop = asyncio.Event()
                background = asyncio.create_task(self._purchases(stop))
                round_trips, stages, not_200 = await self._round_trips(client)
                produced, unseen = await self._baseline(db)
                stop.set()
                purchases_per_s = await background
                lookups = await hammer(self.api_url, headers, [f"/v1/members/{m}" for m in self.http],
                                       LOOKUP_CLIENTS, self.lookup_seconds)
                health = await hammer(self.api_url, headers, ["/healthz"], LOOKUP_CLIENTS, self.lookup_seconds)
        finally:
            await self.producer.stop()
        return ApiRun(round_trips, stages, produced, lookups.timings_ms, lookups.requests_per_s,
                      health.timings_ms, health.requests_per_s, not_200, unseen, purchases_per_s)

    async def _send(self, member: str, value: bytes):
        return await self.producer.send(self.topic, value, key=member.encode())

    async def _warm_up(self, db: psycopg.AsyncConnection) -> None:
        for member in self.http + self.produced:
            await self._send(member, event("purchase", member, f"warm-{member}", STREAM_START,
                                           amount_minor=WARM_UP_MINOR, currency="EUR", store_id="S-001"))
        await self.producer.flush()
        deadline = time.monotonic() + WARMUP_TIMEOUT_S
        while (await (await db.execute("SELECT count(*) FROM balances")).fetchone())[0] < 2 * self.members:
            if time.monotonic() > deadline:
                raise TimeoutError(f"warm-up: balances not all there within {WARMUP_TIMEOUT_S} s")
            await asyncio.sleep(WARMUP_POLL_INTERVAL_MS / 1000)

    async def _purchases(self, stop: asyncio.Event) -> float:
        """The background stream: ``purchase_rate`` purchases a second until ``stop``."""
        started, number = time.monotonic(), 0
        while not stop.is_set():
            due = int((time.monotonic() - started) * self.purchase_rate)
            while number < due:
                member = f"BG-{number % self.members:06d}"
                await self._send(member, event("purchase", member, f"bg-{number}",
                                               STREAM_START + timedelta(seconds=number),
                                               amount_minor=PURCHASE_MINOR, currency="EUR",
                                               store_id="S-002"))
                number += 1
            await asyncio.sleep(SEND_TICK_MS / 1000)
        return number / (time.monotonic() - started)

    def _moments(self, members: list[str]):
        """(member, event id, occurred_at) for each redemption, members in turn, times forward."""
        total = int(self.seconds * self.redemption_rate)
        return [(members[n % len(members)], f"{members[n % len(members)]}-r{n}",
                 STREAM_START + timedelta(seconds=1 + n)) for n in range(total)]

    async def _paced(self, moments: list, send) -> None:
        """``send(...)`` each moment on schedule at ``redemption_rate`` a second."""
        started = time.monotonic()
        tasks = []
        for number, moment in enumerate(moments):
            delay = started + number / self.redemption_rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(send(*moment)))
        await asyncio.gather(*tasks)

    async def _round_trips(self, client: aiohttp.ClientSession) -> tuple[list[float], list[dict], int]:
        timings, stages, not_200 = [], [], 0

        async def post(member: str, event_id: str, at: datetime) -> None:
            nonlocal not_200
            sent = time.monotonic()
            async with client.post("/v1/events", data=redemption(member, event_id, at),
                                   headers={"Content-Type": "application/json"}) as answer:
                await answer.read()
            timings.append((time.monotonic() - sent) * 1000)
            stages.append(with_http_stage(timings[-1], answer.headers.get("Server-Timing", "")))
            not_200 += answer.status != 200

        await self._paced(self._moments(self.http), post)
        return timings, stages, not_200

    async def _baseline(self, db: psycopg.AsyncConnection) -> tuple[list[float], int]:
        pending: dict[str, deque] = {member: deque() for member in self.produced}
        timings: list[float] = []

        async def produce(member: str, event_id: str, at: datetime) -> None:
            pending[member].append((at, time.monotonic()))
            await self._send(member, redemption(member, event_id, at))

        sent_all = asyncio.Event()
        watcher = asyncio.create_task(_watch_balances(db, pending, timings, sent_all))
        await self._paced(self._moments(self.produced), produce)
        await self.producer.flush()
        sent_all.set()
        return timings, await watcher


def with_http_stage(round_trip_ms: float, server_timing: str) -> dict[str, float]:
    """A ``Server-Timing`` value's durations by stage, plus ``http``: the round trip's rest
    (the client, the network, the API's HTTP layer, key and body checks)."""
    stages = {}
    for metric in filter(None, (part.strip() for part in server_timing.split(","))):
        name, *params = metric.split(";")
        stages[name] = next((float(p[4:]) for p in params if p.startswith("dur=")), 0.0)
    stages["http"] = round_trip_ms - sum(stages.values())
    return stages


def stage_summary(runs_stages: list[dict]) -> str:
    """Each stage's p50 and p99, and its mean in the slowest 1 % of round trips."""
    names = sorted({name for stages in runs_stages for name in stages})
    slowest = sorted(runs_stages, key=lambda s: sum(s.values()))[-max(1, len(runs_stages) // 100):]
    return "; ".join(
        f"{name} p50 {percentile([s.get(name, 0.0) for s in runs_stages], 50):.1f} "
        f"p99 {percentile([s.get(name, 0.0) for s in runs_stages], 99):.1f} "
        f"slowest-1% {statistics.mean(s.get(name, 0.0) for s in slowest):.1f}" for name in names)


async def _watch_balances(db: psycopg.AsyncConnection, pending: dict[str, deque],
                          timings: list[float], sent_all: asyncio.Event) -> int:
    """Time each pending (occurred_at, sent) until its member's row shows it; once all are sent,
    wait at most ``DRAIN_TIMEOUT_S`` more, then count the rest with the time waited (unseen)."""
    drain_deadline = None
    while True:
        oldest = min((queue[0][0] for queue in pending.values() if queue), default=None)
        polled = time.monotonic()
        if oldest is None and sent_all.is_set():
            return 0
        if oldest is not None:
            await time_seen_in_balances(db, pending, timings, oldest, polled)
        if sent_all.is_set():
            drain_deadline = drain_deadline or polled + DRAIN_TIMEOUT_S
            if polled > drain_deadline:
                return _give_up(pending, timings, polled)
        await asyncio.sleep(POLL_INTERVAL_MS / 1000)

