"""Figures, their baselines and targets; the rich table and the JSON document.

A ``Figure`` is one measured quantity (``runs`` values, reported as their
median) next to the baseline measured in the same benchmark run, with the
issue's target where it has one. ``document`` is what ``--out`` holds; the
smoke test (``tests/bench/test_smoke.py``) checks its shape.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

SCHEMA = "loyalty-bench/1"


@dataclass
class Measure:
    """What was measured and its value in every run."""

    what: str
    runs: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.runs)

    def as_json(self) -> dict[str, Any]:
        return {"what": self.what, "runs": self.runs, "median": self.median}


@dataclass
class Target:
    """A target of issue 6, checked on the medians (value, baseline)."""

    text: str
    check: Callable[[float, float], bool]


@dataclass
class Figure:
    id: str
    title: str
    unit: str
    size: str
    value: Measure
    baseline: Measure
    target: Target | None = None
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        """The value's median over the baseline's median."""
        return self.value.median / self.baseline.median

    @property
    def met(self) -> bool | None:
        if self.target is None:
            return None
        return self.target.check(self.value.median, self.baseline.median)

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "title": self.title, "unit": self.unit, "size": self.size,
            "value": self.value.as_json(), "baseline": self.baseline.as_json(),
            "ratio_to_baseline": self.ratio,
            "target": None if self.target is None else {"text": self.target.text, "met": self.met},
            "notes": self.notes, "extra": self.extra,
        }


def spread_pct(values: list[float]) -> float:
    """(max - min) / median, in percent: how far apart the runs of a figure were."""
    return round((max(values) - min(values)) / statistics.median(values) * 100, 1)


def document(figures: list[Figure], machine: dict[str, Any], run: dict[str, Any],
             profiles: dict[str, Any]) -> dict[str, Any]:
    return {"schema": SCHEMA, "run": run, "machine": machine,
            "figures": [figure.as_json() for figure in figures], "profiles": profiles}


def number(value: float, unit: str) -> str:
    digits = 1 if unit in ("ms", "MB") else 0
    return f"{value:,.{digits}f} {unit}"


TABLE_WIDTH_NOT_A_TERMINAL = 180


def print_table(figures: list[Figure], machine: dict[str, Any], run: dict[str, Any],
                console: Console | None = None) -> None:
    console = console or Console(width=None if sys.stdout.isatty() else TABLE_WIDTH_NOT_A_TERMINAL)
    title = (f"Loyalty ledger benchmark: {run['mode']} sizes, median of {run['runs']} run(s), "
             f"{run['duration_s'] / 60:.1f} min")
    table = Table(title=title, caption=machine_line(machine))
    for column, justify in (("figure", "left"), ("size", "left"), ("median", "right"),
                            ("baseline", "right"), ("", "left"), ("× baseline", "right"),
                            ("target", "left")):
        table.add_column(column, justify=justify)
    for figure in figures:
        target = ""
        if figure.target is not None:
            target = f"{figure.target.text}: " + ("[green]met[/]" if figure.met else "[red]not met[/]")
        table.add_row(f"{figure.title} ({figure.value.what})", figure.size,
                      number(figure.value.median, figure.unit), number(figure.baseline.median, figure.unit),
                      figure.baseline.what, f"{figure.ratio:,.2f}", target)
    console.print(table)


PARTS_KEY = "cpu_us_per_event_median"


def print_parts(figures: list[Figure], console: Console | None = None) -> None:
    """CPU microseconds per event by part, for every figure whose runs measured it."""
    measured: list[Figure] = []
    for figure in figures:  # a figure with the same runs as one shown (scaling, 2 workers) is not repeated
        if PARTS_KEY in figure.extra and all(figure.extra[PARTS_KEY] != m.extra[PARTS_KEY] for m in measured):
            measured.append(figure)
    if not measured:
        return
    console = console or Console(width=None if sys.stdout.isatty() else TABLE_WIDTH_NOT_A_TERMINAL)
    parts = list(dict.fromkeys(part for figure in measured for part in figure.extra[PARTS_KEY]))
    table = Table(title="CPU µs per event by part (sustained window, median of runs)")
    table.add_column("part")
    for figure in measured:
        table.add_column(figure.id, justify="right")
    for part in parts:
        table.add_row(part, *(_us(figure.extra[PARTS_KEY].get(part)) for figure in measured))
    console.print(table)


def _us(value: float | None) -> str:
    return "" if value is None else f"{value:,.0f}"


def machine_line(machine: dict[str, Any]) -> str:
    return (f"{machine['cpu_model']}, {machine['cores_logical']} cores, "
            f"{machine['memory_gb']:.0f} GB; Python {machine['python']}; "
            f"PostgreSQL {machine['postgresql']} ({machine['postgresql_durability']}); "
            f"broker {machine['broker']}; commit {machine['commit']}; "
            f"other load before the run {machine['background_cores_before_run']:.2f} cores")


def markdown(doc: dict[str, Any]) -> str:
    """The table of a written JSON document, as Markdown (for docs/BENCHMARKS.md)."""
    lines = ["| figure | size | median | runs | baseline | baseline median | × baseline | target |",
             "| --- | --- | ---: | ---: | --- | ---: | ---: | --- |"]
    for figure in doc["figures"]:
        value, baseline, unit = figure["value"], figure["baseline"], figure["unit"]
        runs = ", ".join(number(run, unit).rsplit(" ", 1)[0] for run in value["runs"])
        target = figure["target"]
        judged = "" if target is None else f"{target['text']}: **{'met' if target['met'] else 'not met'}**"
        lines.append(f"| {figure['title']} ({value['what']}) | {figure['size']} | "
                     f"{number(value['median'], unit)} | {runs} | {baseline['what']} | "
                     f"{number(baseline['median'], unit)} | {figure['ratio_to_baseline']:,.2f} | {judged} |")
    lines.append("")
    lines.append(machine_line(doc["machine"]) + f"; {doc['run']['mode']} sizes, "
                 f"{doc['run']['runs']} run(s), {doc['run']['duration_s'] / 60:.1f} min, "
                 f"`{doc['run']['command']}`")
    return "\n".join(lines)


if __name__ == "__main__":  # python -m bench.report bench/results/FILE.json
    print(markdown(json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))))
