"""Campaign awards of a purchase: pure functions (CONTRACT contract 2, section 12).

``campaign_awards`` is a pure function of (program, the member's state before
the purchase, the purchase, what each budget has left) to the campaign
lines the purchase earns (``CampaignAward``: ``campaign_id``, ``points``,
and ``reward_id`` for a gift). Each matching campaign is computed on its own
from the purchase (no compounding), rounded down; ``per_member_max`` counts
the member's earlier benefits (``MemberCampaignState.uses``); a budget that
has less left than the award gives what remains. A campaign that would give
0 points and no reward gives nothing (no line): a purchase counts for a
campaign only when it gets points > 0 or the reward.

No I/O, no clock (the window is compared with the purchase's
``occurred_at``), no mutation of arguments. ``LoyaltyAccount.record_purchase``
records the result; the till's quote shows it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from ledger.basket import BasketLine
from ledger.campaign_terms import (BONUS, EXTRA_MULTIPLIER, ITEMS_BONUS, ITEMS_REWARD, PER_ITEM,
                                   Campaign)
from ledger.program import PERCENT, Program


@dataclass(frozen=True)
class PurchaseTerms:
    """What campaigns look at in a purchase."""

    occurred_at: datetime
    amount_minor: int
    store_id: str
    channel: str | None
    items: tuple[BasketLine, ...]


@dataclass(frozen=True)
class MemberCampaignState:
    """The member before the purchase: tier at the clock, times each campaign benefited them."""

    tier: str
    uses: Mapping[str, int]


@dataclass(frozen=True)
class CampaignAward:
    """One campaign line of a purchase: its points, or its reward (0 points)."""

    campaign_id: str
    points: int
    reward_id: str | None = None


def line_matches(campaign: Campaign, line: BasketLine) -> bool:
    """A counting line matching the item filter (every counting line without a filter)."""
    if not line.counts:
        return False
    if not campaign.has_item_filter:
        return True
    if campaign.skus is not None and line.sku in campaign.skus:
        return True
    return campaign.sku_prefixes is not None and line.sku.startswith(campaign.sku_prefixes)


def matching_lines(campaign: Campaign, items: tuple[BasketLine, ...]) -> list[BasketLine]:
    return [line for line in items if line_matches(campaign, line)]


def filters_match(campaign: Campaign, member: MemberCampaignState, purchase: PurchaseTerms) -> bool:
    """Window and every filter given: store, channel, tier, smallest amount, item filter."""
    if not campaign.runs_at(purchase.occurred_at):
        return False
    if campaign.stores is not None and purchase.store_id not in campaign.stores:
        return False
    if campaign.channels is not None and purchase.channel not in campaign.channels:
        return False  # a purchase without channel matches no channels filter
    if campaign.tiers is not None and member.tier not in campaign.tiers:
        return False
    if campaign.min_amount_minor is not None and purchase.amount_minor < campaign.min_amount_minor:
        return False
    return not campaign.has_item_filter or bool(matching_lines(campaign, purchase.items))


def base_amount(campaign: Campaign, purchase: PurchaseTerms) -> int:
    """The purchase's amount, or the matching lines' amounts when an item filter is given."""
    if not campaign.has_item_filter:
        return purchase.amount_minor
    return sum(line.amount_minor for line in matching_lines(campaign, purchase.items))


def matching_units(campaign: Campaign, purchase: PurchaseTerms) -> int:
    """floor(quantity) of each matching line, summed (a line without quantity counts 1)."""
    return sum(line.units for line in matching_lines(campaign, purchase.items))


def effect_points(campaign: Campaign, program: Program, purchase: PurchaseTerms) -> int:
    """The points the campaign's effect gives this purchase, before limits."""
    if campaign.effect == EXTRA_MULTIPLIER:
        numerator = base_amount(campaign, purchase) * program.points_per_unit
        return numerator * campaign.extra_multiplier_pct // (program.minor_units_per_unit * PERCENT)
    if campaign.effect == BONUS:
        return campaign.bonus_points
    if campaign.effect == PER_ITEM:
        return campaign.points_per_item * matching_units(campaign, purchase)
    if matching_units(campaign, purchase) < campaign.items_min:
        return 0
    return campaign.bonus_points if campaign.effect == ITEMS_BONUS else 0


def gives_reward(campaign: Campaign, purchase: PurchaseTerms) -> bool:
    return (campaign.effect == ITEMS_REWARD
            and matching_units(campaign, purchase) >= campaign.items_min)


def under_member_limit(campaign: Campaign, member: MemberCampaignState) -> bool:
    return campaign.per_member_max is None or member.uses.get(campaign.id, 0) < campaign.per_member_max


def campaign_award(campaign: Campaign, program: Program, member: MemberCampaignState,
                   purchase: PurchaseTerms, budget_left: int | None) -> CampaignAward | None:
    """The campaign's line for this purchase, or None when it gives nothing.

    ``budget_left`` is what the campaign's budget still holds (None: no budget).
    """
    if not filters_match(campaign, member, purchase) or not under_member_limit(campaign, member):
        return None
    if gives_reward(campaign, purchase):
        return CampaignAward(campaign.id, 0, campaign.reward_id)
    points = effect_points(campaign, program, purchase)
    if budget_left is not None:
        points = min(points, max(budget_left, 0))
    return CampaignAward(campaign.id, points) if points > 0 else None


def campaign_awards(program: Program, member: MemberCampaignState, purchase: PurchaseTerms,
                    budgets_left: Mapping[str, int]) -> list[CampaignAward]:
    """Every campaign line of the purchase, in the program file's order.

    ``budgets_left`` has what each budgeted campaign's budget still holds; a
    campaign with a budget and no entry has its whole ``budget_points``.
    """
    awards = []
    for campaign in program.campaigns:
        left = None
        if campaign.budget_points is not None:
            left = budgets_left.get(campaign.id, campaign.budget_points)
        award = campaign_award(campaign, program, member, purchase, left)
        if award is not None:
            awards.append(award)
    return awards


def budgeted_campaign_ids(program: Program, moments: list[datetime]) -> list[str]:
    """The ids of budgeted campaigns running at any of ``moments``, sorted (the lock order)."""
    return sorted({campaign.id for campaign in program.campaigns
                   if campaign.budget_points is not None
                   and any(campaign.runs_at(moment) for moment in moments)})
