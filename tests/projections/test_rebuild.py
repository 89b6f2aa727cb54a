"""Rebuilding in memory: a read model replayed from position 0 never reads a row, keeps its
rows from one transaction to the next and writes them with COPY. It must end with exactly
the rows the batch-by-batch path (read, then upsert) writes, resume after a crash to the
same rows, and decode every fact through the ledger's mapper, upcasters included.
"""

from __future__ import annotations

import pytest
from psycopg.sql import SQL, Identifier

from ledger.application import LoyaltyLedger
from ledger.domain import LoyaltyAccount
from projections.balances import BALANCES
from projections.rows import RowBatch
from projections.runner import (WINDOW_IDLE_TIMEOUT_S, catch_up, open_read_models,
                                read_model_digests, replay, resume)
from projections.verify import verify
from projections.year_end import year_closed_events
from tests.projections.random_stream import load_stream, stream

STREAM_EVENTS = 3_000
STREAM_MEMBERS = 60
LEDGER_BATCH_COMMANDS_MAX = 1_000
WINDOW_NOTIFICATIONS = 500       # one transaction per 500 notifications
CHUNK_NOTIFICATIONS = 64         # read and applied 64 at a time
CRASH_AT_PURCHASE = 1_200        # in the third window or later (purchases are most facts)


@pytest.fixture
def loaded(pg_env):
    """A ledger with a stream of every kind of fact, and the rows a default replay builds."""
    ledger = LoyaltyLedger(env=pg_env)
    load_stream(ledger, stream(STREAM_EVENTS, STREAM_MEMBERS), LEDGER_BATCH_COMMANDS_MAX,
                year_closed_events)
    with open_read_models(pg_env, program=ledger.program) as models:
        replay(ledger, models)
        reference = read_model_digests(models)
    yield ledger, reference
    ledger.close()


