"""Holds through the till API over real HTTP (issue 15's first "must hold"): a
``loyalty api`` process and a ``loyalty worker`` process on the embedded broker
and PostgreSQL.

A member with 1,000 points; 20 tills, each with a key bound to its own store,
hold 100 points at the same moment: exactly 10 are approved and 10 rejected
``insufficient_points``, leaving balance 0 and held 1,000. Then the tills
capture (whole and part), void, leave two holds to run out (released by the
member's next event, whatever it is) and cancel one capture: every figure is
what CONTRACT section 7 says.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter

import pytest

from tests.support import builders as b
from tests.support.api import running_stack, warm_up

REPLY_TIMEOUT_MS = 20_000  # the worker may still be joining its group at the first write
TILLS = 20
HOLD_POINTS = 100
AT = "2025-06-01T12:{:02d}:00Z".format
TILL_SESSIONS = 15
TILLS_RUN_S_MAX = 60


@pytest.fixture(scope="module")
def stack(kafka_bootstrap, embedded_pg, tmp_path_factory):
    with running_stack(kafka_bootstrap, embedded_pg, tmp_path_factory.mktemp("api-holds"),
                       reply_timeout_ms=REPLY_TIMEOUT_MS) as stack:
        warm_up(stack)
        yield stack


def store(till: int) -> str:
    return f"store-{till:02d}"


def holds_from_every_till(stack, member: str) -> list[dict]:
    """Each till (its own client and key, bound to its store) posts one hold at once."""
    answers: list = [None] * TILLS
    keys = [stack.key(["read", "redeem"], [store(till)]) for till in range(TILLS)]

    def hold(till: int) -> None:
        event = b.hold(member, AT(0), HOLD_POINTS, AT(30), event_id=f"{member}-hold-{till:02d}",
                       store_id=store(till))
        with stack.client(keys[till]) as client:
            response = client.post("/v1/events", json=event)
            assert response.status_code == 200, response.text
            answers[till] = response.json()

    threads = [threading.Thread(target=hold, args=(till,)) for till in range(TILLS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


def test_twenty_tills_hold_at_once_then_capture_void_expire_and_cancel(stack):
    member = f"m-{uuid.uuid4().hex[:10]}"
    with stack.client(stack.key()) as office:
        def post(event: dict) -> dict:
            response = office.post("/v1/events", json=event)
            assert response.status_code == 200, response.text
            return response.json()

        # A member with 1,000 points
        assert post(b.purchase(member, "2025-06-01T11:00:00Z", 100_000))["balance"] == 1000
        # 20 concurrent holds of 100: exactly 10 approved, 10 rejected insufficient_points
        answers = holds_from_every_till(stack, member)
        assert Counter((a["outcome"], a["reason"]) for a in answers) == {
            ("points_held", None): 10, ("redemption_hold_rejected", "insufficient_points"): 10}
        view = office.get(f"/v1/members/{member}").json()
        assert (view["balance"], view["held"], len(view["holds"])) == (0, 1000, 10)
        approved = sorted(a["event_id"] for a in answers if a["outcome"] == "points_held")
        whole, partial, voided, left = approved[:4], approved[4:6], approved[6:8], approved[8:]
        # Four captured whole, two captured 30 of 100 (70 come back each), two voided
        for hold_id in whole:
            answer = post(b.capture(member, AT(5), hold_id, event_id=f"{hold_id}-capture"))
            assert (answer["outcome"], answer["points"]) == ("points_redeemed", HOLD_POINTS)
        for hold_id in partial:
            answer = post(b.capture(member, AT(6), hold_id, 30, event_id=f"{hold_id}-capture"))
            assert (answer["outcome"], answer["points"]) == ("points_redeemed", 30)
        for hold_id in voided:
            answer = post(b.void(member, AT(7), hold_id))
            assert (answer["outcome"], answer["points"]) == ("hold_released", HOLD_POINTS)
        view = office.get(f"/v1/members/{member}").json()
        assert (view["balance"], view["held"]) == (2 * 70 + 2 * 100, 200)
        assert sorted(hold["hold_event_id"] for hold in view["holds"]) == left
        # A capture of a voided hold is unknown; more than a hold holds exceeds it
        assert post(b.capture(member, AT(8), voided[0]))["reason"] == "unknown_hold"
        assert post(b.capture(member, AT(8), left[0], 101))["reason"] == "exceeds_hold"
        # The member's next event after 12:30 releases the last two holds first (expired)
        answer = post(b.void(member, AT(45), "no-such-hold"))
        assert (answer["outcome"], answer["reason"]) == ("redemption_void_rejected", "unknown_hold")
        assert (answer["balance"], answer["held"]) == (540, 0)
        history = office.get(f"/v1/members/{member}/history").json()["facts"]
        released = [f["data"] for f in history if f["type"] == "hold_released"]
        assert Counter(f["reason"] for f in released) == {
            "partial_capture": 2, "voided": 2, "expired": 2}
        # A capture is cancelled: its 100 points come back to their lot
        answer = post(b.cancel(member, AT(50), f"{whole[0]}-capture"))
        assert (answer["outcome"], answer["points"], answer["balance"]) == (
            "redemption_cancelled", HOLD_POINTS, 640)
        assert post(b.cancel(member, AT(51), f"{whole[0]}-capture"))["reason"] == "already_cancelled"
        view = office.get(f"/v1/members/{member}").json()
        # 1,000 earned - 460 redeemed + 100 cancelled = 640, all in the purchase's lot
        assert (view["balance"], view["held"], view["holds"]) == (640, 0, [])
        assert [lot["points"] for lot in view["lots"]] == [640]


def test_a_store_bound_till_cannot_hold_for_another_store(stack):
    member = f"m-{uuid.uuid4().hex[:10]}"
    with stack.client(stack.key(["read", "redeem"], [store(1)])) as till:
        elsewhere = b.hold(member, AT(0), 10, AT(30), store_id=store(2))
        assert till.post("/v1/events", json=elsewhere).status_code == 403
        unnamed = b.hold(member, AT(0), 10, AT(30))
        assert till.post("/v1/events", json=unnamed).status_code == 403


def test_the_demos_simulated_tills_hold_and_settle_through_the_api(stack):
    from streams.devkit.demo_tills import SimulatedTills

    members = 3
    with stack.client(stack.key()) as office:
        for number in range(1, members + 1):
            purchase = b.purchase(f"M-{number:06d}", "2025-06-01T11:00:00Z", 200_000)
            assert office.post("/v1/events", json=purchase).status_code == 200
    tills = SimulatedTills(stack.url, stack.key(["read", "redeem"]), members, seed=3,
                           till_sessions_per_s=50)
    tills.start()
    deadline = time.monotonic() + TILLS_RUN_S_MAX
    while tills.counts.sessions < TILL_SESSIONS and time.monotonic() < deadline:
        time.sleep(0.1)
    tills.stop.set()
    tills.join()
    assert tills.error is None and tills.counts.sessions >= TILL_SESSIONS
    counts = tills.counts.snapshot()
    assert counts.total("redemption_hold", "points_held") > 0
    assert counts.total("redemption_capture", "points_redeemed") > 0
    assert {outcome for _, outcome, _ in counts.outcomes} <= {
        "points_held", "redemption_hold_rejected", "points_redeemed", "hold_released",
        "redemption_capture_rejected", "redemption_void_rejected", "redemption_cancelled",
        "redemption_cancel_rejected"}
    with stack.client(stack.key()) as office:
        for number in range(1, members + 1):
            view = office.get(f"/v1/members/M-{number:06d}").json()
            assert view["held"] == sum(hold["points"] for hold in view["holds"])
