"""What a purchase would earn, decided without recording anything (the till's quote).

``quote_purchase`` is a pure function of an account (or None for a member
the ledger does not know yet), the program and the purchase: the same rules
``LoyaltyAccount.record_purchase`` applies (the tier is judged at the clock
the purchase would move the account to, section 3's step 3; points are the
program's ``purchase_points`` at that tier's multiplier; a foreign currency
earns nothing), nothing written, no wall clock. Campaign lines (section 12)
are ``ledger.campaigns``' at the same tier, with the member's earlier
benefits and what each budget has left (``budgets_left``; a budget not given
counts whole): ``campaign_id``, ``points`` and, for a gift, ``reward_id``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from ledger.basket import BasketLine
from ledger.campaigns import MemberCampaignState, PurchaseTerms, campaign_awards

from ledger.domain import LoyaltyAccount
from ledger.program import Program
from ledger.rules import qualifying_spend

BASE_MULTIPLIER_PCT = 100


@dataclass(frozen=True)
class Quote:
    """Points a purchase would earn: ``base`` at 100 %, the tier's multiplier, the total."""

    tier: str
    base_points: int
    multiplier_pct: int
    points: int
    debt_paid: int
    rejected_reason: str | None = None
    campaigns: list[dict] = field(default_factory=list)


def quote_purchase(account: LoyaltyAccount | None, program: Program, *, amount_minor: int,
                   currency: str, occurred_at: datetime, store_id: str = "",
                   channel: str | None = None, items: tuple[BasketLine, ...] = (),
                   budgets_left: Mapping[str, int] | None = None) -> Quote:
    """The points ``record_purchase`` would award for this purchase now, nothing recorded."""
    tier = _tier_at(account, program, occurred_at)
    if currency != program.currency:
        return Quote(tier=tier, base_points=0, multiplier_pct=0, points=0, debt_paid=0,
                     rejected_reason="currency")
    multiplier = program.tier(tier).multiplier_pct
    member = MemberCampaignState(tier, account.campaign_uses if account is not None else {})
    terms = PurchaseTerms(occurred_at=occurred_at, amount_minor=amount_minor, store_id=store_id,
                          channel=channel, items=items)
    lines = [{"campaign_id": a.campaign_id, "points": a.points}
             | ({"reward_id": a.reward_id} if a.reward_id is not None else {})
             for a in campaign_awards(program, member, terms, budgets_left or {})]
    points = program.purchase_points(amount_minor, multiplier) + sum(line["points"] for line in lines)
    debt = account.debt if account is not None else 0
    return Quote(tier=tier, base_points=program.purchase_points(amount_minor, BASE_MULTIPLIER_PCT),
                 multiplier_pct=multiplier, points=points, debt_paid=min(points, debt),
                 campaigns=lines)


def _tier_at(account: LoyaltyAccount | None, program: Program, occurred_at: datetime) -> str:
    """The tier the purchase would earn at: the account's, re-judged at the moved clock."""
    if account is None:
        return program.base_tier.name
    clock = max(account.clock, occurred_at)
    return program.tier_for_spend(qualifying_spend(account.spend_by_year, clock)).name
