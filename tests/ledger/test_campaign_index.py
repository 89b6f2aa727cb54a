"""The campaign index (``CampaignPlan.candidates`` and ``filter_totals``) against the
previous design's scan of every running campaign (``campaign_awards_scanning``):

- a property test: random campaign sets (every effect, store, channel, tier, amount and item
  filters, limits, budgets, windows) and random purchases give the same lines both ways, also
  with caches so small that they are emptied between purchases;
- ``LOYALTY_CAMPAIGN_INDEX=false`` gives the ledger a scanning plan, and both settings store
  the same facts for the bench's realistic campaign set.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.campaign_program import realistic_campaign_program_text
from bench.load import simulated_lines
from ledger import campaign_plan
from ledger.application import LoyaltyLedger
from ledger.basket import BasketLine
from ledger.campaign_terms import (BONUS, EXTRA_MULTIPLIER, ITEMS_BONUS, ITEMS_REWARD, PER_ITEM,
                                   Campaign)
from ledger.campaigns import (MemberCampaignState, PurchaseTerms, campaign_awards,
                              campaign_awards_scanning)
from ledger.program import load_program, parse_program
from tests.support.builders import commands
from tests.support.crypto import deterministic_crypto

START = datetime(2025, 1, 1, tzinfo=timezone.utc)
HOURS_MAX = 24 * 60
STORES = ["S-1", "S-2", "S-3"]
SKUS = ["COF-1", "COF-2", "TEA", "GEN-01", "GEN-02"]
PREFIXES = ["COF-", "GEN-0", "T"]
TIERS = [tier.name for tier in load_program(None).tiers]
PURCHASES_MAX = 30
EXAMPLES_MAX = 200
STREAM_EVENTS = 3_000


def _subset(values: list[str]) -> st.SearchStrategy:
    return st.none() | st.lists(st.sampled_from(values), min_size=1, max_size=len(values),
                                unique=True).map(tuple)


@st.composite
def campaigns(draw, number: int) -> Campaign:
    starts = START + timedelta(hours=draw(st.integers(0, HOURS_MAX)))
    effect = draw(st.sampled_from([EXTRA_MULTIPLIER, BONUS, PER_ITEM, ITEMS_BONUS, ITEMS_REWARD]))
    return Campaign(
        id=f"c{number}", name=f"c{number}", starts_at=starts,
        ends_at=starts + timedelta(hours=draw(st.integers(1, HOURS_MAX))), effect=effect,
        extra_multiplier_pct=draw(st.integers(1, 300)), bonus_points=draw(st.integers(1, 100)),
        points_per_item=draw(st.integers(1, 9)), items_min=draw(st.integers(1, 4)),
        reward_id="RW" if effect == ITEMS_REWARD else None,
        stores=draw(_subset(STORES)), channels=draw(_subset(["pos", "online"])),
        tiers=draw(_subset(TIERS)), min_amount_minor=draw(st.none() | st.integers(0, 9000)),
        skus=draw(_subset(SKUS)), sku_prefixes=draw(_subset(PREFIXES)),
        per_member_max=draw(st.none() | st.integers(1, 3)),
        budget_points=draw(st.none() | st.integers(0, 200)))


lines = st.builds(BasketLine, sku=st.sampled_from(SKUS + ["OTHER"]), units=st.integers(0, 4),
                  amount_minor=st.integers(0, 5000), returned=st.booleans())
purchases = st.builds(
    PurchaseTerms, occurred_at=st.integers(0, 2 * HOURS_MAX).map(lambda h: START + timedelta(hours=h)),
    amount_minor=st.integers(0, 10_000), store_id=st.sampled_from(STORES + ["S-9"]),
    channel=st.sampled_from(["pos", "online", None]), items=st.lists(lines, max_size=5).map(tuple))
members = st.builds(MemberCampaignState, tier=st.sampled_from(TIERS),
                    uses=st.dictionaries(st.sampled_from([f"c{n}" for n in range(8)]),
                                         st.integers(0, 3)))
budgets = st.dictionaries(st.sampled_from([f"c{n}" for n in range(8)]), st.integers(-5, 200))


@st.composite
def programs(draw):
    count = draw(st.integers(0, 8))
    drawn = tuple(draw(campaigns(number)) for number in range(count))
    return replace(load_program(None), campaigns=drawn)


@settings(max_examples=EXAMPLES_MAX, deadline=None)
@given(programs(), st.lists(st.tuples(members, purchases, budgets), min_size=1,
                            max_size=PURCHASES_MAX), st.booleans())
def test_the_index_gives_the_lines_the_scan_gives(program, cases, tiny_caches):
    scanning = replace(program, campaign_index=False)
    assert program.campaign_plan.indexed and not scanning.campaign_plan.indexed
    old = (campaign_plan.CANDIDATE_KEYS_MAX, campaign_plan.SKUS_MAX)
    if tiny_caches:
        campaign_plan.CANDIDATE_KEYS_MAX = campaign_plan.SKUS_MAX = 1
    try:
        for member, purchase, left in cases:
            assert (campaign_awards(program, member, purchase, left)
                    == campaign_awards_scanning(scanning, member, purchase, left)
                    == campaign_awards(scanning, member, purchase, left))
    finally:
        campaign_plan.CANDIDATE_KEYS_MAX, campaign_plan.SKUS_MAX = old
    plan = program.campaign_plan
    assert len(plan._candidates) <= campaign_plan.CANDIDATE_KEYS_MAX
    assert len(plan._sku_filters) <= campaign_plan.SKUS_MAX


def test_the_setting_gives_the_ledger_a_scanning_plan_and_the_same_facts(monkeypatch):
    program = parse_program(realistic_campaign_program_text(), "chain.toml")
    events = [orjson.loads(line) for line in simulated_lines(STREAM_EVENTS)]
    stored = {}
    for value in ("true", "false"):
        deterministic_crypto(monkeypatch)
        ledger = LoyaltyLedger(env={"PERSISTENCE_MODULE": "eventsourcing.popo",
                                    "LOYALTY_CAMPAIGN_INDEX": value}, program=program)
        assert ledger.program.campaign_plan.indexed is (value == "true")
        ledger.apply_in_order(commands(*events))
        stored[value] = [(n.topic, n.state) for n in ledger.recorder.select_notifications(1, 10**6)]
        earned = sum(b'"campaign_id"' in state for _, state in stored[value])
        assert earned >= STREAM_EVENTS // 10  # campaign lines were earned: the comparison counts
    assert stored["true"] == stored["false"]
