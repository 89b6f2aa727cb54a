"""The orjson transcoder keeps eventsourcing's JSON format byte for byte, both ways."""

from __future__ import annotations

from uuid import UUID

import orjson
import pytest
from eventsourcing.persistence import JSONTranscoder

from ledger.application import LoyaltyLedger
from ledger.postgres.transcoder import OrjsonTranscoder, plain_json
from tests.support import builders as b
from tests.support.streamgen import generate_events

SNAPSHOT_EVERY_EVENTS = 3  # small, so the stream leaves many snapshots to check
STREAM_EVENTS = 400


@pytest.fixture(scope="module")
def stored() -> tuple[LoyaltyLedger, list[bytes]]:
    """A generated stream applied in memory: every stored fact's and snapshot's bytes."""
    ledger = LoyaltyLedger(env={"LOYALTY_SNAPSHOT_INTERVAL_EVENTS": str(SNAPSHOT_EVERY_EVENTS)})
    ledger.apply_in_order(b.commands(*generate_events(seed=7, count=STREAM_EVENTS)))
    facts = ledger.recorder.select_notifications(start=1, limit=STREAM_EVENTS * 10)
    snapshots = [snapshot for originator in {fact.originator_id for fact in facts}
                 for snapshot in ledger.snapshots.recorder.select_events(originator)]
    assert snapshots and len(facts) > STREAM_EVENTS
    return ledger, [record.state for record in [*facts, *snapshots]]


def json_transcoder(ledger: LoyaltyLedger) -> JSONTranscoder:
    transcoder = JSONTranscoder()
    ledger.register_transcodings(transcoder)
    return transcoder


def test_the_ledger_stores_with_orjson(stored):
    ledger, _ = stored
    assert isinstance(ledger.mapper.transcoder, OrjsonTranscoder)


def test_both_transcoders_read_every_record_alike_and_write_the_same_bytes(stored):
    ledger, states = stored
    plain, fast = json_transcoder(ledger), ledger.mapper.transcoder
    for state in states:
        value = plain.decode(state)
        assert fast.decode(state) == value
        assert fast.encode(value) == plain.encode(value) == state


def test_registered_types_come_back_as_themselves(stored):
    ledger, states = stored
    fast = ledger.mapper.transcoder
    revived = {type(item).__name__ for state in states for item in walk(fast.decode(state))}
    assert {"datetime", "Lot", "PurchaseRecord"} <= revived


def test_no_stored_value_is_a_uuid(stored):
    """orjson would write a UUID as a plain string: the ledger must never store one."""
    ledger, states = stored
    plain = json_transcoder(ledger)
    assert not any(isinstance(item, UUID) for state in states for item in walk(plain.decode(state)))


def walk(value):
    yield value
    children = value.values() if isinstance(value, dict) else vars(value).values() \
        if hasattr(value, "__dataclass_fields__") else value if isinstance(value, list) else ()
    for child in children:
        yield from walk(child)


def test_plain_json_turns_utc_datetimes_to_text_and_leaves_look_alike_text_alone():
    """The relay's fast path turns typed UTC datetimes into text; a member's text that spells
    one (escaped in the JSON) stays as it was, and a datetime at another offset gives None."""
    look_alike = '{"_type_":"datetime_iso","_data_":"2025-01-01T00:00:00+00:00"}'
    at = {"_type_": "datetime_iso", "_data_": "2025-01-02T03:04:05.123456+00:00"}
    state = {"note": look_alike, "at": at, "lots": [{"expires_at": at, "points": 5}]}
    assert plain_json(orjson.dumps(state)) == {
        "note": look_alike, "at": "2025-01-02T03:04:05.123456Z",
        "lots": [{"expires_at": "2025-01-02T03:04:05.123456Z", "points": 5}]}
    elsewhere = {**at, "_data_": "2025-01-02T03:04:05+01:00"}
    assert plain_json(orjson.dumps({"at": at, "then": elsewhere})) is None
    assert plain_json(orjson.dumps({"note": "plain"})) == {"note": "plain"}
