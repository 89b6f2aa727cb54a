"""Section 13 as stories: enrollment, profile updates, surveys, erasure and the
closed account, on the in-memory store and PostgreSQL (``ledger`` fixture);
``apply`` checks contract 2's balance identity after every event."""

from __future__ import annotations

import dataclasses

import pytest

from ledger.application import LoyaltyLedger
from ledger.domain import COMMAND_HANDLERS
from ledger.membership import CLOSED_REJECTIONS
from ledger.program import load_program
from tests.support import builders as b
from tests.support import member_builders as mb
from tests.support.ledger_steps import account, apply, facts

M = "member-13"


def test_enrollment_opens_the_account_and_a_second_one_is_rejected(ledger):
    first = apply(ledger, mb.enrolled(M, "2025-01-01T10:00:00Z", marketing=True, channel="pos"))
    enrolled = facts(first, "member_enrolled")
    assert len(enrolled) == 1 and enrolled[0].consents == {"marketing": True}
    assert enrolled[0].channel == "pos"
    again = apply(ledger, mb.enrolled(M, "2025-01-02T10:00:00Z"))
    assert [f.reason for f in facts(again, "member_enrolled_rejected")] == ["already_enrolled"]
    assert account(ledger, M).consents == {"marketing": True}


def test_enrollment_of_an_existing_account_is_accepted_once(ledger):
    apply(ledger, b.purchase(M, "2025-01-01T10:00:00Z", 5000))
    results = apply(ledger, mb.enrolled(M, "2025-01-05T10:00:00Z"))
    assert len(facts(results, "member_enrolled")) == 1
    assert account(ledger, M).balance == 50


def test_a_profile_update_before_enrollment_is_rejected_not_enrolled(ledger):
    results = apply(ledger, mb.profile_updated(M, "2025-01-01T10:00:00Z", {"phone": None}))
    assert [f.reason for f in facts(results, "profile_updated_rejected")] == ["not_enrolled"]
    apply(ledger, mb.enrolled(M, "2025-01-02T10:00:00Z"))
    later = apply(ledger, mb.profile_updated(M, "2025-01-03T10:00:00Z", {"phone": None},
                                             consents={"marketing": True}))
    assert len(facts(later, "profile_updated")) == 1
    assert account(ledger, M).consents == {"marketing": True}


def test_an_nps_answer_is_recorded_without_points(ledger):
    results = apply(ledger, mb.nps(M, "2025-01-01T10:00:00Z", 9))
    recorded = facts(results, "nps_recorded")
    assert [(f.score, f.touchpoint) for f in recorded] == [(9, "checkout")]
    assert account(ledger, M).lifetime_earned == 0


def test_erasure_forfeits_every_lot_pending_included_and_keeps_debt(ledger_env):
    ledger = LoyaltyLedger(env=ledger_env,
                           program=dataclasses.replace(load_program(), pending_days=14))
    apply(ledger, mb.enrolled(M, "2025-01-01T10:00:00Z"),
          b.birthday(M, "2025-01-02T10:00:00Z"),             # 200 active
          b.purchase(M, "2025-01-03T10:00:00Z", 12_000))      # 120 pending
    results = apply(ledger, mb.erased(M, "2025-01-04T10:00:00Z"))
    forfeited = facts(results, "points_forfeited")
    assert [f.points for f in forfeited] == [320]
    closed = account(ledger, M)
    assert (closed.balance, closed.pending, closed.lifetime_forfeited) == (0, 0, 320)
    assert closed.erased_at is not None
    ledger.close()


def test_erasure_leaves_debt_as_it_is(ledger):
    apply(ledger, mb.enrolled(M, "2025-01-01T10:00:00Z"),
          b.adjustment(M, "2025-01-02T10:00:00Z", -50, allow_debt=True))
    results = apply(ledger, mb.erased(M, "2025-01-03T10:00:00Z"))
    assert facts(results, "points_forfeited") == []
    assert account(ledger, M).debt == 50


def test_erasure_releases_open_holds_first_they_pay_debt_and_the_rest_is_forfeited(ledger):
    apply(ledger, mb.enrolled(M, "2025-01-01T10:00:00Z"),
          b.birthday(M, "2025-01-02T10:00:00Z"),                                    # 200
          b.hold(M, "2025-01-03T10:00:00Z", 80, "2025-01-03T10:20:00Z", event_id="h-late"),
          b.hold(M, "2025-01-03T10:01:00Z", 70, "2025-01-03T10:10:00Z", event_id="h-soon"),
          b.adjustment(M, "2025-01-03T10:02:00Z", -100, allow_debt=True))          # 50 left, then 50 debt
    before = account(ledger, M)
    assert (before.balance, before.held, before.debt) == (-50, 150, 50)  # balance: unspent - debt
    results = apply(ledger, mb.erased(M, "2025-01-03T10:05:00Z"))
    released = facts(results, "hold_released")
    assert [(f.hold_event_id, f.reason, f.points) for f in released] == [
        ("h-soon", "erased", 70), ("h-late", "erased", 80)]      # by expires_at, like expiry
    assert sum(f.debt_paid for f in released) == 50
    assert [f.points for f in facts(results, "points_forfeited")] == [100]
    closed = account(ledger, M)
    assert (closed.balance, closed.held, closed.debt, closed.holds) == (0, 0, 0, {})
    closed.check_invariant()


