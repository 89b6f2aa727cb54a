"""``loyalty process INPUT.jsonl --out DIR``: the real pipeline, end to end.

Starts (or connects to) the broker and PostgreSQL, creates the topics,
produces every line of INPUT keyed by ``member_id``, runs worker processes
and the outbox relay as a process of its own (``loyalty relay``; with the
setting ``relay_in_worker`` the first worker runs it in a thread instead, the
previous design) until everything is processed, then writes the read models,
``kpis.jsonl`` and the children's logs (``DIR/logs``: ``worker-N.log``,
``relay.log``) and exits 0 (CONTRACT section 6). ``--keep DIR`` keeps the
embedded store. ``start_workers`` is how every command starts the pipeline
(``process``, ``up``, ``demo`` and the benchmark).

"Everything is processed" is decided from the event store, never from the
broker's ``end_offsets``: every partition's tracked offset has reached the
offset the producer got back for its last line; the outbox has published
every committed fact; every credit a fact owes (``ledger.credits``: a
``referral_qualified``'s referrer credit, a ``points_transferred_out``'s
transfer credit) has its outcome in the receiver's account, i.e. the internal credits are applied too;
and all of this holds on two polls in a row.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from eventsourcing.persistence import IntegrityError

from ledger.application import LoyaltyLedger
from ledger.credits import credits_settled
from ledger.dead_letters import DeadLetter
from streams.kafka_security import kafka_client_options
from streams.outbox import OUTBOX_TRACKING_NAME
from streams.producer import ProduceReport, RefusedLine, read_lines, refused_dead_letters, send_lines
from streams.settings import Settings
from streams.topics import ensure_topics
from streams.worker import open_ledger

log = logging.getLogger(__name__)

PROCESS_TIMEOUT_S = 1800
POLL_INTERVAL_MS = 250
STABLE_POLLS_MIN = 2
WORKER_STOP_TIMEOUT_S = 30
LOG_TAIL_CHARS = 4000


Progress = Callable[[str], None]  # told what is happening, e.g. "applied 1,200 of 160,000 messages"


class ProcessError(RuntimeError):
    """The pipeline did not finish: a worker or the relay died or the timeout ran out."""


@dataclass
class Worker:
    """A supervised child: a ``loyalty worker`` or the ``loyalty relay`` (named by its log)."""

    process: subprocess.Popen
    log_path: Path

    @property
    def name(self) -> str:
        return self.log_path.stem  # worker-0, worker-1, ..., relay

    def tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-LOG_TAIL_CHARS:]


def start_child(settings: Settings, arguments: list[str], log_path: Path) -> Worker:
    """One ``loyalty ARGUMENTS...`` process, configured through the environment only."""
    env = {**os.environ, **replace(settings, metrics_port=None).to_env()}
    env.pop("LOYALTY_METRICS_PORT", None)  # several children cannot share one port
    with open(log_path, "ab") as log_file:
        process = subprocess.Popen([sys.executable, "-m", "streams.cli", *arguments], env=env,
                                   stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    return Worker(process, log_path)


def start_worker(settings: Settings, relay: bool, log_path: Path) -> Worker:
    """One ``loyalty worker`` process (``relay``: with the outbox relay in a thread)."""
    return start_child(settings, ["worker"] + (["--relay"] if relay else []), log_path)


def start_relay(settings: Settings, log_path: Path) -> Worker:
    """``loyalty relay``: the outbox relay as its own process, configured like the workers."""
    return start_child(settings, ["relay"], log_path)


def start_workers(settings: Settings, count: int, log_dir: Path) -> list[Worker]:
    """``count`` workers in one consumer group, then the outbox relay in a process of its own;
    with ``settings.relay_in_worker`` (the previous design) the first worker runs the relay."""
    if settings.relay_in_worker:
        return [start_worker(settings, number == 0, log_dir / f"worker-{number}.log")
                for number in range(count)]
    workers = [start_worker(settings, False, log_dir / f"worker-{number}.log") for number in range(count)]
    return [*workers, start_relay(settings, log_dir / "relay.log")]


def stop_workers(workers: list[Worker]) -> None:
    """Terminate every child (workers and relay), killing those still running after the timeout."""
    for worker in workers:
        if worker.process.poll() is None:
            worker.process.terminate()
    for worker in workers:
        try:
            worker.process.wait(WORKER_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            worker.process.kill()
            worker.process.wait()


def exited(worker: Worker) -> str:
    """The error of a child that exited while the pipeline ran: its name, status and log's tail."""
    return f"{worker.name} exited with {worker.process.returncode}:\n{worker.tail()}"


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
                         workers: list[Worker], timeout_s: float = PROCESS_TIMEOUT_S,
                         progress: Progress | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    stable = 0
    while stable < STABLE_POLLS_MIN:
        for worker in workers:
            if worker.process.poll() is not None:
                raise ProcessError(exited(worker))
        if time.monotonic() > deadline:
            raise ProcessError(f"not processed within {timeout_s} s")
        stable = stable + 1 if is_processed(ledger, settings, produced) else 0
        if progress is not None:
            progress(f"applied {applied_messages(ledger, settings, produced):,} of "
                     f"{sum(offset + 1 for offset in produced.values()):,} messages")
        time.sleep(POLL_INTERVAL_MS / 1000)


