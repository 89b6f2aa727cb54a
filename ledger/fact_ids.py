"""Deterministic ids of ledger facts.

A fact is identified by its account and version; the same fact always yields
the same id, so a republished fact (the outbox is at least once) carries the
same id and consumers dedupe on it (CONTRACT section 5).
"""

from __future__ import annotations

from uuid import NAMESPACE_URL, uuid5

FACT_NAMESPACE = uuid5(NAMESPACE_URL, "urn:loyalty-ledger:fact")


def fact_id(member_id: str, ledger_version: int) -> str:
    """The id of the member's fact at ``ledger_version``."""
    return str(uuid5(FACT_NAMESPACE, f"{member_id}/{ledger_version}"))
