"""Replay: the same rows from scratch as live, crash-safe resumption, batched transactions.

"Live" here is what a deployment runs: the read models follow the ledger
while it is being written, in small batches (or one event at a time with
eventsourcing's ``ProjectionRunner``). A replay drops a read model and
rebuilds it from the whole log in large batches. Both must end with the same
rows, compared as a digest of every row of every table.
"""

from __future__ import annotations

import io
import math
import os
import signal
import subprocess
import threading
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import pytest
from eventsourcing.utils import get_topic
from psycopg.sql import SQL, Identifier
from rich.console import Console

from ledger.application import LoyaltyLedger
from ledger.domain import LoyaltyAccount
from ledger.settings import LedgerSettings
from projections import combined
from projections.balances import BALANCES
from projections.follower import follow
from projections.runner import (READ_MODEL_NAMES, catch_up, live_runner, open_read_models,
                                read_model_digests, replay)
from projections.verify import verify
from projections.year_end import year_closed_events
from tests.support import builders as b
from tests.support.ledger_steps import apply
from tests.projections.steps import database_url
from tests.projections.random_stream import load_stream, stream

BIG_STREAM_EVENTS = 20_000
BIG_STREAM_MEMBERS = 300
MEDIUM_STREAM_EVENTS = 3_000
SMALL_STREAM_EVENTS = 600
STREAM_MEMBERS = 60
LEDGER_BATCH_COMMANDS_MAX = 1_000  # one ledger transaction per batch, as a partition batch
LIVE_BATCH_NOTIFICATIONS_MAX = 250
REPLAY_BATCH_NOTIFICATIONS_MAX = 5_000
RUNNER_WAIT_TIMEOUT_S = 120.0
KILL_AFTER_POSITION_MIN = 300
SUBPROCESS_START_TIMEOUT_S = 60.0
POLL_INTERVAL_S = 0.05
PROGRESS_WIDTH_CHARS = 160
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def pg_ledger(pg_env):
    ledger = LoyaltyLedger(env=pg_env)
    yield ledger
    ledger.close()


def test_replaying_each_read_model_rebuilds_exactly_the_rows_live_projection_wrote(
        pg_ledger, pg_env):
    started = time.monotonic()
    with open_read_models(pg_env) as models:
        # Live: the read models follow the ledger batch by batch while it is written
        def follow() -> None:
            catch_up(pg_ledger, models, batch_notifications_max=LIVE_BATCH_NOTIFICATIONS_MAX)

        events = load_stream(pg_ledger, stream(BIG_STREAM_EVENTS, BIG_STREAM_MEMBERS),
                             LEDGER_BATCH_COMMANDS_MAX, year_closed_events, after_batch=follow)
        loaded = time.monotonic()
        head = pg_ledger.recorder.max_notification_id()
        assert events >= BIG_STREAM_EVENTS and head >= BIG_STREAM_EVENTS
        _assert_the_stream_is_varied(models)
        live = read_model_digests(models)
        # Replay: drop one read model at a time and rebuild it from the whole log
        for name in READ_MODEL_NAMES:
            with open_read_models(pg_env, [name], pg_ledger.program) as one:
                done = replay(pg_ledger, one,
                              batch_notifications_max=REPLAY_BATCH_NOTIFICATIONS_MAX)
                assert done.position == head
                assert read_model_digests(one) == {name: live[name]}, name
        replayed = time.monotonic()
        report = verify(pg_ledger, models)
    assert report.ok, report.mismatches[:10]
    print(f"\n{events} events, {head} notifications: ledger + live projections "
          f"{loaded - started:.1f} s, four replays {replayed - loaded:.1f} s, "
          f"verify {time.monotonic() - replayed:.1f} s")


def _assert_the_stream_is_varied(models) -> None:
    """The stream reaches every tier, expiry, debt and awarded bonuses."""
    with models.factory.datastore.transaction(commit=False) as cursor:
        tiers = {row["tier"] for row in cursor.execute("SELECT DISTINCT tier FROM tiers")}
        counts = cursor.execute(
            "SELECT (SELECT count(*) FROM balances WHERE lifetime_expired > 0) AS expired, "
            "(SELECT count(*) FROM annual_incentives WHERE awarded_bonus > 0) AS awarded, "
            "(SELECT count(*) FROM balances WHERE lifetime_reversed > 0) AS reversed"
        ).fetchone()
    assert tiers == {"bronze", "silver", "gold", "platinum"}
    assert min(counts.values()) > 0, counts


