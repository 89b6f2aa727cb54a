"""Section 7's rules: holds, captures, voids and cancelled redemptions, decided from state.

Pure functions the aggregate's commands (``LoyaltyAccount.hold_points``,
``capture_hold``, ``void_hold``, ``cancel_redemption``) and its hold expiry
call: no I/O, no clock, no mutation of arguments.

A hold lives in the account's state (``holds``, by the hold's event id) as a
dict: ``points``, ``reward_id``, ``cash_top_up_minor``, ``expires_at``,
``sequence`` (the version of its ``points_held`` fact: creation order) and
``parts``, the points it took from each lot in draw order. A part
(``lot_parts``) carries its lot's ``lot_id``, ``occurred_at``, ``expires_at``,
``lot_points`` and ``source_event_id``, so its points can return to the lot
even after the lot emptied and left the account's open lots. A redemption
that may be cancelled keeps its parts the same way (``redemptions``).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from ledger import commands as cmd
from ledger.rules import Lot

HOLD_WINDOW, INSUFFICIENT_POINTS = "hold_window", "insufficient_points"
UNKNOWN_HOLD, EXCEEDS_HOLD = "unknown_hold", "exceeds_hold"
UNKNOWN_REDEMPTION, ALREADY_CANCELLED = "unknown_redemption", "already_cancelled"
PARTIAL_CAPTURE, VOIDED, EXPIRED, ERASED = "partial_capture", "voided", "expired", "erased"


def hold_rejection(command: cmd.HoldPoints, clock: datetime, balance: int,
                   duration_minutes_max: int) -> str | None:
    """``hold_window`` (not after ``occurred_at``, too long after it, or not after the
    clock: a late hold already run out), then ``insufficient_points``; None: accepted."""
    window_end = command.occurred_at + timedelta(minutes=duration_minutes_max)
    if not command.occurred_at < command.expires_at <= window_end or command.expires_at <= clock:
        return HOLD_WINDOW
    if balance < command.points:
        return INSUFFICIENT_POINTS
    return None


def lot_parts(lots: list[Lot], draws: list[list[int]]) -> list[dict]:
    """Draws (``[[lot_id, points], ...]``) as parts that remember their lot."""
    by_id = {lot.lot_id: lot for lot in lots}
    return [{"lot_id": lot_id, "points": points, "occurred_at": by_id[lot_id].occurred_at,
             "expires_at": by_id[lot_id].expires_at, "lot_points": by_id[lot_id].points,
             "source_event_id": by_id[lot_id].source_event_id} for lot_id, points in draws]


def capture_rejection(holds: dict[str, dict], command: cmd.CaptureHold) -> str | None:
    """``unknown_hold`` (no open hold with that id), ``exceeds_hold``; None: accepted."""
    hold = holds.get(command.hold_event_id)
    if hold is None:
        return UNKNOWN_HOLD
    if command.points is not None and command.points > hold["points"]:
        return EXCEEDS_HOLD
    return None


def split_parts(parts: list[dict], points: int) -> tuple[list[dict], list[dict]]:
    """The first ``points`` of ``parts`` in draw order, and the rest."""
    taken, rest, left = [], [], points
    for part in parts:
        first = min(part["points"], left)
        left -= first
        if first:
            taken.append({**part, "points": first})
        if part["points"] > first:
            rest.append({**part, "points": part["points"] - first})
    return taken, rest


def due_holds(holds: dict[str, dict], clock: datetime) -> list[str]:
    """Ids of the open holds run out at ``clock``, by ``expires_at`` then creation."""
    return [hold_id for hold_id in hold_order(holds) if holds[hold_id]["expires_at"] <= clock]


def hold_order(holds: dict[str, dict]) -> list[str]:
    """Ids of every open hold by ``expires_at`` then creation (expiry's order, erasure's too)."""
    return [hold_id for _, _, hold_id in
            sorted((hold["expires_at"], hold["sequence"], hold_id) for hold_id, hold in holds.items())]


def cancel_rejection(redemptions: dict[str, list[dict]], cancelled: list[str],
                     command: cmd.CancelRedemption) -> str | None:
    """``unknown_redemption`` (no redemption or capture of this member redeemed points under
    that id), ``already_cancelled``; None: accepted."""
    if command.redemption_event_id in cancelled:
        return ALREADY_CANCELLED
    if command.redemption_event_id not in redemptions:
        return UNKNOWN_REDEMPTION
    return None


def returned_lot(part: dict, points: int) -> Lot:
    """The lot a part's kept ``points`` go back to, when that lot has left the open lots."""
    return Lot(lot_id=part["lot_id"], occurred_at=part["occurred_at"], expires_at=part["expires_at"],
               points=part["lot_points"], remaining=points, source_event_id=part["source_event_id"])


def open_holds(holds: dict[str, dict]) -> list[dict]:
    """The account's open holds as the till and the auditor show them, oldest first:
    ``hold_event_id``, ``points``, ``reward_id``, ``cash_top_up_minor``, ``expires_at`` and
    the ``lots`` (``lot_id``, ``points``) they took."""
    ordered = sorted(holds.items(), key=lambda item: item[1]["sequence"])
    return [{"hold_event_id": hold_id, "points": hold["points"], "reward_id": hold["reward_id"],
             "cash_top_up_minor": hold["cash_top_up_minor"], "expires_at": hold["expires_at"],
             "lots": [{"lot_id": part["lot_id"], "points": part["points"]} for part in hold["parts"]]}
            for hold_id, hold in ordered]
