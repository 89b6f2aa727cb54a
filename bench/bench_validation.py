"""How many inbound messages per second ``decode_inbound`` validates, against baselines.

Run: ``python bench/bench_validation.py``. Not part of the test suite.

Every row works through the same corpus (the inbound schemas' own examples,
serialised once) for ``ROW_SECONDS_MIN`` seconds, in this process: parsing
alone with orjson, ``decode_inbound`` on valid and on refused messages, and
the pure-Python ``jsonschema`` library if it is installed (the row is skipped
with a note otherwise).
"""

from __future__ import annotations

import sys
import time
from importlib.metadata import version
from collections.abc import Callable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import orjson  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

import schemas  # noqa: E402
from streams.validation import INBOUND_TYPES, InvalidInput, decode_inbound  # noqa: E402

ROW_SECONDS_MIN = 1.0
CORPUS_COPIES = 50


def valid_corpus() -> list[bytes]:
    examples = [
        orjson.dumps(example)
        for kind in INBOUND_TYPES
        for example in schemas.load_schema(f"inbound/{kind}.v1.json")["examples"]
    ]
    return examples * CORPUS_COPIES


def refused_corpus() -> list[bytes]:
    purchase = schemas.load_schema("inbound/purchase.v1.json")["examples"][0]
    bad = [
        {**purchase, "amount_minor": 0},
        {**purchase, "amount": 1},
        {**purchase, "occurred_at": "2025-03-14T10:26:53"},
    ]
    return [orjson.dumps(event) for event in bad] * CORPUS_COPIES


def messages_per_second(handle: Callable[[bytes], object], corpus: list[bytes]) -> float:
    handled = 0
    started = time.perf_counter()
    while (elapsed := time.perf_counter() - started) < ROW_SECONDS_MIN:
        for raw in corpus:
            handle(raw)
        handled += len(corpus)
    return handled / elapsed


def refuse_quietly(raw: bytes) -> None:
    try:
        decode_inbound(raw)
    except InvalidInput:
        return
    raise AssertionError("a refused-corpus message was accepted")


def pure_python_jsonschema() -> tuple[Callable[[bytes], object] | None, str]:
    """A per-type ``jsonschema`` validator behind orjson.loads, or None and why not."""
    try:
        import jsonschema
        from referencing import Registry, Resource
    except ImportError:
        return None, "skipped: the jsonschema package is not installed"
    documents = schemas.documents_by_id().items()
    resources = [(uri, Resource.from_contents(doc)) for uri, doc in documents]
    registry = Registry().with_resources(resources)
    checker = jsonschema.Draft202012Validator.FORMAT_CHECKER
    validators = {
        kind: jsonschema.Draft202012Validator(
            schemas.load_schema(f"inbound/{kind}.v1.json"),
            registry=registry,
            format_checker=checker,
        )
        for kind in INBOUND_TYPES
    }

    def handle(raw: bytes) -> None:
        event = orjson.loads(raw)
        validators[event["type"]].validate(event)

    checks_date_time = "date-time" in checker.checkers
    note = f"jsonschema {version('jsonschema')}"
    if not checks_date_time:
        note += ", date-time format not checked (rfc3339-validator missing)"
    return handle, note


def main() -> None:
    valid, refused = valid_corpus(), refused_corpus()
    baseline = messages_per_second(orjson.loads, valid)
    rows = [
        ("orjson.loads only (baseline)", baseline, "parse, no validation"),
        ("decode_inbound, valid", messages_per_second(decode_inbound, valid),
         "jsonschema-rs, formats asserted"),
        ("decode_inbound, refused", messages_per_second(refuse_quietly, refused),
         "schema failures, message built"),
    ]
    handle, note = pure_python_jsonschema()
    pure_rate = messages_per_second(handle, valid) if handle else None
    rows.append(("orjson + jsonschema (pure Python)", pure_rate, note))
    print_table(rows, baseline=baseline, corpus_size=len(valid))


Row = tuple[str, float | None, str]


def print_table(rows: list[Row], baseline: float, corpus_size: int) -> None:
    title = f"Inbound validation, {corpus_size}-message corpus, ≥{ROW_SECONDS_MIN:g} s per row"
    table = Table(title=title)
    table.add_column("what")
    table.add_column("messages/s", justify="right")
    table.add_column("× baseline", justify="right")
    table.add_column("note")
    for what, rate, note in rows:
        if rate is None:
            table.add_row(what, "—", "—", note)
        else:
            table.add_row(what, f"{rate:,.0f}", f"{rate / baseline:.3f}", note)
    Console().print(table)


if __name__ == "__main__":
    main()
