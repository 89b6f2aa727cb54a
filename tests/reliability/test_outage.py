"""Database outages in the batch applier, without processes: bounded back-off, a named limit.

The process-level story (PostgreSQL stopped and started under running
workers, a worker exiting non-zero after the limit) is
``tests/reliability/test_postgres.py``.
"""

from __future__ import annotations

import threading

import pytest
from eventsourcing.persistence import InterfaceError, OperationalError

from ledger.application import LoyaltyLedger
from streams.batches import DatabaseOutage, DatabaseUnavailable, PartitionBatchApplier
from streams.settings import Settings
from tests.support import builders as b
from tests.support.inbound_messages import TOPIC, messages

OUTAGE_SETTINGS = Settings(ledger_retry_backoff_ms=1, database_retry_backoff_ms=1,
                           database_retry_backoff_ms_max=4, database_unavailable_s_max=10)


class FakeClock:
    """Monotonic seconds that advance only when a test says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_an_outage_shorter_than_the_limit_is_waited_out():
    clock, calls = FakeClock(), []

    def flaky() -> str:
        calls.append(clock.now)
        clock.now += 3  # each failed attempt takes 3 s
        if len(calls) < 3:
            raise OperationalError("server closed the connection unexpectedly")
        return "done"

    outage = DatabaseOutage(OUTAGE_SETTINGS, "test", clock=clock)
    assert outage.call(flaky) == "done"
    assert (len(calls), outage.retries, outage.outages) == (3, 2, 1)


def test_an_outage_longer_than_the_limit_raises_with_the_limit_named():
    clock, evictions = FakeClock(), []

    def down() -> None:
        clock.now += 4
        raise InterfaceError("the connection is closed")

    outage = DatabaseOutage(OUTAGE_SETTINGS, "partition batches", clock=clock)
    with pytest.raises(DatabaseUnavailable, match=r"database_unavailable_s_max = 10 s") as raised:
        outage.call(down, on_retry=lambda: evictions.append(1))
    assert "partition batches" in str(raised.value) and "the connection is closed" in str(raised.value)
    assert clock.now <= 10 + 4 + 4, "gives up within one attempt of the limit"
    assert len(evictions) == outage.retries >= 2


def test_the_back_off_doubles_up_to_its_maximum():
    settings = Settings(database_retry_backoff_ms=100, database_retry_backoff_ms_max=400,
                        database_unavailable_s_max=3600)
    waits: list[float] = []

    class RecordingStop(threading.Event):
        def wait(self, timeout=None):
            waits.append(timeout)
            return False

    attempts = iter(range(6))

    def down_five_times() -> None:
        if next(attempts) < 5:
            raise OperationalError("down")

    DatabaseOutage(settings, "test", RecordingStop()).call(down_five_times)
    assert waits == [0.1, 0.2, 0.4, 0.4, 0.4]


def test_stopping_ends_the_waiting():
    stop = threading.Event()
    stop.set()
    with pytest.raises(DatabaseUnavailable, match="stopped"):
        DatabaseOutage(Settings(database_unavailable_s_max=3600), "test", stop).call(
            lambda: (_ for _ in ()).throw(OperationalError("down")))


def test_a_batch_that_meets_an_outage_is_applied_once_when_the_database_is_back(ledger, monkeypatch):
    """The batch fails twice (database away), then commits once; nothing counted twice."""
    events = [b.purchase("m1", f"2025-01-0{day}T10:00:00Z", 1000) for day in range(1, 4)]
    real_save, calls = ledger.save_batch, []

    def unreachable_twice(aggregates, tracking):
        calls.append(tracking)
        if len(calls) <= 2:
            raise OperationalError("couldn't get a connection after 2.00 sec")
        return real_save(aggregates, tracking)

    monkeypatch.setattr(ledger, "save_batch", unreachable_twice)
    applier = PartitionBatchApplier(ledger, OUTAGE_SETTINGS)
    report = applier.apply(messages(*events))
    assert (report.applied, report.conflicts_retried) == (3, 0), "an outage is not a conflict"
    assert applier.outage.outages == 1 and applier.outage.retries == 2
    assert ledger.find_account("m1").balance == 30
    assert ledger.tracked_position(f"{TOPIC}:0") == 2


def test_an_outage_while_loading_accounts_is_not_taken_for_a_poison_message(ledger, monkeypatch):
    """decide() reaching a dead database must not dead-letter the batch as ``ledger_error``."""
    events = [b.purchase("m1", "2025-01-01T10:00:00Z", 1000)]
    real_decide, calls = ledger.decide, []

    def unreachable_once(commands):
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError("terminating connection due to administrator command")
        return real_decide(commands)

    monkeypatch.setattr(ledger, "decide", unreachable_once)
    report = PartitionBatchApplier(ledger, OUTAGE_SETTINGS).apply(messages(*events))
    assert (report.applied, report.dead_letters) == (1, 0)


def test_a_batch_applier_gives_up_after_the_limit_and_commits_nothing(pg_env, monkeypatch):
    ledger = LoyaltyLedger(env=pg_env)
    try:
        def always_down(aggregates, tracking):
            raise OperationalError("connection refused")

        monkeypatch.setattr(ledger, "save_batch", always_down)
        settings = Settings(database_retry_backoff_ms=10, database_retry_backoff_ms_max=20,
                            database_unavailable_s_max=1)
        with pytest.raises(DatabaseUnavailable, match="unreachable for"):
            PartitionBatchApplier(ledger, settings).apply(
                messages(b.purchase("m1", "2025-01-01T10:00:00Z", 1000)))
        monkeypatch.undo()
        assert ledger.tracked_position(f"{TOPIC}:0") is None
        assert ledger.find_account("m1") is None
    finally:
        ledger.close()
