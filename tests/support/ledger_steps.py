"""Small steps shared by the ledger tests: apply events, read facts back."""

from __future__ import annotations

from ledger.application import LoyaltyLedger, Result
from ledger.domain import LoyaltyAccount, fact_type
from tests.support.builders import commands


def apply(ledger: LoyaltyLedger, *events: dict) -> list[Result]:
    """Apply events directly in order (credits at once), checking the invariant after each."""
    results = []
    for command in commands(*events):
        step = ledger.apply_in_order([command])
        for member in {result.member_id for result in step}:
            ledger.find_account(member).check_invariant()
        results.extend(step)
    return results


def facts(results: list[Result], name: str) -> list:
    return [fact for result in results for fact in result.facts if fact_type(fact) == name]


def account(ledger: LoyaltyLedger, member: str) -> LoyaltyAccount:
    found = ledger.find_account(member)
    assert found is not None, member
    return found
