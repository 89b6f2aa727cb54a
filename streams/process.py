"""``loyalty process INPUT.jsonl --out DIR``: the real pipeline, end to end.

Starts (or connects to) the broker and PostgreSQL, creates the topics,
produces every line of INPUT keyed by ``member_id``, runs worker processes
(one of them also runs the outbox relay) until everything is processed, then
writes the read models and exits 0 (CONTRACT section 6).

"Everything is processed" is decided from the event store, never from the
broker's ``end_offsets``: every partition's tracked offset has reached the
offset the producer got back for its last line; the outbox has published
every committed fact; every credit a fact owes (``ledger.credits``: a
``referral_qualified``'s referrer credit) has its outcome in the receiver's
account (credited or capped), i.e. the internal credits are applied too;
and all of this holds on two polls in a row.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path


from ledger.application import LoyaltyLedger
from ledger.credits import credits_settled
from streams.kafka_security import kafka_python_options
from streams.outbox import OUTBOX_TRACKING_NAME
from streams.producer import produce_lines, read_lines
from streams.settings import Settings
from streams.topics import ensure_topics
from streams.worker import open_ledger

log = logging.getLogger(__name__)

PROCESS_TIMEOUT_S = 1800
POLL_INTERVAL_MS = 250
STABLE_POLLS_MIN = 2
WORKER_STOP_TIMEOUT_S = 30
LOG_TAIL_CHARS = 4000


class ProcessError(RuntimeError):
    """The pipeline did not finish: a worker died or the timeout ran out."""


@dataclass
class Worker:
    process: subprocess.Popen
    log_path: Path

    def tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-LOG_TAIL_CHARS:]


def start_worker(settings: Settings, relay: bool, log_path: Path) -> Worker:
    """One ``loyalty worker`` process, configured through the environment only."""
    env = {**os.environ, **replace(settings, metrics_port=None).to_env()}
    env.pop("LOYALTY_METRICS_PORT", None)  # several children cannot share one port
    command = [sys.executable, "-m", "streams.cli", "worker"] + (["--relay"] if relay else [])
    with open(log_path, "ab") as log_file:
        process = subprocess.Popen(command, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    return Worker(process, log_path)


def start_workers(settings: Settings, count: int, log_dir: Path) -> list[Worker]:
    """``count`` workers in one consumer group; the first also runs the outbox relay."""
    return [start_worker(settings, number == 0, log_dir / f"worker-{number}.log")
            for number in range(count)]


def stop_workers(workers: list[Worker]) -> None:
    for worker in workers:
        if worker.process.poll() is None:
            worker.process.terminate()
    for worker in workers:
        try:
            worker.process.wait(WORKER_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            worker.process.kill()
            worker.process.wait()


def is_processed(ledger: LoyaltyLedger, settings: Settings, produced: dict[int, int]) -> bool:
    for partition, offset in produced.items():
        tracked = ledger.tracked_position(settings.tracking_name(settings.events_topic, partition))
        if tracked is None or tracked < offset:
            return False
    outbox = ledger.tracked_position(OUTBOX_TRACKING_NAME) or 0
    if outbox < ledger.fact_log.head():
        return False
    return credits_settled(ledger.fact_log)


def wait_until_processed(ledger: LoyaltyLedger, settings: Settings, produced: dict[int, int],
                         workers: list[Worker], timeout_s: float = PROCESS_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    stable = 0
    while stable < STABLE_POLLS_MIN:
        for worker in workers:
            if worker.process.poll() is not None:
                raise ProcessError(f"a worker exited with {worker.process.returncode}:\n{worker.tail()}")
        if time.monotonic() > deadline:
            raise ProcessError(f"not processed within {timeout_s} s")
        stable = stable + 1 if is_processed(ledger, settings, produced) else 0
        time.sleep(POLL_INTERVAL_MS / 1000)


def run_pipeline(input_path: Path, settings: Settings, workers: int,
                 log_dir: Path) -> tuple[LoyaltyLedger, Settings]:
    """Produce INPUT and run workers until processed; return the ledger to read from."""
    ensure_topics(settings)
    ledger = open_ledger(settings)  # creates the tables before the workers race to
    produced = produce_lines(settings.bootstrap_servers, settings.events_topic, read_lines(input_path),
                             kafka_python_options(settings))
    log.info("produced %d partitions' worth of lines", len(produced))
    running = start_workers(settings, workers, log_dir)
    try:
        wait_until_processed(ledger, settings, produced, running)
    finally:
        stop_workers(running)
    return ledger, settings


def process(input_path: Path, out_dir: Path, settings: Settings, workers: int = 2) -> None:
    """CONTRACT section 6."""
    from streams.devkit.services import running_services  # a developer command: the dev kit, lazily
    from streams.process_outputs import write_outputs

    out_dir.mkdir(parents=True, exist_ok=True)
    with running_services(settings) as live, tempfile.TemporaryDirectory(prefix="loyalty-logs-") as logs:
        ledger, live = run_pipeline(input_path, live, workers, Path(logs))
        write_outputs(ledger, live, out_dir)
        ledger.close()