def applied_messages(ledger: LoyaltyLedger, settings: Settings, produced: dict[int, int]) -> int:
    """Messages of the produced partitions at or below their tracked offsets (for progress)."""
    names = {settings.tracking_name(settings.events_topic, p): p for p in produced}
    tracked = ledger.tracked_positions(list(names))
    return sum(min(tracked[name], produced[p]) + 1 for name, p in names.items() if tracked[name] is not None)


def run_pipeline(input_path: Path, settings: Settings, workers: int,
                 log_dir: Path, progress: Progress | None = None) -> tuple[LoyaltyLedger, ProduceReport]:
    """Produce INPUT and run workers until processed; return the ledger to read from."""
    ensure_topics(settings)
    ledger = open_ledger(settings)  # creates the tables before the workers race to
    on_chunk = None if progress is None else (lambda lines: progress(f"produced {lines:,} lines"))
    lines = read_lines(input_path, settings.message_bytes_max)
    produced = send_lines(settings.bootstrap_servers, settings.events_topic, lines,
                          kafka_client_options(settings), message_bytes_max=settings.message_bytes_max,
                          on_chunk=on_chunk)
    record_refused_lines(ledger, settings, input_path, produced.refused)
    log.info("produced %d lines; %d refused as too large", len(produced.line_numbers), len(produced.refused))
    running = start_workers(settings, workers, log_dir)
    try:
        wait_until_processed(ledger, settings, produced.last_offsets, running, progress=progress)
    finally:
        stop_workers(running)
    return ledger, produced


def record_refused_lines(ledger: LoyaltyLedger, settings: Settings, input_path: Path,
                         refused: list[RefusedLine]) -> None:
    """Dead-letter the lines too large to send, by file and line (the outbox publishes them).

    A line already dead-lettered by an earlier run on the same store keeps its first record.
    """
    envelopes = refused_dead_letters(refused, source_topic=settings.events_topic,
                                     source_file=str(input_path), message_bytes_max=settings.message_bytes_max)
    for envelope in envelopes:
        try:
            ledger.save_batch([DeadLetter.record(envelope)], None)
        except IntegrityError:
            log.info("line %d of %s was dead-lettered by an earlier run", envelope["source_line"], input_path)


def line_numbers_of(produced: ProduceReport, settings: Settings, input_path: Path):
    """A function adding ``source_file`` and ``source_line`` to a dead letter of the input file."""
    def annotate(envelope: dict) -> dict:
        if envelope["source_topic"] != settings.events_topic or envelope["source_offset"] is None:
            return envelope
        number = produced.line_numbers.get((envelope["source_partition"], envelope["source_offset"]))
        if number is None:
            return envelope
        return envelope | {"source_file": str(input_path), "source_line": number}
    return annotate


def check_paths(input_path: Path, out_dir: Path) -> None:
    """Fail before any service starts: INPUT must be readable, DIR writable (OSError naming the path)."""
    with open(input_path, "rb"):
        pass
    out_dir.mkdir(parents=True, exist_ok=True)
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, "directory not writable", str(out_dir))


def process(input_path: Path, out_dir: Path, settings: Settings, workers: int = 2,
            keep_dir: Path | None = None, progress: Progress | None = None) -> None:
    """CONTRACT section 6; worker logs in ``out_dir/logs``.

    ``keep_dir``: the embedded store is made (fresh) for that directory and
    kept after the run, so ``loyalty up --dir KEEP_DIR --keep-ledger`` reopens
    it for ``member``, ``verify`` and ``export``.
    """
    from streams.devkit.services import running_services  # a developer command: the dev kit, lazily
    from streams.process_outputs import write_outputs

    check_paths(input_path, out_dir)
    logs = out_dir / "logs"
    logs.mkdir(exist_ok=True)
    with running_services(settings, postgres_dir=_kept_store(keep_dir, settings)) as live:
        ledger, produced = run_pipeline(input_path, live, workers, logs, progress)
        if progress is not None:
            progress("writing the outputs")
        write_outputs(ledger, live, out_dir, line_numbers_of(produced, live, input_path))
        ledger.close()


def _kept_store(keep_dir: Path | None, settings: Settings) -> Path | None:
    if keep_dir is None:
        return None
    if settings.database_url:
        raise ProcessError("--keep keeps the embedded store; a --database-url store is kept anyway")
    from streams.devkit.services import stack_store_dir  # the dev kit, lazily

    store = stack_store_dir(keep_dir)
    shutil.rmtree(store, ignore_errors=True)  # a fresh event store (CONTRACT section 6), then kept
    keep_dir.mkdir(parents=True, exist_ok=True)
    return store
