"""The ``kpis`` handlers of section 7's facts (holds), on hand-made facts of the shapes the
holds work records (its facts are not on this branch yet): a hold draws its lots at once, a
capture redeems without drawing again, a release or a cancellation puts points back."""

from __future__ import annotations

from datetime import datetime, timezone
from types import SimpleNamespace

from ledger.program import load_program
from projections.kpis import KPI_OPEN_LOTS, KPI_POINTS, KpisProjection, KpisRecorder
from projections.rows import RowBatch

EXPIRES_AT = datetime(2026, 1, 2, 10, tzinfo=timezone.utc)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


def fact(**fields) -> SimpleNamespace:
    return SimpleNamespace(member_id="H", **fields)


def lot_part(points: int) -> dict:
    return {"lot_id": 1, "points": points, "expires_at": EXPIRES_AT}


def test_holds_captures_releases_and_cancellations_move_the_liability_once():
    projection = object.__new__(KpisProjection)  # its handlers need only the program
    projection.rules = load_program()
    rows = RowBatch(KpisRecorder.tables, "public", complete=True)
    steps = [
        ("account_opened", fact(tier="bronze", timestamp=at("2025-01-02T10:00"))),
        ("points_earned", fact(occurred_at=at("2025-01-02T10:00"), amount_minor=10000,
                               points=100, lot={"lot_id": 1, "points": 100,
                                                "expires_at": EXPIRES_AT})),
        ("points_held", fact(parts=[lot_part(60)])),                         # lot: 40 left
        ("points_redeemed", fact(occurred_at=at("2025-01-03T10:00"), points=50,
                                 hold_event_id="hold-1", draws=[[1, 50]])),  # no second draw
        ("hold_released", fact(occurred_at=at("2025-01-03T10:00"), expired=0,
                               returns=[lot_part(10)])),                     # lot: 50
        ("points_redeemed", fact(occurred_at=at("2025-01-04T10:00"), points=50,
                                 hold_event_id=None, draws=[[1, 50]])),      # lot drawn empty
        ("redemption_cancelled", fact(occurred_at=at("2025-02-01T10:00"), expired=20,
                                      returns=[lot_part(30)])),              # lot opens again
    ]
    for name, step in steps:
        getattr(projection, name)(step, rows)
    assert rows.get(KPI_OPEN_LOTS, ("H", 1)) == {"member_id": "H", "lot_id": 1,
                                                 "expires_month": "2026-01", "remaining": 30}
    january, february = rows.get(KPI_POINTS, ("2025-01",)), rows.get(KPI_POINTS, ("2025-02",))
    assert (january["issued"], january["redeemed"], january["cost_minor"]) == (100, 100, 100)
    assert (february["expired"], february["redeemed"]) == (20, 0)
