"""A replay split across processes by member ends with exactly the rows of one process.

The stream mixes the simulator's year of a retail chain on the demo program
(campaigns, one with a budget that runs out; enrollments, NPS answers,
erasures, referrals and their referrer credits, refunds, redemptions) with
contract 2's transfers and adjustments (the transfer credits cross members).
Each process reads only its share of the accounts; the merged read models
must be bit for bit those of a single-process replay, at the log's head, and
a split replay killed half-way must resume to the same rows.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from psycopg.sql import SQL, Identifier

from ledger.application import LoyaltyLedger
from ledger.log import Shard
from ledger.program import load_program
from projections.base import APPLICATION_NAME
from projections.campaigns import CAMPAIGNS
from projections.kpis import KPI_POINTS
from projections.runner import READ_MODEL_NAMES, catch_up, open_read_models, read_model_digests
from projections import split_replay
from projections.split_replay import (PARENT_CHECK_INTERVAL_MS, REPLAY_PROCESSES_DEFAULT,
                                      REPLAY_PROCESSES_MAX,
                                      merge_statement, rebuild, replay, resume, staging_schema)
from projections.verify import verify
from projections.year_end import year_closed_events
from streams.devkit.demo import DEMO_PROGRAM_PATH
from streams.devkit.simulator import SimulationConfig, simulate_events
from streams.cli.audit import EXIT_USAGE, _configure_replay, replay_processes
from tests.projections.random_stream import load_stream
from tests.projections.steps import database_url, run_cli
from tests.support.streamgen_contract2 import generate_contract_2_events

SIMULATED_MEMBERS = 120
SIMULATED_SEED = 5
ERASURES_PER_MEMBER_YEAR_PPM = 100_000  # about a dozen erased members
TRANSFER_EVENTS = 400
LEDGER_BATCH_COMMANDS_MAX = 500
REPLAY_BATCH_NOTIFICATIONS_MAX = 700  # several transactions per shard
PROCESSES = (2, 3)
SIMULATED_YEAR = SimulationConfig().start.year
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def demo_program():
    return load_program(DEMO_PROGRAM_PATH)


@pytest.fixture
def loaded(pg_env, demo_program):
    """A ledger with the mixed stream, and the digests of a single-process replay."""
    ledger = LoyaltyLedger(env=pg_env, program=demo_program)
    events = [*simulate_events(SimulationConfig(seed=SIMULATED_SEED, members=SIMULATED_MEMBERS,
                                              erasure_rate_ppm=ERASURES_PER_MEMBER_YEAR_PPM)),
              *generate_contract_2_events(SIMULATED_SEED, TRANSFER_EVENTS)]
    load_stream(ledger, iter(events), LEDGER_BATCH_COMMANDS_MAX, _no_year_end)
    load_stream(ledger, iter(year_closed_events(ledger, SIMULATED_YEAR)), LEDGER_BATCH_COMMANDS_MAX,
                _no_year_end)
    with open_read_models(pg_env, program=demo_program) as models:
        replay(ledger, models, processes=1, batch_notifications_max=REPLAY_BATCH_NOTIFICATIONS_MAX)
        reference = read_model_digests(models)
        _assert_the_stream_crosses_members(models)
    yield ledger, reference
    ledger.close()


def _no_year_end(ledger, year: int) -> list[dict]:
    return []  # the simulated year is closed once, at the end


def _assert_the_stream_crosses_members(models) -> None:
    """Transfers, referrer credits, erasures and a campaign budget drawn are all there."""
    with models.factory.datastore.transaction(commit=False) as cursor:
        counts = cursor.execute(
            "SELECT (SELECT count(*) FROM balances WHERE lifetime_transferred_in > 0) AS transfers,"
            " (SELECT count(*) FROM balances WHERE lifetime_forfeited > 0) AS erasures,"
            " (SELECT count(*) FROM kpi_points WHERE adjusted_in > 0) AS adjustments,"
            " (SELECT count(*) FROM campaigns WHERE budget_left IS NOT NULL) AS budgets,"
            " (SELECT count(*) FROM campaigns WHERE budget_left IS NULL) AS unbounded"
        ).fetchone()
    assert min(counts.values()) > 0, counts


@pytest.mark.parametrize("processes", PROCESSES)
def test_a_split_replay_writes_the_rows_of_a_single_process_replay(loaded, pg_env, demo_program,
                                                                   processes):
    ledger, reference = loaded
    head = ledger.recorder.max_notification_id()
    with open_read_models(pg_env, program=demo_program) as models:
        done = replay(ledger, models, processes=processes,
                      batch_notifications_max=REPLAY_BATCH_NOTIFICATIONS_MAX)
        # Every read model at the head, the rows bit for bit, verify clean, no staging left
        assert done.position == head and set(models.positions().values()) == {head}
        assert read_model_digests(models) == reference
        assert verify(ledger, models).ok
        assert _staging_schemas(models) == []


def test_each_shard_reads_a_disjoint_share_of_the_accounts_and_all_shards_the_whole_log(
        loaded, pg_env):
    ledger, _ = loaded
    head = ledger.recorder.max_notification_id()
    shards = [Shard(index, 3) for index in range(3)]
    read = [[id_ for chunk in ledger.fact_log.chunks(0, head, None, window_notifications_max=head,
                                                      chunk_notifications_max=1_000, shard=shard)
             for id_ in chunk.ids] for shard in shards]
    assert sorted(id_ for ids in read for id_ in ids) == list(range(1, head + 1))
    assert all(len(ids) > head // 6 for ids in read)  # each a fair share
    accounts = [{fact.originator_id for fact in ledger.fact_log.facts(0) if shard.holds(
        fact.originator_id)} for shard in shards]
    assert not (accounts[0] & accounts[1]) and not (accounts[1] & accounts[2])


def test_a_split_replay_killed_after_some_commits_resumes_to_the_same_rows(
        loaded, pg_env, demo_program, monkeypatch):
    ledger, reference = loaded
    head = ledger.recorder.max_notification_id()
    with open_read_models(pg_env, program=demo_program) as models:
        # The shards commit a few windows each, then the merge "crashes": nothing is visible
        def crash(*args, **kwargs):
            raise Crash("killed before the merge")

        monkeypatch.setattr(split_replay, "merge", crash)
        with pytest.raises(Crash):
            replay(ledger, models, processes=2,
                   batch_notifications_max=REPLAY_BATCH_NOTIFICATIONS_MAX)
        assert set(models.positions().values()) == {0}
        staged = _staging_schemas(models)
        assert staged == [staging_schema(models.factory.datastore.schema, Shard(i, 2))
                          for i in range(2)]
        # Half of one shard's work undone, as if it had died mid-way: resume carries on
        _rewind_a_shard(models, staged[0])
        monkeypatch.undo()
        done = resume(ledger, models, processes=2,
                      batch_notifications_max=REPLAY_BATCH_NOTIFICATIONS_MAX)
        assert done.position == head and set(models.positions().values()) == {head}
        assert read_model_digests(models) == reference
        assert _staging_schemas(models) == []


REPLAY_COMMAND = ("import sys; from tests.projections.steps import run_cli; "
                  "sys.exit(run_cli(*sys.argv[1:]))")
SHARDS_START_TIMEOUT_S = 60.0
SHARDS_END_TIMEOUT_S = PARENT_CHECK_INTERVAL_MS / 1000 + 10.0
POLL_INTERVAL_S = 0.02


def test_a_split_replay_killed_with_sigkill_leaves_no_shard_running_and_resumes(
        loaded, pg_env, demo_program):
    ledger, reference = loaded
    head = ledger.recorder.max_notification_id()
    process = subprocess.Popen(
        [sys.executable, "-c", REPLAY_COMMAND, "replay", "--no-progress", "--processes", "2",
         "--batch-notifications-max", "300", "--database-url", database_url(pg_env),
         "--program", str(DEMO_PROGRAM_PATH)], cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    try:
        # Killed as soon as its two shard processes run
        shards = _wait_for_children(psutil.Process(process.pid), 2)
        process.send_signal(signal.SIGKILL)
        process.wait()
        # The shards notice and end (their transactions are rolled back)
        _, alive = psutil.wait_procs(shards, timeout=SHARDS_END_TIMEOUT_S)
        assert alive == []
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    with open_read_models(pg_env, program=demo_program) as models:
        assert set(models.positions().values()) == {0}  # nothing merged
        done = resume(ledger, models, processes=2,
                      batch_notifications_max=REPLAY_BATCH_NOTIFICATIONS_MAX)
        assert done.position == head and read_model_digests(models) == reference


def _wait_for_children(parent: psutil.Process, count: int) -> list[psutil.Process]:
    """The ``count`` spawned shard processes of ``parent`` (not multiprocessing's tracker)."""
    deadline = time.monotonic() + SHARDS_START_TIMEOUT_S
    while True:
        shards = [child for child in parent.children()
                  if "resource_tracker" not in " ".join(child.cmdline())]
        if len(shards) >= count:
            return shards
        assert time.monotonic() < deadline, "the shard processes never started"
        time.sleep(POLL_INTERVAL_S)


class Crash(Exception):
    """A simulated crash of the replay."""


def _rewind_a_shard(models, schema: str) -> None:
    """The shard's balances as of an earlier commit: its rows and its position both gone."""
    with models.factory.datastore.transaction(commit=True) as cursor:
        cursor.execute(SQL("UPDATE {}.balances_tracking SET notification_id = 0 "
                           "WHERE application_name = %s").format(Identifier(schema)),
                       (APPLICATION_NAME,))
        cursor.execute(SQL("DELETE FROM {}.balances").format(Identifier(schema)))


def test_campaign_budgets_the_shards_disagree_on_are_rebuilt_in_one_process(
        loaded, pg_env, demo_program, monkeypatch):
    ledger, reference = loaded
    with open_read_models(pg_env, program=demo_program) as models:
        # A shard whose last fact of a campaign named another budget (another program version)
        agree = split_replay._budgets_agree
        monkeypatch.setattr(split_replay, "_budgets_agree", lambda cursor, schemas: False)
        replay(ledger, models, processes=2, batch_notifications_max=REPLAY_BATCH_NOTIFICATIONS_MAX)
        assert read_model_digests(models) == reference
        assert agree is not split_replay._budgets_agree


def test_a_read_model_another_writer_rebuilt_during_the_split_keeps_its_rows(
        loaded, pg_env, demo_program, monkeypatch):
    ledger, reference = loaded
    run_shards = split_replay._run_shards

    def shards_while_a_follower_rebuilds_kpis(jobs, on_progress):
        done = run_shards(jobs, on_progress)
        with open_read_models(pg_env, ["kpis"], program=demo_program) as follower:
            catch_up(ledger, follower, batch_notifications_max=REPLAY_BATCH_NOTIFICATIONS_MAX)
        return done

    monkeypatch.setattr(split_replay, "_run_shards", shards_while_a_follower_rebuilds_kpis)
    head = ledger.recorder.max_notification_id()
    with open_read_models(pg_env, program=demo_program) as models:
        replay(ledger, models, processes=2, batch_notifications_max=REPLAY_BATCH_NOTIFICATIONS_MAX)
        assert set(models.positions().values()) == {head}
        assert read_model_digests(models) == reference  # kpis not merged twice over
        assert _staging_schemas(models) == []


def test_a_follower_rebuilds_in_one_process_unless_told_otherwise():
    parser = argparse.ArgumentParser()
    _configure_replay(parser)
    assert replay_processes(parser.parse_args(["--follow"])) == 1
    assert replay_processes(parser.parse_args([])) == REPLAY_PROCESSES_DEFAULT
    assert replay_processes(parser.parse_args(["--follow", "--processes", "3"])) == 3


def test_tables_not_keyed_by_member_are_summed_and_a_budget_is_the_agreed_one_less_the_points():
    statement = merge_statement(CAMPAIGNS, "public", ["s0", "s1"]).as_string(None)
    assert 'sum("points_awarded")' in statement and 'GROUP BY "campaign_id"' in statement
    assert "min(budget_left + points_awarded) - sum(points_awarded)" in statement
    assert 'sum("expired")' in merge_statement(KPI_POINTS, "public", ["s0"]).as_string(None)


def test_read_models_that_are_not_empty_at_zero_are_left_to_the_catch_up(loaded, pg_env,
                                                                         demo_program):
    ledger, reference = loaded
    with open_read_models(pg_env, program=demo_program) as models:
        done = rebuild(ledger, models, processes=2,
                       batch_notifications_max=REPLAY_BATCH_NOTIFICATIONS_MAX)
        assert done.notifications == 0 and _staging_schemas(models) == []
        assert read_model_digests(models) == reference
    assert set(READ_MODEL_NAMES) == set(reference)


def test_loyalty_replay_splits_by_default_and_processes_1_is_the_single_process_path(
        loaded, pg_env, capsys):
    ledger, reference = loaded
    url = database_url(pg_env)
    common = ("replay", "--database-url", url, "--program", str(DEMO_PROGRAM_PATH),
              "--no-progress")
    for flags, processes in (((), REPLAY_PROCESSES_DEFAULT), (("--processes", "1"), 1)):
        assert run_cli(*common, *flags) == 0
        assert f"({processes} processes), position " in capsys.readouterr().err
        with open_read_models(pg_env, program=ledger.program) as models:
            assert read_model_digests(models) == reference
    assert REPLAY_PROCESSES_DEFAULT > 1
    assert run_cli(*common, "--processes", str(REPLAY_PROCESSES_MAX + 1)) == EXIT_USAGE
    assert f"at most {REPLAY_PROCESSES_MAX}" in capsys.readouterr().err


def test_a_split_replay_of_an_empty_log_leaves_the_read_models_at_zero(pg_env):
    ledger = LoyaltyLedger(env=pg_env)
    try:
        with open_read_models(pg_env, program=ledger.program) as models:
            done = replay(ledger, models, processes=2)
            assert done.position == 0 and set(models.positions().values()) == {0}
            assert _staging_schemas(models) == []
    finally:
        ledger.close()


def _staging_schemas(models) -> list[str]:
    with models.factory.datastore.transaction(commit=False) as cursor:
        rows = cursor.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE '%\\_replay\\_%' "
                              "ORDER BY nspname").fetchall()
    return [row["nspname"] for row in rows]


def test_staging_schemas_left_by_a_split_killed_after_its_merge_go_at_the_next_resume(
        loaded, pg_env, demo_program, monkeypatch):
    ledger, reference = loaded
    with open_read_models(pg_env, program=demo_program) as models:
        def killed_before_the_drop(models, schemas):
            if schemas:
                raise Crash("killed after the merge, before the staging schemas were dropped")

        monkeypatch.setattr(split_replay, "_drop_schemas", killed_before_the_drop)
        with pytest.raises(Crash):
            replay(ledger, models, processes=2,
                   batch_notifications_max=REPLAY_BATCH_NOTIFICATIONS_MAX)
        assert read_model_digests(models) == reference  # the merge committed
        assert len(_staging_schemas(models)) == 2
        monkeypatch.undo()
        done = resume(ledger, models, processes=3,
                      batch_notifications_max=REPLAY_BATCH_NOTIFICATIONS_MAX)
        assert done.notifications == 0 and _staging_schemas(models) == []
        assert read_model_digests(models) == reference
