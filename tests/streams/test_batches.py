"""The partition batch applier: exactly-once effect, dead letters, poison, zombies."""

from __future__ import annotations

import base64
import json

import pytest
from eventsourcing.persistence import IntegrityError, Tracking

from ledger.application import LoyaltyLedger
from ledger.dead_letters import DeadLetter, dead_letter_id
from ledger.domain import LoyaltyAccount
from streams.batches import InboundMessage, PartitionBatchApplier
from streams.settings import Settings
from tests.support import builders as b
from tests.support.inbound_messages import TOPIC, messages

SETTINGS = Settings(ledger_retry_backoff_ms=1)


def dead_letters(ledger: LoyaltyLedger, batch: list[InboundMessage]) -> dict[int, dict]:
    found = {}
    for message in batch:
        try:
            letter = ledger.repository.get(dead_letter_id(message.topic, message.partition, message.offset))
        except Exception:  # noqa: BLE001 - AggregateNotFoundError: no dead letter there
            continue
        found[message.offset] = letter.envelope
    return found


def test_redelivered_offsets_are_never_applied_twice(ledger):
    events = [b.purchase("m1", f"2025-01-{day:02d}T10:00:00Z", 1000) for day in range(1, 8)]
    applier = PartitionBatchApplier(ledger, SETTINGS)
    first = applier.apply(messages(*events[:5]))
    assert (first.applied, first.skipped) == (5, 0)
    # Kafka redelivers 0..4 with 5..6 after a crash: only 5 and 6 are new
    again = applier.apply(messages(*events))
    assert (again.applied, again.skipped) == (2, 5)
    assert ledger.find_account("m1").balance == 70
    assert ledger.tracked_position(f"{TOPIC}:0") == 6


def test_bad_input_is_dead_lettered_with_its_position_and_the_batch_goes_on(ledger):
    batch = messages(b.purchase("m1", "2025-01-01T10:00:00Z", 1000), b"not json",
                     {"type": "purchase", "schema_version": 1},
                     b.purchase("m1", "2025-01-02T10:00:00Z", 2000))
    report = PartitionBatchApplier(ledger, SETTINGS).apply(batch)
    assert (report.applied, report.dead_letters) == (2, 2)
    assert report.reasons == {"not_json": 1, "schema": 1}
    letters = dead_letters(ledger, batch)
    assert sorted(letters) == [1, 2]
    assert base64.b64decode(letters[1]["value_base64"]) == b"not json"
    assert (letters[1]["source_topic"], letters[1]["source_partition"]) == (TOPIC, 0)
    assert ledger.find_account("m1").balance == 30
    assert ledger.tracked_position(f"{TOPIC}:0") == 3


def test_a_key_that_is_not_the_member_id_is_dead_lettered(ledger):
    event = b.purchase("m1", "2025-01-01T10:00:00Z", 1000)
    batch = [InboundMessage(TOPIC, 0, 0, b"someone-else", json.dumps(event).encode())]
    report = PartitionBatchApplier(ledger, SETTINGS).apply(batch)
    assert report.reasons == {"key_mismatch": 1}
    assert ledger.find_account("m1") is None


def test_same_event_id_with_another_payload_is_dead_lettered(ledger):
    event = b.purchase("m1", "2025-01-01T10:00:00Z", 1000)
    batch = messages(event, {**event, "amount_minor": 5000})
    report = PartitionBatchApplier(ledger, SETTINGS).apply(batch)
    assert report.reasons == {"event_id_conflict": 1}
    assert dead_letters(ledger, batch)[1]["reason_code"] == "event_id_conflict"
    assert ledger.find_account("m1").balance == 10


def test_a_poison_message_is_retried_then_dead_lettered_and_never_blocks(ledger, monkeypatch):
    original = LoyaltyAccount.record_purchase

    def explode_on_666(account, command, program):
        if command.amount_minor == 666:
            raise RuntimeError("boom")
        return original(account, command, program)

    monkeypatch.setattr(LoyaltyAccount, "record_purchase", explode_on_666)
    from ledger import domain
    monkeypatch.setitem(domain.COMMAND_HANDLERS, domain.cmd.RecordPurchase, explode_on_666)
    batch = messages(b.purchase("m1", "2025-01-01T10:00:00Z", 1000),
                     b.purchase("m2", "2025-01-01T11:00:00Z", 666),
                     b.purchase("m1", "2025-01-02T10:00:00Z", 2000))
    report = PartitionBatchApplier(ledger, SETTINGS).apply(batch)
    assert report.reasons == {"ledger_error": 1}
    letter = dead_letters(ledger, batch)[1]
    assert letter["attempts"] == SETTINGS.ledger_attempts_max
    assert "boom" in letter["reason_message"]
    assert ledger.find_account("m1").balance == 30
    assert ledger.tracked_position(f"{TOPIC}:0") == 2


