"""``loyalty demo``: a retail chain in a box.

Starts the embedded broker and PostgreSQL (or uses real ones), creates the
topics, runs worker processes and the outbox relay (its own process), a
projection follower (``loyalty replay --resume --follow``) and the till API
(``loyalty api``, whose ``LOYALTY_API_URL`` and ``LOYALTY_API_KEY`` it prints),
streams a
simulated chain's POS/CRM traffic into Kafka at ``rate_events_per_s`` (event
time runs much faster than wall time: a year in about a minute by default),
and shows a live dashboard. Simulated tills redeem through the API meanwhile
(``demo_tills``: holds, captures, voids, a few cancellations); the dashboard
shows their approvals and rejections as they happen. The API also serves the
operator console, whose address and sign-in key it prints. At the end it
catches the read models up, prints the programme KPIs (tables, and the
monthly charts written to ``DIR/kpi-charts``, whose path it prints) and a
``verify`` result, and the commands to try next.

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
from datetime import date, timedelta
from pathlib import Path

import orjson

from eventsourcing.utils import get_topic
from kafka import KafkaProducer
from rich.console import Console
from rich.console import Group
from rich.live import Live

from ledger.domain import LoyaltyAccount
from ledger.member_jobs import BirthdayBook
from ledger.postgres.urls import eventsourcing_env_from_url
from projections.kpi_charts import write_charts
from projections.kpi_report import kpi_report, monthly_rows, select_rows
from projections.kpi_tables import kpi_tables
from ledger.settings import env_file_text
from projections.runner import catch_up, open_read_models
from projections.verify import verify
from streams.devkit.dashboard import DASHBOARD_READ_MODELS, PipelineProbe, render
from streams.kafka_security import kafka_client_options
from streams.process import ProcessError, Worker, exited, is_processed, start_workers, stop_workers
from streams.producer import member_key
from streams.devkit.demo_tills import TILL_SESSIONS_PER_S_DEFAULT, SimulatedTills, till_panel
from streams.devkit.services import (running_services, stack_env, stack_env_file_written,
                                     stack_store_dir)
from streams.devkit.till_api import TillApi
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
KPI_CHARTS_DIR_NAME = "kpi-charts"  # under the demo directory
TILL_SESSIONS_MIN = 10  # the demo waits for this many till sessions (known members) to end
BIRTHDAY_BATCH_DAYS = 7          # the birthday job runs once per simulated week
BIRTHDAY_WAIT_POLL_MS = 50       # how often the producer checks the ledger caught up before it


@dataclass(frozen=True)
class DemoOptions:
    members: int = 1000
    stores: int = 20
    days: int = 365
    seed: int = 42
    workers: int = 2
    rate_events_per_s: int = 1500
    demo_dir: Path = DEMO_DIR_DEFAULT
    till_sessions_per_s: int = TILL_SESSIONS_PER_S_DEFAULT  # 0: no simulated tills


class PacedProducer(threading.Thread):
    """Sends the simulated lines at a steady rate; records what the broker acknowledged.

    The chain's birthdays come from ``loyalty birthdays``'s application method
    (``ledger.member_jobs.BirthdayBook``, section 13), a week of days at a
    time (``BIRTHDAY_BATCH_DAYS``): once the stream reaches the next week, the
    producer waits until the ledger has applied everything sent (so the
    enrollments are in), then sends the past week's birthday events (late by
    up to a week, which the ledger handles like any late upload).
    """

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
        self.birthdays_sent = 0
        self.birthdays_from = config.start  # the first day whose birthdays are not sent yet
        self.ledger = None  # the producer thread's own ledger, for the birthday job

    def run(self) -> None:
        producer = KafkaProducer(bootstrap_servers=self.settings.bootstrap_servers, acks="all",
                                 linger_ms=5, client_id="loyalty-demo",
                                 **kafka_client_options(self.settings))
        self.ledger = open_ledger(self.settings)
        try:
            self._send_all(producer, BirthdayBook(self.ledger))
        except BaseException as error:  # noqa: BLE001 - reported by the demo loop
            self.error = error
        finally:
            producer.close()
            self.ledger.close()
            self.finished.set()

    def _send_all(self, producer: KafkaProducer, book: BirthdayBook) -> None:
        chunk: list[bytes] = []
        for line in simulate(self.config, self.summary):
            day = _simulated_day(line)
            if day is not None and (day - self.birthdays_from).days >= BIRTHDAY_BATCH_DAYS:
                self._send(producer, chunk)
                chunk = self._birthdays_before(day, book)
            chunk.append(line)
            if len(chunk) >= self.chunk_lines:
                self._send(producer, chunk)
                chunk = []
                if self.stop.wait(PACING_TICK_MS / 1000):
                    return
        self._send(producer, chunk)
        self._send(producer, self._birthdays_before(self.config.end, book))

    def _birthdays_before(self, day: date, book: BirthdayBook) -> list[bytes]:
        """The birthday events of the days before ``day`` not sent yet, once the ledger
        has applied everything sent so far."""
        while not is_processed(self.ledger, self.settings, self.offsets):
            if self.stop.wait(BIRTHDAY_WAIT_POLL_MS / 1000):
                return []
        days = [self.birthdays_from + timedelta(days=n) for n in range((day - self.birthdays_from).days)]
        self.birthdays_from = day
        events = [event for moment in days for event in book.events_on(moment)]
        self.birthdays_sent += len(events)
        return [orjson.dumps(event) for event in events]

    def _send(self, producer: KafkaProducer, lines: list[bytes]) -> None:
        if not lines:
            return
        futures = [producer.send(self.settings.events_topic, key=member_key(line), value=line)
                   for line in lines]
        producer.flush(timeout=SEND_TIMEOUT_MS / 1000)
        for future in futures:
            sent = future.get(timeout=SEND_TIMEOUT_MS / 1000)
            self.offsets[sent.partition] = max(self.offsets.get(sent.partition, -1), sent.offset)
        self.produced += len(lines)


def _simulated_day(line: bytes) -> date | None:
    """The (local) day a simulated line happened on; None for a line that does not say."""
    try:
        return date.fromisoformat(orjson.loads(line)["occurred_at"][:10])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


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
    with running_services(settings, postgres_dir=store) as live:
        return _run(options, live, logs, console, env_file=store is not None)


def _run(options: DemoOptions, settings: Settings, logs: Path, console: Console,
         env_file: bool) -> int:
    ensure_topics(settings)
    ledger = open_ledger(settings)
    env = eventsourcing_env_from_url(settings.database_url)
    with open_read_models(env, None, ledger.program):
        pass  # create the read-model tables before the follower and the dashboard
    config = SimulationConfig(seed=options.seed, members=options.members, stores=options.stores,
                              days=options.days, crm_birthdays=False)  # loyalty birthdays' job
    producer = PacedProducer(settings, config, options.rate_events_per_s)
    with ExitStack() as stack:
        api = TillApi.start(settings, logs / "api.log")
        stack.callback(api.stop)
        if env_file:  # commands run from here meanwhile find the demo's services and API
            stack.enter_context(stack_env_file_written(options.demo_dir,
                                                       stack_env(settings) | api.exports()))
        console.print(env_file_text(api.exports()).rstrip("\n"), soft_wrap=True)
        console.print(api.console_line(), markup=False, highlight=False, soft_wrap=True)
        workers = start_workers(settings, options.workers, logs)
        stack.callback(stop_workers, workers)
        follower = start_follower(settings, logs / "projections.log")
        stack.callback(stop_follower, follower)
        tills = _start_tills(api, options)
        stack.callback(producer.stop.set)
        producer.start()
        try:
            _watch(ledger, env, settings, producer, workers, options, console, tills)
        except KeyboardInterrupt:
            console.print("[yellow]interrupted: stopping workers, projections and services[/]")
            return 130
    _summary(ledger, env, producer, options, console, settings)
    if tills is not None:
        console.print(tills.counts.describe())
    ledger.close()
    return 0


def _start_tills(api: TillApi, options: DemoOptions) -> SimulatedTills | None:
    """The simulated tills, stopped before the workers (None when turned off)."""
    if options.till_sessions_per_s == 0:
        return None
    tills = SimulatedTills(api.url, api.key, options.members, options.seed,
                           options.till_sessions_per_s)
    tills.start()
    return tills


def _tills_done(tills: SimulatedTills | None) -> bool:
    """No tills, or they served ``TILL_SESSIONS_MIN`` known members (then they stop)."""
    if tills is None:
        return True
    if tills.error is not None:
        raise ProcessError(f"a simulated till failed: {tills.error}")
    if tills.counts.sessions - tills.counts.unknown_members < TILL_SESSIONS_MIN:
        return False
    tills.stop.set()
    tills.join()
    return True


def _watch(ledger, env: dict, settings: Settings, producer: PacedProducer, workers: list[Worker],
           options: DemoOptions, console: Console, tills: SimulatedTills | None) -> None:
    tiers = [tier.name for tier in ledger.program.tiers]
    title = (f"loyalty demo: {options.stores} stores, {options.members:,} members, "
             f"{options.days} days (seed {options.seed})")
    deadline = time.monotonic() + DEMO_TIMEOUT_S
    with open_read_models(env, DASHBOARD_READ_MODELS, ledger.program) as models, \
            Live(console=console, refresh_per_second=4, transient=False) as view:
        probe = PipelineProbe(ledger, settings, models)
        while True:
            shown = render(probe.snapshot(producer.produced), tiers, title)
            view.update(shown if tills is None else Group(shown, till_panel(tills.counts)))
            if producer.error is not None:
                raise ProcessError(f"producing failed: {producer.error}")
            _check_alive(workers)
            if producer.finished.is_set() and is_processed(ledger, settings, producer.offsets) \
                    and _tills_done(tills):
                return
            if time.monotonic() > deadline:
                raise ProcessError(f"the demo did not finish within {DEMO_TIMEOUT_S} s")
            time.sleep(REFRESH_INTERVAL_MS / 1000)


def _check_alive(workers: list[Worker]) -> None:
    for worker in workers:
        if worker.process.poll() is not None:
            raise ProcessError(exited(worker))


def _summary(ledger, env: dict, producer: PacedProducer, options: DemoOptions,
             console: Console, settings: Settings) -> None:
    with open_read_models(env, None, ledger.program) as models:
        catch_up(ledger, models, batch_notifications_max=CATCH_UP_BATCH_NOTIFICATIONS_MAX)
        report = verify(ledger, models)
        kpis = kpi_report(models.view("kpis"), ledger.program)
    console.print(producer.summary.describe())
    for table in kpi_tables(select_rows(kpis)):
        console.print(table)
    _kpi_charts(kpis, options, console)
    console.print(f"birthdays (loyalty birthdays' job, day by day): {producer.birthdays_sent:,}")
    if report.ok:
        console.print(f"[green]verify: OK[/] - {report.members:,} members recomputed from the "
                      f"ledger's facts match the read models")
    else:
        console.print(f"[red]verify: {len(report.mismatches)} mismatches[/]")
        for mismatch in report.mismatches[:MISMATCHES_SHOWN_MAX]:
            console.print(f"  {mismatch}")
    console.print(_next_steps(ledger, options, settings), soft_wrap=True)  # commands stay whole


def _kpi_charts(kpis: list[dict], options: DemoOptions, console: Console) -> None:
    """The monthly KPI charts (PNG, data as JSON) in the demo's directory, and where they are."""
    directory = options.demo_dir / KPI_CHARTS_DIR_NAME
    write_charts(monthly_rows(kpis), directory)
    console.print(f"KPI charts (PNG, each with its data as JSON): {directory}")


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
        f"  (`up` prints the operator console's address and a key to sign in with)\n"
        f"  {loyalty} member {member}            # the auditor's view, every fact with its cause\n"
        f"  {loyalty} replay                     # drop and rebuild every read model\n"
        f"  {loyalty} verify                     # recompute everything from the ledger\n"
        f"  {loyalty} export balances --format csv\n"
        f"  {loyalty} kpis                       # the programme KPIs (--year Y: month by month)\n"
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
