"""CPU per event of campaigns, without Kafka: ``python -m bench.campaign_cpu``.

A same-run A/B micro-benchmark of issue 17's cost per event: the bench's
stream (``bench.load.simulated_lines``) goes through the worker's ledger
path (``PartitionBatchApplier.apply``, batches of ``batch_events_max``
messages, no broker) into an embedded PostgreSQL, once per program (the
default program, the bench's headline 20 campaigns of ``bench/campaign_program.py``
(``realistic_campaign_program_text``), its dense stress set (``campaign_program_text``),
its 20 aimed campaigns (``targeted_campaign_program_text``: one or two lines
a purchase) and any ``--program`` file given), each in a database of its own; then the
outbox relay's work over the stored facts (``OutboxRelay.relay_once`` as a relay
process runs it, nothing sent; before 2026-11-29 it decoded every fact, as
``LOYALTY_RELAY_ENCODES_STORED=false`` still does) and the read models' replay
(``projections.runner.replay``). For each part: this thread's CPU
microseconds per inbound event, and PostgreSQL's (every backend); the stored
bytes of the facts per event. The sides run one after the other in one
process, ``--rounds`` times alternating, and the least of each figure is
printed (CPU time only grows when other processes share the cores and
caches, so the least is the best estimate on a shared box; the bench's
evaluation micro-benchmark is "best of 5" likewise). Absolute figures still
move with the box: compare sides of one run.

``--scan`` adds the realistic 20 campaigns once more with the previous design's
scan of every running campaign (``SCAN_ENV``), the same-run A/B of the campaign
index (``ledger/campaign_plan.py``). ``--previous-store-path`` adds the 20 campaigns once more with the ledger
thread's previous store path (``PREVIOUS_STORE_PATH_ENV``: a key query per
profile-bearing command), the same-run A/B of issue 21's store-path changes;
``ledger_wall_us_per_event`` is the ledger part's elapsed time (round trips
to PostgreSQL included), not summed into the total.

The collector is tuned as a worker tunes it (``streams.gc_tuning.tune_gc``,
after the stream is built): with CPython's defaults a young collection every
700 allocations walks the sides' accounts, a cost workers do not pay and
one that grows with the objects a side keeps (about 15 us more per event
for the 20 campaigns than for none at 10,000 events). ``--gc-defaults``
measures with CPython's collector instead (this module's previous figures).
"""

from __future__ import annotations

import argparse
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import orjson

from bench.campaign_program import (
    campaign_program_text, realistic_campaign_program_text, targeted_campaign_program_text)
from bench.load import simulated_lines
from bench.services import cpu_seconds
from ledger.application import LoyaltyLedger
from ledger.program import DEFAULT_PROGRAM_PATH, parse_program
from projections.runner import open_read_models, replay
from streams.batches import InboundMessage, PartitionBatchApplier
from streams.devkit.embedded_postgres import EmbeddedPostgres
from streams.gc_tuning import tune_gc
from streams.outbox import Outbound, OutboxRelay
from streams.settings import Settings
from streams.worker import account_cache_env

EVENTS_DEFAULT = 3_000
ROUNDS_DEFAULT = 5
PARTITIONS = 8
US_PER_S = 1_000_000
RELAY_BATCH_NOTIFICATIONS_MAX = 1_000
TOPIC = "bench.campaign-cpu.events"
PREVIOUS_STORE_PATH_SIDE = "dense-20-previous-store-path"
PREVIOUS_STORE_PATH_ENV = {"LOYALTY_MEMBER_KEYS_PREFETCH": "off"}  # one key query per profile command
SCAN_SIDE = "realistic-20-scan"
SCAN_ENV = {"LOYALTY_CAMPAIGN_INDEX": "false"}  # every running campaign checked per purchase


def inbound(lines: list[bytes], first_offset: int = 0) -> list[InboundMessage]:
    """The lines as Kafka messages: partition by a hash of the member, offsets per partition
    (from ``first_offset``: a later slice of a stream gets offsets after an earlier one's)."""
    offsets = [first_offset] * PARTITIONS
    made = []
    for line in lines:
        key = orjson.loads(line)["member_id"].encode()
        partition = zlib.crc32(key) % PARTITIONS
        made.append(InboundMessage(TOPIC, partition, offsets[partition], key, line))
        offsets[partition] += 1
    return made


@contextmanager
def cpu(parts: dict[str, float], name: str, postgres_pid: int, events: int) -> Iterator[None]:
    """Adds ``name`` (this thread) and ``name.postgresql`` in us per event to ``parts``."""
    mine, server = time.thread_time(), _postgres_cpu_s(postgres_pid)
    yield
    parts[name] = (time.thread_time() - mine) * US_PER_S / events
    parts[f"{name}.postgresql"] = (_postgres_cpu_s(postgres_pid) - server) * US_PER_S / events


def _postgres_cpu_s(pid: int) -> float:
    """PostgreSQL's CPU seconds so far, every backend (live or ended) included."""
    return cpu_seconds({"postgresql": pid}, [])["postgresql"]


