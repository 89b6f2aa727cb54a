"""Write the batch entry point's output files (CONTRACT section 6).

``ledger.jsonl`` (every ledger fact, rejections included), ``tier_changes.jsonl``
and ``dead_letters.jsonl`` come straight from the event store's notification
log, in commit order; the read models (``balances``, ``tiers``, ``annual``)
come from the projections once they have caught up.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import orjson

from ledger.application import LoyaltyLedger
from ledger.dead_letters import DeadLetter
from ledger.domain import LoyaltyAccount
from ledger.wire import fact_document, tier_changed_document
from streams.settings import Settings

NOTIFICATIONS_PAGE_MAX = 1000


def committed_facts(ledger: LoyaltyLedger) -> Iterator[Any]:
    """Every committed fact, in notification order, a page at a time."""
    start = 1
    while True:
        page = ledger.recorder.select_notifications(start=start, limit=NOTIFICATIONS_PAGE_MAX)
        for notification in page:
            yield ledger.mapper.to_domain_event(notification)
        if len(page) < NOTIFICATIONS_PAGE_MAX:
            return
        start = page[-1].id + 1


def write_jsonl(path: Path, rows) -> int:
    count = 0
    with open(path, "wb") as stream:
        for row in rows:
            stream.write(orjson.dumps(row) + b"\n")
            count += 1
    return count


def _as_is(envelope: dict) -> dict:
    return envelope


def write_log_files(ledger: LoyaltyLedger, out_dir: Path,
                    annotate: Callable[[dict], dict] = _as_is) -> dict[str, int]:
    """``ledger.jsonl``, ``tier_changes.jsonl`` and ``dead_letters.jsonl``.

    ``annotate`` may add to each dead letter (``loyalty process``: its input line).
    """
    ledger_rows, tier_rows, dead_rows = [], [], []
    for fact in committed_facts(ledger):
        if isinstance(fact, DeadLetter.Recorded):
            dead_rows.append(annotate(fact.envelope))
            continue
        ledger_rows.append(fact_document(fact))
        if isinstance(fact, LoyaltyAccount.TierChanged):
            tier_rows.append(tier_changed_document(fact))
    return {
        "ledger.jsonl": write_jsonl(out_dir / "ledger.jsonl", ledger_rows),
        "tier_changes.jsonl": write_jsonl(out_dir / "tier_changes.jsonl", tier_rows),
        "dead_letters.jsonl": write_jsonl(out_dir / "dead_letters.jsonl", dead_rows),
    }


def write_outputs(ledger: LoyaltyLedger, settings: Settings, out_dir: Path,
                  annotate: Callable[[dict], dict] = _as_is) -> dict[str, int]:
    counts = write_log_files(ledger, out_dir, annotate)
    counts.update(write_read_models(ledger, settings, out_dir))
    return counts


def write_read_models(ledger: LoyaltyLedger, settings: Settings, out_dir: Path) -> dict[str, int]:
    """``balances.jsonl``, ``tiers.jsonl``, ``annual.jsonl`` from the caught-up projections."""
    from projections.process_export import export_read_models

    return export_read_models(ledger, settings.database_url, out_dir)
