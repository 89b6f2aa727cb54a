"""The published ``loyalty.ledger`` documents follow ``ledger_fact.v1`` for every fact type."""

from __future__ import annotations

import dataclasses

import orjson

from ledger.application import LoyaltyLedger
from ledger.domain import FACT_TYPES
from ledger.wire import LIBRARY_FIELDS, fact_document, fact_message
from schemas import load_schema
from streams.validation import validate_outbound
from tests.support import builders as b
from tests.support.streamgen import generate_events

COMMON = {"type", "schema_version", "fact_id", "ledger_version", "effective_at", "member_id",
          "source_event_id"}


def every_kind_of_fact() -> list[dict]:
    events = generate_events(seed=3, count=1500)
    for n in range(11):  # eleven referees of one referrer in a year: the last is capped
        events.append(b.referral(f"ref-{n}", "2026-03-01T10:00:00Z", "ambassador"))
        events.append(b.purchase(f"ref-{n}", "2026-03-02T10:00:00Z", 5000))
    events += [b.purchase("closer", f"2025-{m:02d}-02T10:00:00Z", 50000) for m in range(1, 13)]
    events += [b.purchase("expirer", "2024-01-10T10:00:00Z", 5000),
               b.birthday("expirer", "2025-06-01T00:00:00Z")]
    events += [b.year_closed("closer", "2026-01-01T00:05:00Z", 2025),
               b.year_closed("closer", "2026-01-02T00:05:00Z", 2025)]
    return events


def test_every_fact_type_is_published_valid_against_its_schema():
    ledger = LoyaltyLedger()
    ledger.apply_in_order(b.commands(*every_kind_of_fact()))
    seen = set()
    for fact in ledger.fact_log.facts():
        document = fact_document(fact)
        validate_outbound("ledger_fact", document)
        seen.add(document["type"])
    assert seen == set(FACT_TYPES)


def test_the_schema_lists_exactly_each_fact_class_fields():
    definitions = load_schema("outbound/ledger_fact.v1.json")["$defs"]
    assert set(definitions) == set(FACT_TYPES)
    for wire, fact_class in FACT_TYPES.items():
        fields = {f.name for f in dataclasses.fields(fact_class)} - LIBRARY_FIELDS - COMMON
        assert set(definitions[wire]["required"]) == fields, wire


def test_the_relays_fast_message_is_the_documents_bytes():
    ledger = LoyaltyLedger()
    ledger.apply_in_order(b.commands(*every_kind_of_fact()))
    facts = list(ledger.fact_log.facts())
    assert len({type(fact) for fact in facts}) > 10
    for fact in facts:
        assert fact_message(fact) == orjson.dumps(fact_document(fact))
