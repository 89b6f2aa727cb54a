"""The till API's side of section 13, without services: the member document shows
the decrypted profile only to a ``crm`` key's read, and a re-submitted
profile-bearing event is recognised as applied (its fingerprint is keyed)."""

from __future__ import annotations

from ledger.application import LoyaltyLedger
from streams.api.reads import APPLIED, CONFLICT, LedgerReads
from tests.support import member_builders as mb
from tests.support.ledger_steps import apply


def test_the_profile_is_shown_only_with_profile_asked_and_never_after_erasure():
    ledger = LoyaltyLedger()
    reads = LedgerReads(ledger, threads=1, accounts_max=10)
    apply(ledger, mb.enrolled("m-api", "2025-01-01T10:00:00Z", profile=mb.PROFILE, marketing=True))
    plain = reads.member("m-api")
    assert "profile" not in plain and mb.PROFILE["email"] not in str(plain)
    crm = reads.member("m-api", with_profile=True)
    assert (crm["profile"], crm["consents"], crm["erased"]) == (mb.PROFILE, {"marketing": True}, False)
    apply(ledger, mb.erased("m-api", "2025-01-02T10:00:00Z"))
    gone = reads.member("m-api", with_profile=True)
    assert (gone["profile"], gone["erased"]) == (None, True)
    reads.close()


def test_a_resubmitted_enrollment_is_applied_and_another_payload_a_conflict():
    ledger = LoyaltyLedger()
    reads = LedgerReads(ledger, threads=1, accounts_max=10)
    event = mb.enrolled("m-api", "2025-01-01T10:00:00Z", profile=mb.PROFILE, event_id="enr-api")
    apply(ledger, event)
    assert reads.recorded(event).status == APPLIED
    assert reads.recorded({**event, "profile": {"name": "Other"}}).status == CONFLICT
    apply(ledger, mb.erased("m-api", "2025-01-02T10:00:00Z"))
    assert reads.recorded({**event, "profile": {"name": "Other"}}).status == APPLIED  # frozen
    reads.close()
