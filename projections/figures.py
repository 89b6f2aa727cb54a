"""A member's figures as the ledger has them: the truth read models are checked against.

Everything here is computed from a ``LoyaltyAccount`` (folded from its stored
facts by the aggregate's own ``apply`` methods) and from its ``year_closed``
facts, never from a read model or a projection handler. ``verify`` compares
the read models with these figures; the auditor's member view shows them.
Field names are the read models' (CONTRACT section 4).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ledger.calendar import year_of
from ledger.domain import LoyaltyAccount
from ledger.program import Program
from ledger.rules import annual_bonus, annual_totals


def fold(facts: Sequence[Any]) -> LoyaltyAccount:
    """The account its facts make, through the aggregate's own ``apply`` methods."""
    account = None
    for fact in facts:
        account = fact.mutate(account)
    assert isinstance(account, LoyaltyAccount), account
    return account


def balance_figures(account: LoyaltyAccount) -> dict[str, Any]:
    return {
        "member_id": account.member_id,
        "balance": account.balance,
        "lifetime_earned": account.lifetime_earned,
        "lifetime_redeemed": account.lifetime_redeemed,
        "lifetime_expired": account.lifetime_expired,
        "lifetime_reversed": account.lifetime_reversed,
        "debt": account.debt,
        "last_event_at": account.clock,
    }


def tier_figures(account: LoyaltyAccount, program: Program) -> dict[str, Any]:
    year = year_of(account.clock)
    spend = account.spend_in_year(year)
    following = program.next_tier(account.tier)
    return {
        "member_id": account.member_id,
        "tier": account.tier,
        "spend_current_year": spend,
        "spend_previous_year": account.spend_in_year(year - 1),
        "next_tier": following.name if following else None,
        "spend_to_next_tier": following.threshold_minor - spend if following else None,
        "tier_since": account.tier_since,
    }


def awarded_bonuses(facts: Sequence[Any]) -> dict[int, int]:
    """Bonus points by closed year, from the ``year_closed`` facts."""
    return {fact.year: fact.bonus_points for fact in facts
            if isinstance(fact, LoyaltyAccount.YearClosed)}


def annual_figures(account: LoyaltyAccount, awarded: dict[int, int],
                   program: Program) -> dict[int, dict[str, Any]]:
    """A row per year with purchases or a ``year_closed`` (``awarded``: bonus by closed year)."""
    years = {purchase.year for purchase in account.purchases.values()} | set(awarded)
    return {year: _annual_row(account, year, awarded.get(year), program) for year in years}


def _annual_row(account: LoyaltyAccount, year: int, awarded: int | None,
                program: Program) -> dict[str, Any]:
    counted, net_points = annual_totals(account.purchases_in_year(year))
    eligible, bonus = annual_bonus(counted, net_points, program)
    return {
        "member_id": account.member_id, "year": year, "purchases": counted,
        "net_purchase_points": net_points, "eligible": eligible, "projected_bonus": bonus,
        "awarded_bonus": awarded,
    }
