"""Routing: one table says where each fact goes, and every reader renders it the same way."""

from __future__ import annotations

import base64

import orjson
from eventsourcing.utils import get_topic

from ledger import routing
from ledger.commands import CreditReferrer
from ledger.credits import credit_commands, credit_owed, credits_settled
from ledger.dead_letters import DeadLetter
from ledger.domain import FACT_TYPES, LoyaltyAccount
from ledger.wire import fact_document, tier_changed_document
from tests.support import builders as b


def stream(ledger) -> list:
    ledger.apply_in_order(b.commands(b.referral("m1", "2025-01-01T10:00:00Z", "friend"),
                                     b.purchase("m1", "2025-01-02T10:00:00Z", 60000)))
    envelope = {"source_topic": "loyalty.events", "source_partition": 0, "source_offset": 5,
                "key_base64": base64.b64encode(b"m9").decode(), "reason": "invalid_json"}
    ledger.save_batch([DeadLetter.record(envelope)], None)
    return list(ledger.fact_log.facts())


def test_each_fact_goes_to_the_ledger_and_its_own_outputs(ledger):
    facts = stream(ledger)
    outputs = {type(fact): routing.outputs(fact) for fact in facts}
    assert outputs[LoyaltyAccount.PointsEarned] == (routing.LEDGER,)
    assert outputs[LoyaltyAccount.TierChanged] == (routing.LEDGER, routing.TIER_CHANGES)
    assert outputs[LoyaltyAccount.ReferralQualified] == (routing.LEDGER, routing.CREDITS)
    assert outputs[DeadLetter.Recorded] == (routing.DEAD_LETTERS,)
    assert all(routing.LEDGER in routing.outputs(fact_class.__new__(fact_class))
               for fact_class in FACT_TYPES.values())
    assert routing.output_topics(routing.TIER_CHANGES) == [get_topic(LoyaltyAccount.TierChanged)]
    assert set(routing.OUTPUT_FILES) == {routing.LEDGER, routing.TIER_CHANGES, routing.DEAD_LETTERS}


def test_messages_carry_the_documents_under_each_outputs_key(ledger):
    for fact in stream(ledger):
        for message in routing.messages(fact):
            document = routing.document(message.output, fact)
            assert orjson.loads(message.value) == orjson.loads(orjson.dumps(document))
            if message.output == routing.LEDGER:
                assert message.value == orjson.dumps(fact_document(fact))
                assert message.key == fact.member_id.encode()
            if message.output == routing.TIER_CHANGES:
                assert document == tier_changed_document(fact)
            if message.output == routing.DEAD_LETTERS:
                assert (message.key, document) == (b"m9", fact.envelope)


def test_a_credit_goes_to_the_receiving_member_as_the_command_direct_application_applies(ledger):
    facts = stream(ledger)
    (qualified,) = [fact for fact in facts if isinstance(fact, LoyaltyAccount.ReferralQualified)]
    (message,) = [m for m in routing.messages(qualified) if m.output == routing.CREDITS]
    assert message.key == b"friend"
    assert orjson.loads(message.value) == credit_owed(qualified)
    (command,) = credit_commands(facts)
    assert isinstance(command, CreditReferrer)
    assert (command.member_id, command.event_id) == ("friend", "referrer-credit:m1")
    credited = [fact for fact in facts if isinstance(fact, LoyaltyAccount.ReferrerCredited)]
    assert [fact.source_event_id for fact in credited] == [command.event_id]


def test_credits_are_settled_once_each_receiver_applied_its_credit(ledger):
    assert credits_settled(ledger.fact_log)  # nothing owed
    results = ledger.apply(*b.commands(b.referral("m1", "2025-01-01T10:00:00Z", "friend"),
                                       b.purchase("m1", "2025-01-02T10:00:00Z", 5000)))
    assert not credits_settled(ledger.fact_log)  # qualified, the credit not applied yet
    ledger.apply(*credit_commands(fact for result in results for fact in result.facts))
    assert credits_settled(ledger.fact_log)
