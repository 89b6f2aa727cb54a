"""A till API stack for tests: a fresh database, topics of its own, worker
processes and ``loyalty api`` processes, all configured by ``LOYALTY_*`` variables.

``ApiStack.start(...)`` creates the database and topics, opens the ledger
(tables), starts ``workers`` worker processes (``streams.process.start_workers``)
and one API; ``start_api`` starts more (another port, other settings). Keys
come from the keys table directly (``streams.api.keys.key_store``). ``stop()`` ends every process it started.
"""

from __future__ import annotations

import os
import signal
import threading
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import httpx
from kafka import KafkaConsumer, TopicPartition

from streams.api.keys import key_store
from streams.devkit.embedded_broker import find_free_port
from streams.process import Worker, start_worker, start_workers, stop_workers
from streams.settings import Settings
from streams.topics import ensure_topics
from streams.worker import open_ledger

API_START_TIMEOUT_S = 60
API_STOP_TIMEOUT_S = 15
POLL_INTERVAL_S = 0.1
HTTP_TIMEOUT_S = 30
PARTITIONS = 2
CONCURRENT_POSTS = 5
ALL_SCOPES = ["read", "earn", "redeem", "crm", "admin"]


@dataclass
class ApiProcess:
    process: subprocess.Popen
    url: str
    log_path: Path

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            self.process.wait(API_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@dataclass
class ApiStack:
    settings: Settings
    log_dir: Path
    workers: list[Worker] = field(default_factory=list)
    apis: list[ApiProcess] = field(default_factory=list)

    @classmethod
    def start(cls, bootstrap: str, database_url: str, log_dir: Path, *, workers: int = 1,
              **api_settings) -> "ApiStack":
        suffix = uuid.uuid4().hex[:8]
        settings = Settings(
            bootstrap_servers=bootstrap, database_url=database_url, partitions=PARTITIONS,
            events_topic=f"events-{suffix}", ledger_topic=f"ledger-{suffix}",
            tier_changes_topic=f"tiers-{suffix}", dead_letter_topic=f"dead-{suffix}",
            credits_topic=f"credits-{suffix}", consumer_group=f"group-{suffix}", **api_settings)
        ensure_topics(settings)
        open_ledger(settings).close()
        with key_store(database_url) as keys:
            keys.ensure_table()
        stack = cls(settings, log_dir)
        try:
            stack.start_workers(workers)
            stack.start_api()
        except BaseException:  # an API not healthy in time: stop what did start
            stack.stop()
            raise
        return stack

    def start_workers(self, count: int) -> None:
        """``count`` more workers; the relay only with the first ones (one relay per stack)."""
        log_dir = self.log_dir / f"workers-{len(self.workers)}"
        log_dir.mkdir(parents=True, exist_ok=True)
        if not self.workers:
            self.workers.extend(start_workers(self.settings, count, log_dir))
            return
        self.workers.extend(start_worker(self.settings, False, log_dir / f"worker-{number}.log")
                            for number in range(count))

    def start_api(self, **overrides) -> ApiProcess:
        settings = replace(self.settings, api_port=find_free_port(), **overrides)
        log_path = self.log_dir / f"api-{len(self.apis)}.log"
        env = {**os.environ, **settings.to_env()}
        with open(log_path, "ab") as log_file:
            process = subprocess.Popen([sys.executable, "-m", "streams.cli", "api"], env=env,
                                       stdout=log_file, stderr=subprocess.STDOUT)
        api = ApiProcess(process, f"http://127.0.0.1:{settings.api_port}", log_path)
        self.apis.append(api)
        wait_healthy(api)
        return api

    @property
    def url(self) -> str:
        return self.apis[0].url

    def key(self, scopes: list[str] = ALL_SCOPES, stores: list[str] | None = None) -> str:
        with key_store(self.settings.database_url) as keys:
            return keys.create(scopes, stores)[0]

    def client(self, key: str | None, api: ApiProcess | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=(api or self.apis[0]).url, headers=headers, timeout=HTTP_TIMEOUT_S)

    def stop(self) -> None:
        for api in self.apis:
            api.stop()
        stop_workers(self.workers)


@contextmanager
def running_stack(kafka_bootstrap: str, embedded_pg, log_dir: Path, **stack_options) -> Iterator[ApiStack]:
    """An ``ApiStack`` on a database of its own, dropped (and every process stopped) at exit."""
    name = f"api_{uuid.uuid4().hex[:12]}"
    database = embedded_pg.create_database(name)
    try:
        stack = ApiStack.start(kafka_bootstrap, database.url, log_dir, **stack_options)
        try:
            yield stack
        finally:
            stack.stop()
    finally:
        embedded_pg.drop_database(name)


def wait_healthy(api: ApiProcess) -> None:
    deadline = time.monotonic() + API_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if api.process.poll() is not None:
            raise AssertionError(f"the API exited:\n{api.log_path.read_text()[-4000:]}")
        try:
            if httpx.get(f"{api.url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(POLL_INTERVAL_S)
    raise AssertionError(f"the API did not answer /healthz:\n{api.log_path.read_text()[-4000:]}")


def messages_in(stack: ApiStack) -> int:
    """Messages ever produced to the stack's events topic (end offsets summed)."""
    consumer = KafkaConsumer(bootstrap_servers=stack.settings.bootstrap_servers)
    topic = stack.settings.events_topic
    partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
    total = sum(consumer.end_offsets(partitions).values())
    consumer.close()
    return total


def warm_up(stack: ApiStack) -> None:
    """One write answered 200: the workers have joined their group (the reply timeout must allow it)."""
    with stack.client(stack.key()) as till:
        first = {"type": "birthday", "schema_version": 1, "event_id": f"warm-up-{uuid.uuid4().hex}",
                 "member_id": "warm-up", "occurred_at": "2025-01-01T00:00:00Z"}
        assert till.post("/v1/events", json=first).status_code == 200


def post_concurrently(stack: ApiStack, key: str, event: dict,
                      count: int = CONCURRENT_POSTS) -> list[httpx.Response]:
    """``event`` posted ``count`` times at once, each from a client (a till) of its own."""
    answers: list = [None] * count

    def post(index: int) -> None:
        with stack.client(key) as till:
            answers[index] = till.post("/v1/events", json=event)

    threads = [threading.Thread(target=post, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


def wait_for_outcome(client: httpx.Client, member_id: str, event_id: str, timeout_s: float) -> dict:
    """Poll ``GET /v1/events/{event_id}`` until it answers 200; its body."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        response = client.get(f"/v1/events/{event_id}", params={"member_id": member_id})
        if response.status_code == 200:
            return response.json()
        time.sleep(POLL_INTERVAL_S)
    raise AssertionError(f"no outcome of {event_id} within {timeout_s} s")
