"""``python -m bench``: throughput, replay, latency and memory, each against a baseline.

Starts its own broker (the embedded one, or Apache Kafka with ``--broker
kafka``) and PostgreSQL, measures every figure
``--runs`` times (its median is reported) next to its baseline measured in
the same run, prints a table and writes it as JSON (``--out``, default
``bench/results/<UTC time>-<size>.json``). See ``docs/BENCHMARKS.md``.

Sizes: ``--quick`` (a smoke size, one run, under a minute), the default
(about ten minutes on 2 cores), ``--big`` (the issue's sizes: a million
stored facts to replay, streams over 100k and 1M members; about an hour).
``--only`` measures some groups (``--only api``: the till API's redemption
round trip and balance lookups, issue 15; ``--only store``: the event store's
write ceiling, PostgreSQL alone, issue 21; neither is in the default set, which
keeps its earlier figures); ``--profile DIR`` adds one profiled run of
ingest, campaigns (with and without), replay and latency with py-spy (not
counted in the medians).
"""

from __future__ import annotations

import argparse
import gc
import itertools
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console

from bench import api, cpu_parts, ingest, latency, raw, replay, store_ceiling
from bench.campaign_program import BENCH_CAMPAIGNS, campaign_program_text, realistic_campaign_program_text
from bench.ingest import Stream, WorkerRun
from bench.load import member_lines, preload, simulated_lines
from bench.profiling import py_spy_path
from bench.report import Figure, Measure, Target, document, print_parts, print_table, spread_pct
from bench.services import BROKERS, EMBEDDED_BROKER, REPO_ROOT, BenchServices, background_cores, machine_facts
from projections.split_replay import REPLAY_PROCESSES_DEFAULT
from streams.settings import CONSUMER_PATH_FAUST, Settings

GROUPS = ("raw", "ingest", "campaigns", "replay", "latency", "memory", "api", "store")
DEFAULT_GROUPS = ("raw", "ingest", "campaigns", "replay", "latency", "memory")
API_REDEMPTION_TARGET_P99_MS = 150
API_LOOKUP_TARGET_PER_S = 1_500
API_LOOKUP_TARGET_P99_MS = 25
RESULTS_DIR = REPO_ROOT / "bench" / "results"
INGEST_TARGET_EVENTS_PER_S = 10_000
INGEST_TARGET_TIMES_BASELINE = 15  # issue 21: ">= 15x the one-event-per-transaction baseline"
REPLAY_TARGET_FACTS_PER_S = 50_000
LATENCY_TARGET_P99_MS = 250
MEMORY_TARGET_TIMES_SMALLER = 1.2
CAMPAIGNS_COST_PCT_MAX = 15  # issue 17: cost per event with 20 campaigns within 15 % of none
PERCENT = 100
SUSTAINED_WINDOW_S_MIN = 20  # issue 21: a sustained figure over less cannot carry a target
HEADLINE_WORKERS = 2  # one per core; what `loyalty process` starts
REALISTIC_PROGRAM, DENSE_PROGRAM = "realistic", "dense"  # bench/campaign_program.py's two 20-campaign sets
PROGRAMS = {REALISTIC_PROGRAM: realistic_campaign_program_text, DENSE_PROGRAM: campaign_program_text}
BACKGROUND_SAMPLE_S = 3.0
BACKGROUND_WARN_CORES = 0.25  # other processes busier than this make every figure suspect


GC_DEFAULT_SIDE = "batched-gc-default"
CYCLE_PREVIOUS_SIDE = "batched-cycle-previous"
# a worker's batch cycle as before: one round trip per statement, positions read every batch,
# offsets committed before fetching
CYCLE_PREVIOUS = {"ledger_combine_statements": False, "ledger_position_cache": False,
                  "consumer_commit_in_background": False}
# latency sides: (follower kind, gc_tuned, other settings); batched-previous is the follower's
# previous design (bench/latency.py FOLLOWER_ENV), gc-default CPython's collector, cycle-previous
# the worker's batch cycle as before (issue 21's previous designs)
# the API group's previous designs: extra key -> (run label, what, measure's settings)
API_PREVIOUS_SIDES = {
    "read_before_wakeup": ("api-old", "previous design (reply_read_before_wakeup)",
                           {"read_before_wakeup": True}),
    "gc_default": ("api-gc", "CPython's collector (gc_tuned false)", {"gc_tuned": False}),
    "batch_cycle": ("api-cycle", "the batch cycle's previous design (ledger_combine_statements, "
                                 "ledger_position_cache, consumer_commit_in_background false)",
                    CYCLE_PREVIOUS),
}
LATENCY_SIDES = {"batched": ("batched", True, {}), "batched-previous": ("batched-previous", True, {}),
                 "batched-unkept": ("batched-unkept", True, {}),
                 "runner": ("runner", True, {}), GC_DEFAULT_SIDE: ("batched", False, {}),
                 CYCLE_PREVIOUS_SIDE: ("batched", True, CYCLE_PREVIOUS)}


def latency_key(rate: int, name: str, first_rate: int) -> str:
    """``latency.p99`` at the first rate (the key earlier results use), ``latency.p99@5000`` at others."""
    return f"latency.{name}" if rate == first_rate else f"latency.{name}@{rate}"


@dataclass(frozen=True)
class Sizes:
    runs: int
    ingest_events: int
    baseline_events: int
    raw_messages: int
    raw_rows: int
    replay_facts: int
    replay_baseline_window_s: float
    latency_seconds: float
    latency_rates: tuple[int, ...]  # events/s offered; the targets: 1,000 and 5,000
    latency_members: int
    memory_members: tuple[int, int]
    workers: tuple[int, ...] = (1, 2, 4)
    session_timeout_ms: int | None = None   # None: the product's; quick shortens group joins
    heartbeat_interval_ms: int | None = None
    api_seconds: float = 10               # redemptions offered for this long
    api_redemption_rate: int = 50         # redemptions/s (the issue's)
    api_purchase_rate: int = 500          # background purchases/s (the 2,000 scaled to the box)
    api_members: int = 200
    api_lookup_seconds: float = 10
    store_events_per_writer: int = 40_000  # facts each writer commits per measurement (--only store)
    store_baseline_events: int = 1_000     # ... one per transaction


