"""Shared fixtures: the embedded services and a ledger on each backend.

``ledger`` runs every test that uses it twice: on eventsourcing's in-memory
store and on the embedded PostgreSQL (a fresh database per test), so the same
suite holds on both backends (STYLE 9).
"""

from __future__ import annotations

import os

import pytest

from ledger.application import LoyaltyLedger
from tests.support.services import *  # noqa: F401,F403  (embedded_pg, kafka_bootstrap, pg_env)

BACKENDS = ["memory", "postgres"]


@pytest.fixture(params=BACKENDS)
def ledger_env(request) -> dict:
    if request.param == "memory":
        return {}
    return request.getfixturevalue("pg_env")


@pytest.fixture
def ledger(ledger_env) -> LoyaltyLedger:
    app = LoyaltyLedger(env=ledger_env)
    yield app
    app.close()


LONG_FAULTS_ENV = "LOYALTY_LONG_FAULTS"
BROKER_FIXTURES = ("kafka_bootstrap", "lane_broker_env")


@pytest.hookimpl(tryfirst=True)  # before ``-m`` selects by marker
def pytest_collection_modifyitems(config, items):
    """Every test that uses the session's broker is marked ``broker``; then
    the ``slow`` tests are left out unless asked for."""
    mark_broker_tests(items)
    deselect_slow_tests(config, items)


def mark_broker_tests(items) -> None:
    """``broker``: the test talks to a broker (``-m broker`` runs them, on Apache
    Kafka with LOYALTY_TEST_BROKER=kafka). Tests that use a broker fixture,
    directly or through another fixture, are marked here; tests that start one
    through the product are marked in their modules."""
    for item in items:
        if any(name in BROKER_FIXTURES for name in getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.broker)


def deselect_slow_tests(config, items) -> None:
    """``slow`` tests (the long fault campaign: minutes) run only when asked for,
    with ``-m slow`` or LOYALTY_LONG_FAULTS=1; otherwise they are deselected.

    Deselected, not skipped: nothing is missing, the default run just leaves
    the long variants out (their short versions run every time).
    """
    asked = os.environ.get(LONG_FAULTS_ENV) == "1" or "slow" in (config.getoption("markexpr") or "")
    if asked:
        return
    slow = [item for item in items if item.get_closest_marker("slow")]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if not item.get_closest_marker("slow")]