def test_a_rebuild_in_memory_writes_the_rows_the_batch_by_batch_path_writes(loaded, pg_env):
    ledger, reference = loaded
    head = ledger.recorder.max_notification_id()
    with open_read_models(pg_env, program=ledger.program) as models:
        # In memory all along: small windows and chunks, the rows kept between transactions
        _reset(models)
        done = catch_up(ledger, models, batch_notifications_max=WINDOW_NOTIFICATIONS,
                        read_notifications_max=CHUNK_NOTIFICATIONS)
        assert done.position == head and done.transactions == -(-head // WINDOW_NOTIFICATIONS)
        assert read_model_digests(models) == reference
        # Only the first window in memory: the cache is dropped after it, so every later
        # window reads its rows and upserts them, as the live follower does
        _reset(models)
        catch_up(ledger, models, batch_notifications_max=WINDOW_NOTIFICATIONS,
                 read_notifications_max=CHUNK_NOTIFICATIONS, cache_rows_max=0)
        assert read_model_digests(models) == reference
        assert verify(ledger, models).ok


def test_a_crash_in_the_middle_of_a_rebuild_resumes_to_the_same_rows(loaded, pg_env,
                                                                      monkeypatch):
    ledger, reference = loaded
    with open_read_models(pg_env, program=ledger.program) as models:
        _reset(models)
        # The kpis projection dies in a purchase a few windows in
        kpis = models.projections["kpis"]
        handler, calls = kpis.points_earned, {"n": 0}

        def dying_points_earned(fact, rows):
            calls["n"] += 1
            if calls["n"] == CRASH_AT_PURCHASE:
                raise RuntimeError("killed mid-rebuild")
            handler(fact, rows)

        monkeypatch.setattr(kpis, "points_earned", dying_points_earned)
        with pytest.raises(RuntimeError, match="killed mid-rebuild"):
            catch_up(ledger, models, batch_notifications_max=WINDOW_NOTIFICATIONS)
        crashed_at = models.positions()
        # Every read model kept its last whole window (they commit together), nothing more
        assert len(set(crashed_at.values())) == 1
        position = crashed_at["kpis"]
        assert position > 0 and position % WINDOW_NOTIFICATIONS == 0
        assert position < ledger.recorder.max_notification_id()
    # Restart: a fresh process resumes from the positions, reading and upserting rows
    with open_read_models(pg_env, program=ledger.program) as models:
        resume(ledger, models, batch_notifications_max=WINDOW_NOTIFICATIONS)
        assert read_model_digests(models) == reference


def test_a_read_model_with_rows_at_position_0_is_read_and_upserted_not_copied(loaded, pg_env):
    ledger, reference = loaded
    with open_read_models(pg_env, ["balances"], ledger.program) as models:
        view = models.view("balances")
        member = view.rows(BALANCES)[0]["member_id"]
        _reset(models)
        # A stray row at position 0 (written by hand): COPY of the member's row would collide
        with view.datastore.transaction(commit=True) as cursor:
            assert view.is_empty(cursor)
            cursor.execute(SQL("INSERT INTO {} VALUES (%s, 1, 1, 0, 0, 0, 0, now())").format(
                Identifier(BALANCES.name)), (member,))
            assert not view.is_empty(cursor)
        catch_up(ledger, models, batch_notifications_max=WINDOW_NOTIFICATIONS)
        assert read_model_digests(models) == {"balances": reference["balances"]}


def test_replay_applies_upcasters_to_old_stored_facts(loaded, pg_env, monkeypatch):
    ledger, _ = loaded
    with open_read_models(pg_env, ["balances"], ledger.program) as models:
        earned_before = _total_earned(models)
        # A new version of points_earned: the facts stored (all of them) get one more point
        current = LoyaltyAccount.PointsEarned.class_version
        monkeypatch.setattr(LoyaltyAccount.PointsEarned, "class_version", current + 1)
        monkeypatch.setattr(LoyaltyAccount.PointsEarned, f"upcast_v{current}_v{current + 1}",
                            staticmethod(lambda state: state.update(points=state["points"] + 1)),
                            raising=False)
        replay(ledger, models)
        assert _total_earned(models) == earned_before + _count_of(ledger, "PointsEarned")


def test_read_models_follow_a_ledger_in_memory_as_they_follow_one_on_postgres(loaded, pg_env):
    # A reference run keeps its ledger in memory: the log is read through the library then
    _, reference = loaded
    ledger = LoyaltyLedger(env={})
    load_stream(ledger, stream(STREAM_EVENTS, STREAM_MEMBERS), LEDGER_BATCH_COMMANDS_MAX,
                year_closed_events)
    with open_read_models(pg_env, program=ledger.program) as models:
        replay(ledger, models, batch_notifications_max=WINDOW_NOTIFICATIONS)
        assert read_model_digests(models) == reference
    ledger.close()


def test_a_window_may_stay_busy_in_memory_longer_than_the_idle_in_transaction_timeout(
        loaded, pg_env, monkeypatch):
    # eventsourcing ends a session idle in a transaction for 5 s; a rebuild's window sends
    # nothing while it applies its facts in memory, so it sets a longer limit for itself
    ledger, _ = loaded
    seen = []
    with open_read_models(pg_env, ["balances"], ledger.program) as models:
        balances = models.projections["balances"]
        handle = balances.handle

        def handle_and_look(handled, rows):
            statement = "SELECT current_setting('idle_in_transaction_session_timeout') AS t"
            seen.append(rows.cursor.execute(statement).fetchone()["t"])
            handle(handled, rows)

        monkeypatch.setattr(balances, "handle", handle_and_look)
        replay(ledger, models)
    assert set(seen) == {f"{WINDOW_IDLE_TIMEOUT_S // 60}min"}
    with open_read_models(pg_env, ["balances"], ledger.program) as models:
        with models.factory.datastore.transaction(commit=False) as cursor:
            outside = cursor.execute("SHOW idle_in_transaction_session_timeout").fetchone()
    assert outside["idle_in_transaction_session_timeout"] == "5s"  # only in the window


def test_a_complete_row_batch_never_reads_a_row():
    rows = RowBatch([BALANCES], "public", complete=True)
    rows.cursor = None  # any read or statement would fail
    assert rows.get(BALANCES, ("nobody",)) is None
    rows.prefetch({"nobody"})
    assert len(rows) == 0


def _reset(models) -> None:
    for name in models.projections:
        models.view(name).reset()


def _total_earned(models) -> int:
    return sum(row["lifetime_earned"] for row in models.view("balances").rows(BALANCES))


def _count_of(ledger: LoyaltyLedger, class_name: str) -> int:
    recorder = ledger.recorder
    statement = SQL("SELECT count(*) AS n FROM {}.{} WHERE topic LIKE %s").format(
        Identifier(recorder.datastore.schema), Identifier(recorder.events_table_name))
    with recorder.datastore.transaction(commit=False) as cursor:
        return cursor.execute(statement, (f"%.{class_name}",)).fetchone()["n"]

