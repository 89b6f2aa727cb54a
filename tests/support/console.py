"""The operator console over HTTP for tests: sign in with a key, read forms' CSRF tokens, put a
message on the events topic as a producer would (to make dead letters).

``console_stack`` starts the stack; ``console_client(stack, key)`` is an httpx client of its
first API, signed in.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from kafka import KafkaProducer

from tests.support.api import HTTP_TIMEOUT_S, POLL_INTERVAL_S, ApiStack, running_stack, warm_up

CSRF_FIELD = re.compile(r'name="csrf" value="([^"]+)"')
DEAD_LETTER_LINK = re.compile(r'/console/dead-letters/([0-9a-f-]{36})"')
REPLY_TIMEOUT_MS = 20_000  # the worker may still be joining its group at the first write


@contextmanager
def console_stack(kafka_bootstrap: str, embedded_pg, log_dir: Path) -> Iterator[ApiStack]:
    """An API and a worker whose group has answered one write (``tests/support/api.py``)."""
    with running_stack(kafka_bootstrap, embedded_pg, log_dir, reply_timeout_ms=REPLY_TIMEOUT_MS) as stack:
        warm_up(stack)
        yield stack


def csrf_of(html: str) -> str:
    match = CSRF_FIELD.search(html)
    assert match, "the page has no CSRF field"
    return match.group(1)


def sign_in(client: httpx.Client, key: str) -> httpx.Response:
    form = client.get("/console/sign-in")
    return client.post("/console/sign-in", data={"csrf": csrf_of(form.text), "api_key": key})


def console_client(stack: ApiStack, key: str) -> httpx.Client:
    client = httpx.Client(base_url=stack.url, timeout=HTTP_TIMEOUT_S)
    answer = sign_in(client, key)
    assert answer.status_code == 303 and answer.headers["location"] == "/console/overview", answer.text
    return client


def produce_raw(stack: ApiStack, messages: list[tuple[bytes | None, bytes]]) -> None:
    """``(key, value)`` messages on the stack's events topic, as a POS would send them (nothing checked)."""
    producer = KafkaProducer(bootstrap_servers=stack.settings.bootstrap_servers)
    sent = [producer.send(stack.settings.events_topic, key=key, value=value) for key, value in messages]
    for future in sent:
        future.get(timeout=HTTP_TIMEOUT_S)
    producer.close()


def wait_for_dead_letter(client: httpx.Client, marker: str, timeout_s: float) -> str:
    """The id of the dead letter whose row shows ``marker`` (polling the dead-letters page)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for row in client.get("/console/dead-letters").text.split('<tr class="dead-letter">')[1:]:
            if marker in row:
                return DEAD_LETTER_LINK.search(row).group(1)
        time.sleep(POLL_INTERVAL_S)
    raise AssertionError(f"no dead letter showing {marker!r} within {timeout_s} s")