SIZES = {
    "quick": Sizes(runs=1, ingest_events=10_000, baseline_events=400, raw_messages=20_000,
                   raw_rows=10_000, replay_facts=10_000, replay_baseline_window_s=2,
                   latency_seconds=3, latency_rates=(1_000,), latency_members=200,
                   memory_members=(500, 2_000), session_timeout_ms=2_000,
                   heartbeat_interval_ms=500, api_seconds=3, api_purchase_rate=200,
                   api_members=50, api_lookup_seconds=3, store_events_per_writer=2_000,
                   store_baseline_events=100),
    "default": Sizes(runs=3, ingest_events=20_000, baseline_events=2_000, raw_messages=200_000,
                     raw_rows=100_000, replay_facts=100_000, replay_baseline_window_s=10,
                     latency_seconds=10, latency_rates=(1_000, 5_000), latency_members=1_000,
                     memory_members=(6_000, 60_000)),
    "big": Sizes(runs=3, ingest_events=300_000, baseline_events=10_000, raw_messages=1_000_000,
                 raw_rows=1_000_000, replay_facts=1_000_000, replay_baseline_window_s=30,
                 latency_seconds=60, latency_rates=(1_000, 5_000), latency_members=5_000,
                 memory_members=(100_000, 1_000_000), api_seconds=30, api_purchase_rate=2_000,
                 api_members=1_000, api_lookup_seconds=30, store_events_per_writer=200_000,
                 store_baseline_events=2_000),
}


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_const", const="quick", dest="size",
                      help="smoke sizes, one run (under a minute)")
    size.add_argument("--big", action="store_const", const="big", dest="size",
                      help="the issue's sizes: 1M facts replayed, 100k and 1M members (about an hour)")
    parser.set_defaults(size="default")
    parser.add_argument("--runs", type=int, help="runs per figure (default 3, --quick 1)")
    parser.add_argument("--out", type=Path, help="JSON file (default bench/results/<time>-<size>-<broker>.json)")
    parser.add_argument("--only", nargs="+", choices=GROUPS, default=list(DEFAULT_GROUPS),
                        help="measure only these groups (default: all but api and store)")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="one more run of ingest, campaigns, replay and latency under py-spy; "
                             "raw stacks in DIR")
    parser.add_argument("--not-durable", action="store_true",
                        help="PostgreSQL without fsync (as the tests and the demo run it)")
    parser.add_argument("--broker", choices=BROKERS, default=EMBEDDED_BROKER,
                        help="embedded: tansu, memory only (default); kafka: Apache Kafka, one KRaft "
                             "node from Maven jars (needs java; mvn on the first run)")
    parser.add_argument("--relay-in-worker", action="store_true",
                        help="every run with the outbox relay in the first worker (the previous design), "
                             "not as its own `loyalty relay` process (default: LOYALTY_RELAY_IN_WORKER)")
    parser.add_argument("--relay-process", action="store_true",
                        help="accepted for old command lines: the relay's own process is the default now")
    parser.add_argument("--ingest-events", type=int, metavar="N",
                        help="events of the ingest and campaigns streams (default: the size's; "
                             "a longer sustained window for a group run alone)")
    args = parser.parse_args(argv)
    if args.runs is not None and args.runs < 1:
        parser.error("--runs must be at least 1")
    if args.ingest_events is not None and args.ingest_events < 1_000:
        parser.error("--ingest-events must be at least 1000")
    if args.profile:
        py_spy_path()  # fail now, not after minutes of measuring
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    sizes = SIZES[args.size]
    sizes = replace(sizes, runs=args.runs or sizes.runs,
                    ingest_events=args.ingest_events or sizes.ingest_events)
    started_at = datetime.now(timezone.utc)
    out = args.out or RESULTS_DIR / f"{started_at:%Y%m%dT%H%M%SZ}-{args.size}-{args.broker}.json"
    console = Console(stderr=True)
    background = background_cores(BACKGROUND_SAMPLE_S)
    if background > BACKGROUND_WARN_CORES:
        console.print(f"[yellow]warning: other processes keep {background:.2f} cores busy; "
                      f"the figures will be low and noisy[/]")
    started = time.monotonic()
    base = Settings.from_env(session_timeout_ms=sizes.session_timeout_ms,
                             heartbeat_interval_ms=sizes.heartbeat_interval_ms,
                             relay_in_worker=True if args.relay_in_worker else None)
    with tempfile.TemporaryDirectory(prefix="loyalty-bench-") as work, \
            BenchServices(durable=not args.not_durable, base=base, broker=args.broker) as services:
        bench = Bench(services, sizes, Path(work), console, args.profile)
        machine = machine_facts(services) | {"background_cores_before_run": background}
        for group in GROUPS:
            if group in args.only:
                console.rule(group)
                getattr(bench, group)()
    run = {"mode": args.size, "runs": sizes.runs, "started_at": started_at.isoformat(), "broker": args.broker,
           "outbox_relay": "in the first worker" if base.relay_in_worker else "own process",
           "duration_s": time.monotonic() - started, "sizes": sizes.__dict__,
           "command": "python -m bench " + " ".join(sys.argv[1:] if argv is None else argv)}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(orjson.dumps(document(bench.figures, machine, run, bench.profiles),
                                 option=orjson.OPT_INDENT_2))
    print_table(bench.figures, machine, run)
    print_parts(bench.figures)
    console.print(f"written {out}")
    return 0