def test_projection_runner_following_live_agrees_with_a_replay(pg_ledger, pg_env):
    # eventsourcing's ProjectionRunner: one transaction per event, LISTEN/NOTIFY
    with ExitStack() as stack:
        runners = {name: stack.enter_context(live_runner(pg_env, name, pg_ledger.program))
                   for name in READ_MODEL_NAMES}
        load_stream(pg_ledger, stream(SMALL_STREAM_EVENTS, STREAM_MEMBERS),
                    LEDGER_BATCH_COMMANDS_MAX, year_closed_events)
        for name, runner in runners.items():
            last = _last_notification_of(pg_ledger, runner.projection.topics)
            runner.wait(last, timeout=RUNNER_WAIT_TIMEOUT_S)
    with open_read_models(pg_env) as models:
        live = read_model_digests(models)
        replay(pg_ledger, models, batch_notifications_max=REPLAY_BATCH_NOTIFICATIONS_MAX)
        assert read_model_digests(models) == live


def _last_notification_of(ledger: LoyaltyLedger, topics) -> int:
    recorder = ledger.recorder
    statement = SQL("SELECT max(notification_id) AS last FROM {}.{} WHERE topic = ANY(%s)").format(
        Identifier(recorder.datastore.schema), Identifier(recorder.events_table_name))
    with recorder.datastore.transaction(commit=False) as cursor:
        return cursor.execute(statement, (list(topics),)).fetchone()["last"]


@pytest.fixture
def medium_ledger(pg_ledger, pg_env):
    """A ledger with a medium stream and the reference digests of a clean replay."""
    load_stream(pg_ledger, stream(MEDIUM_STREAM_EVENTS, STREAM_MEMBERS),
                LEDGER_BATCH_COMMANDS_MAX, year_closed_events)
    with open_read_models(pg_env) as models:
        replay(pg_ledger, models, batch_notifications_max=REPLAY_BATCH_NOTIFICATIONS_MAX)
        reference = read_model_digests(models)
        for name in READ_MODEL_NAMES:
            models.view(name).reset()
    return pg_ledger, reference


class Crash(Exception):
    """A simulated crash of the projection process."""


def test_a_crash_inside_a_handler_rolls_the_batch_back_and_the_restart_resumes(
        medium_ledger, pg_env):
    ledger, reference = medium_ledger
    with open_read_models(pg_env) as models:
        # The annual projection dies in its 700th purchase, mid-batch
        annual = models.projections["annual"]
        calls = {"points_earned": 0}
        handler = annual.points_earned

        def dying_points_earned(fact, rows):
            calls["points_earned"] += 1
            if calls["points_earned"] == 700:
                raise Crash("killed mid-batch")
            handler(fact, rows)

        annual.points_earned = dying_points_earned
        with pytest.raises(Crash):
            catch_up(ledger, models, batch_notifications_max=200)
        crashed_at = models.positions()
    assert 0 < min(crashed_at.values()) < ledger.recorder.max_notification_id()
    assert crashed_at["annual"] % 200 == 0  # the last committed batch, not the one that died
    # Restart: a fresh process resumes from the tracking positions
    with open_read_models(pg_env) as models:
        catch_up(ledger, models, batch_notifications_max=200)
        assert read_model_digests(models) == reference


@pytest.mark.parametrize("combines", [True, False], ids=["combined", "previous-design"])
def test_a_crash_after_the_rows_are_written_but_before_commit_loses_nothing(
        medium_ledger, pg_env, monkeypatch, combines):
    ledger, reference = medium_ledger
    with open_read_models(pg_env) as models:
        models.combines_statements = combines  # read_models_combine_statements
        batches = {"tracked": 0}

        def dying_after(write):
            def rows_and_position_written_then_killed(*args):
                write(*args)
                batches["tracked"] += 1
                if batches["tracked"] == 4:
                    raise Crash("killed between the rows and the commit")
            return rows_and_position_written_then_killed

        if combines:  # the rows and every position in one statement
            monkeypatch.setattr(combined, "write_together", dying_after(combined.write_together))
        else:
            view = models.view("balances")
            view.track = dying_after(view.track)
        with pytest.raises(Crash):
            catch_up(ledger, models, batch_notifications_max=300)
        assert models.positions()["balances"] == 900
    with open_read_models(pg_env) as models:
        catch_up(ledger, models, batch_notifications_max=300)
        assert read_model_digests(models) == reference


SUBPROCESS_PROJECTION = """
import sys, time
from ledger.application import LoyaltyLedger
from projections.balances import BalancesProjection
from projections.runner import catch_up, open_read_models

env = dict(arg.split("=", 1) for arg in sys.argv[1:])
handler = BalancesProjection.points_earned
def slow_points_earned(self, fact, rows):
    time.sleep(0.002)  # slow enough to be killed inside a transaction
    handler(self, fact, rows)
BalancesProjection.points_earned = slow_points_earned
ledger = LoyaltyLedger(env=env)
with open_read_models(env) as models:
    catch_up(ledger, models, batch_notifications_max=150)
"""


