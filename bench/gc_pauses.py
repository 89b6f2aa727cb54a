"""Garbage collector pauses on the ledger path: ``python -m bench.gc_pauses``.

A same-run A/B of ``streams/gc_tuning.py`` without Kafka: the bench's stream
(``bench.load.simulated_lines``) with the realistic campaigns goes through the
worker's ledger path (``PartitionBatchApplier.apply``, batches of
``batch_events_max``, the worker's account cache) into an embedded
PostgreSQL, once with CPython's collector (``default``, the previous design)
and once tuned (``tuned``: ``tune_gc`` as a worker calls it), each in a fresh
interpreter (the collector is global to a process), ``--rounds`` times
alternating. Each side prints its collections by generation (count, total
and longest pause, from ``gc.callbacks``), its CPU microseconds per event
and its batches' wall p50 / p99 / max. The box is shared: compare the sides
of one run. ``--side`` runs one side in this process (what the A/B calls).
"""

from __future__ import annotations

import argparse
import gc
import subprocess
import sys
import time
from dataclasses import replace
from collections.abc import Iterator
from pathlib import Path

import orjson

from bench.campaign_cpu import inbound
from bench.campaign_program import realistic_campaign_program_text
from bench.load import simulated_lines
from ledger.application import LoyaltyLedger
from ledger.program import parse_program
from streams.batches import InboundMessage, PartitionBatchApplier
from streams.devkit.embedded_postgres import EmbeddedPostgres
from streams.gc_tuning import tune_gc
from streams.settings import Settings
from streams.worker import account_cache_env

EVENTS_DEFAULT = 60_000
ROUNDS_DEFAULT = 2
SIDES = ("default", "tuned")
SIDE_TIMEOUT_S = 1_800
US_PER_S = 1_000_000
MS_PER_S = 1_000
REPO_ROOT = Path(__file__).resolve().parents[1]


class Pauses:
    """``gc.callbacks`` hook: each generation's pauses in milliseconds."""

    def __init__(self) -> None:
        self.by_generation: dict[int, list[float]] = {0: [], 1: [], 2: []}
        self._started = 0.0

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.by_generation[info["generation"]].append((time.perf_counter() - self._started) * MS_PER_S)


def _percentile(values: list[float], pct: int) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, len(ordered) * pct // 100)] if ordered else 0.0


def batches(lines: list[bytes], size: int) -> Iterator[list[InboundMessage]]:
    """``lines`` as ``bench.campaign_cpu.inbound`` messages, made a batch at a time: a worker
    holds one batch, not the stream, so the collector must not scan the whole stream."""
    for start in range(0, len(lines), size):
        yield inbound(lines[start:start + size], first_offset=start)


def run_side(side: str, events: int) -> dict:
    """One side in this process: the stream through the ledger path, its pauses and CPU."""
    lines = simulated_lines(events)  # bytes: never tracked by the collector
    settings = Settings()
    pauses = Pauses()
    with EmbeddedPostgres(durable=False) as postgres:
        env = postgres.create_database("gc_pauses").env | account_cache_env(settings)
        ledger = LoyaltyLedger(env=env, program=parse_program(realistic_campaign_program_text()))
        applier = PartitionBatchApplier(ledger, settings)
        tune_gc(replace(settings, gc_tuned=side == "tuned"))
        gc.callbacks.append(pauses)
        batch_ms, started = [], time.process_time()
        for batch in batches(lines, settings.batch_events_max):
            begun = time.perf_counter()
            applier.apply(batch)
            batch_ms.append((time.perf_counter() - begun) * MS_PER_S)
        cpu_s = time.process_time() - started
        gc.callbacks.remove(pauses)
        ledger.close()
    return {"side": side, "cpu_us_per_event": cpu_s * US_PER_S / events,
            "collections": {str(g): {"count": len(p), "total_ms": sum(p), "max_ms": max(p, default=0.0)}
                            for g, p in pauses.by_generation.items()},
            "batch_ms": {f"p{pct}": _percentile(batch_ms, pct) for pct in (50, 99, 100)}}


def _side_in_child(side: str, events: int) -> dict:
    done = subprocess.run([sys.executable, "-m", "bench.gc_pauses", "--side", side, "--events", str(events)],
                          cwd=REPO_ROOT, capture_output=True, timeout=SIDE_TIMEOUT_S, check=True)
    return orjson.loads(done.stdout.splitlines()[-1])


def print_side(result: dict) -> None:
    collections = ", ".join(f"gen{g} {c['count']} ({c['total_ms']:,.0f} ms, longest {c['max_ms']:,.0f})"
                            for g, c in result["collections"].items())
    batches = result["batch_ms"]
    print(f"{result['side']}: {result['cpu_us_per_event']:,.0f} us CPU per event; collections: "
          f"{collections}; batch wall p50 {batches['p50']:,.0f} ms, p99 {batches['p99']:,.0f}, "
          f"max {batches['p100']:,.0f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.gc_pauses", description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=EVENTS_DEFAULT)
    parser.add_argument("--rounds", type=int, default=ROUNDS_DEFAULT)
    parser.add_argument("--side", choices=SIDES, help="run one side in this process (JSON out)")
    args = parser.parse_args(argv)
    if args.side:
        sys.stdout.buffer.write(orjson.dumps(run_side(args.side, args.events)) + b"\n")
        return
    for _ in range(args.rounds):
        for side in SIDES:
            print_side(_side_in_child(side, args.events))


if __name__ == "__main__":
    main()