def test_a_zombie_batch_cannot_commit_what_another_worker_committed(pg_env):
    """Two processes on one PostgreSQL (the in-memory store cannot be shared)."""
    ledger_env = pg_env
    events = [b.purchase("m1", f"2025-01-{day:02d}T10:00:00Z", 1000) for day in range(1, 5)]
    zombie_ledger, owner_ledger = LoyaltyLedger(env=ledger_env), LoyaltyLedger(env=ledger_env)
    commands = b.commands(*events)
    # The zombie decided its batch before losing the partition ...
    _, zombie_accounts = zombie_ledger.decide(commands)
    # ... the new owner applies and commits the same offsets ...
    owner_ledger.apply(*commands, tracking=Tracking(f"{TOPIC}:0", 3))
    # ... the zombie's commit is rejected, whatever offset it tracks
    with pytest.raises(IntegrityError):
        zombie_ledger.save_batch(zombie_accounts, Tracking(f"{TOPIC}:0", 9))
    # and the applier, retrying, finds everything already tracked
    report = PartitionBatchApplier(zombie_ledger, SETTINGS).apply(messages(*events))
    assert (report.applied, report.skipped) == (0, 4)
    assert owner_ledger.find_account("m1").balance == 40


def test_dead_letters_are_recorded_once_per_position(ledger):
    envelope_batch = messages(b"oops")
    PartitionBatchApplier(ledger, SETTINGS).apply(envelope_batch)
    letter = DeadLetter.record(dead_letters(ledger, envelope_batch)[0])
    with pytest.raises(IntegrityError):
        ledger.save_batch([letter], None)


def test_a_retried_batch_counts_only_what_it_committed(ledger, monkeypatch):
    events = [b.purchase("m1", "2025-01-01T10:00:00Z", 1000), b"bad",
              b.redemption("m1", "2025-01-02T10:00:00Z", 999)]
    real_save, calls = ledger.save_batch, []

    def conflict_once(aggregates, tracking):
        calls.append(tracking)
        if len(calls) == 1:
            raise IntegrityError("simulated version conflict")
        return real_save(aggregates, tracking)

    monkeypatch.setattr(ledger, "save_batch", conflict_once)
    report = PartitionBatchApplier(ledger, SETTINGS).apply(messages(*events))
    assert len(calls) == 2
    assert (report.applied, report.dead_letters, report.conflicts_retried) == (2, 1, 1)
    assert report.rejections == {"insufficient_points": 1}
    assert ledger.find_account("m1").balance == 10


def test_a_failed_save_of_any_kind_never_leaves_a_version_gap(pg_env, monkeypatch):
    """A cached account whose save failed must not be decided on again (a gap in versions)."""
    from streams.worker import account_cache_env
    ledger = LoyaltyLedger(env={**pg_env, **account_cache_env(Settings())})
    applier = PartitionBatchApplier(ledger, SETTINGS)
    applier.apply(messages(b.purchase("m1", "2025-01-01T10:00:00Z", 1000)))
    real_record = ledger._record

    def broken_once(processing_event):
        monkeypatch.setattr(ledger, "_record", real_record)
        raise RuntimeError("the connection died in an unexpected way")

    monkeypatch.setattr(ledger, "_record", broken_once)
    with pytest.raises(RuntimeError):
        ledger.save_batch(ledger.decide(b.commands(
            b.purchase("m1", "2025-01-02T10:00:00Z", 1000)))[1], None)
    applier.apply(messages(b.purchase("m1", "2025-01-03T10:00:00Z", 2000), start=1))
    fresh = LoyaltyLedger(env=pg_env)  # no cache: reads the stored facts
    account = fresh.find_account("m1")   # raises OriginatorVersionError on a gap
    assert account.balance == 30


# ------------------------------------------------------ batches over partitions


