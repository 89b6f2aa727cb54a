"""``loyalty adjust FILE.csv``: bulk adjustments as deterministic ``adjustment`` events."""

from __future__ import annotations

import uuid

import orjson
import pytest
from kafka import KafkaConsumer, TopicPartition

from ledger.application import LoyaltyLedger
from ledger.commands import command_from_event
from streams.adjust_file import AdjustFileError, adjustment_events, totals
from streams.cli import main

CSV = (b"member_id,points,note,occurred_at,allow_debt\n"
       b"m-1,500,late delivery,,\n"
       b"m-2,-120,,2025-04-02T10:00:00Z,true\n"
       b"m-1,30,,,\n")


def test_each_row_is_an_adjustment_with_an_id_from_the_file_and_row():
    events = adjustment_events(CSV, "cs-7", "goodwill", "2025-04-01T09:00:00Z")
    assert [e["points"] for e in events] == [500, -120, 30]
    assert events[0]["event_id"].startswith("adjust:") and events[0]["event_id"].endswith(":1")
    assert events[1] == {
        "type": "adjustment", "schema_version": 1, "event_id": events[1]["event_id"],
        "member_id": "m-2", "occurred_at": "2025-04-02T10:00:00Z", "points": -120,
        "reason_code": "goodwill", "operator_id": "cs-7", "allow_debt": True}
    assert events[0]["note"] == "late delivery" and "allow_debt" not in events[0]
    # The same file gives the same events; another file other ids
    assert adjustment_events(CSV, "cs-7", "goodwill", "2025-04-01T09:00:00Z") == events
    other = adjustment_events(CSV + b"m-3,1,,,\n", "cs-7", "goodwill", "2025-04-01T09:00:00Z")
    assert other[0]["event_id"] != events[0]["event_id"]


def test_a_rerun_of_the_same_file_is_all_duplicates():
    ledger = LoyaltyLedger()
    events = adjustment_events(CSV, "cs-7", "goodwill", "2025-04-01T09:00:00Z")
    first = ledger.apply(*map(command_from_event, events))
    again = ledger.apply(*map(command_from_event, adjustment_events(
        CSV, "cs-7", "goodwill", "2025-04-01T09:00:00Z")))
    assert [r.status for r in first] == ["applied"] * 3
    assert [r.status for r in again] == ["duplicate"] * 3
    assert ledger.find_account("m-1").balance == 530


@pytest.mark.parametrize("data, problem", [
    (b"member_id,points\nm-1,1.5\n", "row 1: points '1.5'"),
    (b"member_id,points\nm-1,0\n", "row 1:"),
    (b"member_id,points\n,5\n", "row 1:"),
    (b"member_id,points,allow_debt\nm-1,5,maybe\n", "row 1: allow_debt"),
])
def test_a_bad_row_stops_the_file_naming_the_row(data, problem):
    with pytest.raises(AdjustFileError, match=problem):
        adjustment_events(data, "cs-7", "goodwill", "2025-04-01T09:00:00Z")


def test_a_row_without_a_time_needs_at():
    with pytest.raises(AdjustFileError, match="--at"):
        adjustment_events(b"member_id,points\nm-1,5\n", "cs-7", "goodwill", None)


def test_the_dry_run_prints_the_totals_and_sends_nothing(tmp_path, capsys):
    path = tmp_path / "grants.csv"
    path.write_bytes(CSV)
    args = ["adjust", str(path), "--operator", "cs-7", "--reason", "goodwill",
            "--at", "2025-04-01T09:00:00Z", "--dry-run", "--bootstrap-servers", "nowhere:1"]
    assert main(args) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == ["3 adjustments for 2 members: +530 -120 points (net +410)", "dry run: nothing sent"]
    assert totals(adjustment_events(CSV, "o", "r", "2025-04-01T09:00:00Z")).points_out == 120


def test_adjust_produces_the_events_keyed_by_member(kafka_bootstrap, tmp_path, capsys, monkeypatch):
    topic = f"events-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("LOYALTY_EVENTS_TOPIC", topic)
    monkeypatch.setenv("LOYALTY_PARTITIONS", "1")
    path = tmp_path / "grants.csv"
    path.write_bytes(CSV)
    args = ["adjust", str(path), "--operator", "cs-7", "--reason", "goodwill",
            "--at", "2025-04-01T09:00:00Z", "--bootstrap-servers", kafka_bootstrap]
    assert main(args) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith("3 adjustments")
    consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap, consumer_timeout_ms=3000,
                             auto_offset_reset="earliest", enable_auto_commit=False)
    consumer.assign([TopicPartition(topic, 0)])
    consumer.seek_to_beginning(TopicPartition(topic, 0))
    received = [(m.key, orjson.loads(m.value)) for m in consumer]
    consumer.close()
    assert received == [(e["member_id"].encode(), e) for e in adjustment_events(
        CSV, "cs-7", "goodwill", "2025-04-01T09:00:00Z")]
