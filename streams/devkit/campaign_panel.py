"""The dashboard's campaigns panel (the dev kit only): each campaign of the program with
the points it awarded, its gifts and its budget left, from the ``campaigns`` read model.

A campaign that has benefited nobody yet has no row: it shows 0 and its whole budget.
Read-only; no business rule lives here.
"""

from __future__ import annotations

from rich.table import Table

from ledger.program import Program
from projections.campaigns import CAMPAIGNS
from projections.runner import ReadModels

CampaignLine = tuple[str, int, int, int, str]  # id, purchases, points, rewards, budget left


def campaign_lines(program: Program, models: ReadModels) -> list[CampaignLine]:
    """One line per campaign of ``program``, in the file's order."""
    rows = {row["campaign_id"]: row for row in models.view("campaigns").rows(CAMPAIGNS)}
    lines = []
    for campaign in program.campaigns:
        row = rows.get(campaign.id, {})
        awarded = row.get("points_awarded", 0)
        left = "-" if campaign.budget_points is None else f"{campaign.budget_points - awarded:,}"
        lines.append((campaign.id, row.get("purchases", 0), awarded, row.get("rewards_granted", 0),
                      left))
    return lines


def campaigns_table(lines: list[CampaignLine]) -> Table:
    table = Table(expand=True)
    for name in ("campaign", "purchases", "points awarded", "gifts", "budget left"):
        table.add_column(name, justify="left" if name == "campaign" else "right")
    for campaign_id, purchases, points, rewards, left in lines:
        table.add_row(campaign_id, f"{purchases:,}", f"{points:,}", f"{rewards:,}", left)
    return table