class Bench:
    """The measurements of one benchmark run; each group appends its figures."""

    def __init__(self, services: BenchServices, sizes: Sizes, work: Path, console: Console,
                 profile_dir: Path | None) -> None:
        self.services = services
        self.sizes = sizes
        self.work = work
        self.console = console
        self.profile_dir = profile_dir
        self.figures: list[Figure] = []
        self.profiles: dict[str, Any] = {}
        self._streams: dict[str, Stream] = {}
        self._lines: list[bytes] | None = None

    # ------------------------------------------------------------ helpers

    def lines(self) -> list[bytes]:
        if self._lines is None:
            self._lines = simulated_lines(self.sizes.ingest_events)
        return self._lines

    def stream(self, name: str, lines: Callable[[], Any]) -> Stream:
        """A topic pre-loaded once with ``lines()`` and shared by every run that reads it."""
        if name not in self._streams:
            topic = f"bench.{name}.events"
            self.services.create_topic(topic)
            started = time.monotonic()
            self._streams[name] = Stream(topic, preload(self.services.bootstrap_servers, topic, lines()))
            self.log(f"pre-loaded {self._streams[name].events:,} events into {topic} "
                     f"in {time.monotonic() - started:.1f} s")
        return self._streams[name]

    def repeat(self, what: str, measure: Callable[[int], float], unit: str) -> list[float]:
        values = []
        for number in range(1, self.sizes.runs + 1):
            values.append(measure(number))
            self.log(f"{what} run {number}/{self.sizes.runs}: {values[-1]:,.1f} {unit}")
        return values

    def log(self, text: str) -> None:
        self.console.log(text)

    def worker_runs(self, label: str, stream: Stream, workers: int, **overrides: Any) -> list[WorkerRun]:
        """``sizes.runs`` runs of one side (``overrides``: its settings)."""
        return self.interleaved_runs(stream, {label: overrides}, workers)[label]

    def interleaved_runs(self, stream: Stream, sides: dict[str, dict[str, Any]],
                         workers: int = HEADLINE_WORKERS) -> dict[str, list[WorkerRun]]:
        """``sizes.runs`` runs of each side (label: settings overrides), the sides alternating."""
        runs: dict[str, list[WorkerRun]] = {label: [] for label in sides}
        for number in range(1, self.sizes.runs + 1):
            for label, overrides in sides.items():
                run = ingest.run_workers(self.services, f"{label}-r{number}", stream, workers,
                                         self.work / "logs", **overrides)
                runs[label].append(run)
                self.log(f"{label} run {number}/{self.sizes.runs}: {run.sustained_events_per_s:,.0f} "
                         f"events/s sustained, {run.wall_events_per_s:,.0f} start to processed "
                         f"({run.wall_s:.1f} s), worker RSS {run.rss_final_mb:,.0f} MB, cores {run.cores_used}")
        return runs

    # ------------------------------------------------------------- groups

    def raw(self) -> None:
        lines = self.lines()
        stream = self.stream("raw", lambda: itertools.islice(itertools.cycle(lines), self.sizes.raw_messages))
        bootstrap = self.services.bootstrap_servers
        fast = self.repeat("aiokafka + orjson", lambda _: raw.kafka_consume_rate(bootstrap, stream), "msg/s")
        simple = self.repeat("kafka-python + json", lambda _: raw.kafka_python_consume_rate(bootstrap, stream),
                             "msg/s")
        self.figures.append(Figure(
            "raw.kafka_consume_decode", "raw: Kafka consume + decode", "msg/s",
            f"{stream.events:,} messages", Measure("aiokafka + orjson", fast),
            Measure("kafka-python + json", simple),
            notes="read a pre-loaded topic from offset 0 (partitions assigned, no group) and "
                  "decode every value; the ceiling for the workers' input"))
        url = self.services.database("raw")
        rates = []
        for number in range(1, self.sizes.runs + 1):
            rates.append(raw.postgres_insert_rates(url, self.sizes.raw_rows))
            self.log(f"PostgreSQL inserts run {number}/{self.sizes.runs}: "
                     + ", ".join(f"{name} {rate:,.0f} rows/s" for name, rate in rates[-1].items()))
        self.services.drop(url)
        self.figures.append(Figure(
            "raw.postgres_insert", "raw: PostgreSQL insert", "rows/s",
            f"{self.sizes.raw_rows:,} rows of {raw.ROW_STATE_BYTES} B",
            Measure("COPY", [r["copy"] for r in rates]),
            Measure("executemany", [r["executemany"] for r in rates]),
            notes="event-store-shaped rows (uuid, version, topic, 500-byte state) into a fresh "
                  "table, each way in one transaction; the ceiling for the event store's inserts",
            extra={"insert_per_transaction_rows_per_s": [r["insert_per_transaction"] for r in rates],
                   "insert_per_transaction_rows": raw.single_insert_rows(self.sizes.raw_rows)}))

    def ingest(self) -> None:
        sizes = self.sizes
        lines = self.lines()
        stream = self.stream("ingest", lambda: lines)
        per_event = self.stream("per-event", lambda: lines[:sizes.baseline_events])
        program = self.program(REALISTIC_PROGRAM)  # contract 2's campaigns, as in the campaigns group
        # the headline and the dense set alternate run by run: a drifting host weighs on both alike
        labels = f"ingest-w{HEADLINE_WORKERS}", f"ingest-dense-w{HEADLINE_WORKERS}"
        paired = self.interleaved_runs(stream, dict(zip(labels, (program, self.program(DENSE_PROGRAM)))))
        headline, dense = (paired[label] for label in labels)
        scaling = {workers: headline if workers == HEADLINE_WORKERS
                   else self.worker_runs(f"ingest-w{workers}", stream, workers, **program)
                   for workers in sizes.workers}
        baseline = self.worker_runs("per-event-w2", per_event, HEADLINE_WORKERS, batch_events_max=1, **program)
        size = f"{stream.events:,} events, {HEADLINE_WORKERS} workers"
        notes = (f"simulator events (holds, captures and voids among them) pre-loaded into "
                 f"{self.services.base.partitions} partitions; bench/campaign_program.py's "
                 f"realistic {BENCH_CAMPAIGNS} campaigns active (the programme a chain runs, "
                 f"about 0.7 campaign lines an event; the dense stress set in ingest.dense_campaigns); "
                 f"{HEADLINE_WORKERS} `loyalty worker` processes "
                 f"and the relay ({self._relay_where()}) with the product's settings until "
                 f"streams.process.is_processed; the baseline is the same pipeline with "
                 f"batch_events_max=1 (one event and its tracking record per transaction) on the "
                 f"first {per_event.events:,} events of the same stream")
        self.figures.append(Figure(
            "ingest.sustained", "ingest, sustained", "events/s", size,
            Measure("batched", [r.sustained_events_per_s for r in headline]),
            Measure("1 event/transaction", [r.sustained_events_per_s for r in baseline]),
            Target(f">= {INGEST_TARGET_EVENTS_PER_S:,}/s and >= {INGEST_TARGET_TIMES_BASELINE}×",
                   lambda v, b: v >= INGEST_TARGET_EVENTS_PER_S and v >= INGEST_TARGET_TIMES_BASELINE * b),
            notes=notes + "; sustained: between 10 % and 90 % of the stream applied",
            extra=_worker_extra(headline, baseline)))
        self.figures.append(Figure(
            "ingest.wall", "ingest, start to processed", "events/s", size,
            Measure("batched", [r.wall_events_per_s for r in headline]),
            Measure("1 event/transaction", [r.wall_events_per_s for r in baseline]),
            notes=notes + "; from starting the workers (start-up and group join included) to "
                          "is_processed (outbox drained, referrer credits applied)",
            extra={"wall_s": [r.wall_s for r in headline], "baseline_wall_s": [r.wall_s for r in baseline],
                   "wall_spread_pct": spread_pct([r.wall_events_per_s for r in headline])}))
        self.figures.append(Figure(
            "ingest.cpu_per_event", "ingest, CPU per event", "µs/event", size,
            Measure("batched", [r.cpu_us_per_event[cpu_parts.PIPELINE] for r in headline]),
            Measure("1 event/transaction", [r.cpu_us_per_event[cpu_parts.PIPELINE] for r in baseline]),
            notes="CPU microseconds per event applied in the sustained window, of the workers, "
                  "the relay, PostgreSQL (every backend) and the broker together; by part "
                  "(each worker, its ledger, relay and consumer threads and event loop, the "
                  "relay process, PostgreSQL, the broker, the benchmark) in the extra and the "
                  "parts table (bench/cpu_parts.py)",
            extra=_worker_extra(headline, baseline)))
        self._warn_short_window(headline)
        self._dense_campaigns_figure(stream, headline, dense)
        self._relay_in_worker_figure(stream, headline, program)
        self._consumer_paths(stream, headline, program)
        self._previous_design_figure(
            stream, headline, "ingest.gc", f"ingest, sustained, {HEADLINE_WORKERS} workers, tuned collector",
            "tuned collector (default)", "CPython's collector (previous design)",
            "the ingest stream with every process's collector tuned (streams/gc_tuning.py) and "
            "with CPython's defaults (gc_tuned=False), same stream, same run; the ratio is the figure",
            label="ingest-gc-default", gc_tuned=False, **program)
        self._previous_design_figure(
            stream, headline, "ingest.batch_cycle",
            f"ingest, sustained, {HEADLINE_WORKERS} workers, a batch's cycle shortened",
            "combined statements, background commits (default)", "the batch cycle of before (previous design)",
            "the ingest stream with a batch's save in four round trips, its positions read in one "
            "(ledger_combine_statements, ledger/postgres/recorder.py) or known from the worker's own "
            "last save (ledger_position_cache, ledger/application.py) and its offsets committed while "
            "the next batch is applied (consumer_commit_in_background, streams/direct_consumer.py), "
            "and with all three off, same stream, same run",
            label="ingest-cycle-previous", **CYCLE_PREVIOUS, **program)
        self._previous_design_figure(
            stream, headline, "ingest.relay_encoding",
            f"ingest, sustained, {HEADLINE_WORKERS} workers, relay publishing from the stored JSON",
            "from the stored JSON (default)", "every fact decoded first (previous design)",
            "the ingest stream with the outbox relay publishing most facts from their stored JSON "
            "(relay_encodes_stored, ledger/stored_wire.py) and decoding every fact into its domain "
            "event first (relay_encodes_stored=False), same stream, same run; the relay's CPU per "
            "event is in the extra (cpu_us_per_event_median, baseline_cpu_us_per_event_median)",
            label="ingest-relay-decodes", relay_encodes_stored=False, **program)
        one = min(sizes.workers)
        for workers, runs in scaling.items():
            self.figures.append(Figure(
                f"scaling.workers_{workers}", f"scaling, {workers} worker(s)", "events/s",
                f"{stream.events:,} events", Measure("sustained", [r.sustained_events_per_s for r in runs]),
                Measure(f"{one} worker", [r.sustained_events_per_s for r in scaling[one]]),
                notes=f"the ingest stream with {workers} worker process(es) in one consumer group "
                      f"over {self.services.base.partitions} partitions, all on this box",
                extra=_worker_extra(runs)))
        if self.profile_dir:
            profiled = ingest.run_workers(self.services, "ingest-profiled", stream, HEADLINE_WORKERS,
                                          self.work / "logs", profile_dir=self.profile_dir / "ingest",
                                          **program)
            self.profiles["ingest"] = {"sustained_events_per_s": profiled.sustained_events_per_s,
                                       "cores_used": profiled.cores_used, **profiled.profiles}

    def program_file(self, name: str) -> Path:
        """One of bench/campaign_program.py's programs (``PROGRAMS``), written once into the
        work directory."""
        path = self.work / f"campaigns-{name}.toml"
        if not path.exists():
            path.write_text(PROGRAMS[name]())
        return path

    def program(self, name: str) -> dict[str, str]:
        """The settings override that runs ``program_file(name)``."""
        return {"program_file": str(self.program_file(name))}

    def _dense_campaigns_figure(self, stream: Stream, headline: list[WorkerRun],
                                dense: list[WorkerRun]) -> None:
        """The headline (realistic campaigns) beside the same stream with the dense stress set
        (about 7 campaign lines an event), their runs alternating, the target shown for both."""
        self.figures.append(Figure(
            "ingest.dense_campaigns", "ingest, sustained, the dense campaign set (stress)", "events/s",
            f"{stream.events:,} events, {HEADLINE_WORKERS} workers",
            Measure(f"dense {BENCH_CAMPAIGNS} campaigns (stress)", [r.sustained_events_per_s for r in dense]),
            Measure(f"realistic {BENCH_CAMPAIGNS} campaigns (headline)",
                    [r.sustained_events_per_s for r in headline]),
            Target(f">= {INGEST_TARGET_EVENTS_PER_S:,}/s", lambda v, b: v >= INGEST_TARGET_EVENTS_PER_S),
            notes="the ingest stream with bench/campaign_program.py's dense set (every purchase "
                  "matches about 10 of the 20, about 7 lines an event; the ingest headline before "
                  "2026-11-29) against the headline's realistic set, same stream, runs alternating",
            extra={"wall_events_per_s": [r.wall_events_per_s for r in dense],
                   "baseline_wall_events_per_s": [r.wall_events_per_s for r in headline],
                   **_worker_extra(dense, headline)}))

    def _relay_where(self) -> str:
        return "in the first worker" if self.services.base.relay_in_worker else "its own process"

    def _relay_in_worker_figure(self, stream: Stream, headline: list[WorkerRun], program: dict) -> None:
        """The previous design (the relay in worker-0's thread) beside the headline, in this run."""
        self._previous_design_figure(
            stream, headline, "ingest.relay_in_worker", "ingest, relay placement",
            f"relay in {self._relay_where()}", "relay inside worker-0 (previous design)",
            "the ingest headline's runs against the same stream and program with "
            "relay_in_worker=True (`loyalty worker --relay` in the first worker, no relay "
            "process), one after the other in this run; the ratio is the figure",
            label="ingest-relay-in-worker", relay_in_worker=True, **program)

    def _consumer_paths(self, stream: Stream, headline: list[WorkerRun], program: dict) -> None:
        """The headline runs (the default ``direct`` consumer path) beside the previous
        design, the faust agent with ``take_events`` (``consumer_path=faust``), in this run."""
        self._previous_design_figure(
            stream, headline, "ingest.consumer_path",
            f"ingest, sustained, {HEADLINE_WORKERS} workers, direct consumer path",
            "direct (default)", "faust consumer path (previous design)",
            "the ingest stream through the worker's own aiokafka consumer (consumer_path=direct, "
            "streams/direct_consumer.py) and through the faust agent with take_events "
            "(consumer_path=faust), same stream, same run; the ratio is the figure that counts",
            label="ingest-faust", consumer_path=CONSUMER_PATH_FAUST, **program)

    def _previous_design_figure(self, stream: Stream, headline: list[WorkerRun], figure_id: str,
                                title: str, new_design: str, previous_design: str, notes: str,
                                label: str, **overrides: Any) -> None:
        """The headline's runs beside runs of the same stream with ``overrides`` restoring a
        previous design, measured one after the other in this run; the ratio is the figure."""
        previous = self.worker_runs(f"{label}-w{HEADLINE_WORKERS}", stream, HEADLINE_WORKERS, **overrides)
        self.figures.append(Figure(
            figure_id, title, "events/s", f"{stream.events:,} events, {HEADLINE_WORKERS} workers",
            Measure(new_design, [r.sustained_events_per_s for r in headline]),
            Measure(previous_design, [r.sustained_events_per_s for r in previous]),
            notes=notes,
            extra={"wall_events_per_s": [r.wall_events_per_s for r in headline],
                   "baseline_wall_events_per_s": [r.wall_events_per_s for r in previous],
                   **_worker_extra(headline, previous)}))

    def _warn_short_window(self, runs: list[WorkerRun]) -> None:
        shortest = min(r.sustained_window_s for r in runs)
        if shortest < SUSTAINED_WINDOW_S_MIN:
            self.console.print(f"[yellow]warning: a sustained window lasted {shortest:.1f} s, under "
                               f"{SUSTAINED_WINDOW_S_MIN} s: too short to carry a target (use --big)[/]")

    def campaigns(self) -> None:
        """Ingest of the same stream with 20 active campaigns and with none, in this run: the
        headline is the realistic programme (``realistic_campaign_program_text``, under a line a
        purchase), the stress figure the dense one (``campaign_program_text``, about 7), and the
        realistic one with the previous design's scan of every running campaign. The sides
        alternate run by run (``interleaved_runs``), so a box that drifts during the group
        weighs on every side alike."""
        program_file = self.program_file(REALISTIC_PROGRAM)
        realistic = self.program(REALISTIC_PROGRAM)
        lines = self.lines()
        stream = self.stream("ingest", lambda: lines)
        runs = self.interleaved_runs(stream, {
            "campaigns-none": {}, "campaigns-realistic-20": realistic,
            "campaigns-realistic-20-scan": {**realistic, "campaign_index": False},
            "campaigns-dense-20": self.program(DENSE_PROGRAM)})
        without = runs["campaigns-none"]
        self._campaigns_figure(
            "campaigns.ingest", "campaigns-realistic-20", stream, program_file.name,
            runs["campaigns-realistic-20"], without,
            "each aimed as a chain aims one (store group, channel, tier, product or SKU range, "
            "smallest basket, gift for N items), six with budgets")
        self._campaign_index_figure(stream, runs["campaigns-realistic-20"],
                                    runs["campaigns-realistic-20-scan"])
        self._campaigns_figure("campaigns.dense_ingest", "campaigns-dense-20", stream,
                               self.program_file(DENSE_PROGRAM).name,
                               runs["campaigns-dense-20"], without,
                               "stress figure: the dense set (every purchase matches about 10 of them, "
                               "7 lines an event), half with budgets")
        if self.profile_dir:
            self._profile_campaigns(stream, program_file)

    def _campaign_index_figure(self, stream: Stream, indexed: list[WorkerRun],
                               scanning: list[WorkerRun]) -> None:
        """The realistic set with the previous design's scan of every running campaign
        (``LOYALTY_CAMPAIGN_INDEX=false``) beside the index, in this run."""
        self.figures.append(Figure(
            "campaigns.index", "ingest, realistic campaigns: index vs scan", "events/s",
            f"{stream.events:,} events, {HEADLINE_WORKERS} workers",
            Measure("campaign index", [r.sustained_events_per_s for r in indexed]),
            Measure("scan of every running campaign (previous design)",
                    [r.sustained_events_per_s for r in scanning]),
            notes="the realistic set's runs beside the same stream and program with "
                  "LOYALTY_CAMPAIGN_INDEX=false, alternating run by run",
            extra=_worker_extra(indexed, scanning)))

    def _campaigns_figure(self, key: str, name: str, stream: Stream, program_name: str,
                          with_campaigns: list[WorkerRun], without: list[WorkerRun], what: str) -> None:
        """One campaigns figure: a program's 20 campaigns against ``without`` (none). The
        target is judged on the pipeline's CPU per event, each run over the `none` run of its
        own round (the median of those ratios): the host's speed moves between rounds by
        more than the 15 % judged, alike for both sides, so the ratio of two medians drawn
        from different rounds can put a side's fast rounds against the other's slow ones
        (docs/BENCHMARKS.md, "Campaigns paired by round"). Throughput's ratios are beside it."""
        extra = _worker_extra(with_campaigns, without)
        cpu_ratio = extra["pairwise_pipeline_cpu_ratio_median"]
        self.figures.append(Figure(
            key, f"ingest, {BENCH_CAMPAIGNS} campaigns ({name})", "events/s",
            f"{stream.events:,} events, {HEADLINE_WORKERS} workers",
            Measure(f"{BENCH_CAMPAIGNS} campaigns", [r.sustained_events_per_s for r in with_campaigns]),
            Measure("no campaign", [r.sustained_events_per_s for r in without]),
            Target(f"cost per event within {CAMPAIGNS_COST_PCT_MAX} % of none (pipeline CPU per "
                   f"event, median of each round's ratio)",
                   lambda v, b: cpu_ratio is not None
                   and cpu_ratio * PERCENT <= PERCENT + CAMPAIGNS_COST_PCT_MAX),
            notes=f"the ingest stream (simulator purchases carry basket lines) through "
                  f"{HEADLINE_WORKERS} workers with {program_name}'s {BENCH_CAMPAIGNS} campaigns "
                  f"running ({what}) against the default program, sides alternating run by run",
            extra=extra))

    def _profile_campaigns(self, stream: Stream, program_file: Path) -> None:
        """One profiled run with the campaigns and one without (not counted in the medians)."""
        for name, overrides in (("campaigns-realistic-20", {"program_file": str(program_file)}),
                                ("campaigns-none", {})):
            profiled = ingest.run_workers(self.services, f"{name}-profiled", stream, HEADLINE_WORKERS,
                                          self.work / "logs", profile_dir=self.profile_dir / name, **overrides)
            self.profiles[name] = {"sustained_events_per_s": profiled.sustained_events_per_s,
                                   "cores_used": profiled.cores_used, **profiled.profiles}

    def replay(self) -> None:
        store = replay.build_store(self.services, self.sizes.replay_facts)
        gc.collect()  # the build's accounts and simulator state, not a pause inside a replay transaction
        self.log(f"replay store: {store.facts:,} facts from {store.events:,} events in {store.build_s:.0f} s")
        window = self.sizes.replay_baseline_window_s
        split_processes = REPLAY_PROCESSES_DEFAULT
        runs: dict[int, list[replay.ReplayRun]] = {split_processes: [], 1: []}
        for number in range(1, self.sizes.runs + 1):  # interleaved: both see the same box
            for processes, done in runs.items():
                done.append(replay.replay_run(store, processes))
                self.log(f"replay in {processes} process(es) run {number}/{self.sizes.runs}: "
                         f"{done[-1].facts_per_s:,.0f} facts/s, peak RSS "
                         f"{done[-1].peak_rss_mb:,.0f} MB")
        split = [run.facts_per_s for run in runs[split_processes]]
        single = [run.facts_per_s for run in runs[1]]
        runner = self.repeat("ProjectionRunner", lambda _: replay.runner_rate(store, window), "facts/s")
        memory = {f"peak_rss_mb_{processes}_processes": [run.peak_rss_mb for run in done]
                  for processes, done in runs.items()}
        self.figures.append(Figure(
            "replay", "replay, all read models", "facts/s", f"{store.facts:,} stored facts",
            Measure(f"split replay, {split_processes} processes", split),
            Measure("ProjectionRunner", runner),
            Target(f">= {REPLAY_TARGET_FACTS_PER_S:,}/s", lambda v, b: v >= REPLAY_TARGET_FACTS_PER_S),
            notes=f"drop and rebuild every read model from a store of {store.facts:,} facts "
                  f"({store.events:,} simulator events applied through the ledger) with "
                  f"projections.split_replay.replay in {split_processes} processes (`loyalty "
                  f"replay`); baseline: eventsourcing's ProjectionRunner per read model (one "
                  f"fact per transaction), timed for at most {window:g} s, slowest read model",
            extra=memory))
        self.figures.append(Figure(
            "replay.split", "replay split by member vs one process", "facts/s",
            f"{store.facts:,} stored facts",
            Measure(f"{split_processes} processes", split),
            Measure("1 process (previous design)", single),
            notes=f"the same replay with --processes {split_processes} and --processes 1, "
                  f"interleaved run by run on this box; peak RSS of the benchmark process and "
                  f"its children in the extra",
            extra=memory))
        if self.profile_dir:
            profiled = replay.replay_run(store, 1, self.profile_dir / "replay.txt")
            self.profiles["replay"] = {"facts_per_s": profiled.facts_per_s,
                                       "bench-process": profiled.profile}
        self.services.drop(store.url)

    def latency(self) -> None:
        """Produce to the balance row at each of ``latency_rates`` (issue 21: 1,000 and 5,000/s)."""
        for rate in self.sizes.latency_rates:
            self._latency_at(rate, self._broker_hops() if rate == self.sizes.latency_rates[0] else None)
        if self.profile_dir:
            sizes = self.sizes
            run = latency.measure(self.services, "latency-profiled", "batched", sizes.latency_seconds,
                                  sizes.latency_rates[0], sizes.latency_members, self.work / "logs",
                                  profile_dir=self.profile_dir / "latency")
            self.profiles["latency"] = {"p99_ms": run.percentile(99), **run.profiles}

    def _broker_hops(self) -> dict[str, dict[str, float]]:
        hops = {}
        for wait_ms in (latency.FAUST_FETCH_MAX_WAIT_MS, latency.HOP_FETCH_MAX_WAIT_MS):
            topic = f"bench.hop-{wait_ms}.events"
            self.services.create_topic(topic)
            measured = latency.broker_hop_ms(self.services.bootstrap_servers, topic,
                                             self.services.base.partitions, wait_ms)
            hops[f"fetch_max_wait_ms_{wait_ms}"] = {
                name: latency.percentile(measured, pct) for name, pct in (("p50", 50), ("p99", 99))}
            self.log(f"broker hop with fetch_max_wait_ms={wait_ms}: {hops[f'fetch_max_wait_ms_{wait_ms}']}")
        return hops

    def _latency_at(self, rate: int, hops: dict[str, dict[str, float]] | None) -> None:
        sizes = self.sizes
        runs: dict[str, list[latency.LatencyRun]] = {side: [] for side in LATENCY_SIDES}
        for number in range(1, sizes.runs + 1):
            for side, results in runs.items():
                follower, gc_tuned, overrides = LATENCY_SIDES[side]
                run = latency.measure(self.services, f"latency-{rate}-{side}-r{number}", follower,
                                      sizes.latency_seconds, rate, sizes.latency_members,
                                      self.work / "logs", gc_tuned=gc_tuned, **overrides)
                results.append(run)
                self.log(f"latency at {rate:,}/s ({side}) run {number}/{sizes.runs}: "
                         f"p50 {run.percentile(50):,.0f} ms, p99 {run.percentile(99):,.0f} ms, "
                         f"max {run.percentile(100):,.0f} ms (to the ledger's commit: p50 "
                         f"{run.ledger_percentile(50):,.0f} ms, p99 {run.ledger_percentile(99):,.0f} ms), "
                         f"offered {run.offered_per_s:,.0f}/s, unseen {run.unseen}")
        size = f"{rate:,}/s for {sizes.latency_seconds:g} s"
        for pct, name in ((50, "p50"), (99, "p99"), (100, "max")):
            target = None
            if pct == 99:
                target = Target(f"<= {LATENCY_TARGET_P99_MS} ms", lambda v, b: v <= LATENCY_TARGET_P99_MS)
            extra = {"to_ledger_commit_ms": [r.ledger_percentile(pct) for r in runs["batched"]],
                     "baseline_to_ledger_commit_ms": [r.ledger_percentile(pct) for r in runs["runner"]],
                     "offered_per_s": [r.offered_per_s for r in runs["batched"]],
                     "unseen": [r.unseen for r in runs["batched"]],
                     "baseline_unseen": [r.unseen for r in runs["runner"]],
                     "baseline_offered_per_s": [r.offered_per_s for r in runs["runner"]],
                     "previous_design_gc_default_ms": [r.percentile(pct) for r in runs[GC_DEFAULT_SIDE]],
                     "previous_design_gc_default_to_ledger_commit_ms": [
                         r.ledger_percentile(pct) for r in runs[GC_DEFAULT_SIDE]],
                     "previous_design_batch_cycle_ms": [r.percentile(pct) for r in runs[CYCLE_PREVIOUS_SIDE]],
                     "previous_design_batch_cycle_to_ledger_commit_ms": [
                         r.ledger_percentile(pct) for r in runs[CYCLE_PREVIOUS_SIDE]],
                     "previous_design_kept_rows_ms": [r.percentile(pct) for r in runs["batched-unkept"]],
                     "previous_design_kept_rows_to_ledger_commit_ms": [
                         r.ledger_percentile(pct) for r in runs["batched-unkept"]],
                     **_previous_follower_extra(runs["batched-previous"], pct)}
            if hops is not None:
                extra["broker_hop_ms"] = hops
            self.figures.append(Figure(
                latency_key(rate, name, sizes.latency_rates[0]), f"latency {name} at {rate:,}/s", "ms",
                size,
                Measure("batched follower", [r.percentile(pct) for r in runs["batched"]]),
                Measure("ProjectionRunner", [r.percentile(pct) for r in runs["runner"]]),
                target,
                notes=f"produce time to the balances row showing the purchase, {sizes.latency_members:,} "
                      f"members, {latency.LATENCY_WORKERS} workers, polled every "
                      f"{latency.POLL_INTERVAL_MS} ms; follower `loyalty replay --resume --follow`, "
                      f"baseline eventsourcing's ProjectionRunner per read model; "
                      f"extra.previous_design_follower_*: the same follower with "
                      f"read_models_combine_statements=false and follow_synchronous_commit=true; "
                      f"extra.previous_design_kept_rows_*: the follower with follow_kept_rows_max=0; "
                      f"extra.previous_design_batch_cycle_*: ledger_combine_statements=false, "
                      f"ledger_position_cache=false and consumer_commit_in_background=false",
                extra=extra))

    def api(self) -> None:
        sizes = self.sizes
        runs: list[api.ApiRun] = []
        previous: dict[str, list[api.ApiRun]] = {side: [] for side in API_PREVIOUS_SIDES}

        def measure(label: str, read_before_wakeup: bool = False, gc_tuned: bool = True,
                    **overrides: Any) -> api.ApiRun:
            return api.measure(self.services, label, sizes.api_seconds, sizes.api_redemption_rate,
                               sizes.api_purchase_rate, sizes.api_members, sizes.api_lookup_seconds,
                               self.work / "logs", read_before_wakeup=read_before_wakeup,
                               gc_tuned=gc_tuned, **overrides)

        for number in range(1, sizes.runs + 1):
            run = measure(f"api-r{number}")
            runs.append(run)
            self.log(f"api run {number}/{sizes.runs}: redemption round trip p50 "
                     f"{latency.percentile(run.round_trip_ms, 50):,.0f} ms, p99 "
                     f"{latency.percentile(run.round_trip_ms, 99):,.0f} ms (produce and poll: p50 "
                     f"{latency.percentile(run.produced_ms, 50):,.0f} ms, p99 "
                     f"{latency.percentile(run.produced_ms, 99):,.0f} ms); lookups "
                     f"{run.lookup_per_s:,.0f}/s p99 {latency.percentile(run.lookup_ms, 99):,.1f} ms "
                     f"(/healthz {run.health_per_s:,.0f}/s); background {run.purchases_per_s:,.0f} "
                     f"purchases/s; not 200: {run.not_200}, unseen: {run.unseen}")
            self.log(f"api run {number}/{sizes.runs}: round trip stages (ms): {api.stage_summary(run.stages_ms)}")
            for side, (label, what, overrides) in API_PREVIOUS_SIDES.items():
                side_run = measure(f"{label}-r{number}", **overrides)
                previous[side].append(side_run)
                self.log(f"api run {number}/{sizes.runs}, {what}: round trip p50 "
                         f"{latency.percentile(side_run.round_trip_ms, 50):,.0f} ms, p99 "
                         f"{latency.percentile(side_run.round_trip_ms, 99):,.0f} ms; lookups p99 "
                         f"{latency.percentile(side_run.lookup_ms, 99):,.1f} ms; stages (ms): "
                         f"{api.stage_summary(side_run.stages_ms)}")
        self.figures.extend(_api_figures(sizes, runs, previous))

    def store(self) -> None:
        """The event store's write ceiling, PostgreSQL alone (``bench/store_ceiling.py``)."""
        self.figures.extend(store_ceiling.figures(self.services, self.sizes.runs,
                                                  self.sizes.store_events_per_writer,
                                                  self.sizes.store_baseline_events, self.log))

    def memory(self) -> None:
        small, large = self.sizes.memory_members
        results = {}
        for members in (small, large):
            stream = self.stream(f"members-{members}", lambda members=members: member_lines(members))
            results[members] = self.worker_runs(f"memory-{members}", stream, 1)
        notes = ("RSS (psutil) of one `loyalty worker` (or the relay process, the larger) once "
                 "is_processed holds for a stream of one purchase per member; account cache "
                 f"{self.services.base.account_cache_accounts_max:,} accounts")
        self.figures.append(Figure(
            "memory.small", f"worker RSS, {small:,} members", "MB", f"{small:,} members",
            Measure("after the stream", [r.rss_final_mb for r in results[small]]),
            Measure("after 1st batch", [r.rss_first_batch_mb for r in results[small]]),
            notes=notes, extra={"rss_curve_events_mb": results[small][0].rss_curve}))
        self.figures.append(Figure(
            "memory.large", f"worker RSS, {large:,} members", "MB", f"{large:,} members",
            Measure("after the stream", [r.rss_final_mb for r in results[large]]),
            Measure(f"after {small:,} members", [r.rss_final_mb for r in results[small]]),
            Target(f"<= {MEMORY_TARGET_TIMES_SMALLER}× baseline",
                   lambda v, b: v <= MEMORY_TARGET_TIMES_SMALLER * b),
            notes=notes, extra={"rss_curve_events_mb": results[large][0].rss_curve}))