def test_a_batch_over_partitions_commits_one_tracking_record_per_partition(ledger):
    p0 = messages(*[b.purchase("m1", f"2025-01-0{day}T10:00:00Z", 1000) for day in (1, 2, 3)])
    p3 = messages(*[b.purchase("m2", f"2025-01-0{day}T10:00:00Z", 2000) for day in (1, 2)],
                  start=40, partition=3)
    report = PartitionBatchApplier(ledger, SETTINGS).apply([*p0, *p3])
    assert (report.applied, report.skipped) == (5, 0)
    assert ledger.tracked_positions([f"{TOPIC}:0", f"{TOPIC}:3", f"{TOPIC}:5"]) == {
        f"{TOPIC}:0": 2, f"{TOPIC}:3": 41, f"{TOPIC}:5": None}
    # a redelivery overlapping each partition differently applies only the new offsets
    more = messages(b.purchase("m2", "2025-01-05T10:00:00Z", 3000), start=42, partition=3)
    again = PartitionBatchApplier(ledger, SETTINGS).apply([*p0[1:], *p3, *more])
    assert (again.applied, again.skipped) == (1, 4)
    assert (ledger.find_account("m1").balance, ledger.find_account("m2").balance) == (30, 70)


def test_a_batch_over_partitions_commits_all_or_nothing(ledger, monkeypatch):
    """Another worker commits partition 1 first: the whole batch fails, then retries without it."""
    p0 = messages(b.purchase("m1", "2025-01-01T10:00:00Z", 1000))
    p1 = messages(b.purchase("m2", "2025-01-01T10:00:00Z", 2000), partition=1)
    real_save, attempts = ledger.save_batch, []

    def owner_commits_partition_1_first(aggregates, tracking):
        attempts.append(sorted(t.application_name for t in tracking))
        if len(attempts) == 1:  # between this worker's read of the positions and its commit
            real_save([], Tracking(f"{TOPIC}:1", 0))  # the owner's commit of offset 0
        return real_save(aggregates, tracking)

    monkeypatch.setattr(ledger, "save_batch", owner_commits_partition_1_first)
    report = PartitionBatchApplier(ledger, SETTINGS).apply([*p0, *p1])
    assert attempts == [[f"{TOPIC}:0", f"{TOPIC}:1"], [f"{TOPIC}:0"]]  # retried without partition 1
    assert (report.applied, report.skipped, report.conflicts_retried) == (1, 1, 1)
    assert ledger.find_account("m2") is None  # the failed attempt kept nothing of m2 ...
    alone = LoyaltyLedger()
    PartitionBatchApplier(alone, SETTINGS).apply(p0)
    assert len(ledger.history("m1")) == len(alone.history("m1"))  # ... nor a second copy of m1


@pytest.mark.parametrize("cache", ["true", "false"])
def test_a_message_is_skipped_only_on_the_stored_position_never_the_cached_one(pg_env, cache):
    """The position cache (``LOYALTY_LEDGER_POSITION_CACHE``) admits messages but never skips
    one: after a tracking row is deleted behind the worker's back (an operator's
    ``setup --accept-new-topics``), a new topic's first offsets are applied, not skipped."""
    from psycopg.sql import SQL, Identifier

    ledger = LoyaltyLedger(env=pg_env | {"LOYALTY_LEDGER_POSITION_CACHE": cache})
    try:
        applier = PartitionBatchApplier(ledger, SETTINGS)
        applier.apply(messages(*[b.purchase("m1", f"2025-01-0{day}T10:00:00Z", 1000) for day in (1, 2, 3)]))
        assert ledger.tracked_positions([f"{TOPIC}:0"]) == {f"{TOPIC}:0": 2}
        with ledger.recorder.datastore.transaction(commit=True) as cursor:
            cursor.execute(SQL("DELETE FROM {}.{} WHERE application_name = %s").format(
                Identifier(ledger.recorder.datastore.schema), Identifier(ledger.recorder.tracking_table_name)),
                (f"{TOPIC}:0",))
        report = applier.apply(messages(b.purchase("m2", "2025-01-05T10:00:00Z", 1000)))
        assert (report.applied, report.skipped) == (1, 0)
        assert ledger.find_account("m2").balance == 10
        assert ledger.stored_positions([f"{TOPIC}:0"]) == {f"{TOPIC}:0": 0}
    finally:
        ledger.close()
