"""A campaign's figures from the ledger's facts alone, and ``verify``'s check of the
``campaigns`` read model with them (CONTRACT contract 2, section 12).

Independence: the expected rows are summed straight from the ``points_earned``
campaign lines and ``reward_granted`` facts up to the read model's tracking
position (no projection code), with each campaign's budget from the
program that decided the fact. A mismatch names the campaign in its
``member_id`` field (the report's key column).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from eventsourcing.utils import get_topic

from ledger.application import LoyaltyLedger
from ledger.domain import LoyaltyAccount
from ledger.program import Program
from projections.campaigns import CAMPAIGNS
from projections.runner import ReadModels

READ_MODEL = "campaigns"
CAMPAIGN_FACTS = (LoyaltyAccount.PointsEarned, LoyaltyAccount.RewardGranted)


def benefits(fact: Any) -> Iterator[tuple[str, int, int]]:
    """``(campaign_id, points, rewards)`` of each campaign the fact's purchase benefited from."""
    if isinstance(fact, LoyaltyAccount.RewardGranted):
        yield fact.campaign_id, 0, 1
    else:
        for line in fact.campaigns:
            yield line["campaign_id"], line["points"], 0


def campaign_figures(facts: Iterable[Any], program_of: Any) -> dict[str, dict]:
    """Each campaign's read-model row, from its facts in log order."""
    rows: dict[str, dict] = {}
    members: set[tuple[str, str]] = set()
    for fact in facts:
        for campaign_id, points, rewards in benefits(fact):
            row = rows.setdefault(campaign_id, {
                "campaign_id": campaign_id, "purchases": 0, "members": 0, "points_awarded": 0,
                "rewards_granted": 0, "budget_left": None, "qualifying_spend_minor": 0})
            row["purchases"] += 1
            row["qualifying_spend_minor"] += fact.amount_minor
            row["members"] += (fact.member_id, campaign_id) not in members
            members.add((fact.member_id, campaign_id))
            row["points_awarded"] += points
            row["rewards_granted"] += rewards
            budget = _budget(program_of(getattr(fact, "program_version", None)), campaign_id)
            row["budget_left"] = None if budget is None else budget - row["points_awarded"]
    return rows


def _budget(program: Program, campaign_id: str) -> int | None:
    return next((c.budget_points for c in program.campaigns if c.id == campaign_id), None)


def campaign_mismatches(ledger: LoyaltyLedger, models: ReadModels) -> Iterator[Any]:
    """Every field of the ``campaigns`` rows that disagrees with the facts at its position."""
    from projections.verify import Mismatch  # verify imports this module

    position = models.view(READ_MODEL).position()
    facts = ledger.fact_log.facts(topics=[get_topic(c) for c in CAMPAIGN_FACTS], stop=position)
    expected = campaign_figures(facts, lambda version: ledger.program_for(
        version or ledger.program.version))
    actual = {row["campaign_id"]: row for row in models.view(READ_MODEL).rows(CAMPAIGNS)}
    for campaign_id in sorted(set(expected) | set(actual)):
        want, got = expected.get(campaign_id), actual.get(campaign_id)
        if want is None or got is None:
            yield Mismatch(READ_MODEL, campaign_id, None, "row", want and "present",
                           got and "present")
            continue
        for name, value in want.items():
            if got.get(name) != value:
                yield Mismatch(READ_MODEL, campaign_id, None, name, value, got.get(name))
