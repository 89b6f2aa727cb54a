"""A catch-up transaction in a few round trips (``projections.combined``, issue 21) against the
previous design, one statement per lock, read, write and position
(``read_models_combine_statements``), and the follower's asynchronous commit
(``follow_synchronous_commit``).

The rows must be bit for bit the same in both designs, whichever writes them
live batch by batch, and the same as a replay's.
"""

from __future__ import annotations

from collections import Counter
from contextlib import contextmanager

import psycopg
import pytest
from eventsourcing.persistence import IntegrityError, Tracking
from psycopg import pq
from psycopg.sql import SQL, Identifier

from ledger.application import LoyaltyLedger
from ledger.program import load_program
from ledger.settings import LedgerSettings, env_file_text, with_stack_env
from projections import combined, rows as rows_module
from projections.base import APPLICATION_NAME
from projections.follower import follow
from projections.runner import (READ_MODEL_NAMES, ReadModels, catch_up, open_read_models,
                                read_model_digests, replay)
from streams.devkit.demo import DEMO_PROGRAM_PATH
from streams.devkit.simulator import SimulationConfig, simulate_events
from tests.projections.random_stream import load_stream
from tests.support import builders as b
from tests.support.ledger_steps import apply
from tests.support.streamgen_contract2 import generate_contract_2_events

SIMULATED_MEMBERS = 40
SIMULATED_SEED = 11
TRANSFER_EVENTS = 150
LEDGER_BATCH_COMMANDS_MAX = 150
LIVE_BATCH_NOTIFICATIONS_MAX = 97  # several live transactions per ledger batch
PREVIOUS_SCHEMA = "previous_design"
ONE_BY_ONE_SCHEMA = "reads_one_by_one"
SCHEMA_ENV = "PROJECTIONS_POSTGRES_SCHEMA"
COMBINE_ENV = "LOYALTY_READ_MODELS_COMBINE_STATEMENTS"
# one purchase of a known member: a lock statement, one pipeline of reads, one write statement
COMBINED_ROUND_TRIPS_MAX = 3
PREVIOUS_ROUND_TRIPS_MIN = 20


class Stop(Exception):
    """Raised from the follower's lag callback to end ``follow``."""


@pytest.fixture(scope="module")
def demo_program():
    return load_program(DEMO_PROGRAM_PATH)


def _no_year_end(ledger, year: int) -> list[dict]:
    return []


def _simulated_events() -> list[dict]:
    """The simulator's chain on the demo program (campaigns, holds, enrollments, NPS, erasures,
    referrals) with contract 2's transfers and adjustments."""
    return [*simulate_events(SimulationConfig(seed=SIMULATED_SEED, members=SIMULATED_MEMBERS)),
            *generate_contract_2_events(SIMULATED_SEED, TRANSFER_EVENTS)]


def _schema_env(pg_env: dict, schema: str) -> dict:
    """``pg_env`` with the read models in a new ``schema`` of the same database."""
    with open_read_models(pg_env, ["balances"]) as models, \
            models.factory.datastore.transaction(commit=True) as cursor:
        cursor.execute(SQL("CREATE SCHEMA {}").format(Identifier(schema)))
    return {**pg_env, SCHEMA_ENV: schema}


def test_both_designs_following_live_write_the_rows_of_a_replay(pg_env, demo_program):
    ledger = LoyaltyLedger(env=pg_env, program=demo_program)
    with open_read_models(pg_env, program=demo_program) as new, \
            open_read_models({**_schema_env(pg_env, PREVIOUS_SCHEMA), COMBINE_ENV: "false"},
                             program=demo_program) as old:
        assert new.combines_statements and not old.combines_statements  # from the setting

        def follow_both() -> None:  # the same live windows, one design each
            for models in (new, old):
                catch_up(ledger, models, batch_notifications_max=LIVE_BATCH_NOTIFICATIONS_MAX)

        load_stream(ledger, iter(_simulated_events()), LEDGER_BATCH_COMMANDS_MAX, _no_year_end,
                    after_batch=follow_both)
        live_new, live_old = read_model_digests(new), read_model_digests(old)
        assert live_new == live_old
        assert new.positions() == old.positions() == dict.fromkeys(READ_MODEL_NAMES,
                                                                   ledger.fact_log.head())
        _assert_the_stream_is_varied(new)
        replay(ledger, new)
        replay(ledger, old)
        assert read_model_digests(new) == live_new and read_model_digests(old) == live_old
    ledger.close()


