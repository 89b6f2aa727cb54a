"""The read-model files of ``loyalty process`` (CONTRACT section 6).

``streams.exports`` calls ``export_read_models`` once every event is in the
ledger: the read models are caught up (batched, from wherever they stand;
created on first use) and written as ``balances.jsonl``, ``tiers.jsonl``,
``annual.jsonl`` (the field names of CONTRACT section 4) and ``kpis.jsonl``
(what ``loyalty export kpis`` writes).
"""

from __future__ import annotations

from pathlib import Path

from ledger.application import LoyaltyLedger
from ledger.postgres.urls import eventsourcing_env_from_url
from projections.export import export
from projections.runner import BATCH_NOTIFICATIONS_MAX_DEFAULT, catch_up, open_read_models

READ_MODEL_FILES = {"balances": "balances.jsonl", "tiers": "tiers.jsonl", "annual": "annual.jsonl",
                    "kpis": "kpis.jsonl"}


def export_read_models(ledger: LoyaltyLedger, database_url: str, out_dir: Path,
                       batch_notifications_max: int = BATCH_NOTIFICATIONS_MAX_DEFAULT
                       ) -> dict[str, int]:
    """Catch the read models up with ``ledger`` and write their files; rows per file."""
    env = eventsourcing_env_from_url(database_url)
    with open_read_models(env, READ_MODEL_FILES, ledger.program) as models:
        catch_up(ledger, models, batch_notifications_max=batch_notifications_max)
        return {file_name: _write(kind, ledger, models, out_dir / file_name)
                for kind, file_name in READ_MODEL_FILES.items()}


def _write(kind: str, ledger: LoyaltyLedger, models, path: Path) -> int:
    with open(path, "w", encoding="utf-8") as out:
        return export(kind, ledger, models, out)
