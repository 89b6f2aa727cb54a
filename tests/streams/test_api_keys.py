"""Till API keys: random (>= 128 bits), stored hashed, compared in constant time,
scoped and store-bound; the ``api-key`` commands; the per-key rate limit; and no
key in any log line of the API while it serves requests with, without and
with wrong keys (uvicorn in this process, so ``caplog`` sees every record)."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import uuid
from collections.abc import Iterator

import httpx
import psycopg
import pytest
import uvicorn

from streams.api.keys import (KEY_SECRET_BYTES, TABLE, InvalidKeyRequest, KeyStore, key_id_of, key_store,
                              scope_for_type)
from streams.api.limits import RateLimiter
from streams.api.server import uvicorn_config
from streams.cli import main
from streams.devkit.embedded_broker import find_free_port
from streams.settings import Settings
from streams.topics import ensure_topics
from tests.support import builders as b

SERVER_START_TIMEOUT_S = 60
KEY_BITS_MIN = 128


@pytest.fixture
def database_url(embedded_pg):
    name = f"keys_{uuid.uuid4().hex[:12]}"
    yield embedded_pg.create_database(name).url
    embedded_pg.drop_database(name)


@pytest.fixture
def store(database_url) -> Iterator[KeyStore]:
    with key_store(database_url) as store:
        store.ensure_table()
        yield store


def test_a_key_is_random_stored_only_as_its_hash_and_checked_exactly(store, database_url):
    key, record = store.create(["read", "earn"], ["store-1"])
    secret = key.split("_", 2)[2]
    assert len(secret) * 6 >= KEY_SECRET_BYTES * 8 >= KEY_BITS_MIN  # base64url: 6 bits a character
    assert key_id_of(key) == record.key_id
    with psycopg.connect(database_url) as connection:
        rows = connection.execute(f"SELECT * FROM {TABLE}").fetchall()
    assert secret not in repr(rows) and hashlib.sha256(key.encode()).hexdigest() in repr(rows)
    found = store.authenticate(key)
    assert (found.scopes, found.stores) == ({"read", "earn"}, {"store-1"})
    assert store.authenticate(key[:-1] + ("A" if key[-1] != "A" else "B")) is None
    assert store.authenticate("lk_" + record.key_id) is None and store.authenticate("") is None
    assert store.revoke(record.key_id) and not store.revoke(record.key_id)
    assert store.authenticate(key) is None


def test_scopes_are_checked_when_a_key_is_made_and_map_event_types(store):
    with pytest.raises(InvalidKeyRequest):
        store.create(["read", "superuser"])
    with pytest.raises(InvalidKeyRequest):
        store.create([])
    assert [scope_for_type(t) for t in ("purchase", "redemption_hold", "referral", "adjustment",
                                        "a_type_added_later")] == ["earn", "redeem", "crm", "admin", "admin"]
    _, key = store.create(["redeem"], ["s-1"])
    assert key.may_submit("redemption") and not key.may_submit("purchase")
    assert key.may_submit_for_store("s-1") and not key.may_submit_for_store(None)


def test_api_key_commands_print_the_key_once_and_never_log_it(database_url, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    assert main(["api-key", "create", "--scopes", "read,redeem", "--stores", "s-1,s-2",
                 "--database-url", database_url]) == 0
    key = capsys.readouterr().out.strip()
    with key_store(database_url) as store:
        assert key.startswith("lk_") and store.authenticate(key) is not None
    assert main(["api-key", "list", "--database-url", database_url]) == 0
    listing = capsys.readouterr().out
    assert key_id_of(key) in listing and "read,redeem" in listing and "s-1,s-2" in listing
    assert key.split("_", 2)[2] not in listing
    assert main(["api-key", "revoke", key_id_of(key), "--database-url", database_url]) == 0
    assert "revoked" in capsys.readouterr().out
    assert main(["api-key", "create", "--scopes", "root", "--database-url", database_url]) == 2
    assert key not in caplog.text


def test_the_rate_limit_allows_a_burst_then_the_rate():
    now = [0.0]
    limiter = RateLimiter(rate_requests_per_s=2, burst_requests=3, clock_s=lambda: now[0])
    assert [limiter.retry_after_s("k") for _ in range(4)] == [0, 0, 0, 1]
    assert limiter.retry_after_s("other") == 0
    now[0] = 0.5  # one token back
    assert [limiter.retry_after_s("k"), limiter.retry_after_s("k")] == [0, 1]


def test_no_key_appears_in_any_log_line_while_the_api_serves(kafka_bootstrap, database_url, store, caplog):
    caplog.set_level(logging.DEBUG)
    suffix = uuid.uuid4().hex[:8]
    settings = Settings(bootstrap_servers=kafka_bootstrap, database_url=database_url, partitions=1,
                        events_topic=f"events-{suffix}", api_port=find_free_port(), reply_timeout_ms=100)
    ensure_topics(settings)
    key = store.create(["read", "earn"])[0]
    server = uvicorn.Server(uvicorn_config(settings, log_level="debug"))
    thread = threading.Thread(target=server.run)
    thread.start()
    try:
        url = f"http://127.0.0.1:{settings.api_port}"
        _wait_started(server)
        statuses = []
        for presented in (key, key[:-2] + "xx", "not-even-a-key"):
            headers = {"Authorization": f"Bearer {presented}"}
            statuses.append(httpx.get(f"{url}/v1/members/m-1", headers=headers).status_code)
            statuses.append(httpx.post(f"{url}/v1/events", headers=headers,
                                       json=b.purchase("m-1", "2025-03-01T10:00:00Z", 100)).status_code)
        assert statuses == [404, 202, 401, 401, 401, 401]  # no worker: the write is accepted, 202
    finally:
        server.should_exit = True
        thread.join()
    assert caplog.records  # the capture was live (uvicorn and aiokafka log at debug)
    assert key not in caplog.text and key.split("_", 2)[2] not in caplog.text
    assert key[:-2] + "xx" not in caplog.text and "not-even-a-key" not in caplog.text


def _wait_started(server: uvicorn.Server) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
