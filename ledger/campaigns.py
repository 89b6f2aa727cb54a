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
records the result; the till's quote shows it. The campaigns are read from
``Program.campaign_plan`` (``ledger.campaign_plan``: filters compiled once per
program), and a purchase's lines are summed once per distinct item filter.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import NamedTuple

from ledger.basket import BasketLine
from ledger.campaign_plan import ItemFilter, LineTotals, PlannedCampaign, admits_place, line_totals
from ledger.campaign_terms import BONUS, EXTRA_MULTIPLIER, ITEMS_BONUS, ITEMS_REWARD, PER_ITEM
from ledger.program import PERCENT, Program


class PurchaseTerms(NamedTuple):
    """What campaigns look at in a purchase (a named tuple: made for every purchase, cheaper
    to build than a frozen dataclass)."""

    occurred_at: datetime
    amount_minor: int
    store_id: str
    channel: str | None
    items: tuple[BasketLine, ...]


class MemberCampaignState(NamedTuple):
    """The member before the purchase: tier at the clock, times each campaign benefited them
    (a named tuple, as ``PurchaseTerms``)."""

    tier: str
    uses: Mapping[str, int]


class CampaignAward(NamedTuple):
    """One campaign line of a purchase: its points, or its reward (0 points); a named tuple:
    made for every matching campaign of every purchase, cheaper than a frozen dataclass."""

    campaign_id: str
    points: int
    reward_id: str | None = None


def _admits(planned: PlannedCampaign, member: MemberCampaignState, purchase: PurchaseTerms) -> bool:
    """Store, channel, tier, smallest amount and the member's limit (not the window, which
    ``CampaignPlan.running_at`` checked, nor the items)."""
    return (admits_place(planned, purchase.store_id, purchase.channel, member.tier)
            and _admits_amount_and_limit(planned, member, purchase))


def _admits_amount_and_limit(planned: PlannedCampaign, member: MemberCampaignState,
                             purchase: PurchaseTerms) -> bool:
    """The purchase's smallest amount and the member's limit."""
    if planned.min_amount_minor is not None and purchase.amount_minor < planned.min_amount_minor:
        return False
    return planned.per_member_max is None or member.uses.get(planned.id, 0) < planned.per_member_max


def effect_points(planned: PlannedCampaign, program: Program, purchase: PurchaseTerms,
                  totals: LineTotals) -> int:
    """The points the campaign's effect gives this purchase, before limits; ``totals`` are
    the purchase's lines matching its item filter (every counting line without one)."""
    campaign, effect = planned.campaign, planned.effect
    if effect == EXTRA_MULTIPLIER:
        base = totals.amount_minor if planned.item_filter is not None else purchase.amount_minor
        numerator = base * program.points_per_unit
        return numerator * campaign.extra_multiplier_pct // (program.minor_units_per_unit * PERCENT)
    if effect == BONUS:
        return campaign.bonus_points
    if effect == PER_ITEM:
        return campaign.points_per_item * totals.units
    if totals.units < campaign.items_min:
        return 0
    return campaign.bonus_points if effect == ITEMS_BONUS else 0


def campaign_award(planned: PlannedCampaign, program: Program, purchase: PurchaseTerms,
                   totals: LineTotals, budget_left: int | None) -> CampaignAward | None:
    """The line of a campaign whose filters match, or None when it gives nothing.

    ``budget_left`` is what the campaign's budget still holds (None: no budget).
    """
    if planned.effect == ITEMS_REWARD and totals.units >= planned.campaign.items_min:
        return CampaignAward(planned.id, 0, planned.campaign.reward_id)
    points = effect_points(planned, program, purchase, totals)
    if budget_left is not None:
        points = min(points, max(budget_left, 0))
    return CampaignAward(planned.id, points) if points > 0 else None


def campaign_awards(program: Program, member: MemberCampaignState, purchase: PurchaseTerms,
                    budgets_left: Mapping[str, int]) -> list[CampaignAward]:
    """Every campaign line of the purchase, in the program file's order.

    ``budgets_left`` has what each budgeted campaign's budget still holds; a
    campaign with a budget and no entry has its whole ``budget_points``. Only
    the campaigns whose store, channel and tier admit the purchase are looked
    at (``CampaignPlan.candidates``), and the lines are summed for every item
    filter in one pass (``CampaignPlan.filter_totals``), when a campaign with
    one is reached; a plan built with ``indexed=False`` scans every running
    campaign instead (``campaign_awards_scanning``, the previous design).
    """
    plan = program.campaign_plan
    if not plan.indexed:
        return campaign_awards_scanning(program, member, purchase, budgets_left)
    awards: list[CampaignAward] = []
    by_filter: dict[ItemFilter, LineTotals] | None = None
    every_line: LineTotals | None = None
    amount_minor, uses = purchase.amount_minor, member.uses
    for planned in plan.candidates(purchase.occurred_at, purchase.store_id, purchase.channel,
                                   member.tier):
        # the cheapest test first: most candidates of a realistic set name items the basket lacks
        item_filter = planned.item_filter
        if item_filter is None:
            if every_line is None:
                every_line = line_totals(None, purchase.items)
            matched = every_line
        else:
            if by_filter is None:
                by_filter = plan.filter_totals(purchase.items)
            matched = by_filter.get(item_filter)
            if matched is None:
                continue  # an item filter needs a matching line
        least = planned.min_amount_minor
        if least is not None and amount_minor < least:
            continue
        most = planned.per_member_max
        if most is not None and uses.get(planned.id, 0) >= most:
            continue
        _add_award(awards, planned, program, purchase, matched, budgets_left)
    return awards


def campaign_awards_scanning(program: Program, member: MemberCampaignState,
                             purchase: PurchaseTerms,
                             budgets_left: Mapping[str, int]) -> list[CampaignAward]:
    """``campaign_awards`` by the previous design: every running campaign's filters checked,
    each distinct item filter's lines summed on its own (same lines, same order)."""
    awards: list[CampaignAward] = []
    totals: dict[ItemFilter | None, LineTotals] = {}
    for planned in program.campaign_plan.running_at(purchase.occurred_at):
        if not _admits(planned, member, purchase):
            continue
        item_filter = planned.item_filter
        matched = totals.get(item_filter)
        if matched is None:
            matched = totals[item_filter] = line_totals(item_filter, purchase.items)
        if item_filter is not None and not matched.lines:
            continue  # an item filter needs a matching line
        _add_award(awards, planned, program, purchase, matched, budgets_left)
    return awards


def _add_award(awards: list[CampaignAward], planned: PlannedCampaign, program: Program,
               purchase: PurchaseTerms, matched: LineTotals,
               budgets_left: Mapping[str, int]) -> None:
    """The campaign's line, when it gives something, appended to ``awards``."""
    left = None
    if planned.budget_points is not None:
        left = budgets_left.get(planned.id, planned.budget_points)
    award = campaign_award(planned, program, purchase, matched, left)
    if award is not None:
        awards.append(award)


def budgeted_campaign_ids(program: Program, moments: list[datetime]) -> list[str]:
    """The ids of budgeted campaigns running at any of ``moments``, sorted (the lock order)."""
    plan = program.campaign_plan
    return sorted(plan.ids_running_at_any(moments) & plan.budgets.keys())
