"""The ``campaigns`` read model (CONTRACT section 12) as the console shows it, when it exists.

The campaigns read model is being built on another branch; until its table
exists the console says there are no campaigns. This reads the contract's
columns only, by name, so it needs no change when the table lands (if the
campaigns branch gives its view a reader, switch to it here).
"""

from __future__ import annotations

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
