"""The published ``loyalty.ledger`` documents follow ``ledger_fact.v1`` for every fact type."""

from __future__ import annotations

import dataclasses

import orjson

from ledger.application import LoyaltyLedger
from ledger.domain import FACT_TYPES
from ledger.program import (DEFAULT_PROGRAM_PATH, RETAIL_EXAMPLE_PROGRAM_PATH, load_program,
                            parse_program)
from ledger.wire import LIBRARY_FIELDS, fact_document, fact_message
from schemas import load_schema
from streams.validation import validate_outbound
from tests.support import builders as b
from tests.support import member_builders as mb
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


def every_kind_of_contract_2_fact() -> list[dict]:
    """Facts only a program with contract 2's rules records (pending points...)."""
    return [b.purchase("pender", "2025-03-01T10:00:00Z", 5000),
            b.birthday("pender", "2025-03-20T10:00:00Z"),
            b.adjustment("pender", "2025-03-21T10:00:00Z", 20, note="sorry"),
            b.adjustment("pender", "2025-03-22T10:00:00Z", -10_000, reason_code="fraud",
                         allow_debt=True),
            b.adjustment("pender", "2025-03-23T10:00:00Z", 5, reason_code="whim"),
            b.birthday("giver", "2025-03-01T10:00:00Z"),
            b.transfer("giver", "2025-03-02T10:00:00Z", "pender", 150),
            b.transfer("giver", "2025-03-03T10:00:00Z", "giver", 10),
            *every_kind_of_member_fact(), *every_kind_of_hold_fact()]


def every_kind_of_member_fact() -> list[dict]:
    """Section 13's facts: enrollment, profile, NPS, erasure and the closed account's rejections."""
    at = "2025-04-0{}T10:00:00Z".format
    return [mb.enrolled("joiner", at(1), profile=mb.PROFILE, marketing=True, channel="pos",
                        store_id="store-1"),
            mb.enrolled("joiner", at(2)),
            mb.profile_updated("joiner", at(2), {"phone": None}, consents={"marketing": False}),
            mb.profile_updated("stranger", at(2), {"phone": None}),
            mb.nps("joiner", at(3), 10),
            b.referral("joiner", at(3), "leaver"),
            b.birthday("leaver", at(3)),
            mb.erased("leaver", at(4)),
            mb.erased("leaver", at(5)), mb.nps("leaver", at(5), 0), b.birthday("leaver", at(5)),
            b.year_closed("leaver", at(5), 2024),
            b.purchase("joiner", at(6), 5000),                    # the referrer credit is refused
            b.birthday("giver", at(6)),
            b.transfer("giver", at(7), "leaver", 20)]             # refused, returned to "giver"


def every_kind_of_hold_fact() -> list[dict]:
    """Section 7: a hold, its rejections, a partial capture, a void, an expiry, cancellations."""
    at = "2025-05-01T10:{:02d}:00Z".format
    return [b.birthday("holder", at(0)),
            b.hold("holder", at(1), 100, at(20), event_id="hold-1"),
            b.hold("holder", at(2), 900, at(20)),
            b.capture("holder", at(3), "hold-1", 60, event_id="capture-1"),
            b.capture("holder", at(4), "hold-1"),
            b.void("holder", at(5), "hold-1"),
            b.hold("holder", at(6), 50, at(30), event_id="hold-2"),
            b.void("holder", at(7), "hold-2"),
            b.hold("holder", at(8), 10, at(9)),
            b.cancel("holder", at(10), "capture-1"),
            b.cancel("holder", at(11), "capture-1")]


GIFT_CAMPAIGN = """
[[campaigns]]
id = "mug"
name = "A mug for three coffees"
starts_at = "2025-01-01T00:00:00Z"
ends_at = "2026-01-01T00:00:00Z"
items_min = 3
reward_id = "RW-MUG"

[[campaigns]]
id = "bonus"
name = "Ten more"
starts_at = "2025-01-01T00:00:00Z"
ends_at = "2026-01-01T00:00:00Z"
bonus_points = 10
"""


def campaign_facts() -> list:
    """Facts only a program with campaigns records (``reward_granted``, campaign lines)."""
    ledger = LoyaltyLedger(program=parse_program(DEFAULT_PROGRAM_PATH.read_text() + GIFT_CAMPAIGN))
    ledger.apply_in_order(b.commands({**b.purchase("gifted", "2025-03-01T10:00:00Z", 900),
                                      "items": [{"sku": "COF-1", "quantity": 3}]}))
    return list(ledger.fact_log.facts())


def test_every_fact_type_is_published_valid_against_its_schema():
    default, retail = LoyaltyLedger(), LoyaltyLedger(program=load_program(RETAIL_EXAMPLE_PROGRAM_PATH))
    default.apply_in_order(b.commands(*every_kind_of_fact()))
    retail.apply_in_order(b.commands(*every_kind_of_contract_2_fact()))
    seen = set()
    for fact in [*default.fact_log.facts(), *retail.fact_log.facts(), *campaign_facts()]:
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