def test_hold_commands_on_a_closed_account_are_rejected_account_closed(ledger):
    apply(ledger, b.birthday(M, "2025-01-02T10:00:00Z"), mb.erased(M, "2025-01-03T10:00:00Z"))
    results = apply(ledger, b.hold(M, "2025-01-04T10:00:00Z", 10, "2025-01-04T10:10:00Z"),
                    b.capture(M, "2025-01-04T10:01:00Z", "h"), b.void(M, "2025-01-04T10:02:00Z", "h"),
                    b.cancel(M, "2025-01-04T10:03:00Z", "r"))
    rejected = [fact for result in results for fact in result.facts]
    assert [type(fact).__name__ for fact in rejected] == [
        "RedemptionHoldRejected", "RedemptionCaptureRejected", "RedemptionVoidRejected",
        "RedemptionCancelRejected"]
    assert {fact.reason for fact in rejected} == {"account_closed"}


def test_every_event_after_erasure_is_rejected_account_closed_with_the_clock_frozen(ledger):
    apply(ledger, b.purchase(M, "2024-01-01T10:00:00Z", 600_000),  # platinum, lot expires 2025
          mb.erased(M, "2024-02-01T10:00:00Z"))
    closed = account(ledger, M)
    clock, version, tier = closed.clock, closed.version, closed.tier
    later = [b.purchase(M, "2026-01-01T10:00:00Z", 5000), b.birthday(M, "2026-01-02T10:00:00Z"),
             b.year_closed(M, "2026-01-03T10:00:00Z", 2025), mb.erased(M, "2026-01-04T10:00:00Z"),
             mb.enrolled(M, "2026-01-05T10:00:00Z"), mb.nps(M, "2026-01-06T10:00:00Z", 3),
             mb.profile_updated(M, "2026-01-07T10:00:00Z", {"name": "X"}),
             b.redemption(M, "2026-01-08T10:00:00Z", 1), b.referral(M, "2026-01-09T10:00:00Z", "r"),
             b.adjustment(M, "2026-01-10T10:00:00Z", 5), b.transfer(M, "2026-01-11T10:00:00Z", "o", 1),
             b.refund(M, "2026-01-12T10:00:00Z", "p", 1)]
    results = apply(ledger, *later)
    rejected = [fact for result in results for fact in result.facts]
    assert len(rejected) == len(later)  # one fact each: no expiry, activation or tier change
    assert {fact.reason for fact in rejected} == {"account_closed"}
    assert {type(fact).__name__ for fact in rejected} >= {
        "BirthdayRejected", "YearClosedRejected", "MemberErasedRejected", "NpsResponseRejected"}
    after = account(ledger, M)
    assert (after.clock, after.tier) == (clock, tier)
    assert after.version == version + len(later)


def test_a_referrer_credit_to_a_closed_account_is_rejected(ledger):
    apply(ledger, mb.erased("referrer", "2025-01-01T10:00:00Z"),
          b.referral("referee", "2025-01-02T10:00:00Z", "referrer"))
    results = apply(ledger, b.purchase("referee", "2025-01-03T10:00:00Z", 5000))
    assert [f.reason for f in facts(results, "referrer_credit_rejected")] == ["account_closed"]
    assert account(ledger, "referrer").lifetime_earned == 0


def test_a_transfer_to_an_erased_member_returns_to_its_sender(ledger):
    apply(ledger, b.birthday("sender", "2025-01-01T10:00:00Z"),
          mb.erased("gone", "2025-01-01T11:00:00Z"))
    results = apply(ledger, b.transfer("sender", "2025-01-02T10:00:00Z", "gone", 150))
    rejected = facts(results, "transfer_credit_rejected")
    assert [(f.reason, f.points) for f in rejected] == [("account_closed", 150)]
    returned = facts(results, "points_transferred_in")
    assert [(f.member_id, f.points, f.source_event_id) for f in returned] == [
        ("sender", 150, f"transfer-return:{rejected[0].transfer_event_id}")]
    sender = account(ledger, "sender")
    assert (sender.balance, sender.lifetime_transferred_out, sender.lifetime_transferred_in) == (
        200, 150, 150)
    assert sender.lots[-1].expires_at == account(ledger, "sender").lots[0].expires_at


