"""``export``: read models and ledger facts as JSON Lines or CSV.

Kinds and where their rows come from:

- ``balances``, ``tiers``, ``annual``: the read-model tables, in key order,
  with exactly the field names of CONTRACT section 4;
- ``kpis``: ``kpi_report`` of the KPI read model;
- ``tier-changes``: every ``tier_changed`` fact in the notification log, as
  the outbound document of CONTRACT section 5 (``ledger.wire``, what the
  outbox publishes; ``event_id`` is deterministic);
- ``ledger``: every ledger fact in notification order as published on
  ``loyalty.ledger`` (``type`` = wire name, ``fact_id``, ``member_id``,
  ``ledger_version``, ``source_event_id``, the fact's own fields).

Datetimes are RFC 3339 UTC with ``Z``. In CSV, nested values (lots, draws,
the per-tier averages) are JSON text, booleans ``true``/``false``, null an
empty cell; the ``ledger`` columns are the union of every fact's fields.
Rows are streamed: the log is read ``export_batch_notifications_max`` at a time.
"""

from __future__ import annotations

import csv
import dataclasses
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

import orjson
from eventsourcing.utils import get_topic

from ledger.application import LoyaltyLedger
from ledger.domain import FACT_TYPES, LoyaltyAccount
from ledger.wire import LIBRARY_FIELDS, fact_document, json_ready, tier_changed_document
from projections.annual import ANNUAL, ANNUAL_FIELDS
from projections.balances import BALANCE_FIELDS, BALANCES
from projections.kpi_report import KPI_FIELDS, kpi_report
from projections.rows import Table
from projections.runner import ReadModels
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
}
EXPORT_KINDS = ("balances", "tiers", "annual", "tier-changes", "ledger", "kpis")


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
        return KPI_FIELDS, iter(json_ready(kpi_report(models.view("kpis"))))
    if kind == "tier-changes":
        facts = committed_facts(ledger, [get_topic(LoyaltyAccount.TierChanged)])
        return TIER_CHANGE_FIELDS, map(tier_changed_document, facts)
    if kind == "ledger":
        topics = [get_topic(fact_class) for fact_class in FACT_TYPES.values()]
        facts = committed_facts(ledger, topics)
        return ledger_fields(), map(fact_document, facts)
    raise ValueError(f"unknown export {kind!r}; known: {', '.join(EXPORT_KINDS)}")


def committed_facts(ledger: LoyaltyLedger, topics: list[str],
                    batch_notifications_max: int = EXPORT_BATCH_NOTIFICATIONS_MAX) -> Iterator[Any]:
    """The facts with ``topics`` in notification order, up to the log's head at the start."""
    head = ledger.recorder.max_notification_id() or 0
    position = 0
    while position < head:
        page = ledger.recorder.select_notifications(
            start=position, limit=batch_notifications_max, stop=head, topics=topics,
            inclusive_of_start=False)
        yield from map(ledger.mapper.to_domain_event, page)
        position = page[-1].id if len(page) == batch_notifications_max else head


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
