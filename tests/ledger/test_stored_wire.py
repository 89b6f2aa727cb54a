"""The relay's fast path: a stored fact's ``loyalty.ledger`` message from its stored JSON,
the same bytes as the decoded fact's, or None where only the decoded fact will do."""

from __future__ import annotations

import dataclasses

import pytest
from eventsourcing.persistence import Mapper, StoredEvent

from ledger import routing
from ledger.application import LoyaltyLedger
from ledger.dead_letters import DeadLetter
from ledger.domain import FACT_TYPES
from ledger.program import RETAIL_EXAMPLE_PROGRAM_PATH, load_program
from ledger.stored_wire import StoredWire
from tests.ledger.test_fact_schema import every_kind_of_contract_2_fact, every_kind_of_fact
from tests.support import builders as b

DECODED_ONLY = {"tier_changed", "referral_qualified", "points_transferred_out"}  # two outputs each


def stored_facts(ledger: LoyaltyLedger) -> list[StoredEvent]:
    return [stored for _, stored in ledger.fact_log.next_stored(0, 1_000_000)]


def ledger_bytes(ledger: LoyaltyLedger, stored: StoredEvent) -> routing.Message:
    decoded = routing.messages(ledger.fact_log.decode(stored))
    return next(message for message in decoded if message.output == routing.LEDGER)


def wire_name(ledger: LoyaltyLedger, stored: StoredEvent) -> str:
    return routing.document(routing.LEDGER, ledger.fact_log.decode(stored))["type"]


@pytest.fixture
def ledgers(ledger_env) -> list[LoyaltyLedger]:
    default, retail = LoyaltyLedger(env=ledger_env), LoyaltyLedger(
        program=load_program(RETAIL_EXAMPLE_PROGRAM_PATH))
    default.apply_in_order(b.commands(*every_kind_of_fact()))
    default.save_batch([DeadLetter.record({"source_topic": "t", "source_partition": 0, "source_offset": 1,
                                           "key_base64": None, "reason": "invalid_json"})], None)
    retail.apply_in_order(b.commands(*every_kind_of_contract_2_fact()))
    yield [default, retail]
    default.close()
    retail.close()


def test_the_fast_message_is_the_decoded_facts_bytes_or_none(ledgers):
    fast, decoded = set(), set()
    for ledger in ledgers:
        wire = StoredWire(ledger.mapper)
        for stored in stored_facts(ledger):
            message = wire.ledger_message(stored)
            if message is None:
                decoded.add(stored.topic)
                continue
            assert message == ledger_bytes(ledger, stored)
            fast.add(wire_name(ledger, stored))
    assert {"points_earned", "points_redeemed", "member_enrolled", "points_held",
            "hold_released", "account_opened"} <= fast
    assert not fast & DECODED_ONLY
    assert len(fast) > len(FACT_TYPES) // 2


def test_facts_with_another_output_are_left_to_the_decoded_path(ledgers):
    ledger = ledgers[0]
    wire = StoredWire(ledger.mapper)
    for stored in stored_facts(ledger):
        outputs = routing.outputs(ledger.fact_log.decode(stored))
        if outputs != (routing.LEDGER,):
            assert wire.ledger_message(stored) is None, outputs


def test_a_fact_stored_at_an_older_class_version_is_decoded_with_its_upcasters(ledgers):
    ledger = ledgers[0]
    redeemed = next(s for s in stored_facts(ledger) if s.topic.endswith("PointsRedeemed"))
    assert b'"class_version":' in redeemed.state
    older = dataclasses.replace(redeemed, state=redeemed.state.replace(b',"class_version":3', b',"class_version":2'))
    assert StoredWire(ledger.mapper).ledger_message(older) is None
    assert StoredWire(ledger.mapper).ledger_message(redeemed) is not None


def test_a_datetime_not_in_utc_or_a_typed_value_is_left_to_the_decoded_path(ledgers):
    ledger = ledgers[0]
    wire = StoredWire(ledger.mapper)
    earned = next(s for s in stored_facts(ledger) if s.topic.endswith("PointsEarned"))
    assert wire.ledger_message(earned) is not None
    elsewhere = dataclasses.replace(earned, state=earned.state.replace(b'+00:00"', b'+02:00"', 1))
    typed = dataclasses.replace(earned, state=earned.state.replace(b'"datetime_iso"', b'"decimal_str"', 1))
    assert wire.ledger_message(elsewhere) is None
    assert wire.ledger_message(typed) is None


def test_a_mapper_that_encrypts_or_compresses_is_never_read_as_plain_json(ledgers):
    mapper = ledgers[0].mapper
    assert StoredWire(mapper).usable
    assert not StoredWire(Mapper(mapper.transcoder, cipher=object())).usable
    assert not StoredWire(Mapper(mapper.transcoder, compressor=object())).usable
    assert StoredWire(Mapper(mapper.transcoder, cipher=object())).ledger_message(
        stored_facts(ledgers[0])[1]) is None