def run_side(postgres: EmbeddedPostgres, label: str, program_text: str,
             stream: list[InboundMessage], settings: Settings,
             design_env: dict[str, str] | None = None) -> dict[str, float]:
    """One side's parts, in a fresh database (``design_env``: a previous design's flags)."""
    name = f"campaign_cpu_{label}"
    postgres.drop_database(name)
    env = postgres.create_database(name).env | account_cache_env(settings) | (design_env or {})
    program = parse_program(program_text)
    ledger = LoyaltyLedger(env=env, program=program)
    parts: dict[str, float] = {}
    events = len(stream)
    try:
        applier = PartitionBatchApplier(ledger, settings)
        size = settings.batch_events_max
        started = time.perf_counter()
        with cpu(parts, "ledger", postgres.pid, events):
            for start in range(0, events, size):
                applier.apply(stream[start:start + size])
        parts["ledger_wall_us_per_event"] = (time.perf_counter() - started) * US_PER_S / events
        parts["facts_per_event"] = (ledger.recorder.max_notification_id() or 0) / events
        parts["stored_bytes_per_event"] = _stored_bytes(ledger) / events
        with cpu(parts, "relay", postgres.pid, events):
            sent = _relay(ledger, settings)
        parts["campaign_lines_per_event"] = _campaign_lines(sent, settings.ledger_topic) / events
        with open_read_models(env, program=program) as models, \
                cpu(parts, "projections", postgres.pid, events):
            replay(ledger, models)
    finally:
        ledger.close()
        postgres.drop_database(name)
    return parts


def _relay(ledger: LoyaltyLedger, settings: Settings) -> list[Outbound]:
    """The outbox relay's work over the stored facts (read, route, encode, its tracking row
    per round; ``relay_encodes_stored`` as set), the messages kept, none sent."""
    sent: list[Outbound] = []
    relay = OutboxRelay(ledger, replace(settings, outbox_batch_notifications_max=RELAY_BATCH_NOTIFICATIONS_MAX),
                        sent.extend)
    while relay.relay_once():
        pass
    return sent


def _campaign_lines(sent: list[Outbound], ledger_topic: str) -> int:
    """The campaign lines the published facts carry (``points_earned`` lines and
    ``reward_granted`` facts)."""
    documents = [orjson.loads(message.value) for message in sent if message.topic == ledger_topic]
    return sum(len(document.get("campaigns", ())) + (document["type"] == "reward_granted")
               for document in documents)


def _stored_bytes(ledger: LoyaltyLedger) -> int:
    with ledger.recorder.datastore.transaction(commit=False) as cursor:
        cursor.execute(f"SELECT sum(length(state)) AS n FROM {ledger.recorder.events_table_name}")
        return int(cursor.fetchone()["n"] or 0)


def least(runs: list[dict[str, float]]) -> dict[str, float]:
    """Each figure's least value over the rounds."""
    return {name: min(run[name] for run in runs) for name in runs[0]}


def print_table(sides: dict[str, dict[str, float]], out: Callable[[str], None] = print) -> None:
    names = list(next(iter(sides.values())))
    out("part (us CPU per event) | " + " | ".join(sides))
    for name in names:
        out(f"{name} | " + " | ".join(f"{side[name]:,.1f}" for side in sides.values()))
    for label, side in sides.items():
        total = sum(value for key, value in side.items() if not key.endswith("_per_event"))
        out(f"total {label}: {total:,.0f} us per event")


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.campaign_cpu",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=EVENTS_DEFAULT)
    parser.add_argument("--rounds", type=int, default=ROUNDS_DEFAULT)
    parser.add_argument("--program", action="append", type=Path, default=[],
                        help="one more side: a program file")
    parser.add_argument("--scan", action="store_true",
                        help="one more side: the realistic 20 campaigns with the previous "
                             "design's scan of every running campaign (SCAN_ENV)")
    parser.add_argument("--gc-defaults", action="store_true",
                        help="CPython's collector, not tuned as a worker tunes it")
    parser.add_argument("--previous-store-path", action="store_true",
                        help="one more side: the 20 campaigns with the ledger thread's previous "
                             "store path (PREVIOUS_STORE_PATH_ENV)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    stream = inbound(simulated_lines(args.events))
    programs = {"none": DEFAULT_PROGRAM_PATH.read_text(), "realistic-20": realistic_campaign_program_text(),
                "dense-20": campaign_program_text(), "aimed-20": targeted_campaign_program_text()}
    programs |= {path.stem: path.read_text() for path in args.program}
    designs = {label: {} for label in programs}
    if args.scan:
        programs[SCAN_SIDE] = programs["realistic-20"]
        designs[SCAN_SIDE] = SCAN_ENV
    if args.previous_store_path:
        programs[PREVIOUS_STORE_PATH_SIDE] = programs["dense-20"]
        designs[PREVIOUS_STORE_PATH_SIDE] = PREVIOUS_STORE_PATH_ENV
    settings = Settings()
    if not args.gc_defaults:
        tune_gc(settings)
    runs: dict[str, list[dict[str, float]]] = {label: [] for label in programs}
    with EmbeddedPostgres(durable=False) as postgres:
        for _ in range(args.rounds):
            for label, text in programs.items():
                runs[label].append(run_side(postgres, label.replace("-", "_"), text, stream,
                                            settings, designs[label]))
    print_table({label: least(side) for label, side in runs.items()})


if __name__ == "__main__":
    main()
