"""A program's campaigns compiled once for matching purchases (CONTRACT section 12).

``CampaignPlan`` holds a program's campaigns in file order, each as a
``PlannedCampaign``: its store, channel and tier filters as sets and its item
filter (``ItemFilter``: the ``skus`` as a set, the ``sku_prefixes``) shared
by every campaign that states the same one. ``Program.campaign_plan`` builds
it once per program, so a purchase does not rebuild any of it, and
``line_totals`` sums a purchase's lines once per distinct item filter, not
once per campaign and question. The plan is indexed by time
(``CampaignPlan.running_at``): a purchase only looks at the campaigns
running at its ``occurred_at``. ``ledger.campaigns`` decides with it; the
results are those of section 12's rules, unchanged. No I/O, no clock.

The plan is also indexed by what a purchase is (``indexed``, the default;
``LOYALTY_CAMPAIGN_INDEX=false`` restores the scan of every running
campaign): ``candidates`` keeps, per time segment, store, channel and tier,
the running campaigns whose store, channel and tier filters admit them, and
``filter_totals`` sums a purchase's lines for every item filter in one pass,
with the item filters each SKU matches kept per SKU. Both are caches of pure
functions of the plan (bounded by ``CANDIDATE_KEYS_MAX`` and ``SKUS_MAX``,
emptied when full), so the results never depend on what they hold.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from ledger.basket import BasketLine
from ledger.campaign_terms import Campaign

CANDIDATE_KEYS_MAX = 16_384  # (segment, store, channel, tier) keys kept; emptied when full
SKUS_MAX = 65_536  # SKUs whose matching item filters are kept; emptied when full


@dataclass(frozen=True, eq=False)
class ItemFilter:
    """``skus`` and ``sku_prefixes`` of a campaign: a line matching either counts (one
    instance per distinct filter in a plan, so it is hashed and compared by identity)."""

    skus: frozenset[str]
    sku_prefixes: tuple[str, ...]  # empty: no prefix given (startswith(()) is False)

    def matches(self, sku: str) -> bool:
        return sku in self.skus or sku.startswith(self.sku_prefixes)


class LineTotals(NamedTuple):
    """A purchase's counting lines that match one item filter (every line without one); a
    named tuple: made for every purchase, cheaper to build than a frozen dataclass."""

    lines: int
    units: int  # floor(quantity) of each, summed
    amount_minor: int  # a line without amount_minor counts 0


def line_totals(item_filter: ItemFilter | None, items: Iterable[BasketLine]) -> LineTotals:
    """Lines, units and amounts of the counting lines ``item_filter`` matches (None: all)."""
    lines = units = amount_minor = 0
    for line in items:
        if line.returned or (item_filter is not None and not item_filter.matches(line.sku)):
            continue
        lines += 1
        units += line.units
        amount_minor += line.amount_minor
    return LineTotals(lines, units, amount_minor)


@dataclass(frozen=True)
class PlannedCampaign:
    """One campaign with its filters as sets (None: no such filter) and the campaign's terms
    a purchase reads copied beside them (one attribute lookup each, not two)."""

    campaign: Campaign
    stores: frozenset[str] | None
    channels: frozenset[str] | None
    tiers: frozenset[str] | None
    item_filter: ItemFilter | None
    id: str
    effect: str
    min_amount_minor: int | None
    per_member_max: int | None
    budget_points: int | None

    @classmethod
    def of(cls, campaign: Campaign, item_filter: ItemFilter | None) -> "PlannedCampaign":
        return cls(campaign, _set(campaign.stores), _set(campaign.channels), _set(campaign.tiers),
                   item_filter, campaign.id, campaign.effect, campaign.min_amount_minor,
                   campaign.per_member_max, campaign.budget_points)


def _set(values: tuple[str, ...] | None) -> frozenset[str] | None:
    return frozenset(values) if values is not None else None


def _item_filter(campaign: Campaign, shared: dict[tuple, ItemFilter]) -> ItemFilter | None:
    if not campaign.has_item_filter:
        return None
    skus = frozenset(campaign.skus or ())
    prefixes = tuple(campaign.sku_prefixes or ())
    return shared.setdefault((skus, prefixes), ItemFilter(skus, prefixes))


class CampaignPlan:
    """A program's campaigns in file order, compiled and indexed by time.

    The campaigns' ``starts_at`` and ``ends_at``, sorted, cut time into
    segments in which the same campaigns run; ``running_at`` finds a moment's
    segment by bisection, so a purchase never looks at a campaign outside its
    window. ``budgets`` has each budgeted campaign's ``budget_points`` by id.
    """

    def __init__(self, campaigns: tuple[Campaign, ...], indexed: bool = True) -> None:
        shared: dict[tuple, ItemFilter] = {}
        self.campaigns = tuple(PlannedCampaign.of(campaign, _item_filter(campaign, shared))
                               for campaign in campaigns)
        self.indexed = indexed
        self._item_filters = tuple(shared.values())
        self._candidates: dict[tuple, tuple[PlannedCampaign, ...]] = {}
        self._sku_filters: dict[str, tuple[ItemFilter, ...]] = {}
        self.budgets = {campaign.id: campaign.budget_points for campaign in campaigns
                        if campaign.budget_points is not None}
        self._bounds = sorted({c.starts_at for c in campaigns} | {c.ends_at for c in campaigns})
        # Segment k is [bounds[k-1], bounds[k]); none runs before the first bound or after the last.
        self._running = ((), *(self._running_from(start) for start in self._bounds[:-1]), ())

    def _running_from(self, start: datetime) -> tuple[PlannedCampaign, ...]:
        return tuple(planned for planned in self.campaigns
                     if planned.campaign.starts_at <= start < planned.campaign.ends_at)

    def running_at(self, moment: datetime) -> tuple[PlannedCampaign, ...]:
        """The campaigns with ``starts_at <= moment < ends_at``, in file order."""
        return self._running[bisect_right(self._bounds, moment)]

    def ids_running_at_any(self, moments: Iterable[datetime]) -> set[str]:
        """The ids of the campaigns running at one of ``moments`` at least."""
        segments = {bisect_right(self._bounds, moment) for moment in moments}
        return {planned.campaign.id for segment in segments for planned in self._running[segment]}

    def candidates(self, moment: datetime, store_id: str, channel: str | None,
                   tier: str) -> tuple[PlannedCampaign, ...]:
        """The campaigns running at ``moment`` whose store, channel and tier filters admit
        the purchase, in file order (smallest amount, member limit and items not checked)."""
        key = (bisect_right(self._bounds, moment), store_id, channel, tier)
        found = self._candidates.get(key)
        if found is None:
            if len(self._candidates) >= CANDIDATE_KEYS_MAX:
                self._candidates.clear()
            found = self._candidates[key] = tuple(
                planned for planned in self._running[key[0]]
                if admits_place(planned, store_id, channel, tier))
        return found

    def filter_totals(self, items: Iterable[BasketLine]) -> dict[ItemFilter, LineTotals]:
        """``line_totals`` of every item filter some counting line matches, in one pass over
        the lines (a filter no line matches has no entry); each filter's totals are a new
        ``LineTotals`` per matching line (no lists, no second pass to convert them)."""
        sums: dict[ItemFilter, LineTotals] = {}
        for line in items:
            if line.returned:
                continue
            for item_filter in self._filters_of(line.sku):
                found = sums.get(item_filter)
                sums[item_filter] = (LineTotals(1, line.units, line.amount_minor) if found is None else
                                     LineTotals(found[0] + 1, found[1] + line.units,
                                                found[2] + line.amount_minor))
        return sums

    def _filters_of(self, sku: str) -> tuple[ItemFilter, ...]:
        found = self._sku_filters.get(sku)
        if found is None:
            if len(self._sku_filters) >= SKUS_MAX:
                self._sku_filters.clear()
            found = self._sku_filters[sku] = tuple(
                item_filter for item_filter in self._item_filters if item_filter.matches(sku))
        return found


def admits_place(planned: PlannedCampaign, store_id: str, channel: str | None, tier: str) -> bool:
    """The campaign's store, channel and tier filters admit the purchase (a purchase without
    channel matches no channels filter)."""
    return ((planned.stores is None or store_id in planned.stores)
            and (planned.channels is None or channel in planned.channels)
            and (planned.tiers is None or tier in planned.tiers))
