"""``loyalty process``'s output files (CONTRACT section 6).

``ledger.jsonl`` (every ledger fact, rejections included), ``tier_changes.jsonl``
and ``dead_letters.jsonl`` come straight from the event store's log, in
commit order, each fact routed to its files by ``ledger.routing`` (the same
routing as the outbox relay's topics); the read models (``balances``,
``tiers``, ``annual``) come from the projections once they have caught up
(``projections.export.export_read_models``).
"""

from __future__ import annotations

from pathlib import Path

import orjson

from ledger import routing
from ledger.application import LoyaltyLedger
from projections.export import export_read_models
from streams.settings import Settings

LOG_PAGE_NOTIFICATIONS_MAX = 1000


def write_log_files(ledger: LoyaltyLedger, out_dir: Path) -> dict[str, int]:
    """``ledger.jsonl``, ``tier_changes.jsonl`` and ``dead_letters.jsonl``: rows per file."""
    rows: dict[str, list[dict]] = {output: [] for output in routing.OUTPUT_FILES}
    for fact in ledger.fact_log.facts(page_notifications_max=LOG_PAGE_NOTIFICATIONS_MAX):
        for output in routing.outputs(fact):
            if output in rows:
                rows[output].append(routing.document(output, fact))
    return {file_name: write_jsonl(out_dir / file_name, rows[output])
            for output, file_name in routing.OUTPUT_FILES.items()}


def write_jsonl(path: Path, rows) -> int:
    count = 0
    with open(path, "wb") as stream:
        for row in rows:
            stream.write(orjson.dumps(row) + b"\n")
            count += 1
    return count


def write_outputs(ledger: LoyaltyLedger, settings: Settings, out_dir: Path) -> dict[str, int]:
    """Every output file of ``loyalty process``: rows per file."""
    counts = write_log_files(ledger, out_dir)
    counts.update(export_read_models(ledger, settings.database_url, out_dir))
    return counts
