"""Dead letters of profile-bearing types are stored encrypted (section 13), on both stores.

A broken ``member_enrolled`` keeps no profile in the clear: under the key of
the member it names (so erasure covers it), else under the dead-letter key of
its day, which is deleted after ``privacy.dead_letter_days_max`` days.
"""

from __future__ import annotations

import base64
import json
from datetime import date, timedelta

import orjson

from ledger.sealed_dead_letters import (DeadLetterSealer, may_carry_profile, open_dead_letter,
                                        purge_dead_letter_keys)
from streams.batches import InboundMessage, PartitionBatchApplier
from streams.validation import validate_outbound
from tests.streams.test_batches import SETTINGS, dead_letters
from tests.support import builders as b
from tests.support import member_builders as mb
from tests.support.inbound_messages import TOPIC, messages

SECRET = {"name": "Ottoline Vexley", "email": "ottoline@example.net", "birth_date": "1979-11-30"}


def broken_enrollment(member: str) -> dict:
    event = mb.enrolled(member, "2025-01-01T10:00:00Z", profile=SECRET)
    return {**event, "profile": {**SECRET, "shoe_size": 41}}  # an unknown field: schema failure


def test_a_broken_enrollment_is_sealed_under_the_members_key_and_erasure_covers_it(ledger):
    batch = messages(broken_enrollment("m-dl"))
    report = PartitionBatchApplier(ledger, SETTINGS).apply(batch)
    assert report.reasons == {"schema": 1}
    letter = dead_letters(ledger, batch)[0]
    validate_outbound("dead_letter", letter)
    assert (letter["value_base64"], letter["value_preview"]) == (None, None)
    assert letter["sealed_under"] == "member:m-dl"
    for value in SECRET.values():
        assert value.encode() not in orjson.dumps(letter)
    opened = open_dead_letter(ledger, letter)
    assert b"Ottoline Vexley" in base64.b64decode(opened["value_base64"])
    assert "shoe_size" in opened["reason_message"]
    # The member enrolls properly later: the key the dead letter made is theirs.
    PartitionBatchApplier(ledger, SETTINGS).apply(
        [InboundMessage(TOPIC, 0, 1, b"m-dl", orjson.dumps(
            mb.enrolled("m-dl", "2025-01-02T10:00:00Z", profile=SECRET)))])
    assert ledger.member_profile("m-dl") == SECRET
    ledger.apply(*b.commands(mb.erased("m-dl", "2025-01-03T10:00:00Z")))
    assert open_dead_letter(ledger, letter) is None


def test_without_a_readable_member_it_is_sealed_under_the_days_key(ledger):
    raw = json.dumps({"type": "member_enrolled", "profile": SECRET}).encode()
    batch = [InboundMessage(TOPIC, 0, 0, None, raw)]
    PartitionBatchApplier(ledger, SETTINGS).apply(batch)
    letter = dead_letters(ledger, batch)[0]
    validate_outbound("dead_letter", letter)
    day = date.fromisoformat(letter["dead_lettered_at"][:10])
    assert letter["sealed_under"] == f"day:{day.isoformat()}"
    assert b"Ottoline" in base64.b64decode(
        open_dead_letter(ledger, letter)["value_base64"])
    # Keys older than dead_letter_days_max (30) are deleted; younger ones stay.
    assert purge_dead_letter_keys(ledger, day + timedelta(days=30)) == 0
    assert purge_dead_letter_keys(ledger, day + timedelta(days=31)) == 1
    assert open_dead_letter(ledger, letter) is None


def test_an_erased_members_broken_event_gets_the_days_key_and_no_new_member_key(ledger):
    ledger.apply(*b.commands(mb.erased("m-gone", "2025-01-01T10:00:00Z")))
    batch = messages(broken_enrollment("m-gone"))
    PartitionBatchApplier(ledger, SETTINGS).apply(batch)
    letter = dead_letters(ledger, batch)[0]
    assert letter["sealed_under"].startswith("day:")
    assert ledger.member_keys.key_of("m-gone") is None


def test_other_dead_letters_keep_their_bytes():
    assert not may_carry_profile(b"not json")
    assert not may_carry_profile(orjson.dumps(b.purchase("m", "2025-01-01T10:00:00Z", 1)))
    assert may_carry_profile(b'{"type": "member_enrolled"')  # broken JSON, named type
    assert may_carry_profile(b'{"tpye": "x", "profile": {}}')
    assert may_carry_profile(b'{"type": "member\\u005ferased", "profile": 1}')
    assert may_carry_profile(b'{"type": "profile\\u005fupdated"}')
    assert may_carry_profile(orjson.dumps(mb.profile_updated("m", "2025-01-01T10:00:00Z", {})))
    envelope = {"value_base64": "eA==", "value_preview": "x", "reason_message": "m"}
    assert DeadLetterSealer(None).seal(envelope, b"x", None) is envelope


def test_a_line_too_large_for_kafka_that_may_carry_a_profile_keeps_no_preview():
    from streams.producer import RefusedLine, refused_dead_letters
    big = orjson.dumps(broken_enrollment("m-big"))
    other = orjson.dumps(b.purchase("m-big", "2025-01-01T10:00:00Z", 1))
    letters = refused_dead_letters([RefusedLine(1, 70_000, big), RefusedLine(2, 70_000, other)],
                                   source_topic=TOPIC, source_file="in.jsonl",
                                   message_bytes_max=65_536)
    assert not letters[0]["value_preview"]
    assert letters[1]["value_preview"].startswith('{"type":"purchase"')
    for letter in letters:
        validate_outbound("dead_letter", letter)
