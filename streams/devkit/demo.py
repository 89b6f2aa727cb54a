"""``loyalty demo``: a retail chain in a box.

Starts the embedded broker and PostgreSQL (or uses real ones), creates the
topics, runs worker processes (one also runs the outbox relay) and a
projection follower (``loyalty replay --resume --follow``), streams a
simulated chain's POS/CRM traffic into Kafka at ``rate_events_per_s`` (event
time runs much faster than wall time: a year in about a minute by default),
and shows a live dashboard. At the end it catches the read models up, prints
the programme KPIs and a ``verify`` result, and the commands to try next.

The embedded PostgreSQL keeps its data in a temporary directory named after
``--dir`` (default ``.loyalty-demo``, which holds the logs) so that ``loyalty member``, ``loyalty replay`` and
``loyalty verify`` can reopen the same store afterwards; each demo run starts
from an empty store. Ctrl-C stops everything cleanly: child processes run in
their own sessions and are terminated by the demo, the services stop when it
exits, and nothing is left running.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path

from eventsourcing.utils import get_topic
from kafka import KafkaProducer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from ledger.domain import LoyaltyAccount
from ledger.postgres.urls import eventsourcing_env_from_url
from projections.kpi_report import kpi_report
from projections.runner import catch_up, open_read_models
from projections.verify import verify
from streams.devkit.dashboard import DASHBOARD_READ_MODELS, PipelineProbe, render
from streams.kafka_security import kafka_client_options
from streams.process import ProcessError, Worker, is_processed, start_workers, stop_workers
from streams.producer import member_key
from streams.devkit.services import running_services, stack_env_file_written, stack_store_dir
from streams.settings import Settings
from streams.devkit.simulator import SimulationConfig, SimulationSummary, simulate
from streams.topics import ensure_topics
from streams.worker import open_ledger

DEMO_PROGRAM_PATH = Path(__file__).with_name("demo-program.toml")  # four campaigns (section 12)
DEMO_DIR_DEFAULT = Path(".loyalty-demo")
REFRESH_INTERVAL_MS = 500
DEMO_TIMEOUT_S = 1800
SEND_TIMEOUT_MS = 60_000
PACING_TICK_MS = 100
FOLLOWER_STOP_TIMEOUT_S = 15
CATCH_UP_BATCH_NOTIFICATIONS_MAX = 5000
MISMATCHES_SHOWN_MAX = 10


@dataclass(frozen=True)
class DemoOptions:
    members: int = 1000
    stores: int = 20
    days: int = 365
    seed: int = 42
    workers: int = 2
    rate_events_per_s: int = 1500
    demo_dir: Path = DEMO_DIR_DEFAULT


class PacedProducer(threading.Thread):
    """Sends the simulated lines at a steady rate; records what the broker acknowledged."""

    def __init__(self, settings: Settings, config: SimulationConfig, rate_events_per_s: int) -> None:
        super().__init__(name="demo-producer", daemon=True)
        self.settings = settings
        self.config = config
        self.chunk_lines = max(1, rate_events_per_s * PACING_TICK_MS // 1000)
        self.summary = SimulationSummary()
        self.produced = 0
        self.offsets: dict[int, int] = {}
        self.finished = threading.Event()
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        producer = KafkaProducer(bootstrap_servers=self.settings.bootstrap_servers, acks="all",
                                 linger_ms=5, client_id="loyalty-demo",
                                 **kafka_client_options(self.settings))
        try:
            self._send_all(producer)
        except BaseException as error:  # noqa: BLE001 - reported by the demo loop
            self.error = error
        finally:
            producer.close()
            self.finished.set()

    def _send_all(self, producer: KafkaProducer) -> None:
        chunk: list[bytes] = []
        for line in simulate(self.config, self.summary):
            chunk.append(line)
            if len(chunk) == self.chunk_lines:
                self._send(producer, chunk)
                chunk = []
                if self.stop.wait(PACING_TICK_MS / 1000):
                    return
        if chunk:
            self._send(producer, chunk)

    def _send(self, producer: KafkaProducer, lines: list[bytes]) -> None:
        futures = [producer.send(self.settings.events_topic, key=member_key(line), value=line)
                   for line in lines]
        producer.flush(timeout=SEND_TIMEOUT_MS / 1000)
        for future in futures:
            sent = future.get(timeout=SEND_TIMEOUT_MS / 1000)
            self.offsets[sent.partition] = max(self.offsets.get(sent.partition, -1), sent.offset)
        self.produced += len(lines)


def start_follower(settings: Settings, log_path: Path) -> subprocess.Popen:
    """``loyalty replay --resume --follow``: the projections follow the ledger live."""
    env = {**os.environ, **replace(settings, metrics_port=None).to_env()}
    command = [sys.executable, "-m", "streams.cli", "replay", "--resume", "--follow", "--no-progress"]
    with open(log_path, "ab") as log_file:
        return subprocess.Popen(command, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                start_new_session=True)


def stop_follower(follower: subprocess.Popen) -> None:
    if follower.poll() is None:
        follower.send_signal(2)  # SIGINT: the follower's own clean exit
        try:
            follower.wait(FOLLOWER_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            follower.kill()
            follower.wait()


def prepare_demo_dir(options: DemoOptions, settings: Settings) -> Path | None:
    """A fresh embedded store in ``demo_dir/postgres`` (None when a real database is used)."""
    if settings.database_url:
        return None
    store = stack_store_dir(options.demo_dir)
    shutil.rmtree(store, ignore_errors=True)
    (options.demo_dir / "logs").mkdir(parents=True, exist_ok=True)
    return store


def run_demo(options: DemoOptions, settings: Settings, console: Console | None = None) -> int:
    console = console or Console()
    store = prepare_demo_dir(options, settings)
    logs = options.demo_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with running_services(settings, postgres_dir=store) as live, ExitStack() as stack:
        if store is not None:  # commands run from here meanwhile find the demo's services
            stack.enter_context(stack_env_file_written(options.demo_dir, live))
        return _run(options, live, logs, console)


def _run(options: DemoOptions, settings: Settings, logs: Path, console: Console) -> int:
    ensure_topics(settings)
    ledger = open_ledger(settings)
    env = eventsourcing_env_from_url(settings.database_url)
    with open_read_models(env, None, ledger.program):
        pass  # create the read-model tables before the follower and the dashboard
    config = SimulationConfig(seed=options.seed, members=options.members, stores=options.stores,
                              days=options.days)
    producer = PacedProducer(settings, config, options.rate_events_per_s)
    with ExitStack() as stack:
        workers = start_workers(settings, options.workers, logs)
        stack.callback(stop_workers, workers)
        follower = start_follower(settings, logs / "projections.log")
        stack.callback(stop_follower, follower)
        stack.callback(producer.stop.set)
        producer.start()
        try:
            _watch(ledger, env, settings, producer, workers, options, console)
        except KeyboardInterrupt:
            console.print("[yellow]interrupted: stopping workers, projections and services[/]")
            return 130
    _summary(ledger, env, producer, options, console, settings)
    ledger.close()
    return 0


def _watch(ledger, env: dict, settings: Settings, producer: PacedProducer, workers: list[Worker],
           options: DemoOptions, console: Console) -> None:
    tiers = [tier.name for tier in ledger.program.tiers]
    title = (f"loyalty demo: {options.stores} stores, {options.members:,} members, "
             f"{options.days} days (seed {options.seed})")
    deadline = time.monotonic() + DEMO_TIMEOUT_S
    with open_read_models(env, DASHBOARD_READ_MODELS, ledger.program) as models, \
            Live(console=console, refresh_per_second=4, transient=False) as view:
        probe = PipelineProbe(ledger, settings, models)
        while True:
            view.update(render(probe.snapshot(producer.produced), tiers, title))
            if producer.error is not None:
                raise ProcessError(f"producing failed: {producer.error}")
            _check_alive(workers)
            if producer.finished.is_set() and is_processed(ledger, settings, producer.offsets):
                return
            if time.monotonic() > deadline:
                raise ProcessError(f"the demo did not finish within {DEMO_TIMEOUT_S} s")
            time.sleep(REFRESH_INTERVAL_MS / 1000)


def _check_alive(workers: list[Worker]) -> None:
    for worker in workers:
        if worker.process.poll() is not None:
            raise ProcessError(f"a worker exited with {worker.process.returncode}:\n{worker.tail()}")


def _summary(ledger, env: dict, producer: PacedProducer, options: DemoOptions,
             console: Console, settings: Settings) -> None:
    with open_read_models(env, None, ledger.program) as models:
        catch_up(ledger, models, batch_notifications_max=CATCH_UP_BATCH_NOTIFICATIONS_MAX)
        report = verify(ledger, models)
        kpis = kpi_report(models.view("kpis"))
    console.print(producer.summary.describe())
    console.print(_kpi_table(kpis))
    if report.ok:
        console.print(f"[green]verify: OK[/] - {report.members:,} members recomputed from the "
                      f"ledger's facts match the read models")
    else:
        console.print(f"[red]verify: {len(report.mismatches)} mismatches[/]")
        for mismatch in report.mismatches[:MISMATCHES_SHOWN_MAX]:
            console.print(f"  {mismatch}")
    console.print(_next_steps(ledger, options, settings), soft_wrap=True)  # commands stay whole


def _kpi_table(kpis: list[dict]) -> Table:
    table = Table(title="programme KPIs")
    columns = [("year", "year"), ("active members", "active_members"),
               ("repeat rate (bp)", "repeat_purchase_rate_bp"),
               ("avg check (minor)", "average_check_minor"),
               ("redemption rate (bp)", "redemption_rate_bp"),
               ("retention (bp)", "retention_rate_bp"), ("points earned", "points_earned")]
    for header, _ in columns:
        table.add_column(header, justify="right")
    for row in kpis:
        if row.get("kind") == "year":
            table.add_row(str(row["year"]), *(_cell(row.get(key)) for _, key in columns[1:]))
    return table


def _cell(value) -> str:
    return "-" if value is None else f"{value:,}" if isinstance(value, int) else str(value)


def _program_flag(settings: Settings) -> str:
    """`` --program FILE`` for a program other than the built-in one (the store recorded it)."""
    return f" --program {settings.program_file}" if settings.program_file else ""


def _next_steps(ledger, options: DemoOptions, settings: Settings) -> str:
    member = _some_member(ledger)
    loyalty = loyalty_command()
    keep = (f"Keep this demo's store running (in another terminal):\n"
            f"  {loyalty} up --dir {options.demo_dir} --keep-ledger{_program_flag(settings)}\n"
            f"then, from this directory, try:\n"
            if _is_embedded(options) else "Try next (LOYALTY_DATABASE_URL set to the same database):\n")
    return (
        f"\n{keep}"
        f"  {loyalty} member {member}            # the auditor's view, every fact with its cause\n"
        f"  {loyalty} replay                     # drop and rebuild every read model\n"
        f"  {loyalty} verify                     # recompute everything from the ledger\n"
        f"  {loyalty} export balances --format csv\n"
    )


def loyalty_command() -> str:
    """How to run ``loyalty`` from here: the bare name when it is on PATH, else this venv's script
    (relative when it is under the current directory)."""
    if shutil.which("loyalty"):
        return "loyalty"
    script = Path(sys.executable).parent / "loyalty"
    relative = os.path.relpath(script)
    return str(script) if relative.startswith("..") else relative


def _is_embedded(options: DemoOptions) -> bool:
    return stack_store_dir(options.demo_dir).exists()


def _some_member(ledger) -> str:
    """A member the ledger has an account for (the log's first fact may be the program's)."""
    for fact in ledger.fact_log.latest([get_topic(LoyaltyAccount.Opened)], 1):
        return fact.member_id
    return "M-000001"