def _assert_the_stream_is_varied(models: ReadModels) -> None:
    """Campaigns, holds, NPS answers and transfers all reached the read models."""
    with models.factory.datastore.transaction(commit=False) as cursor:
        counts = cursor.execute(
            "SELECT (SELECT count(*) FROM campaigns) AS campaigns,"
            " (SELECT count(*) FROM kpi_nps) AS nps,"
            " (SELECT count(*) FROM balances WHERE lifetime_transferred_in > 0) AS transfers,"
            " (SELECT count(*) FROM kpi_checks) AS checks"
        ).fetchone()
    assert min(counts.values()) > 0, counts


@pytest.fixture
def followed(pg_env):
    """A ledger with a few members and read models caught up with it."""
    ledger = LoyaltyLedger(env=pg_env)
    apply(ledger, *[b.purchase(f"M-{n}", "2026-03-01T10:00:00Z", 5_000 + n) for n in range(5)])
    with open_read_models(pg_env) as models:
        catch_up(ledger, models, batch_notifications_max=LIVE_BATCH_NOTIFICATIONS_MAX)
    yield ledger
    ledger.close()


class RoundTrips:
    """Statements the read models' connections send, counted as round trips: each one alone,
    or a pipeline of them."""

    def __init__(self, models: ReadModels, monkeypatch) -> None:
        self.connections: set[int] = set()
        self.counts: Counter[str] = Counter()
        datastore = models.factory.datastore
        transaction, execute = datastore.transaction, psycopg.Cursor.execute
        pipeline = psycopg.Connection.pipeline

        @contextmanager
        def noted_transaction(*args, **kwargs):
            with transaction(*args, **kwargs) as cursor:
                self.connections.add(id(cursor.connection))
                yield cursor

        def counted_execute(cursor, *args, **kwargs):
            if id(cursor.connection) in self.connections:
                in_pipeline = cursor.connection.pgconn.pipeline_status != pq.PipelineStatus.OFF
                self.counts["pipelined" if in_pipeline else "alone"] += 1
            return execute(cursor, *args, **kwargs)

        def counted_pipeline(connection, *args, **kwargs):
            if id(connection) in self.connections:
                self.counts["pipelines"] += 1
            return pipeline(connection, *args, **kwargs)

        monkeypatch.setattr(datastore, "transaction", noted_transaction)
        monkeypatch.setattr(psycopg.Cursor, "execute", counted_execute)
        monkeypatch.setattr(psycopg.Connection, "pipeline", counted_pipeline)

    @property
    def round_trips(self) -> int:
        return self.counts["alone"] + self.counts["pipelines"]


@pytest.mark.parametrize("combines", [True, False], ids=["combined", "previous-design"])
def test_a_live_transaction_of_one_purchase_takes_three_round_trips(followed, pg_env,
                                                                    monkeypatch, combines):
    ledger = followed
    apply(ledger, b.purchase("M-1", "2026-03-02T10:00:00Z", 7_000))  # a known member buys again
    with open_read_models(pg_env) as models:
        models.combines_statements = combines
        positions = models.positions()
        trips = RoundTrips(models, monkeypatch)
        done = catch_up(ledger, models, batch_notifications_max=LIVE_BATCH_NOTIFICATIONS_MAX,
                        positions=positions)
        monkeypatch.undo()
        assert done.transactions == 1 and done.notifications >= 1
        assert done.positions == models.positions()
    if combines:
        assert trips.round_trips <= COMBINED_ROUND_TRIPS_MAX, trips.counts
        assert trips.counts["pipelines"] == 1 and trips.counts["pipelined"] >= 5, trips.counts
    else:
        assert trips.round_trips >= PREVIOUS_ROUND_TRIPS_MIN, trips.counts
        assert trips.counts["pipelines"] == 0, trips.counts


def test_reads_too_large_for_a_pipeline_run_one_by_one_to_the_same_rows(followed, pg_env,
                                                                        monkeypatch):
    ledger = followed
    with open_read_models(pg_env) as pipelined, \
            open_read_models(_schema_env(pg_env, ONE_BY_ONE_SCHEMA)) as one_by_one:
        catch_up(ledger, one_by_one, batch_notifications_max=LIVE_BATCH_NOTIFICATIONS_MAX)
        apply(ledger, *[b.purchase(f"M-{n}", "2026-03-03T10:00:00Z", 9_000) for n in range(5)])
        for models, params_bytes_max in ((pipelined, rows_module.PIPELINE_PARAMS_BYTES_MAX),
                                         (one_by_one, 0)):
            monkeypatch.setattr(rows_module, "PIPELINE_PARAMS_BYTES_MAX", params_bytes_max)
            trips = RoundTrips(models, monkeypatch)
            catch_up(ledger, models, batch_notifications_max=LIVE_BATCH_NOTIFICATIONS_MAX)
            monkeypatch.undo()
            assert (trips.counts["pipelines"] > 0) == (params_bytes_max > 0), trips.counts
        assert read_model_digests(pipelined) == read_model_digests(one_by_one)


