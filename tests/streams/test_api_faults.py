"""The till API under faults: an event the API produced is never lost when the API
is killed before it answers, and one posted five times around a worker's SIGKILL
has one outcome, which every 200 and every later ``GET /v1/events/{id}`` carries."""

from __future__ import annotations

import signal
import threading
import time
import uuid

import httpx
import pytest

from tests.support import builders as b
from tests.support.api import CONCURRENT_POSTS, messages_in, post_concurrently, running_stack, wait_for_outcome

OUTCOME_TIMEOUT_S = 90
PRODUCE_WAIT_S = 30
REPLY_TIMEOUT_MS = 3000


@pytest.fixture
def stack(kafka_bootstrap, embedded_pg, tmp_path):
    with running_stack(kafka_bootstrap, embedded_pg, tmp_path, workers=0,
                       reply_timeout_ms=REPLY_TIMEOUT_MS) as stack:
        yield stack


def wait_until(check, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_killing_the_api_right_after_it_produced_loses_nothing(stack):
    key = stack.key()
    purchase = b.purchase(f"m-{uuid.uuid4().hex[:8]}", "2025-03-01T10:00:00Z", 25000)
    before = messages_in(stack)
    answers: list = []

    def post() -> None:  # no worker yet: the API produces, then waits for an outcome
        try:
            with stack.client(key) as till:
                answers.append(till.post("/v1/events", json=purchase))
        except httpx.HTTPError as error:
            answers.append(error)

    poster = threading.Thread(target=post)
    poster.start()
    wait_until(lambda: messages_in(stack) == before + 1, PRODUCE_WAIT_S)
    stack.apis[0].stop(signal.SIGKILL)
    poster.join()
    assert isinstance(answers[0], httpx.HTTPError)  # the till got no answer

    stack.start_workers(1)
    api = stack.start_api()
    with stack.client(key, api) as till:
        outcome = wait_for_outcome(till, purchase["member_id"], purchase["event_id"], OUTCOME_TIMEOUT_S)
        assert (outcome["outcome"], outcome["points"], outcome["balance"]) == ("points_earned", 250, 250)
        assert till.post("/v1/events", json=purchase).json() == outcome


def test_five_posts_of_one_event_around_a_worker_kill_have_one_outcome(stack):
    key = stack.key()
    stack.start_workers(1)
    m = f"m-{uuid.uuid4().hex[:8]}"
    with stack.client(key) as till:
        warm_up = b.purchase(m, "2025-03-01T10:00:00Z", 10000)
        wait_for_outcome_after_post(till, warm_up)
        stack.workers[0].process.send_signal(signal.SIGKILL)
        stack.workers[0].process.wait()
        redemption = b.redemption(m, "2025-03-02T10:00:00Z", 60)
        answers = post_concurrently(stack, key, redemption)
        assert {a.status_code for a in answers} <= {200, 202}
        stack.start_workers(1)
        outcome = wait_for_outcome(till, m, redemption["event_id"], OUTCOME_TIMEOUT_S)
        assert (outcome["outcome"], outcome["points"], outcome["balance"]) == ("points_redeemed", 60, 40)
        assert all(a.json() == outcome for a in answers if a.status_code == 200)
        for answer in answers:
            if answer.status_code == 202:
                assert answer.headers["Location"].startswith(f"/v1/events/{redemption['event_id']}")
        again = post_concurrently(stack, key, redemption)
        assert [a.json() for a in again] == [outcome] * CONCURRENT_POSTS
        facts = till.get(f"/v1/members/{m}/history").json()["facts"]
        caused = [f["type"] for f in facts if f["source_event_id"] == redemption["event_id"]]
        assert caused == ["points_redeemed"]


def wait_for_outcome_after_post(till: httpx.Client, event: dict) -> dict:
    till.post("/v1/events", json=event)
    return wait_for_outcome(till, event["member_id"], event["event_id"], OUTCOME_TIMEOUT_S)