def test_a_return_to_a_closed_sender_is_forfeited_at_once(ledger):
    apply(ledger, b.birthday("sender", "2025-01-01T10:00:00Z"),
          b.transfer("sender", "2025-01-02T10:00:00Z", "receiver", 150, event_id="t-1"))
    apply(ledger, mb.erased("sender", "2025-01-03T10:00:00Z"))
    # The credit reached "receiver" already; a return for it arrives at the closed sender.
    from ledger.commands import command_from_event
    returned = command_from_event({
        "type": "transfer_credit", "schema_version": 1, "event_id": "transfer-return:t-1",
        "member_id": "sender", "occurred_at": "2025-01-02T10:00:00Z",
        "from_member_id": "receiver", "transfer_event_id": "t-1",
        "lots": [{"points": 150, "occurred_at": "2025-01-01T10:00:00Z",
                  "expires_at": "2026-01-01T10:00:00Z"}]})
    results = ledger.apply(returned)
    account(ledger, "sender").check_invariant()
    assert [type(f).__name__ for f in results[0].facts] == ["PointsTransferredIn", "PointsForfeited"]
    sender = account(ledger, "sender")
    assert (sender.lifetime_transferred_in, sender.lifetime_forfeited, sender.balance) == (150, 200, 0)


def test_every_command_type_has_a_closed_account_rejection():
    assert set(CLOSED_REJECTIONS) == set(COMMAND_HANDLERS)


@pytest.mark.parametrize("kind", ["member_enrolled", "profile_updated", "member_erased",
                                  "nps_response"])
def test_a_redelivered_member_event_is_a_duplicate(ledger, kind):
    builders = {"member_enrolled": lambda: mb.enrolled(M, "2025-01-01T10:00:00Z", event_id="e"),
                "profile_updated": lambda: mb.profile_updated(M, "2025-01-01T10:00:00Z", {},
                                                              event_id="e"),
                "member_erased": lambda: mb.erased(M, "2025-01-01T10:00:00Z", event_id="e"),
                "nps_response": lambda: mb.nps(M, "2025-01-01T10:00:00Z", 7, event_id="e")}
    apply(ledger, builders[kind]())
    assert apply(ledger, builders[kind]())[0].status == "duplicate"


# ------------------------------------------------------ crypto-shredding (section 13)

def test_profile_fields_reach_the_facts_only_as_ciphertext(ledger):
    results = apply(ledger, mb.enrolled(M, "2025-01-01T10:00:00Z", profile=mb.PROFILE))
    stored = facts(results, "member_enrolled")[0]
    assert stored.profile.startswith("v1.")
    for value in mb.PROFILE.values():
        assert value not in repr(vars(stored))
    assert ledger.member_profile(M) == mb.PROFILE


def test_a_profile_update_sets_and_clears_fields(ledger):
    apply(ledger, mb.enrolled(M, "2025-01-01T10:00:00Z", profile=mb.PROFILE),
          mb.profile_updated(M, "2025-01-02T10:00:00Z", {"phone": None, "email": "new@example.com"}))
    assert ledger.member_profile(M) == {"name": "Ana Example", "email": "new@example.com",
                                        "birth_date": "1990-06-02"}


def test_the_fingerprint_of_a_profile_event_is_keyed_and_still_tells_conflicts(ledger):
    event = mb.enrolled(M, "2025-01-01T10:00:00Z", profile=mb.PROFILE, event_id="enr-1")
    stored = facts(apply(ledger, event), "member_enrolled")[0]
    unkeyed = b.commands(event)[0].fingerprint
    assert stored.fingerprint != unkeyed
    assert apply(ledger, event)[0].status == "duplicate"
    other = {**event, "profile": {**mb.PROFILE, "name": "Someone Else"}}
    assert apply(ledger, other)[0].status == "conflict"


def test_erasure_deletes_the_key_and_no_remaining_key_opens_the_profile(ledger):
    enrollment = mb.enrolled(M, "2025-01-01T10:00:00Z", profile=mb.PROFILE)
    apply(ledger, enrollment,
          mb.enrolled("other", "2025-01-01T10:00:00Z", profile={"name": "Other"}),
          mb.profile_updated(M, "2025-01-02T10:00:00Z", {"phone": "+1 555 0100"}))
    apply(ledger, mb.erased(M, "2025-01-03T10:00:00Z"))
    assert ledger.member_keys.key_of(M) is None
    assert ledger.member_profile(M) is None
    sealed = [fact.profile for fact in ledger.events.get(account(ledger, M).id)
              if getattr(fact, "profile", None)]
    assert len(sealed) == 2
    from ledger.privacy import ProfileUnreadable, unseal
    for key in ledger.member_keys.store.read_keys(["other", M]).values():
        for token in sealed:
            for member in (M, "other"):
                with pytest.raises(ProfileUnreadable):
                    unseal(key, member, token)
    # A redelivered enrollment of the erased member is a duplicate (its key is gone, so
    # its payload cannot be compared); a new one is refused and brings no key back.
    assert apply(ledger, enrollment)[0].status == "duplicate"
    refused = apply(ledger, mb.enrolled(M, "2025-02-01T10:00:00Z", profile=mb.PROFILE))
    assert [f.reason for f in facts(refused, "member_enrolled_rejected")] == ["account_closed"]
    assert ledger.member_keys.key_of(M) is None
