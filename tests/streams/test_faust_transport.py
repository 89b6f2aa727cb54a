"""The worker's consumer gets ``consumer_fetch_max_wait_ms``, not faust's hard-coded 1,500 ms."""

from __future__ import annotations

import asyncio
from unittest import mock

from streams.faust_transport import CONSUMER_FETCH_MAX_WAIT_MS_DEFAULT
from streams.settings import Settings
from streams.worker import create_app

FAUST_HARD_CODED_FETCH_WAIT_MS = 1500
UNREACHABLE = dict(bootstrap_servers="localhost:1", database_url="postgresql://u:p@localhost:1/db",
                   consumer_path="faust")  # faust's consumer is built on the faust path only


async def _worker_consumer_fetch_wait_ms(settings: Settings) -> int:
    with mock.patch("streams.worker.open_ledger"):  # no database needed to build the app
        app = create_app(settings)
    consumer = app.consumer._thread._create_worker_consumer(app.transport)  # built, not started
    try:
        return consumer._fetch_max_wait_ms
    finally:
        await consumer.stop()


def test_the_setting_reaches_the_aiokafka_consumer():
    settings = Settings(consumer_fetch_max_wait_ms=77, **UNREACHABLE)
    assert asyncio.run(_worker_consumer_fetch_wait_ms(settings)) == 77


def test_the_default_is_ours_not_fausts():
    waited_ms = asyncio.run(_worker_consumer_fetch_wait_ms(Settings(**UNREACHABLE)))
    assert waited_ms == CONSUMER_FETCH_MAX_WAIT_MS_DEFAULT == Settings().consumer_fetch_max_wait_ms
    assert waited_ms < FAUST_HARD_CODED_FETCH_WAIT_MS


def test_the_environment_sets_it():
    settings = Settings.from_env({"LOYALTY_CONSUMER_FETCH_MAX_WAIT_MS": "25"}, **UNREACHABLE)
    assert asyncio.run(_worker_consumer_fetch_wait_ms(settings)) == 25
