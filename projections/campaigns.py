"""The ``campaigns`` read model (CONTRACT contract 2, section 12): a row per campaign.

``purchases`` and ``members`` count the purchases (and distinct members) that
the campaign gave points > 0 (a line of ``points_earned``) or its reward
(``reward_granted``); ``points_awarded`` sums its lines; ``rewards_granted``
counts its gifts; ``qualifying_spend_minor`` adds those purchases'
``amount_minor``; ``budget_left`` is the campaign's ``budget_points`` (in the
program version of the fact) minus ``points_awarded``, null without a
budget. Refunds change none of them (a refund gives no budget back). A
campaign gets its row with its first benefit. Built from the facts alone, so
a replay gives the same rows; the helper table ``campaign_members`` (member,
campaign, purchases) tells a member's first benefit of a campaign.

Facts handled: ``points_earned``, ``reward_granted``.
"""

from __future__ import annotations

from typing import Any

from projections.base import ReadModelProjection, ReadModelRecorder
from projections.rows import Row, RowBatch, Table

CAMPAIGNS = Table(
    name="campaigns",
    columns=(
        ("campaign_id", "text NOT NULL"),
        ("purchases", "bigint NOT NULL"),
        ("members", "bigint NOT NULL"),
        ("points_awarded", "bigint NOT NULL"),
        ("rewards_granted", "bigint NOT NULL"),
        ("budget_left", "bigint"),
        ("qualifying_spend_minor", "bigint NOT NULL"),
    ),
    key=("campaign_id",),
    member_scoped=False,
)
CAMPAIGN_MEMBERS = Table(
    name="campaign_members",
    columns=(("member_id", "text NOT NULL"), ("campaign_id", "text NOT NULL"),
             ("purchases", "bigint NOT NULL")),
    key=("member_id", "campaign_id"),
)
CAMPAIGN_FIELDS = CAMPAIGNS.column_names


class CampaignsRecorder(ReadModelRecorder):
    tables = (CAMPAIGNS, CAMPAIGN_MEMBERS)


class CampaignsProjection(ReadModelProjection):
    name = "campaigns"
    view_class = CampaignsRecorder

    # ----------------------------------------------------------- handlers

    def points_earned(self, fact: Any, rows: RowBatch) -> None:
        for line in fact.campaigns:
            row = self._benefit(fact, line["campaign_id"], fact.amount_minor, rows)
            row["points_awarded"] += line["points"]
            self._save(row, fact, rows)

    def reward_granted(self, fact: Any, rows: RowBatch) -> None:
        row = self._benefit(fact, fact.campaign_id, fact.amount_minor, rows)
        row["rewards_granted"] += 1
        self._save(row, fact, rows)

    # -------------------------------------------------------------- steps

    def _benefit(self, fact: Any, campaign_id: str, amount_minor: int, rows: RowBatch) -> Row:
        """The campaign's row with one more benefiting purchase (and member, the first time)."""
        row = rows.get(CAMPAIGNS, (campaign_id,)) or {
            "campaign_id": campaign_id, "purchases": 0, "members": 0, "points_awarded": 0,
            "rewards_granted": 0, "budget_left": None, "qualifying_spend_minor": 0}
        row["purchases"] += 1
        row["qualifying_spend_minor"] += amount_minor
        member = rows.get(CAMPAIGN_MEMBERS, (fact.member_id, campaign_id))
        if member is None:
            member = {"member_id": fact.member_id, "campaign_id": campaign_id, "purchases": 0}
            row["members"] += 1
        member["purchases"] += 1
        rows.put(CAMPAIGN_MEMBERS, member)
        return row

    def _save(self, row: Row, fact: Any, rows: RowBatch) -> None:
        budget = self._budget_points(row["campaign_id"], fact)
        row["budget_left"] = None if budget is None else budget - row["points_awarded"]
        rows.put(CAMPAIGNS, row)

    def _budget_points(self, campaign_id: str, fact: Any) -> int | None:
        program = self.rules_of_version(getattr(fact, "program_version", self.rules.version))
        for campaign in program.campaigns:
            if campaign.id == campaign_id:
                return campaign.budget_points
        return None
