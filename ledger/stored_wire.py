"""The ``loyalty.ledger`` message of a stored fact, from its stored JSON: the relay's fast path.

The outbox relay used to decode every stored fact into its domain event
(``Mapper.to_domain_event``: the transcoder's revive walk, datetimes rebuilt,
the event object made) only to encode it again (``ledger.wire.fact_message``).
For most facts the published document is the stored JSON itself with a
header and the datetimes written as text, so ``ledger_message`` builds it
from there: the relay's round took 17.5 instead of 21.5 µs per fact (the
log's read included) in a same-process A/B over the bench's stream
(``../docs/BENCHMARKS.md``, "The relay from the stored JSON").

It answers None, and the caller decodes the fact the library's way, for a
fact that goes to another output too (``tier_changed``, the credits, a dead
letter: ``ledger.routing`` renders those), one stored at an older class
version (its upcasters run in the mapper), one holding a registered type
other than a UTC datetime, and for a mapper that compresses or encrypts.
``tests/ledger/test_stored_wire.py`` checks the bytes equal
``routing.messages`` of the decoded fact for every kind of fact.
``LOYALTY_RELAY_ENCODES_STORED=false`` restores the previous design.
"""

from __future__ import annotations

from eventsourcing.persistence import JSONTranscoder, Mapper, StoredEvent
from eventsourcing.utils import resolve_topic

from ledger.postgres.transcoder import plain_json
from ledger.routing import LEDGER, OUTPUTS_OF, Message
from ledger.wire import stored_fact_message

_LEDGER_ONLY = (LEDGER,)


class StoredWire:
    """``ledger_message`` for the stored facts of one ledger (``mapper``: its mapper)."""

    def __init__(self, mapper: Mapper) -> None:
        self.usable = (mapper.cipher is None and mapper.compressor is None
                       and isinstance(mapper.transcoder, JSONTranscoder))

    def ledger_message(self, stored: StoredEvent) -> Message | None:
        """The fact's one message, on ``ledger``, from its stored JSON; None: decode it."""
        if not self.usable:
            return None
        fact_class = resolve_topic(stored.topic)  # cached by eventsourcing
        if OUTPUTS_OF.get(fact_class) != _LEDGER_ONLY:
            return None
        state = plain_json(stored.state)
        if state is None or state.get("class_version", 1) != getattr(fact_class, "class_version", 1):
            return None
        return Message(LEDGER, state["member_id"].encode("utf-8"),
                       stored_fact_message(fact_class, stored.originator_version, state))
