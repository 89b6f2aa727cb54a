"""``loyalty process`` on a file full of hostile lines: nothing crashes, everything is accounted for.

Every bad line (over the producer's limit, over the workers' limit, NUL in
text, invalid UTF-8, a 31-digit integer, a date before 1970, nesting that
breaks recursive parsers, and the older kinds) ends in ``dead_letters.jsonl``
with its reason and its input line number; every valid line is applied; the
store it leaves passes ``verify`` and rebuilds with ``replay``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streams.cli import main
from streams.validation import MESSAGE_BYTES_MAX, NUL_MESSAGE
from tests.support.services import unique_database_name
from tests.support.streamgen import BAD_LINES, generate_events

VALID_EVENTS = 300
MIB = 1024 * 1024
NESTING_LEVELS = 30_000


def purchase_line(**changes) -> str:
    event = {"type": "purchase", "schema_version": 1, "event_id": "bad-x", "member_id": "M-bad",
             "occurred_at": "2025-01-01T10:00:00Z", "amount_minor": 100, "currency": "EUR",
             "store_id": "s-1"}
    return json.dumps(event | changes)


def padded(size_bytes: int) -> str:
    head = '{"type": "purchase", "member_id": "M-big", "padding": "'
    return head + "x" * (size_bytes - len(head) - 2) + '"}'


BAD = [  # (line, reason, a phrase its message must hold)
    (padded(int(1.1 * MIB)), "too_large", "not sent to Kafka"),
    (padded(5 * MIB), "too_large", "not sent to Kafka"),
    (padded(MESSAGE_BYTES_MAX + 1000), "too_large", f"the limit is {MESSAGE_BYTES_MAX} bytes"),  # under 1 MiB
    (purchase_line(event_id="nul-member", member_id="M-\x00x"), "schema", f"/member_id: {NUL_MESSAGE}"),
    (purchase_line(event_id="nul-store", store_id="s-\x00"), "schema", f"/store_id: {NUL_MESSAGE}"),
    (purchase_line(event_id="huge").replace('"amount_minor": 100', f'"amount_minor": {10**30}'),
     "schema", f"{10**30} is greater than"),
    (purchase_line(event_id="moon", occurred_at="1969-07-20T20:17:00Z"), "schema",
     "is not an RFC 3339 time"),
    ('{"type": "purchase", "items": ' + "[" * NESTING_LEVELS + "]" * NESTING_LEVELS + "}",
     "not_json", "depth"),
    *[(line, None, "") for line in BAD_LINES],
]
INVALID_UTF8 = purchase_line(event_id="latin1").encode().replace(b"M-bad", b"M-\xe9t\xe9")


@pytest.fixture(scope="module")
def processed(tmp_path_factory, embedded_pg):
    work = tmp_path_factory.mktemp("hostile")
    events = generate_events(seed=13, count=VALID_EVENTS)
    lines = [json.dumps(event).encode() for event in events]
    bad_at = {}  # line number -> (reason, phrase)
    for index, (line, reason, phrase) in enumerate(BAD):
        lines.insert(index * 20 + 5, line.encode())
    lines.insert(3, INVALID_UTF8)
    for number, line in enumerate(lines, start=1):
        for bad_line, reason, phrase in BAD:
            if line == bad_line.encode():
                bad_at[number] = (reason, phrase)
        if line == INVALID_UTF8:
            bad_at[number] = ("not_json", "UTF-8")
    (work / "input.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    name = unique_database_name("process_hostile")
    url = embedded_pg.create_database(name).url
    status = main(["process", str(work / "input.jsonl"), "--out", str(work / "out"), "--database-url", url])
    yield work, url, events, bad_at, status
    embedded_pg.drop_database(name)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_process_exits_0_with_every_bad_line_dead_lettered_by_line_number(processed):
    work, _, _, bad_at, status = processed
    assert status == 0
    letters = {letter["source_line"]: letter for letter in read_jsonl(work / "out" / "dead_letters.jsonl")}
    assert set(letters) == set(bad_at)
    for number, (reason, phrase) in bad_at.items():
        letter = letters[number]
        assert letter["source_file"] == str(work / "input.jsonl")
        if reason is not None:
            assert letter["reason_code"] == reason, letter["reason_message"]
            assert phrase in letter["reason_message"], letter["reason_message"]


def test_lines_too_large_for_kafka_are_identified_by_file_and_line_not_position(processed):
    work, _, _, _, _ = processed
    refused = [letter for letter in read_jsonl(work / "out" / "dead_letters.jsonl")
               if letter["source_offset"] is None]
    assert len(refused) == 3  # every line over message_bytes_max, not only those over 1 MiB
    assert all(letter["source_partition"] is None and letter["value_base64"] is None for letter in refused)
    assert all(letter["value_preview"].startswith('{"type": "purchase"') for letter in refused)


def test_every_valid_line_is_applied(processed):
    work, _, events, _, _ = processed
    outcomes = {row["source_event_id"] for row in read_jsonl(work / "out" / "ledger.jsonl")
                if "fingerprint" in row}
    assert {event["event_id"] for event in events} <= outcomes


def test_the_store_left_behind_verifies_and_replays(processed):
    _, url, _, _, _ = processed
    assert main(["verify", "--catch-up", "--database-url", url]) == 0
    assert main(["replay", "--no-progress", "--database-url", url]) == 0
    assert main(["verify", "--database-url", url]) == 0
