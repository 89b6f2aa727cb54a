"""Every long-running entry point tunes the collector (``streams.gc_tuning.tune_gc``) with its
own settings once its start-up is done and before its main loop: the worker, the outbox
relay, the till API and the live follower. Each entry point runs in this process with its
main loop replaced by a recorder, so the order of the two calls is what is checked."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ledger.application import LoyaltyLedger
from projections.runner import open_read_models
from streams import worker
from streams.api import server
from streams.cli import audit
from streams.settings import Settings
from streams.topics import ensure_topics
from tests.support.services import lane_settings, own_topics, unique_database_name


class Calls(list):
    """The names of the calls made, in order; ``tune_gc`` also keeps the settings it got."""

    def tune_gc(self, settings):
        self.append(("tune_gc", settings))

    def main_loop(self, *args, **kwargs):
        self.append(("main loop", None))


@pytest.fixture
def calls() -> Calls:
    return Calls()


@pytest.fixture
def settings(kafka_bootstrap, embedded_pg, request) -> Iterator[Settings]:
    """A database of the test's own (dropped after it) and topics no other test uses."""
    name = unique_database_name(request.node.name)
    database = embedded_pg.create_database(name)
    made = Settings(bootstrap_servers=kafka_bootstrap, database_url=database.url,
                    partitions=1, **own_topics("gc"), **lane_settings())
    ensure_topics(made)
    yield made
    embedded_pg.drop_database(name)


def _tuned_then_looped(calls: Calls, settings) -> None:
    assert [name for name, _ in calls] == ["tune_gc", "main loop"]
    assert calls[0][1] == settings


def test_the_worker_tunes_the_collector_before_it_consumes(calls, settings, monkeypatch):
    class Worker:
        def __init__(self, *args, **kwargs):
            pass

        execute_from_commandline = calls.main_loop

    monkeypatch.setattr(worker, "tune_gc", calls.tune_gc)
    monkeypatch.setattr(worker.faust, "Worker", Worker)
    worker.run_worker(settings)
    _tuned_then_looped(calls, settings)


def test_the_relay_tunes_the_collector_before_it_relays(calls, settings, monkeypatch):
    monkeypatch.setattr(worker, "tune_gc", calls.tune_gc)
    monkeypatch.setattr(worker, "relay_until_stopped", calls.main_loop)
    worker.run_relay(settings)
    _tuned_then_looped(calls, settings)


def test_the_api_tunes_the_collector_before_it_serves(calls, settings, monkeypatch):
    monkeypatch.setattr(server, "tune_gc", calls.tune_gc)
    monkeypatch.setattr(server.uvicorn.Server, "run", calls.main_loop)
    server.run_api(settings)
    _tuned_then_looped(calls, settings)


def test_the_follower_tunes_the_collector_before_it_follows(calls, pg_env, monkeypatch):
    settings = Settings()
    monkeypatch.setattr(audit, "tune_gc", calls.tune_gc)
    monkeypatch.setattr(audit.follower, "follow", calls.main_loop)
    ledger = LoyaltyLedger(env=pg_env)
    try:
        with open_read_models(pg_env, ["balances"], ledger.program) as models:
            assert audit.follow(ledger, models, ["balances"], settings) is None
    finally:
        ledger.close()
    _tuned_then_looped(calls, settings)
