"""The live follower's cycle: what it reads from PostgreSQL when idle, and how it notices a
reset with no new facts to apply (``projections/follower.py``)."""

from __future__ import annotations

import pytest

from ledger.application import LoyaltyLedger
from ledger.settings import LedgerSettings
from projections.follower import follow
from projections.runner import READ_MODEL_NAMES, open_read_models, read_model_digests, replay
from projections.year_end import year_closed_events
from tests.projections.random_stream import load_stream, stream

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
