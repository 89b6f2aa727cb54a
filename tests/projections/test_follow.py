"""The live follower's cycle: what it reads from PostgreSQL when idle, and how it notices a
reset with no new facts to apply (``projections/follower.py``)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

import pytest

from ledger.application import LoyaltyLedger
from ledger.settings import LedgerSettings
from projections.follower import follow
from projections.rows import RowBatch
from projections.runner import READ_MODEL_NAMES, catch_up, open_read_models, read_model_digests, replay
from projections.year_end import year_closed_events
from tests.projections.random_stream import load_stream, stream
from tests.support.services import unique_database_name

STREAM_EVENTS = 400
STREAM_MEMBERS = 30
LEDGER_BATCH_COMMANDS_MAX = 200
IDLE_CYCLES = 20
CYCLES_MAX = 2_000          # a follower that never catches up fails the test instead of hanging
NEVER_MS = 3_600_000        # a re-read interval longer than any test
REREAD_MS = 20


class Stop(Exception):
    """Raised from the lag callback to end ``follow``."""


@pytest.fixture
def caught_up_ledger(pg_env):
    ledger = LoyaltyLedger(env=pg_env)
    load_stream(ledger, stream(STREAM_EVENTS, STREAM_MEMBERS), LEDGER_BATCH_COMMANDS_MAX,
                year_closed_events)
    with open_read_models(pg_env) as models:
        replay(ledger, models)
        reference = read_model_digests(models)
    yield ledger, reference
    ledger.close()


class Counted:
    """Counts the calls of ``owner.name`` (an instance attribute shadowing the method)."""

    def __init__(self, owner: object, name: str) -> None:
        self.calls = 0
        self.method = getattr(owner, name)
        setattr(owner, name, self)

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.method(*args, **kwargs)


def _idle_reads(ledger: LoyaltyLedger, pg_env, settings: LedgerSettings) -> tuple[int, int]:
    """(head reads, positions reads) of ``IDLE_CYCLES`` idle cycles."""
    cycles = []

    def stop_after_idle_cycles(name: str, behind: int) -> None:
        assert behind == 0, (name, behind)
        if name == READ_MODEL_NAMES[-1]:
            cycles.append(1)
            if len(cycles) == IDLE_CYCLES:
                raise Stop

    with open_read_models(pg_env) as models:
        heads, positions = Counted(ledger.fact_log, "head"), Counted(models, "positions")
        with pytest.raises(Stop):
            follow(ledger, models, settings, record_lag=stop_after_idle_cycles)
    del ledger.fact_log.head
    return heads.calls, positions.calls


def test_an_idle_follower_reads_only_the_head_each_cycle(caught_up_ledger, pg_env):
    ledger, _ = caught_up_ledger
    settings = LedgerSettings(follow_poll_interval_ms=1, follow_positions_reread_ms=NEVER_MS)
    assert _idle_reads(ledger, pg_env, settings) == (IDLE_CYCLES, 1)


def test_the_previous_design_reads_every_position_twice_a_cycle(caught_up_ledger, pg_env):
    ledger, _ = caught_up_ledger
    settings = LedgerSettings(follow_poll_interval_ms=1, follow_rereads_positions=True)
    heads, positions = _idle_reads(ledger, pg_env, settings)
    assert heads >= 2 * IDLE_CYCLES and positions >= 2 * IDLE_CYCLES, (heads, positions)


def test_an_idle_follower_notices_a_reset_and_rebuilds_the_read_models(caught_up_ledger, pg_env):
    """No new fact arrives, so no commit can see the reset: the periodic re-read does."""
    ledger, reference = caught_up_ledger
    settings = LedgerSettings(follow_poll_interval_ms=1, follow_positions_reread_ms=REREAD_MS)
    head = ledger.fact_log.head()
    cycles = []
    with open_read_models(pg_env) as other, open_read_models(pg_env) as models:

        def reset_then_stop_when_rebuilt(name: str, behind: int) -> None:
            cycles.append(1)
            assert len(cycles) < CYCLES_MAX * len(READ_MODEL_NAMES), other.positions()
            if len(cycles) == 1:
                for read_model in READ_MODEL_NAMES:
                    other.view(read_model).reset()
            elif min(other.positions().values()) == head:
                raise Stop

        with pytest.raises(Stop):
            follow(ledger, models, settings, record_lag=reset_then_stop_when_rebuilt)
        assert read_model_digests(other) == reference


# ------------------------------------------- rows kept from one catch-up to the next

STEP_COMMANDS = 20          # the stream arrives in small steps, a catch-up after each
KEPT_ROWS_MAX = 10_000


@pytest.fixture
def row_reads(monkeypatch) -> list:
    """The members or keys of each ``RowBatch._fetch`` call (a read of rows by member or key)."""
    calls, fetch = [], RowBatch._fetch

    def counted(self, held, statement, params):
        calls.extend(params[0])  # one array per key column; the members
        return fetch(self, held, statement, params)

    monkeypatch.setattr(RowBatch, "_fetch", counted)
    return calls


class Writer:
    """A live catch-up of one set of read models, with its kept rows (as ``follow`` holds them)."""

    def __init__(self, ledger: LoyaltyLedger, models, kept_rows_max: int) -> None:
        self.ledger, self.models, self.kept_rows_max = ledger, models, kept_rows_max
        self.kept: dict = {}

    def catch_up(self) -> None:
        catch_up(self.ledger, self.models, batch_notifications_max=LEDGER_BATCH_COMMANDS_MAX,
                 kept=self.kept, kept_read_rows_max=self.kept_rows_max,
                 cache_rows_max=0)  # the first, rebuilt in memory, is not kept: rows are read


@pytest.fixture
def fresh_env(embedded_pg, request) -> Iterator[Callable[[], dict]]:
    """Makes eventsourcing envs of new, empty databases (dropped after the test)."""
    names = []

    def make() -> dict:
        names.append(unique_database_name(f"{request.node.name}-{len(names)}"))
        return embedded_pg.create_database(names[-1]).env

    yield make
    for name in names:
        embedded_pg.drop_database(name)


def _steps(env: dict, row_reads: list, kept_rows_max: int, writers_count: int) -> tuple[int, dict, dict]:
    """Load the stream in steps, the writers catching up in turn after each; returns the
    reads of rows, the read models' digests, and those of a replay from scratch."""
    ledger = LoyaltyLedger(env=env)
    models = [open_read_models(env) for _ in range(writers_count)]
    writers = [Writer(ledger, m, kept_rows_max) for m in models]
    turns = itertools.cycle(writers)
    reads_before = len(row_reads)
    try:
        load_stream(ledger, stream(STREAM_EVENTS, STREAM_MEMBERS), STEP_COMMANDS, year_closed_events,
                    after_batch=lambda: next(turns).catch_up())
        for writer in writers:
            writer.catch_up()
        reads, followed = len(row_reads) - reads_before, read_model_digests(models[0])
        replay(ledger, models[0])
        return reads, followed, read_model_digests(models[0])
    finally:
        for m in models:
            m.close()
        ledger.close()


def test_kept_rows_are_not_read_again_and_give_the_same_read_models(fresh_env, row_reads):
    kept_reads, kept_followed, kept_replayed = _steps(fresh_env(), row_reads, KEPT_ROWS_MAX, 1)
    reads, followed, replayed = _steps(fresh_env(), row_reads, 0, 1)
    assert kept_followed == kept_replayed and followed == replayed == kept_replayed
    assert kept_reads * 3 < reads, (kept_reads, reads)


def test_kept_rows_are_dropped_when_another_writer_moved_the_read_models(fresh_env, row_reads):
    """Two followers in turn: each one's kept rows are stale after the other's commit, and
    using them would undo the other's facts."""
    _, followed, replayed = _steps(fresh_env(), row_reads, KEPT_ROWS_MAX, 2)
    assert followed == replayed


def test_a_read_model_over_the_limit_is_not_kept(fresh_env, row_reads):
    few_reads, few_followed, few_replayed = _steps(fresh_env(), row_reads, 1, 1)
    reads, _, _ = _steps(fresh_env(), row_reads, 0, 1)
    assert few_followed == few_replayed
    assert few_reads >= reads * 0.9, (few_reads, reads)
