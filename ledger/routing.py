"""Where each committed fact goes: the one routing table of the ledger's outputs.

``OUTPUT_FACTS`` names, for each output, the fact classes it carries:

- ``ledger``: every ``LoyaltyAccount`` fact (``loyalty.ledger``; ``ledger.jsonl``);
- ``tier_changes``: ``tier_changed`` (``loyalty.tier-changes``, CONTRACT
  section 5; ``tier_changes.jsonl``);
- ``credits``: the facts that owe another account a credit (``ledger.credits``),
  keyed by the receiving member (the internal credits topic; no file);
- ``dead_letters``: a ``DeadLetter`` with its original key (``loyalty.dead-letter``;
  ``dead_letters.jsonl``).

The outbox relay publishes ``messages(fact)`` on the topic of each output;
``loyalty process`` writes ``document(output, fact)`` to ``OUTPUT_FILES``; the
exports read ``output_topics(output)`` from the log. Each output's key and
document are defined here once.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from eventsourcing.utils import get_topic

from ledger.credits import CREDITS_OWED, credit_owed
from ledger.dead_letters import DeadLetter
from ledger.domain import FACT_TYPES, LoyaltyAccount
from ledger.wire import fact_document, fact_message, tier_changed_document

LEDGER, TIER_CHANGES, CREDITS, DEAD_LETTERS = "ledger", "tier_changes", "credits", "dead_letters"
OUTPUT_FACTS: dict[str, tuple[type, ...]] = {
    LEDGER: tuple(FACT_TYPES.values()),
    TIER_CHANGES: (LoyaltyAccount.TierChanged,),
    CREDITS: tuple(CREDITS_OWED),
    DEAD_LETTERS: (DeadLetter.Recorded,),
}
OUTPUT_FILES = {LEDGER: "ledger.jsonl", TIER_CHANGES: "tier_changes.jsonl",
                DEAD_LETTERS: "dead_letters.jsonl"}  # ``loyalty process`` (CONTRACT section 6)
OUTPUTS_OF: dict[type, tuple[str, ...]] = {
    fact_class: tuple(output for output, classes in OUTPUT_FACTS.items() if fact_class in classes)
    for fact_class in {fact_class for classes in OUTPUT_FACTS.values() for fact_class in classes}
}


@dataclass(frozen=True)
class Message:
    """One output's message of one fact: its key and its JSON bytes."""

    output: str
    key: bytes | None
    value: bytes


def outputs(fact: Any) -> tuple[str, ...]:
    """The outputs ``fact`` goes to, in ``OUTPUT_FACTS`` order (KeyError: a class no output
    carries, a bug)."""
    return OUTPUTS_OF[type(fact)]


def output_topics(output: str) -> list[str]:
    """The event-store topics of the facts ``output`` carries (to read only those)."""
    return [get_topic(fact_class) for fact_class in OUTPUT_FACTS[output]]


def document(output: str, fact: Any) -> dict[str, Any]:
    """The JSON document ``fact`` has on ``output``."""
    return DOCUMENTS[output](fact)


def messages(fact: Any) -> list[Message]:
    """The message of ``fact`` on each of its outputs."""
    return [Message(output, KEYS[output](fact), _value(output, fact)) for output in outputs(fact)]


def _value(output: str, fact: Any) -> bytes:
    if output == LEDGER:
        return fact_message(fact)  # the same bytes as orjson.dumps(fact_document(fact)), faster
    return orjson.dumps(document(output, fact))


def _credit(fact: Any) -> dict[str, Any]:
    credit = credit_owed(fact)
    assert credit is not None, type(fact).__name__  # routed to CREDITS: it owes one
    return credit


def _member_key(fact: Any) -> bytes:
    return fact.member_id.encode("utf-8")


def _dead_letter_key(fact: DeadLetter.Recorded) -> bytes | None:
    key = fact.envelope["key_base64"]
    return base64.b64decode(key) if key else None


DOCUMENTS: dict[str, Callable[[Any], dict[str, Any]]] = {
    LEDGER: fact_document,
    TIER_CHANGES: tier_changed_document,
    CREDITS: _credit,
    DEAD_LETTERS: lambda fact: fact.envelope,
}
KEYS: dict[str, Callable[[Any], bytes | None]] = {
    LEDGER: _member_key,
    TIER_CHANGES: _member_key,
    CREDITS: lambda fact: _credit(fact)["member_id"].encode("utf-8"),
    DEAD_LETTERS: _dead_letter_key,
}
