"""Where p99 latency crosses its line: ``python -m bench.latency_sweep``.

Issue 21's p99 target (event -> balance row <= 250 ms) is met at 1,000
events/s and missed at 5,000 on the benchmark box. This sweep measures the
rates in between, so ``docs/BENCHMARKS.md`` can say at which offered load the
line is crossed today, and so how much CPU per event the next design change
must take away for 5,000 events/s to look like that load does now.

Each run is ``bench.latency.measure`` with the product's follower
(``batched``) on fresh services (a new broker and PostgreSQL per run, as the
"fresh services" runs of ``docs/BENCHMARKS.md``), ``--seconds`` at each of
``--rates``, ``--rounds`` times with the rates in turn (a drifting host
weighs on every rate alike). It prints one line a run: the offered rate, p50
and p99 to the balance row and to the ledger's commit, and the events never
seen; ``--out`` writes them as JSON.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import orjson

from bench import latency
from bench.services import BenchServices
from streams.settings import Settings

RATES_DEFAULT = "2000,3000,4000,5000"
ROUNDS_DEFAULT = 2
SECONDS_DEFAULT = 20.0
MEMBERS_DEFAULT = 1_000
FOLLOWER = "batched"  # the product's follower (``loyalty replay --resume --follow``)


def sweep(rates: list[int], rounds: int, seconds: float, members: int,
          print_line: Any = print) -> list[dict[str, Any]]:
    """One ``latency.measure`` per rate and round, each on fresh services."""
    results = []
    for number in range(1, rounds + 1):
        for rate in rates:
            with tempfile.TemporaryDirectory(prefix="loyalty-sweep-") as work, \
                    BenchServices(durable=True, base=Settings.from_env()) as services:
                run = latency.measure(services, f"sweep-{rate}-r{number}", FOLLOWER, seconds, rate,
                                      members, Path(work))
            results.append(_result(rate, number, run))
            print_line(_line(results[-1]))
    return results


def _result(rate: int, number: int, run: latency.LatencyRun) -> dict[str, Any]:
    return {"rate": rate, "round": number, "offered_per_s": round(run.offered_per_s),
            "p50_ms": round(run.percentile(50)), "p99_ms": round(run.percentile(99)),
            "ledger_p50_ms": round(run.ledger_percentile(50)),
            "ledger_p99_ms": round(run.ledger_percentile(99)), "unseen": run.unseen}


def _line(result: dict[str, Any]) -> str:
    return (f"rate {result['rate']:,} round {result['round']}: offered {result['offered_per_s']:,}/s, "
            f"p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms; ledger commit p50 "
            f"{result['ledger_p50_ms']} ms, p99 {result['ledger_p99_ms']} ms; unseen {result['unseen']}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.latency_sweep",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default=RATES_DEFAULT, help="events/s, comma-separated")
    parser.add_argument("--rounds", type=int, default=ROUNDS_DEFAULT)
    parser.add_argument("--seconds", type=float, default=SECONDS_DEFAULT, help="offered time per run")
    parser.add_argument("--members", type=int, default=MEMBERS_DEFAULT)
    parser.add_argument("--out", type=Path, help="JSON file for the runs")
    args = parser.parse_args(argv)
    rates = [int(rate) for rate in args.rates.split(",")]
    if not rates or min(rates) <= 0 or args.rounds <= 0 or args.seconds <= 0:
        parser.error("rates, rounds and seconds must be positive")
    results = sweep(rates, args.rounds, args.seconds, args.members)
    if args.out:
        args.out.write_bytes(orjson.dumps({"command": "python -m bench.latency_sweep", "runs": results},
                                          option=orjson.OPT_INDENT_2))


if __name__ == "__main__":
    main()
