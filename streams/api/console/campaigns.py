"""The ``campaigns`` read model (CONTRACT section 12) as the console shows it, when it exists.

The campaigns read model is being built on another branch; until its table
exists the console says there are no campaigns. This reads the contract's
columns only, by name, so it needs no change when the table lands (if the
campaigns branch gives its view a reader, switch to it here).
``campaign_table`` adds each campaign's name and window from the program
file's ``[[campaigns]]`` (``Program.campaigns`` on the campaigns branch:
``id``, ``name``, ``starts_at``, ``ends_at``), so a campaign that has not
paid out yet is listed too.
"""

from __future__ import annotations

from typing import Any

from psycopg_pool import ConnectionPool

CAMPAIGN_COLUMNS = ("campaign_id", "purchases", "members", "points_awarded", "rewards_granted",
                    "budget_left", "qualifying_spend_minor")
CAMPAIGNS_SHOWN_MAX = 1000


def campaign_rows(pool: ConnectionPool) -> list[dict] | None:
    """The rows of ``campaigns`` by ``campaign_id``; None when the table does not exist."""
    with pool.connection() as connection:
        if connection.execute("SELECT to_regclass('campaigns')").fetchone()[0] is None:
            return None
        rows = connection.execute(
            "SELECT campaign_id, purchases, members, points_awarded, rewards_granted, budget_left, "
            "qualifying_spend_minor FROM campaigns ORDER BY campaign_id LIMIT %s",
            (CAMPAIGNS_SHOWN_MAX,)).fetchall()
    return [dict(zip(CAMPAIGN_COLUMNS, row)) for row in rows]


def campaign_table(rows: list[dict] | None, program: Any) -> list[dict] | None:
    """The program's campaigns (in file order) with their read-model figures, then any row the
    program no longer names; None when there is neither a table nor a campaign."""
    terms = {campaign.id: campaign for campaign in getattr(program, "campaigns", ())}
    if rows is None and not terms:
        return None
    figures = {row["campaign_id"]: row for row in rows or []}
    listed = [_with_terms(figures.get(campaign_id) or _unpaid(campaign), campaign)
              for campaign_id, campaign in terms.items()]
    return listed + [_with_terms(row, None) for campaign_id, row in figures.items() if campaign_id not in terms]


def _unpaid(campaign: Any) -> dict:
    """A campaign that has benefited no purchase yet: its whole budget is left."""
    return {"campaign_id": campaign.id, "purchases": 0, "members": 0, "points_awarded": 0,
            "rewards_granted": 0, "budget_left": getattr(campaign, "budget_points", None),
            "qualifying_spend_minor": 0}


def _with_terms(row: dict, campaign: Any) -> dict:
    return {**{column: None for column in CAMPAIGN_COLUMNS}, **row,
            "name": getattr(campaign, "name", None), "starts_at": getattr(campaign, "starts_at", None),
            "ends_at": getattr(campaign, "ends_at", None)}
