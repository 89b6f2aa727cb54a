"""JSON documents of ledger facts, as published on Kafka.

``fact_document`` is the ``loyalty.ledger`` form of every fact;
``fact_message`` its bytes, for the outbox relay, and ``stored_fact_message``
the same bytes from a fact's stored JSON, not decoded (the relay's fast
path, ``ledger/stored_wire.py``); ``tier_changed_document`` is the
``loyalty.tier-changes`` form of CONTRACT section 5. Datetimes become RFC
3339 UTC strings with ``Z``; integers stay integers.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson

from ledger.calendar import format_timestamp
from ledger.domain import WIRE_NAMES, LoyaltyAccount, fact_type
from ledger.fact_ids import fact_id

LEDGER_FACT_SCHEMA_VERSION = 1
LIBRARY_FIELDS = {"originator_id", "originator_version", "timestamp", "originator_topic"}
STORED_ONLY_FIELDS = LIBRARY_FIELDS | {"class_version"}  # in a stored state, not in a document


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


def _header(wire_name: str, member_id: str, ledger_version: int, effective_at: str) -> dict[str, Any]:
    """The fields every ``loyalty.ledger`` document starts with, in this order."""
    return {"type": wire_name, "schema_version": LEDGER_FACT_SCHEMA_VERSION,
            "fact_id": fact_id(member_id, ledger_version), "ledger_version": ledger_version,
            "effective_at": effective_at}


def _fact_header(fact: Any) -> dict[str, Any]:
    return _header(fact_type(fact), fact.member_id, fact.originator_version,
                   format_timestamp(fact.timestamp))


def fact_document(fact: Any) -> dict[str, Any]:
    """The ``loyalty.ledger`` document of one fact."""
    return {**_fact_header(fact), **json_ready(fact_fields(fact))}


def fact_message(fact: Any) -> bytes:
    """``orjson.dumps(fact_document(fact))``: the same bytes, for the outbox relay's hot path.

    The ledger's datetimes are all in UTC, which orjson writes exactly as
    ``format_timestamp`` does (``OPT_UTC_Z``), so the recursive
    ``json_ready`` walk (half of the relay's per-fact time) is not needed.
    ``tests/ledger/test_fact_schema.py`` checks the bytes are equal for a generated stream.
    """
    return orjson.dumps({**_fact_header(fact), **fact_fields(fact)}, option=orjson.OPT_UTC_Z)


def stored_fact_message(fact_class: type, ledger_version: int, state: dict[str, Any]) -> bytes:
    """``fact_message`` of a fact not decoded: ``state`` is its stored JSON with datetimes as
    RFC 3339 UTC text already (``ledger.postgres.transcoder.plain_json``), of the class's
    current version; the same bytes (``tests/ledger/test_stored_wire.py``)."""
    header = _header(WIRE_NAMES[fact_class], state["member_id"], ledger_version, state["timestamp"])
    return orjson.dumps(header | {name: value for name, value in state.items()
                                  if name not in STORED_ONLY_FIELDS})


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
