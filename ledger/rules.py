"""Pure decision helpers of the program rules (CONTRACT section 3).

State classes (``Lot``, ``PurchaseRecord``) and the functions the aggregate's
commands use to decide: which lots a draw takes from, which lots expire,
the spend a tier is judged on, the annual incentive (also what the read
models project and ``verify`` checks). No I/O, no clock, no mutation of
arguments.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from ledger.program import PERCENT, Program


@dataclass
class Lot:
    """An award of points; ``remaining`` is what is still unspent."""

    lot_id: int
    occurred_at: datetime
    expires_at: datetime
    points: int
    remaining: int
    source_event_id: str
    active_from: datetime | None = None  # a pending lot's activation time; None once active


@dataclass
class PurchaseRecord:
    """What a refund and the annual incentive need to know of a purchase."""

    event_id: str
    occurred_at: datetime
    year: int
    amount_minor: int
    points: int
    lot_id: int | None
    refunded_minor: int = 0
    reversed_points: int = 0

    @property
    def fully_refunded(self) -> bool:
        return self.refunded_minor >= self.amount_minor


def oldest_first(lots: list[Lot]) -> list[Lot]:
    """Lots by ``occurred_at``, ties by creation order (``lot_id``)."""
    return sorted(lots, key=lambda lot: (lot.occurred_at, lot.lot_id))


def draw_order(lots: list[Lot], first_lot_id: int | None = None) -> list[Lot]:
    """The lot ``first_lot_id`` (a refunded purchase's own lot) first, then oldest first."""
    first = [lot for lot in lots if lot.lot_id == first_lot_id]
    rest = [lot for lot in lots if lot.lot_id != first_lot_id]
    return first + oldest_first(rest)


def draw_points(
    lots: list[Lot], points: int, first_lot_id: int | None = None
) -> tuple[list[list[int]], int]:
    """Take ``points`` from ``lots``: returns ``[[lot_id, taken], ...]`` and the shortfall."""
    draws: list[list[int]] = []
    left = points
    for lot in draw_order(lots, first_lot_id):
        if left == 0:
            break
        taken = min(lot.remaining, left)
        draws.append([lot.lot_id, taken])
        left -= taken
    return draws, left


def active_lots(lots: list[Lot]) -> list[Lot]:
    """The lots a member can spend from (pending lots are never drawn: section 8)."""
    return [lot for lot in lots if lot.active_from is None]


def activating_lots(lots: list[Lot], clock: datetime, debt: int) -> list[list[int]]:
    """``[[lot_id, points, debt_paid], ...]``: pending lots due at ``clock``, oldest first.

    Each pays what remains of ``debt`` first. A lot whose expiry comes at or
    before its activation never activates (it expires instead).
    """
    due = [lot for lot in lots if lot.active_from is not None
           and lot.active_from <= clock and lot.expires_at > lot.active_from]
    activations = []
    for lot in oldest_first(due):
        paid = min(lot.remaining, debt)
        debt -= paid
        activations.append([lot.lot_id, lot.remaining, paid])
    return activations


def expiring_lots(lots: list[Lot], clock: datetime) -> list[list[int]]:
    """``[[lot_id, unspent], ...]`` for every open lot whose expiry is at or before ``clock``."""
    due = [lot for lot in lots if lot.expires_at <= clock]  # usually none: filter before sorting
    return [[lot.lot_id, lot.remaining] for lot in oldest_first(due)]


def qualifying_spend(spend_by_year: dict[str, int], clock: datetime) -> int:
    """max(spend of the clock's year, spend of the year before): status holds a year."""
    this_year = spend_by_year.get(str(clock.year), 0)
    last_year = spend_by_year.get(str(clock.year - 1), 0)
    return max(this_year, last_year)


def lifetime_spend(spend_by_year: dict[str, int]) -> int:
    """Qualifying spend of every year: the basis of ``tier_basis = "lifetime"`` (section 11)."""
    return sum(spend_by_year.values())


def annual_totals(purchases: Iterable[PurchaseRecord]) -> tuple[int, int]:
    """A year's ``(purchases not fully refunded, net purchase points)``: the points its
    purchases earned minus what their refunds reversed."""
    counted = net_points = 0
    for purchase in purchases:
        counted += 0 if purchase.fully_refunded else 1
        net_points += purchase.points - purchase.reversed_points
    return counted, net_points


def annual_bonus(purchases_not_fully_refunded: int, net_purchase_points: int,
                 program: Program) -> tuple[bool, int]:
    """The annual incentive: ``(eligible, bonus points)``.

    Eligible with at least ``annual_purchases_min`` purchases not fully
    refunded; the bonus is then ``annual_bonus_pct`` percent of the net
    purchase points (none below zero), rounded down.
    """
    eligible = purchases_not_fully_refunded >= program.annual_purchases_min
    if not eligible:
        return False, 0
    return True, max(net_purchase_points, 0) * program.annual_bonus_pct // PERCENT


def come_back(parts: Iterable[dict], clock: datetime, debt: int) -> tuple[int, int, list[tuple[dict, int]]]:
    """Contract 2's rule for points that come back or arrive, part by part in draw order.

    Each part (a dict with ``points`` and its lot's ``expires_at``) past expiry at
    ``clock`` expires; the rest pays what remains of ``debt`` first, then is kept.
    Returns ``(expired, debt_paid, [(part, kept points), ...])`` for the parts that keep any.
    """
    expired, debt_left, kept = 0, debt, []
    for part in parts:
        if part["expires_at"] <= clock:
            expired += part["points"]
            continue
        paid = min(part["points"], debt_left)
        debt_left -= paid
        if part["points"] > paid:
            kept.append((part, part["points"] - paid))
    return expired, debt - debt_left, kept
