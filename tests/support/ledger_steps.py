"""Small steps shared by the ledger tests: apply events, read facts back."""

from __future__ import annotations

from ledger.application import LoyaltyLedger, Result
from ledger.domain import LoyaltyAccount, fact_type
from tests.support.builders import commands


def apply(ledger: LoyaltyLedger, *events: dict) -> list[Result]:
    """Apply events directly in order (referrer credits at once), checking the invariant."""
    results = ledger.apply_in_order(commands(*events))
    for member in {result.member_id for result in results}:
        ledger.find_account(member).check_invariant()
    return results


def facts(results: list[Result], name: str) -> list:
    return [fact for result in results for fact in result.facts if fact_type(fact) == name]


def account(ledger: LoyaltyLedger, member: str) -> LoyaltyAccount:
    found = ledger.find_account(member)
    assert found is not None, member
    return found
