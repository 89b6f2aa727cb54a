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

from collections.abc import Sequence
from typing import Any

from ledger.domain import LoyaltyAccount
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

    def keys_read_ahead(self, facts: Sequence[Any]) -> dict[Table, set[tuple]]:
        """The rows of the campaigns the facts name, read with the members' rows instead of
        one by one on first use."""
        named = set()
        for fact in facts:
            if isinstance(fact, LoyaltyAccount.RewardGranted):
                named.add((fact.campaign_id,))
            else:
                named.update((line["campaign_id"],) for line in fact.campaigns or ())
        return {CAMPAIGNS: named}

    # ----------------------------------------------------------- handlers

    def points_earned(self, fact: Any, rows: RowBatch) -> None:
        if not fact.campaigns:
            return
        budgets = self._budgets(fact)
        for line in fact.campaigns:
            campaign_id = line["campaign_id"]
            row = self._benefit(fact, campaign_id, rows)
            row["points_awarded"] += line["points"]
            self._save(row, budgets.get(campaign_id), rows)

    def reward_granted(self, fact: Any, rows: RowBatch) -> None:
        row = self._benefit(fact, fact.campaign_id, rows)
        row["rewards_granted"] += 1
        self._save(row, self._budgets(fact).get(fact.campaign_id), rows)

    # -------------------------------------------------------------- steps

    def _benefit(self, fact: Any, campaign_id: str, rows: RowBatch) -> Row:
        """The campaign's row with one more benefiting purchase (and member, the first time)."""
        row = rows.get(CAMPAIGNS, (campaign_id,)) or {
            "campaign_id": campaign_id, "purchases": 0, "members": 0, "points_awarded": 0,
            "rewards_granted": 0, "budget_left": None, "qualifying_spend_minor": 0}
        row["purchases"] += 1
        row["qualifying_spend_minor"] += fact.amount_minor
        member = rows.get(CAMPAIGN_MEMBERS, (fact.member_id, campaign_id))
        if member is None:
            member = {"member_id": fact.member_id, "campaign_id": campaign_id, "purchases": 0}
            row["members"] += 1
        member["purchases"] += 1
        rows.put(CAMPAIGN_MEMBERS, member)
        return row

    @staticmethod
    def _save(row: Row, budget: int | None, rows: RowBatch) -> None:
        row["budget_left"] = None if budget is None else budget - row["points_awarded"]
        rows.put(CAMPAIGNS, row)

    def _budgets(self, fact: Any) -> dict[str, int]:
        """``budget_points`` by campaign id in the program version that decided ``fact`` (the
        plan's dict, built once per program: no scan of its campaigns per line)."""
        program = self.rules_of_version(getattr(fact, "program_version", self.rules.version))
        return program.campaign_plan.budgets
