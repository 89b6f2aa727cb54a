"""JSON documents of ledger facts, as published on Kafka.

``fact_document`` is the ``loyalty.ledger`` form of every fact;
``tier_changed_document`` is the ``loyalty.tier-changes`` form of CONTRACT
section 5. Datetimes become RFC 3339 UTC strings with ``Z``; integers stay
integers.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson

from ledger.calendar import format_timestamp
from ledger.domain import LoyaltyAccount, fact_type
from ledger.fact_ids import fact_id

LEDGER_FACT_SCHEMA_VERSION = 1
LIBRARY_FIELDS = {"originator_id", "originator_version", "timestamp", "originator_topic"}


def json_ready(value: Any) -> Any:
    """Datetimes to RFC 3339 strings, recursively through lists and dicts."""
    if isinstance(value, datetime):
        return format_timestamp(value)
    if isinstance(value, dict):
        return {key: json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(item) for item in value]
    return value


def fact_fields(fact: Any) -> dict[str, Any]:
    """A fact's own fields, without the library's originator fields."""
    return {name: value for name, value in vars(fact).items() if name not in LIBRARY_FIELDS}


def fact_document(fact: Any) -> dict[str, Any]:
    """The ``loyalty.ledger`` document of one fact."""
    return {
        "type": fact_type(fact),
        "schema_version": LEDGER_FACT_SCHEMA_VERSION,
        "fact_id": fact_id(fact.member_id, fact.originator_version),
        "ledger_version": fact.originator_version,
        "effective_at": format_timestamp(fact.timestamp),
        **json_ready(fact_fields(fact)),
    }


def fact_message(fact: Any) -> bytes:
    """``orjson.dumps(fact_document(fact))``: the same bytes, for the outbox relay's hot path.

    The ledger's datetimes are all in UTC, which orjson writes exactly as
    ``format_timestamp`` does (``OPT_UTC_Z``), so the recursive
    ``json_ready`` walk (half of the relay's per-fact time) is not needed.
    ``tests/ledger/test_fact_schema.py`` checks the bytes are equal for a generated stream.
    """
    return orjson.dumps({
        "type": fact_type(fact),
        "schema_version": LEDGER_FACT_SCHEMA_VERSION,
        "fact_id": fact_id(fact.member_id, fact.originator_version),
        "ledger_version": fact.originator_version,
        "effective_at": format_timestamp(fact.timestamp),
        **fact_fields(fact),
    }, option=orjson.OPT_UTC_Z)


def tier_changed_document(fact: LoyaltyAccount.TierChanged) -> dict[str, Any]:
    """CONTRACT section 5: the outbound ``tier_changed`` event."""
    return {
        "type": "tier_changed",
        "schema_version": 1,
        "event_id": fact_id(fact.member_id, fact.originator_version),
        "member_id": fact.member_id,
        "from_tier": fact.from_tier,
        "to_tier": fact.to_tier,
        "reason": fact.reason,
        "effective_at": format_timestamp(fact.timestamp),
        "ledger_position": fact.originator_version,
    }
