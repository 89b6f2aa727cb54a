"""Steps shared by the stream-pipeline tests: progress from tracking rows, topics read
back, and the comparison of a pipeline's accounts with the direct application of the same events."""

from __future__ import annotations

import json
import signal
import time

from kafka import KafkaConsumer, TopicPartition

from ledger.application import LoyaltyLedger
from ledger.commands import command_from_event
from ledger.domain import LoyaltyAccount
from ledger.program import Program

CONSUME_TIMEOUT_S = 60


def read_values(account: LoyaltyAccount | None) -> tuple | None:
    if account is None:
        return None
    return (account.balance, account.lifetime_earned, account.lifetime_reversed,
            account.lifetime_redeemed, account.lifetime_expired, account.debt, account.tier,
            account.spend_by_year, sorted(account.closed_years), sorted(account.birthday_years),
            account.pending, account.lifetime_adjusted_in, account.lifetime_adjusted_out,
            account.lifetime_transferred_in, account.lifetime_transferred_out)


def assert_same_as_direct(ledger: LoyaltyLedger, events: list[dict],
                          program: Program | None = None) -> None:
    direct = LoyaltyLedger(program=program)
    direct.apply_in_order([command_from_event(event) for event in events])
    members = {e["member_id"] for e in events} | {
        e["referrer_member_id"] for e in events if e["type"] == "referral"} | {
        e["to_member_id"] for e in events if e["type"] == "transfer"}
    mismatches = {m: (read_values(ledger.find_account(m)), read_values(direct.find_account(m)))
                  for m in members
                  if read_values(ledger.find_account(m)) != read_values(direct.find_account(m))}
    assert not mismatches, list(mismatches.items())[:3]


def consume_all(bootstrap: str, topic: str, distinct_min: int) -> list[dict]:
    """Read a topic from the beginning with kafka-python until ``distinct_min`` event ids."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, consumer_timeout_ms=2000,
                             auto_offset_reset="earliest", enable_auto_commit=False)
    partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    received, deadline = [], time.monotonic() + CONSUME_TIMEOUT_S
    while len({r["event_id"] for r in received}) < distinct_min and time.monotonic() < deadline:
        for message in consumer:
            received.append(json.loads(message.value))
    consumer.close()
    return received


def total_messages(produced: dict[int, int]) -> int:
    return sum(offset + 1 for offset in produced.values())


def progress(ledger, settings, produced) -> int:
    """Messages of the events topic covered by tracking records."""
    tracked = [ledger.tracked_position(settings.tracking_name(settings.events_topic, p)) for p in produced]
    return sum(0 if position is None else position + 1 for position in tracked)  # offset 0 counts


def wait_for_progress(ledger, settings, produced, fraction_min: float, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if progress(ledger, settings, produced) >= total_messages(produced) * fraction_min:
            return
        time.sleep(0.02)
    raise AssertionError("no progress")


def run_with_a_worker_killed(ledger, settings, produced, log_dir, timeout_s: float = 300,
                             workers_count: int = 2, killed_at_fraction: float = 0.2) -> None:
    """``workers_count`` workers (and the relay, as ``start_workers`` runs it) on the produced
    stream; worker-0 (with ``settings.relay_in_worker`` the one running the relay) is SIGKILLed
    once ``killed_at_fraction`` is processed and replaced; returns when everything is processed."""
    from streams.process import start_worker, start_workers, stop_workers, wait_until_processed

    workers = start_workers(settings, workers_count, log_dir)
    try:
        wait_for_progress(ledger, settings, produced, fraction_min=killed_at_fraction)
        victim = workers.pop(0)  # worker-0: with relay_in_worker it also runs the outbox relay
        victim.process.send_signal(signal.SIGKILL)
        victim.process.wait()
        assert progress(ledger, settings, produced) < total_messages(produced), "killed mid-stream"
        workers.append(start_worker(settings, settings.relay_in_worker, log_dir / "restarted.log"))
        wait_until_processed(ledger, settings, produced, workers, timeout_s=timeout_s)
    finally:
        stop_workers(workers)
