"""Shared fixtures: the embedded services and a ledger on each backend.

``ledger`` runs every test that uses it twice: on eventsourcing's in-memory
store and on the embedded PostgreSQL (a fresh database per test), so the same
suite holds on both backends (STYLE 9).
"""

from __future__ import annotations

import pytest

from ledger.application import LoyaltyLedger
from tests.service_fixtures import *  # noqa: F401,F403  (embedded_pg, kafka_bootstrap, pg_env)

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