def _previous_follower_extra(previous: list[latency.LatencyRun], pct: int) -> dict[str, list]:
    """The batched follower's previous design (issue 21: one statement per lock, read, write
    and position, synchronous commits), measured in the same run."""
    return {"previous_design_follower_ms": [r.percentile(pct) for r in previous],
            "previous_design_follower_to_ledger_commit_ms": [r.ledger_percentile(pct) for r in previous],
            "previous_design_follower_unseen": [r.unseen for r in previous]}


def _api_figures(sizes: Sizes, runs: list[api.ApiRun],
                 previous: dict[str, list[api.ApiRun]]) -> list[Figure]:
    """Issue 15's figures: the redemption round trip against produce-and-poll, lookups
    against ``/healthz``; each previous design's (``API_PREVIOUS_SIDES``) in the extra."""
    size = (f"{sizes.api_redemption_rate}/s for {sizes.api_seconds:g} s, while "
            f"{sizes.api_purchase_rate:,} purchases/s stream in")
    notes = (f"POST /v1/events of a 1-point redemption to its 200 (HTTP, Kafka, {api.API_WORKERS} "
             f"workers, the ledger, HTTP) on one `loyalty api` process; baseline: the same "
             f"redemptions produced to Kafka and found in the balances read model (polled every "
             f"{api.POLL_INTERVAL_MS} ms); {sizes.api_members} members each side")
    extra = {"not_200": [r.not_200 for r in runs], "baseline_unseen": [r.unseen for r in runs],
             "background_purchases_per_s": [r.purchases_per_s for r in runs],
             **{f"previous_design_{side}_ms": {
                 f"p{pct}": [latency.percentile(r.round_trip_ms, pct) for r in side_runs] for pct in (50, 99)}
                for side, side_runs in previous.items()},
             "previous_design_gc_default_lookup_p99_ms": [latency.percentile(r.lookup_ms, 99)
                                                          for r in previous["gc_default"]]}
    figures = [Figure(
        f"api.redemption_{name}", f"API redemption round trip {name}", "ms", size,
        Measure("HTTP round trip", [latency.percentile(r.round_trip_ms, pct) for r in runs]),
        Measure("produce, poll balances", [latency.percentile(r.produced_ms, pct) for r in runs]),
        Target(f"<= {API_REDEMPTION_TARGET_P99_MS} ms",
               lambda v, b: v <= API_REDEMPTION_TARGET_P99_MS) if pct == 99 else None,
        notes=notes, extra=extra) for pct, name in ((50, "p50"), (99, "p99"))]
    lookups = (f"{api.LOOKUP_CLIENTS} keep-alive clients for {sizes.api_lookup_seconds:g} s, "
               f"{sizes.api_members} members; one `loyalty api` process, "
               f"{api.API_READ_THREADS} read threads; baseline GET /healthz the same way")
    figures.append(Figure(
        "api.lookup_rps", "API balance lookups", "requests/s", f"{sizes.api_members} members",
        Measure("GET /v1/members/{id}", [r.lookup_per_s for r in runs]),
        Measure("GET /healthz", [r.health_per_s for r in runs]),
        Target(f">= {API_LOOKUP_TARGET_PER_S:,}/s", lambda v, b: v >= API_LOOKUP_TARGET_PER_S),
        notes=lookups))
    figures.append(Figure(
        "api.lookup_p99", "API balance lookup p99", "ms", f"{sizes.api_members} members",
        Measure("GET /v1/members/{id}", [latency.percentile(r.lookup_ms, 99) for r in runs]),
        Measure("GET /healthz", [latency.percentile(r.health_ms, 99) for r in runs]),
        Target(f"<= {API_LOOKUP_TARGET_P99_MS} ms", lambda v, b: v <= API_LOOKUP_TARGET_P99_MS),
        notes=lookups))
    return figures