def test_tracking_that_does_not_move_forward_fails_and_writes_nothing(followed, pg_env):
    with open_read_models(pg_env) as models:
        view = models.view("balances")
        position, balances = view.position(), _total_balance(models)
        stale = view.track_statement(Tracking(APPLICATION_NAME, position))  # not past it
        with pytest.raises(IntegrityError), models.factory.datastore.transaction(commit=True) as cursor:
            combined.write_together(cursor, [(SQL("UPDATE balances SET balance = balance + 1"), ())],
                                    {"balances": stale})
        assert view.position() == position and _total_balance(models) == balances


def _total_balance(models: ReadModels) -> int:
    with models.factory.datastore.transaction(commit=False) as cursor:
        return cursor.execute("SELECT sum(balance) AS total FROM balances").fetchone()["total"]


@pytest.mark.parametrize("combines", [True, False], ids=["combined", "previous-design"])
@pytest.mark.parametrize("synchronous", [False, True], ids=["asynchronous", "synchronous"])
def test_the_follower_commits_asynchronously_only_when_set_and_only_itself(
        pg_env, monkeypatch, combines, synchronous):
    _synchronous_commit_by_default(pg_env)  # the test server's default is off (not durable)
    ledger = LoyaltyLedger(env=pg_env)
    apply(ledger, b.purchase("M-2", "2026-03-04T10:00:00Z", 3_000))
    seen = []
    with open_read_models(pg_env) as models:
        models.combines_statements = combines
        balances = models.projections["balances"]
        handle = balances.handle

        def handle_and_look(handled, rows):
            seen.append(rows.cursor.execute("SHOW synchronous_commit").fetchone()["synchronous_commit"])
            handle(handled, rows)

        def stop_when_level(name: str, behind: int) -> None:
            if seen and behind == 0 and name == READ_MODEL_NAMES[-1]:
                raise Stop

        monkeypatch.setattr(balances, "handle", handle_and_look)
        settings = LedgerSettings(follow_poll_interval_ms=1, follow_synchronous_commit=synchronous)
        with pytest.raises(Stop):
            follow(ledger, models, settings, record_lag=stop_when_level)
        with models.factory.datastore.transaction(commit=False) as cursor:  # SET LOCAL: gone
            after = cursor.execute("SHOW synchronous_commit").fetchone()["synchronous_commit"]
    assert seen == ["on" if synchronous else "off"]
    assert after == "on"
    with ledger.recorder.datastore.transaction(commit=False) as cursor:  # the ledger's own
        assert cursor.execute("SHOW synchronous_commit").fetchone()["synchronous_commit"] == "on"
    ledger.close()


def _synchronous_commit_by_default(pg_env: dict) -> None:
    """New sessions of the test's database commit synchronously (as a durable server does)."""
    with open_read_models(pg_env, ["balances"]) as models, \
            models.factory.datastore.transaction(commit=True) as cursor:
        cursor.execute(SQL("ALTER DATABASE {} SET synchronous_commit = on").format(
            Identifier(pg_env["POSTGRES_DBNAME"])))


def test_the_settings_have_environment_variables_and_restore_the_previous_design():
    defaults = LedgerSettings.from_env({})
    assert defaults.read_models_combine_statements and not defaults.follow_synchronous_commit
    previous = LedgerSettings.from_env({COMBINE_ENV: "false",
                                        "LOYALTY_FOLLOW_SYNCHRONOUS_COMMIT": "true"})
    assert not previous.read_models_combine_statements and previous.follow_synchronous_commit


def test_a_value_from_a_stacks_env_file_reaches_the_read_models(pg_env, tmp_path, monkeypatch):
    """``LOYALTY_READ_MODELS_COMBINE_STATEMENTS`` set only in a ``loyalty up`` stack's env file
    reaches ``open_read_models`` through the store environment a command builds."""
    monkeypatch.delenv(COMBINE_ENV, raising=False)
    stack = tmp_path / ".loyalty"
    stack.mkdir()
    (stack / "env").write_text(env_file_text({COMBINE_ENV: "false"}), encoding="utf-8")
    settings = LedgerSettings.from_env(with_stack_env({}, cwd=tmp_path))
    with open_read_models(pg_env | settings.ledger_env(), ["balances"]) as models:
        assert models.combines_statements is False
    with open_read_models(pg_env | LedgerSettings.from_env({}).ledger_env(), ["balances"]) as models:
        assert models.combines_statements is True