def test_a_projection_process_killed_with_sigkill_resumes_from_its_tracking_position(
        medium_ledger, pg_env):
    ledger, reference = medium_ledger
    head = ledger.recorder.max_notification_id()
    process = subprocess.Popen(
        [sys.executable, "-c", SUBPROCESS_PROJECTION, *(f"{k}={v}" for k, v in pg_env.items())],
        cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    try:
        with open_read_models(pg_env) as models:
            killed_at = _kill_when_past(process, models, KILL_AFTER_POSITION_MIN)
            assert KILL_AFTER_POSITION_MIN <= killed_at["balances"] < head
            assert killed_at["balances"] % 150 == 0  # only whole batches were committed
            catch_up(ledger, models, batch_notifications_max=150)
            assert read_model_digests(models) == reference
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


def _kill_when_past(process: subprocess.Popen, models, position_min: int) -> dict[str, int]:
    deadline = time.monotonic() + SUBPROCESS_START_TIMEOUT_S
    while models.positions()["balances"] < position_min:
        assert process.poll() is None, "the projection process ended before it was killed"
        assert time.monotonic() < deadline, "the projection process made no progress"
        time.sleep(POLL_INTERVAL_S)
    process.send_signal(signal.SIGKILL)
    process.wait()
    return models.positions()


def test_replay_commits_one_transaction_per_batch_not_per_event(pg_ledger, pg_env):
    load_stream(pg_ledger, stream(SMALL_STREAM_EVENTS * 2, STREAM_MEMBERS),
                LEDGER_BATCH_COMMANDS_MAX, year_closed_events)
    head = pg_ledger.recorder.max_notification_id()
    console = Console(file=io.StringIO(), width=PROGRESS_WIDTH_CHARS)
    with open_read_models(pg_env) as models:
        xid_before = _current_xid(models)
        done = replay(pg_ledger, models, batch_notifications_max=100, console=console)
        xid_after = _current_xid(models)
    batches = math.ceil(head / 100)
    assert done.notifications == head and done.transactions == batches
    # The database agrees: one write transaction per batch (plus the probes and
    # the four resets), not one per event
    assert batches <= xid_after - xid_before <= batches + len(READ_MODEL_NAMES) + 2
    assert xid_after - xid_before < head / 10
    # and the progress bar showed the whole log, the rate and the time left
    progress = console.file.getvalue()
    assert f"{head}/{head}" in progress and "events/s" in progress and "ETA" in progress


def _current_xid(models) -> int:
    with models.factory.datastore.transaction(commit=True) as cursor:
        return int(cursor.execute("SELECT pg_current_xact_id()::text AS xid").fetchone()["xid"])


def test_replaying_one_read_model_leaves_the_others_alone(pg_ledger, pg_env):
    load_stream(pg_ledger, stream(SMALL_STREAM_EVENTS, STREAM_MEMBERS),
                LEDGER_BATCH_COMMANDS_MAX, year_closed_events)
    with open_read_models(pg_env) as models:
        catch_up(pg_ledger, models, batch_notifications_max=LIVE_BATCH_NOTIFICATIONS_MAX)
        before = read_model_digests(models)
        opened = get_topic(LoyaltyAccount.Opened)
        assert opened in models.projections["balances"].topics
        with open_read_models(pg_env, ["tiers"], pg_ledger.program) as tiers:
            tiers.view("tiers").reset()
            assert read_model_digests(tiers) != {"tiers": before["tiers"]}
            replay(pg_ledger, tiers, batch_notifications_max=REPLAY_BATCH_NOTIFICATIONS_MAX)
        assert read_model_digests(models) == before


FOLLOW_COMMAND = ("import sys; from tests.projections.steps import run_cli; "
                  "sys.exit(run_cli(*sys.argv[1:]))")
FOLLOW_STOP_TIMEOUT_S = 30.0


def test_replay_then_follow_keeps_the_read_models_live_until_interrupted(pg_ledger, pg_env):
    load_stream(pg_ledger, stream(SMALL_STREAM_EVENTS, STREAM_MEMBERS),
                LEDGER_BATCH_COMMANDS_MAX, year_closed_events)
    process = subprocess.Popen(
        [sys.executable, "-c", FOLLOW_COMMAND, "replay", "--follow", "--no-progress",
         "--database-url", database_url(pg_env)],
        cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    try:
        with open_read_models(pg_env) as models:
            _wait_for_position(process, models, pg_ledger.recorder.max_notification_id())
            # Now the ledger moves on: the follower picks the new facts up live
            apply(pg_ledger, b.purchase("late-comer", "2026-01-05T10:00:00Z", 4200))
            _wait_for_position(process, models, pg_ledger.recorder.max_notification_id())
            assert models.view("balances").rows_of_members(BALANCES, ["late-comer"])[0][
                "balance"] == 42
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=FOLLOW_STOP_TIMEOUT_S) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _wait_for_position(process: subprocess.Popen, models, position: int) -> None:
    deadline = time.monotonic() + SUBPROCESS_START_TIMEOUT_S
    while min(models.positions().values()) < position:
        assert process.poll() is None, "the follower ended"
        assert time.monotonic() < deadline, models.positions()
        time.sleep(POLL_INTERVAL_S)


WRITER_JOIN_TIMEOUT_S = 120.0


def test_two_catch_ups_at_once_take_turns_and_count_every_fact_once(medium_ledger, pg_env):
    ledger, reference = medium_ledger
    errors: list[BaseException] = []

    def catch_up_in_a_thread(batch_notifications_max: int) -> None:
        try:
            with open_read_models(pg_env) as models:
                catch_up(ledger, models, batch_notifications_max=batch_notifications_max)
        except BaseException as error:  # reported below, in the test's thread
            errors.append(error)

    writers = [threading.Thread(target=catch_up_in_a_thread, args=(size,)) for size in (97, 131)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(WRITER_JOIN_TIMEOUT_S)
    assert not errors and not any(writer.is_alive() for writer in writers), errors
    with open_read_models(pg_env) as models:
        assert read_model_digests(models) == reference


def test_a_live_runner_and_a_catch_up_at_once_count_every_fact_once(medium_ledger, pg_env):
    ledger, reference = medium_ledger
    with ExitStack() as stack:
        runners = {name: stack.enter_context(live_runner(pg_env, name, ledger.program))
                   for name in READ_MODEL_NAMES}
        with open_read_models(pg_env) as models:
            catch_up(ledger, models, batch_notifications_max=97)
        for runner in runners.values():
            runner.wait(_last_notification_of(ledger, runner.projection.topics),
                        timeout=RUNNER_WAIT_TIMEOUT_S)
    with open_read_models(pg_env) as models:
        assert read_model_digests(models) == reference


class FollowerCaughtUp(Exception):
    """Raised from the follower's lag callback to end ``follow`` once it is level again."""


@pytest.mark.parametrize("combines", [True, False], ids=["combined", "previous-design"])
@pytest.mark.parametrize("rereads_positions", [False, True], ids=["kept-positions", "reread-each-cycle"])
def test_a_replay_under_a_running_follower_makes_it_start_over_not_crash(medium_ledger, pg_env,
                                                                         rereads_positions,
                                                                         combines):
    """``loyalty replay`` resets the read models after the follower read their positions
    and before it commits: the follower abandons that window and catches up from 0 (in
    both designs of ``follow_rereads_positions`` and of ``read_models_combine_statements``)."""
    ledger, _ = medium_ledger
    with open_read_models(pg_env) as models:
        catch_up(ledger, models, batch_notifications_max=REPLAY_BATCH_NOTIFICATIONS_MAX)
    apply(ledger, b.purchase("M-follow", "2026-06-01T10:00:00Z", 12_345))  # work for the follower
    follower_ledger = LoyaltyLedger(env=pg_env)
    chunks = follower_ledger.fact_log.chunks
    resets: list[int] = []
    lags: dict[str, int] = {}

    def chunks_reset_by_a_replay_first(*args, **kwargs):
        if not resets:
            with open_read_models(pg_env) as other:
                for name in READ_MODEL_NAMES:
                    other.view(name).reset()
            resets.append(1)
        return chunks(*args, **kwargs)

    def stop_when_level(name: str, behind: int) -> None:
        lags[name] = behind
        if resets and len(lags) == len(READ_MODEL_NAMES) and not any(lags.values()):
            raise FollowerCaughtUp

    follower_ledger.fact_log.chunks = chunks_reset_by_a_replay_first
    try:
        with open_read_models(pg_env) as models, pytest.raises(FollowerCaughtUp):
            models.combines_statements = combines
            follow(follower_ledger, models, LedgerSettings(follow_rereads_positions=rereads_positions),
                   record_lag=stop_when_level)
        with open_read_models(pg_env) as models:
            followed = read_model_digests(models)
            replay(ledger, models, batch_notifications_max=REPLAY_BATCH_NOTIFICATIONS_MAX)
            assert resets and followed == read_model_digests(models)
    finally:
        follower_ledger.close()
