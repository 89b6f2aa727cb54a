"""Shared pieces of the reliability tests (``tests/test_reliability_*.py``).

- ``pipeline_settings``: unique topics and consumer group on the session
  broker, a given database, short batches and short outage limits;
- ``PrivatePostgres``: an embedded PostgreSQL the test owns, on a fixed
  directory, so it can be stopped and started again on the same data (the
  session server is shared and must never be stopped);
- ``retrying``: read the event store from the test while the database may be
  restarting;
- ``Fleet``: worker processes and projection followers that a test kills and
  restarts, always ended in ``close()`` (call it in ``finally``).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, TypeVar

import pytest
from eventsourcing.persistence import InterfaceError, OperationalError

from streams.devkit.embedded_postgres import EmbeddedPostgres
from streams.process import Worker, start_worker
from streams.settings import Settings
from tests.support.services import lane_settings, own_topics

T = TypeVar("T")
LONG_FAULTS_ENV = "LOYALTY_LONG_FAULTS"


@pytest.fixture
def long_faults_requested() -> None:
    """Marks a long reliability run; ``tests/conftest.py`` leaves ``slow`` tests
    out of the default run (deselected, not skipped) unless asked for."""


READ_RETRY_TIMEOUT_S = 60
READ_RETRY_INTERVAL_S = 0.5
PROCESS_STOP_TIMEOUT_S = 30
PRIVATE_PG_DIR_MODE = 0o755  # the server may run as another user (root): it must enter the dir


def pipeline_settings(kafka_bootstrap: str, database_url: str, label: str, partitions: int,
                      **overrides) -> Settings:
    """Settings with topics and a consumer group of their own (no clean-up needed)."""
    values = dict(
        bootstrap_servers=kafka_bootstrap, database_url=database_url, partitions=partitions,
        **own_topics(label), **lane_settings(), batch_events_max=200, batch_wait_ms=100,
    )
    values.update(overrides)
    return Settings(**values)


def retrying(read: Callable[[], T], timeout_s: float = READ_RETRY_TIMEOUT_S) -> T:
    """``read()``, retried while the database cannot be reached (it is being restarted)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return read()
        except (OperationalError, InterfaceError):
            if time.monotonic() > deadline:
                raise
            time.sleep(READ_RETRY_INTERVAL_S)


class PrivatePostgres:
    """An embedded PostgreSQL on a directory of its own that survives ``stop()``."""

    def __init__(self) -> None:
        self.base_dir = Path(tempfile.mkdtemp(prefix="loyalty-reliability-pg-"))
        os.chmod(self.base_dir, PRIVATE_PG_DIR_MODE)
        self.server = EmbeddedPostgres(base_dir=self.base_dir).start()

    def stop(self) -> None:
        self.server.stop()

    def start(self) -> None:
        self.server = EmbeddedPostgres(base_dir=self.base_dir).start()

    def close(self) -> None:
        self.server.stop()
        shutil.rmtree(self.base_dir, ignore_errors=True)


@dataclass
class Fleet:
    """Worker and follower processes a test starts, kills and restarts."""

    settings: Settings
    log_dir: Path
    workers: list[Worker] = field(default_factory=list)
    followers: list[subprocess.Popen] = field(default_factory=list)
    started: int = 0

    def start_worker(self, relay: bool) -> Worker:
        self.started += 1
        worker = start_worker(self.settings, relay, self.log_dir / f"worker-{self.started}.log")
        worker.relay = relay  # type: ignore[attr-defined]
        self.workers.append(worker)
        return worker

    def start_follower(self) -> subprocess.Popen:
        """``loyalty replay --resume --follow``: keeps the read models live."""
        self.started += 1
        env = {**os.environ, **self.settings.to_env()}
        env.pop("LOYALTY_METRICS_PORT", None)
        with open(self.log_dir / f"follower-{self.started}.log", "ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "streams.cli", "replay", "--resume", "--follow", "--no-progress"],
                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.followers.append(process)
        return process

    def living_workers(self) -> list[Worker]:
        return [w for w in self.workers if w.process.poll() is None]

    def close(self) -> None:
        """SIGTERM every process still running, then SIGKILL what did not stop in time."""
        processes = [w.process for w in self.workers] + self.followers
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(PROCESS_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def logs(self) -> str:
        return "\n".join(f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}"
                         for path in sorted(self.log_dir.glob("*.log")))


# ------------------------------------------------------------------ campaign stream

AMBASSADOR_OPENING_MINOR = 1000
OPENING_AT = "2023-12-01T09:00:00Z"  # before every event of tests.support.streamgen (2024 on)


def produce_with_faults(settings: Settings, events: list[dict], seed: int, bad_every: int) -> dict[int, int]:
    """Create the topics and produce ``events`` with duplicates and bad input mixed in.

    Returns the last offset produced per partition (what ``progress`` and
    ``wait_until_processed`` compare with).
    """
    from streams.producer import produce_lines
    from streams.topics import ensure_topics
    from tests.support.streamgen import with_faults

    lines, _ = with_faults(events, seed=seed, bad_every=bad_every)
    ensure_topics(settings)
    return produce_lines(settings.bootstrap_servers, settings.events_topic,
                         [line.encode() for line in lines])


def campaign_stream(seed: int, count: int, members: int) -> tuple[list[dict], list[dict]]:
    """(openings, events): a streamgen stream whose results cannot depend on arrival order.

    The README lists the cases where the referrer credit's arrival order
    changes a result (the cap, a referrer's own events between, a credit
    moving the clock ahead of them, a credit opening an account). Here every
    referee's referrals name an ambassador of its own (``<member>-amb``), so
    each ambassador gets at most one credit and has no events of its own but
    one opening purchase, which the caller applies before the stream
    (``openings``). Every account's facts are then the same in any run, so the
    read models' digests and the published tier changes can be compared
    exactly, not only the balances. Ambassadors hash to other partitions than
    their referees (11 in 12 with 12 partitions): credits cross partitions.
    """
    from tests.support.streamgen import generate_events

    events = generate_events(seed=seed, count=count, members=members, ambassadors=max(members // 3, 1))
    ambassadors = set()
    for event in events:
        if event["type"] == "referral" and event["referrer_member_id"] != event["member_id"]:
            event["referrer_member_id"] = f"{event['member_id']}-amb"
            ambassadors.add(event["referrer_member_id"])
    openings = [{"type": "purchase", "schema_version": 1, "event_id": f"opening-{member}",
                 "member_id": member, "occurred_at": OPENING_AT,
                 "amount_minor": AMBASSADOR_OPENING_MINOR, "currency": "EUR", "store_id": "store-0"}
                for member in sorted(ambassadors)]
    return openings, events
