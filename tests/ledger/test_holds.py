"""Section 7 as stories: holds, captures, voids, hold expiry and cancelled redemptions.

Each test runs on the in-memory store and on the embedded PostgreSQL (the
``ledger_env`` fixture). ``apply`` checks contract 2's invariant (balance +
held + pending = in - out, and held = the open holds) after every event.
The member earns 1,000 points at 10:00 on 1 March 2025 unless a story says
otherwise; holds may last 30 minutes (the default program).
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone

import orjson
import pytest
from eventsourcing.domain import Snapshot

from ledger.application import LoyaltyLedger
from ledger.domain import LoyaltyAccount, account_id, fact_type, is_outcome
from ledger.program import DEFAULT_PROGRAM_PATH, ProgramError, load_program, parse_program
from streams.cli import main
from tests.support import builders as b
from tests.ledger.test_rules_contract2 import ledger_on  # noqa: F401 - the fixture, shared
from tests.support.ledger_steps import account, apply, facts

M = "holder-1"
DEFAULT_TEXT = DEFAULT_PROGRAM_PATH.read_text()


def at(clock: str) -> str:
    """A time on 1 March 2025 (``"10:05"``), UTC."""
    return f"2025-03-01T{clock}:00Z"


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(timezone.utc)


def earn_1000(ledger: LoyaltyLedger, member: str = M, clock: str = "10:00") -> dict:
    purchase = b.purchase(member, at(clock), 100_000)
    apply(ledger, purchase)
    assert account(ledger, member).balance == 1000
    return purchase


def figures(ledger: LoyaltyLedger, member: str = M) -> tuple[int, int, int, int, int]:
    """(balance, held, lifetime_redeemed, lifetime_cancelled, lifetime_expired)."""
    found = account(ledger, member)
    return (found.balance, found.held, found.lifetime_redeemed, found.lifetime_cancelled,
            found.lifetime_expired)


# ------------------------------------------------------------- the whole path

def test_hold_then_partial_capture_then_expiry_then_cancel(ledger):
    earn_1000(ledger)
    # A till holds 600 points for 30 minutes: they leave the balance into `held`
    [held] = facts(apply(ledger, b.hold(M, at("10:01"), 600, at("10:31"), event_id="h-1")),
                   "points_held")
    assert (held.points, held.expires_at) == (600, utc(at("10:31")))
    assert figures(ledger) == (400, 600, 0, 0, 0)
    # The sale completes for 450: 450 are redeemed, the other 150 come back
    results = apply(ledger, b.capture(M, at("10:05"), "h-1", 450, event_id="cap-1"))
    assert [fact_type(f) for f in results[0].facts] == ["points_redeemed", "hold_released"]
    [redeemed], [released] = facts(results, "points_redeemed"), facts(results, "hold_released")
    assert (redeemed.points, redeemed.hold_event_id, redeemed.draws) == (450, "h-1", [[1, 450]])
    assert (released.reason, released.points, released.expired, released.debt_paid) == (
        "partial_capture", 150, 0, 0)
    assert figures(ledger) == (550, 0, 450, 0, 0)
    # Another hold of 300 runs out at 10:20; the next event (at 10:25) releases it first
    apply(ledger, b.hold(M, at("10:10"), 300, at("10:20"), event_id="h-2"))
    assert figures(ledger) == (250, 300, 450, 0, 0)
    results = apply(ledger, b.purchase(M, at("10:25"), 1000))
    assert [fact_type(f) for f in results[0].facts] == ["hold_released", "points_earned"]
    assert (facts(results, "hold_released")[0].reason, account(ledger, M).holds) == ("expired", {})
    assert figures(ledger) == (562, 0, 450, 0, 0)  # 12 points at silver
    # The customer brings the goods back: the capture is cancelled, its 450 points return
    [cancelled] = facts(apply(ledger, b.cancel(M, at("11:00"), "cap-1")), "redemption_cancelled")
    assert (cancelled.points, cancelled.expired, cancelled.debt_paid) == (450, 0, 0)
    assert [(part["lot_id"], part["points"]) for part in cancelled.returns] == [(1, 450)]
    assert figures(ledger) == (1012, 0, 450, 450, 0)


def test_a_full_capture_closes_the_hold_without_a_release(ledger):
    earn_1000(ledger)
    apply(ledger, b.hold(M, at("10:01"), 600, at("10:31"), event_id="h-1"))
    results = apply(ledger, b.capture(M, at("10:02"), "h-1"))
    assert [fact_type(f) for f in results[0].facts] == ["points_redeemed"]
    assert figures(ledger) == (400, 0, 600, 0, 0)
    assert account(ledger, M).holds == {}


def test_a_void_releases_the_whole_hold_and_is_its_events_outcome(ledger):
    earn_1000(ledger)
    apply(ledger, b.hold(M, at("10:01"), 600, at("10:31"), event_id="h-1"))
    void = b.void(M, at("10:02"), "h-1")
    [released] = facts(apply(ledger, void), "hold_released")
    assert (released.reason, released.points, released.source_event_id) == ("voided", 600,
                                                                             void["event_id"])
    assert is_outcome(released)
    assert figures(ledger) == (1000, 0, 0, 0, 0)
    assert account(ledger, M).applied[void["event_id"]] == released.fingerprint


def test_a_release_by_the_clock_is_not_the_outcome_of_the_event_that_moved_it(ledger):
    earn_1000(ledger)
    apply(ledger, b.hold(M, at("10:01"), 600, at("10:31")))
    results = apply(ledger, b.birthday(M, at("11:00")))
    assert [(fact_type(f), is_outcome(f)) for f in results[0].facts] == [
        ("hold_released", False), ("birthday_rewarded", True)]


# --------------------------------------------------------------- rejections

@pytest.mark.parametrize("occurred, expires", [
    ("10:05", "10:05"),   # not after occurred_at
    ("10:05", "10:04"),   # before it
    ("10:05", "10:36"),   # more than 30 minutes after it
])
def test_a_hold_outside_its_window_is_rejected_hold_window(ledger, occurred, expires):
    earn_1000(ledger)
    [rejected] = facts(apply(ledger, b.hold(M, at(occurred), 10, at(expires))),
                       "redemption_hold_rejected")
    assert (rejected.reason, rejected.balance) == ("hold_window", 1000)
    assert figures(ledger) == (1000, 0, 0, 0, 0)


def test_exactly_thirty_minutes_is_inside_the_window(ledger):
    earn_1000(ledger)
    assert facts(apply(ledger, b.hold(M, at("10:05"), 10, at("10:35"))), "points_held")


def test_a_late_hold_already_run_out_is_rejected_hold_window(ledger):
    earn_1000(ledger, clock="10:40")
    # Sent at 10:05 for 30 minutes, it arrives after the clock reached 10:40
    [rejected] = facts(apply(ledger, b.hold(M, at("10:05"), 10, at("10:35"))),
                       "redemption_hold_rejected")
    assert rejected.reason == "hold_window"


def test_hold_window_comes_before_insufficient_points(ledger):
    earn_1000(ledger)
    [rejected] = facts(apply(ledger, b.hold(M, at("10:05"), 5000, at("12:00"))),
                       "redemption_hold_rejected")
    assert rejected.reason == "hold_window"
    [rejected] = facts(apply(ledger, b.hold(M, at("10:06"), 5000, at("10:30"))),
                       "redemption_hold_rejected")
    assert (rejected.reason, rejected.points, rejected.balance) == ("insufficient_points", 5000, 1000)


def test_held_points_are_not_spendable(ledger):
    earn_1000(ledger)
    apply(ledger, b.hold(M, at("10:01"), 700, at("10:31")))
    [rejected] = facts(apply(ledger, b.redemption(M, at("10:02"), 301)), "redemption_rejected")
    assert (rejected.reason, rejected.balance) == ("insufficient_points", 300)
    [rejected] = facts(apply(ledger, b.hold(M, at("10:03"), 301, at("10:20"))),
                       "redemption_hold_rejected")
    assert rejected.reason == "insufficient_points"


def test_a_longer_window_comes_from_the_program(ledger_on):
    ledger = ledger_on(hold_duration_minutes_max=120)
    earn_1000(ledger)
    assert facts(apply(ledger, b.hold(M, at("10:05"), 10, at("12:05"))), "points_held")
    [rejected] = facts(apply(ledger, b.hold(M, at("10:05"), 10, at("12:06"))),
                       "redemption_hold_rejected")
    assert rejected.reason == "hold_window"


def test_capture_and_void_of_no_open_hold_are_rejected_unknown_hold(ledger):
    earn_1000(ledger)
    apply(ledger, b.hold(M, at("10:01"), 100, at("10:10"), event_id="h-cap"),
          b.capture(M, at("10:02"), "h-cap"),
          b.hold(M, at("10:03"), 100, at("10:10"), event_id="h-void"),
          b.void(M, at("10:04"), "h-void"),
          b.hold(M, at("10:05"), 100, at("10:10"), event_id="h-ran-out"),
          b.redemption(M, at("10:06"), 5, event_id="plain"))
    for hold_id, clock in [("never", "10:07"), ("h-cap", "10:07"), ("h-void", "10:08"),
                           ("plain", "10:09"), ("h-ran-out", "10:11")]:
        [capture] = facts(apply(ledger, b.capture(M, at(clock), hold_id)),
                          "redemption_capture_rejected")
        [void] = facts(apply(ledger, b.void(M, at(clock), hold_id)), "redemption_void_rejected")
        assert (capture.reason, void.reason) == ("unknown_hold", "unknown_hold"), hold_id
    assert figures(ledger) == (895, 0, 105, 0, 0)


def test_capturing_more_than_the_hold_is_rejected_exceeds_hold(ledger):
    earn_1000(ledger)
    apply(ledger, b.hold(M, at("10:01"), 100, at("10:10"), event_id="h-1"))
    [rejected] = facts(apply(ledger, b.capture(M, at("10:02"), "h-1", 101)),
                       "redemption_capture_rejected")
    assert (rejected.reason, rejected.points) == ("exceeds_hold", 101)
    assert figures(ledger) == (900, 100, 0, 0, 0)  # the hold stays open


def test_another_members_hold_is_unknown(ledger):
    earn_1000(ledger)
    earn_1000(ledger, "other-1")
    apply(ledger, b.hold(M, at("10:01"), 100, at("10:10"), event_id="h-1"))
    [rejected] = facts(apply(ledger, b.capture("other-1", at("10:02"), "h-1")),
                       "redemption_capture_rejected")
    assert rejected.reason == "unknown_hold"


def test_cancel_rejections_unknown_redemption_then_already_cancelled(ledger):
    earn_1000(ledger)
    earn_1000(ledger, "other-1")
    apply(ledger, b.redemption(M, at("10:01"), 5000, event_id="refused"),
          b.redemption(M, at("10:02"), 100, event_id="r-1"),
          b.redemption("other-1", at("10:02"), 100, event_id="r-other"),
          b.hold(M, at("10:03"), 100, at("10:10"), event_id="h-1"))
    for unknown in ("refused", "r-other", "h-1", "never"):
        [rejected] = facts(apply(ledger, b.cancel(M, at("10:04"), unknown)),
                           "redemption_cancel_rejected")
        assert rejected.reason == "unknown_redemption", unknown
    assert facts(apply(ledger, b.cancel(M, at("10:05"), "r-1")), "redemption_cancelled")
    [rejected] = facts(apply(ledger, b.cancel(M, at("10:06"), "r-1")), "redemption_cancel_rejected")
    assert rejected.reason == "already_cancelled"
    assert figures(ledger) == (900, 100, 100, 100, 0)


# ------------------------------------------------------------ hold expiry

def test_holds_run_out_by_expires_at_then_creation_before_lots_expire(ledger_on):
    ledger = ledger_on(expiry_months=1)
    apply(ledger, b.purchase(M, "2025-02-01T09:00:00Z", 100_000))  # 1,000, expire 1 March 09:00
    apply(ledger, b.birthday(M, at("08:00")))                      # 200, expire 1 April
    apply(ledger, b.hold(M, at("08:40"), 300, at("08:55"), event_id="third"),
          b.hold(M, at("08:41"), 300, at("08:50"), event_id="first"),
          b.hold(M, at("08:42"), 300, at("08:50"), event_id="second"))
    results = apply(ledger, b.redemption(M, at("09:30"), 1))
    kinds = [(fact_type(f), getattr(f, "hold_event_id", None)) for f in results[0].facts]
    assert kinds == [("hold_released", "first"), ("hold_released", "second"),
                     ("hold_released", "third"), ("points_expired", None),
                     ("points_redeemed", None)]
    # The first lot (900 of it held) passed its expiry while held: those points expire on
    # release; the lot's 100 unheld points expire as the lot does, right after
    released = facts(results, "hold_released")
    assert [(f.points, f.expired) for f in released] == [(300, 300), (300, 300), (300, 300)]
    assert facts(results, "points_expired")[0].points == 100
    assert figures(ledger) == (199, 0, 1, 0, 1000)


def test_held_points_do_not_expire_while_held_and_a_capture_redeems_them(ledger_on):
    ledger = ledger_on(expiry_months=1)
    apply(ledger, b.purchase(M, "2025-02-01T09:00:00Z", 100_000))  # expires 1 March 09:00
    apply(ledger, b.hold(M, at("08:50"), 1000, at("09:20"), event_id="h-1"))
    results = apply(ledger, b.capture(M, at("09:10"), "h-1", 700))
    # Past the lot's expiry: the captured 700 are redeemed all the same, the other 300 expire
    [released] = facts(results, "hold_released")
    assert (released.points, released.expired, released.returns) == (300, 300, [])
    assert figures(ledger) == (0, 0, 700, 0, 300)


# ------------------------------------------------- points that come back

def test_released_points_pay_debt_first_then_return_to_their_lot(ledger):
    buy = earn_1000(ledger)
    apply(ledger, b.hold(M, at("10:01"), 800, at("10:31"), event_id="h-1"))
    # A refund reverses 1,000 points: 200 from the lot, the other 800 become debt
    apply(ledger, b.refund(M, at("10:02"), buy["event_id"], 100_000))
    assert (account(ledger, M).debt, figures(ledger)) == (800, (-800, 800, 0, 0, 0))
    [released] = facts(apply(ledger, b.void(M, at("10:03"), "h-1")), "hold_released")
    assert (released.points, released.debt_paid, released.returns) == (800, 800, [])
    assert (account(ledger, M).debt, figures(ledger)) == (0, (0, 0, 0, 0, 0))


def test_points_return_to_an_emptied_lot_with_its_dates(ledger):
    earn_1000(ledger)
    apply(ledger, b.birthday(M, at("10:01")))  # a second, younger lot of 200
    apply(ledger, b.hold(M, at("10:02"), 1100, at("10:30"), event_id="h-1"))
    assert [(lot.lot_id, lot.remaining) for lot in account(ledger, M).lots] == [(2, 100)]
    [released] = facts(apply(ledger, b.void(M, at("10:03"), "h-1")), "hold_released")
    assert [(p["lot_id"], p["points"]) for p in released.returns] == [(1, 1000), (2, 100)]
    lots = {lot.lot_id: lot for lot in account(ledger, M).lots}
    assert (lots[1].remaining, lots[1].points, lots[2].remaining) == (1000, 1000, 200)
    assert lots[1].expires_at == utc("2026-03-01T10:00:00Z")
    # The reopened lot is drawn first again (oldest first)
    [redeemed] = facts(apply(ledger, b.redemption(M, at("10:04"), 50)), "points_redeemed")
    assert redeemed.draws == [[1, 50]]


def test_a_cancelled_redemption_expires_what_its_lot_no_longer_keeps(ledger_on):
    ledger = ledger_on(expiry_months=1)
    apply(ledger, b.purchase(M, "2025-02-01T09:00:00Z", 40_000))   # 400, expire 1 March 09:00
    apply(ledger, b.purchase(M, "2025-02-10T09:00:00Z", 40_000))   # 400, expire 10 March
    apply(ledger, b.redemption(M, "2025-02-20T09:00:00Z", 700, event_id="r-1"))
    [cancelled] = facts(apply(ledger, b.cancel(M, at("12:00"), "r-1")), "redemption_cancelled")
    # Drawn 400 + 300: the first lot is past expiry, its 400 expire; 300 go back
    assert (cancelled.points, cancelled.expired) == (700, 400)
    assert [(p["lot_id"], p["points"]) for p in cancelled.returns] == [(2, 300)]
    assert figures(ledger) == (400, 0, 700, 700, 400)


def test_a_cancelled_capture_gives_back_only_what_was_captured(ledger):
    earn_1000(ledger)
    apply(ledger, b.hold(M, at("10:01"), 600, at("10:31"), event_id="h-1"),
          b.capture(M, at("10:02"), "h-1", 250, event_id="cap-1"))
    [cancelled] = facts(apply(ledger, b.cancel(M, at("10:03"), "cap-1")), "redemption_cancelled")
    assert cancelled.points == 250
    assert figures(ledger) == (1000, 0, 250, 250, 0)


# ------------------------------------------------------------- idempotency

def test_a_redelivered_capture_is_a_duplicate_and_changes_nothing(ledger):
    earn_1000(ledger)
    capture = b.capture(M, at("10:02"), "h-1", 100)
    apply(ledger, b.hold(M, at("10:01"), 600, at("10:31"), event_id="h-1"), capture)
    before = figures(ledger)
    [result] = ledger.apply_in_order(b.commands(dict(capture)))
    assert (result.status, result.facts, figures(ledger)) == ("duplicate", [], before)


# ---------------------------------------------------------- stored versions

def test_a_snapshot_taken_before_holds_reads_with_no_holds(ledger):
    earn_1000(ledger)
    stored = ledger.mapper.to_stored_event(Snapshot.take(account(ledger, M)))
    state = orjson.loads(stored.state)
    assert state["state"].pop("class_version") == 4
    state["state"]["class_version"] = 2  # before holds (3) and campaigns (4)
    for name in ("holds", "redemptions", "cancelled_redemptions", "campaign_uses"):
        del state["state"][name]
    revived = ledger.mapper.to_domain_event(
        dataclasses.replace(stored, state=orjson.dumps(state))).mutate(None)
    assert (revived.holds, revived.redemptions, revived.cancelled_redemptions) == ({}, {}, [])
    assert revived.campaign_uses == {}
    revived.check_invariant()


def test_a_points_redeemed_stored_before_holds_reads_as_a_plain_redemption(ledger):
    earn_1000(ledger)
    [redeemed] = facts(apply(ledger, b.redemption(M, at("10:01"), 100)), "points_redeemed")
    stored = ledger.mapper.to_stored_event(redeemed)
    state = orjson.loads(stored.state)
    assert (state.pop("class_version"), state.pop("hold_event_id")) == (3, None)
    state["class_version"] = 2
    revived = ledger.mapper.to_domain_event(dataclasses.replace(stored, state=orjson.dumps(state)))
    assert (revived.hold_event_id, revived.draws) == (None, [[1, 100]])


def test_every_hold_fact_is_stored_and_read_back_equal(ledger):
    earn_1000(ledger)
    apply(ledger, b.hold(M, at("10:01"), 600, at("10:31"), event_id="h-1"),
          b.capture(M, at("10:02"), "h-1", 100, event_id="cap-1"),
          b.cancel(M, at("10:03"), "cap-1"))
    stored = list(ledger.events.get(account_id(M)))
    assert [fact_type(f) for f in stored][-4:] == [
        "points_held", "points_redeemed", "hold_released", "redemption_cancelled"]
    rebuilt = None
    for fact in stored:
        rebuilt = fact.mutate(rebuilt)
    assert isinstance(rebuilt, LoyaltyAccount)
    assert (rebuilt.balance, rebuilt.held, rebuilt.lifetime_cancelled) == (1000, 0, 100)


# ------------------------------------------------------------ program field

def test_holds_duration_minutes_max_is_read_and_checked(tmp_path, capsys):
    assert load_program().hold_duration_minutes_max == 30
    program = parse_program(DEFAULT_TEXT + "\n[holds]\nduration_minutes_max = 90\n")
    assert program.hold_duration_minutes_max == 90
    for bad in ("0", "10081", '"30"'):
        with pytest.raises(ProgramError, match="holds.duration_minutes_max"):
            parse_program(DEFAULT_TEXT + f"\n[holds]\nduration_minutes_max = {bad}\n")
    path = tmp_path / "bad.toml"
    path.write_text(DEFAULT_TEXT + "\n[holds]\nduration_minutes_max = 0\n")
    assert main(["check-program", str(path)]) != 0
    assert "holds.duration_minutes_max" in capsys.readouterr().err