def _worker_extra(runs: list[WorkerRun], baseline: list[WorkerRun] | None = None) -> dict[str, Any]:
    parts = runs[0].cores_used.keys()
    extra: dict[str, Any] = {
        "cores_used_median": {part: statistics.median(r.cores_used[part] for r in runs) for part in parts},
        "cpu_us_per_event_median": _median_parts([r.cpu_us_per_event for r in runs]),
        "sustained_window_s": [r.sustained_window_s for r in runs],
        "sustained_spread_pct": spread_pct([r.sustained_events_per_s for r in runs]),
        "first_progress_s": [r.first_progress_s for r in runs],
        "wall_s": [r.wall_s for r in runs],
        "worker_rss_mb": [r.rss_final_mb for r in runs],
    }
    if baseline:
        extra["baseline_cores_used_median"] = {
            part: statistics.median(r.cores_used[part] for r in baseline) for part in parts}
        extra["baseline_cpu_us_per_event_median"] = _median_parts([r.cpu_us_per_event for r in baseline])
        extra |= _pairwise(runs, baseline)
    return extra


def _pairwise(runs: list[WorkerRun], baseline: list[WorkerRun]) -> dict[str, Any]:
    """Each run's figures over the baseline run of the same round (the sides alternate, so a
    pair is a minute apart and a box drifting between rounds weighs on both of its sides):
    throughput and the pipeline's CPU per event, each pair's ratio and their median."""
    rates = [r.sustained_events_per_s / b.sustained_events_per_s for r, b in zip(runs, baseline)]
    cpu = [r.cpu_us_per_event["pipeline"] / b.cpu_us_per_event["pipeline"]
           for r, b in zip(runs, baseline) if r.cpu_us_per_event.get("pipeline") and b.cpu_us_per_event.get("pipeline")]
    return {"pairwise_ratios": rates, "pairwise_ratio_median": statistics.median(rates),
            "pairwise_pipeline_cpu_ratios": cpu,
            "pairwise_pipeline_cpu_ratio_median": statistics.median(cpu) if cpu else None}


def _median_parts(samples: list[dict[str, float]]) -> dict[str, float]:
    """Each part's median over runs (a part missing from a run, such as a fourth worker, is
    left out of that part's median)."""
    parts = dict.fromkeys(part for sample in samples for part in sample)
    return {part: statistics.median(s[part] for s in samples if part in s) for part in parts}


if __name__ == "__main__":
    sys.exit(main())
