"""Dead letters as records in the event store.

A refused inbound message is recorded as a ``DeadLetter`` in the same
transaction as its partition batch and tracking record, so it is recorded
exactly once with its batch; the outbox relay publishes it to
``loyalty.dead-letter`` after commit like every other fact. Its id comes
from the source position, so the same message can never be dead-lettered
twice. A line refused before it reached Kafka (``loyalty process`` /
``produce``: too large) has no position; its id comes from its input file
and line number instead.
"""

from __future__ import annotations

from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate

DEAD_LETTER_NAMESPACE = uuid5(NAMESPACE_URL, "urn:loyalty-ledger:dead-letter")


def dead_letter_id(topic: str, partition: int, offset: int) -> UUID:
    return uuid5(DEAD_LETTER_NAMESPACE, f"{topic}/{partition}/{offset}")


class DeadLetter(Aggregate):
    """One refused message: its ``dead_letter.v1`` envelope."""

    class Recorded(Aggregate.Created):
        envelope: dict

    def __init__(self, envelope: dict) -> None:
        self.envelope = envelope

    @classmethod
    def record(cls, envelope: dict) -> "DeadLetter":
        return cls._create(cls.Recorded, id=envelope_id(envelope), envelope=envelope)


def envelope_id(envelope: dict) -> UUID:
    """The dead letter's id: its Kafka position, or its input file and line if it never reached Kafka."""
    if envelope["source_offset"] is None:
        return uuid5(DEAD_LETTER_NAMESPACE, f"file:{envelope['source_file']}:{envelope['source_line']}")
    return dead_letter_id(envelope["source_topic"], envelope["source_partition"], envelope["source_offset"])
