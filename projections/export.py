"""``export``: read models and ledger facts as JSON Lines or CSV.

Kinds and where their rows come from:

- ``balances``, ``tiers``, ``annual``: the read-model tables, in key order,
  with exactly the field names of CONTRACT section 4;
- ``kpis``: ``kpi_report`` of the KPI read model (flat rows: one column per
  figure, an average check per tier, so no cell of its CSV holds JSON);
- ``tier-changes``: every ``tier_changed`` fact in the notification log, as
  the outbound document of CONTRACT section 5 (``ledger.wire``, what the
  outbox publishes; ``event_id`` is deterministic);
- ``ledger``: every ledger fact in notification order as published on
  ``loyalty.ledger`` (``type`` = wire name, ``fact_id``, ``member_id``,
  ``ledger_version``, ``source_event_id``, the fact's own fields).

Datetimes are RFC 3339 UTC with ``Z``. In CSV, nested values (lots, draws,
of the ``ledger`` export) are JSON text, booleans ``true``/``false``, null an
empty cell; the ``ledger`` columns are the union of every fact's fields.
Rows are streamed: the log is read ``EXPORT_BATCH_NOTIFICATIONS_MAX`` ids at a
time, only the facts ``ledger.routing`` sends to that output (and as it
renders them).

``export_read_models`` writes ``loyalty process``'s read-model files
(``balances.jsonl``, ``tiers.jsonl``, ``annual.jsonl``) once every event is in
the ledger: the read models are caught up (batched, from wherever they
stand; created on first use) and exported as above.
"""

from __future__ import annotations

import csv
import dataclasses
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

import orjson

from ledger import routing
from ledger.application import LoyaltyLedger
from ledger.domain import FACT_TYPES
from ledger.postgres.urls import eventsourcing_env_from_url
from ledger.wire import LIBRARY_FIELDS, json_ready
from projections.annual import ANNUAL, ANNUAL_FIELDS
from projections.balances import BALANCE_FIELDS, BALANCES
from projections.campaigns import CAMPAIGN_FIELDS, CAMPAIGNS
from projections.kpi_report import kpi_fields, kpi_report, report_tiers
from projections.rows import Table
from projections.runner import BATCH_NOTIFICATIONS_MAX_DEFAULT, ReadModels, catch_up, open_read_models
from projections.tiers import TIER_FIELDS, TIERS

EXPORT_BATCH_NOTIFICATIONS_MAX = 2_000
FORMATS = ("jsonl", "csv")
TIER_CHANGE_FIELDS = ("type", "schema_version", "event_id", "member_id", "from_tier", "to_tier",
                      "reason", "effective_at", "ledger_position")
LEDGER_HEAD_FIELDS = ("type", "schema_version", "fact_id", "member_id", "ledger_version",
                      "source_event_id", "effective_at")
READ_MODEL_EXPORTS: dict[str, tuple[str, Table, tuple[str, ...]]] = {
    "balances": ("balances", BALANCES, BALANCE_FIELDS),
    "tiers": ("tiers", TIERS, TIER_FIELDS),
    "annual": ("annual", ANNUAL, ANNUAL_FIELDS),
    "campaigns": ("campaigns", CAMPAIGNS, CAMPAIGN_FIELDS),
}
EXPORT_KINDS = ("balances", "tiers", "annual", "tier-changes", "ledger", "kpis", "campaigns")
LOG_EXPORTS = {"tier-changes": (routing.TIER_CHANGES, TIER_CHANGE_FIELDS),
               "ledger": (routing.LEDGER, None)}  # kind: (routing output, columns; None: all)
READ_MODEL_FILES = {"balances": "balances.jsonl", "tiers": "tiers.jsonl", "annual": "annual.jsonl",
                    "kpis": "kpis.jsonl", "campaigns": "campaigns.jsonl"}


def ledger_fields() -> tuple[str, ...]:
    """CSV columns of ``ledger``: the head, then every fact field of every fact type."""
    names = {f.name for fact_class in FACT_TYPES.values() for f in dataclasses.fields(fact_class)}
    return LEDGER_HEAD_FIELDS + tuple(sorted(names - LIBRARY_FIELDS - set(LEDGER_HEAD_FIELDS)))


def export(kind: str, ledger: LoyaltyLedger, models: ReadModels, out: TextIO,
           fmt: str = "jsonl") -> int:
    """Write the rows of ``kind`` to ``out`` in ``fmt``; returns how many rows."""
    fields, rows = export_rows(kind, ledger, models)
    return write_rows(rows, fields, out, fmt)


def export_rows(kind: str, ledger: LoyaltyLedger,
                models: ReadModels) -> tuple[tuple[str, ...], Iterator[dict[str, Any]]]:
    """The column names and the JSON-ready rows of ``kind``."""
    if kind in READ_MODEL_EXPORTS:
        name, table, fields = READ_MODEL_EXPORTS[kind]
        rows = models.view(name).rows(table)
        return fields, (json_ready({field: row[field] for field in fields}) for row in rows)
    if kind == "kpis":
        report = kpi_report(models.view("kpis"), ledger.program)
        return kpi_fields(report_tiers(report)), iter(json_ready(report))
    if kind in LOG_EXPORTS:
        output, fields = LOG_EXPORTS[kind]
        facts = ledger.fact_log.facts(topics=routing.output_topics(output),
                                      page_notifications_max=EXPORT_BATCH_NOTIFICATIONS_MAX)
        return fields or ledger_fields(), (routing.document(output, fact) for fact in facts)
    raise ValueError(f"unknown export {kind!r}; known: {', '.join(EXPORT_KINDS)}")


def export_read_models(ledger: LoyaltyLedger, database_url: str, out_dir: Path,
                       batch_notifications_max: int = BATCH_NOTIFICATIONS_MAX_DEFAULT
                       ) -> dict[str, int]:
    """Catch the read models up with ``ledger`` and write ``READ_MODEL_FILES``; rows per file."""
    env = eventsourcing_env_from_url(database_url)
    with open_read_models(env, READ_MODEL_FILES, ledger.program) as models:
        catch_up(ledger, models, batch_notifications_max=batch_notifications_max)
        return {file_name: _export_file(kind, ledger, models, out_dir / file_name)
                for kind, file_name in READ_MODEL_FILES.items()}


def _export_file(kind: str, ledger: LoyaltyLedger, models: ReadModels, path: Path) -> int:
    with open(path, "w", encoding="utf-8") as out:
        return export(kind, ledger, models, out)


def write_rows(rows: Iterable[dict[str, Any]], fields: tuple[str, ...], out: TextIO,
               fmt: str) -> int:
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")
    return _write_jsonl(rows, out) if fmt == "jsonl" else _write_csv(rows, fields, out)


def _write_jsonl(rows: Iterable[dict[str, Any]], out: TextIO) -> int:
    count = 0
    for row in rows:
        out.write(orjson.dumps(row).decode() + "\n")
        count += 1
    return count


def _write_csv(rows: Iterable[dict[str, Any]], fields: tuple[str, ...], out: TextIO) -> int:
    writer = csv.DictWriter(out, fieldnames=fields, extrasaction="raise", lineterminator="\n")
    writer.writeheader()
    count = 0
    for row in rows:
        writer.writerow({name: _csv_value(value) for name, value in row.items()})
        count += 1
    return count


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return orjson.dumps(value).decode()
    return value
