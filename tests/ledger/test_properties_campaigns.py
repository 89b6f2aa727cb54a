"""Property tests of campaigns (contract 2, section 12), over random streams of purchases
with random baskets, refunds, redemptions and year ends:

- with campaigns that never match (outside their window, or for skus no basket has), every
  account equals the one the program without campaigns gives;
- with campaigns that match (every effect, limits, a small budget), the invariant holds after
  every event, the budget is never overspent and equals the campaign lines, and rebuilding an
  account from its facts (with and without snapshots) is equal;
- the campaigns read model caught up live in small batches equals its replay (PostgreSQL).
"""

from __future__ import annotations

import itertools
from datetime import datetime, timezone

from hypothesis import given
from hypothesis import strategies as st

from ledger.application import LoyaltyLedger
from ledger.commands import command_from_event
from ledger.domain import LoyaltyAccount
from ledger.program import DEFAULT_PROGRAM_PATH, load_program, parse_program
from projections.runner import catch_up, open_read_models, read_model_digests, replay
from tests.support.properties import (account_state, property_settings, refund_body, replayed_state,
                                      timed_stream)

EXAMPLES_MAX = 25
EVENTS_MAX = 40
START = datetime(2025, 3, 1, tzinfo=timezone.utc)
SKUS = ["COF-1", "COF-2", "TEA", "GEN-1", "GEN-2"]
BUDGET_POINTS = 500
_example_ids = itertools.count()
SETTINGS = property_settings(EXAMPLES_MAX)

MATCHING = """
[[campaigns]]
id = "x2"
name = "x2"
starts_at = "2025-01-01T00:00:00Z"
ends_at = "2026-01-01T00:00:00Z"
extra_multiplier_pct = 100
per_member_max = 3

[[campaigns]]
id = "coffee"
name = "coffee"
starts_at = "2025-01-01T00:00:00Z"
ends_at = "2026-01-01T00:00:00Z"
sku_prefixes = ["COF-"]
points_per_item = 7
budget_points = %d

[[campaigns]]
id = "trio"
name = "trio"
starts_at = "2025-01-01T00:00:00Z"
ends_at = "2026-01-01T00:00:00Z"
items_min = 3
bonus_points = 30
budget_points = %d

[[campaigns]]
id = "mug"
name = "mug"
starts_at = "2025-01-01T00:00:00Z"
ends_at = "2026-01-01T00:00:00Z"
skus = ["TEA"]
items_min = 2
reward_id = "RW-MUG"
""" % (BUDGET_POINTS, BUDGET_POINTS)
NEVER = """
[[campaigns]]
id = "past"
name = "past"
starts_at = "2020-01-01T00:00:00Z"
ends_at = "2021-01-01T00:00:00Z"
bonus_points = 100

[[campaigns]]
id = "nobody-buys-this"
name = "nobody buys this"
starts_at = "2025-01-01T00:00:00Z"
ends_at = "2026-01-01T00:00:00Z"
skus = ["UNSOLD"]
points_per_item = 100
"""
DEFAULT_TEXT = DEFAULT_PROGRAM_PATH.read_text()
WITH_CAMPAIGNS = parse_program(DEFAULT_TEXT + MATCHING)
NEVER_MATCHING = parse_program(DEFAULT_TEXT + NEVER)


@st.composite
def event_streams(draw) -> list[dict]:
    prefix = f"c{next(_example_ids)}-"
    members = [prefix + name for name in ("a", "b", "c")]
    return timed_stream(draw, prefix, members, START, EVENTS_MAX, 24 * 10, [0, 0, 0, 24 * 30],
                        lambda base, purchases, moment: _event_body(base, purchases, moment))


@st.composite
def _event_body(draw, base, purchases, moment) -> dict:
    kind = draw(st.sampled_from(["purchase"] * 5 + ["refund", "redemption", "year_closed"]))
    if kind == "purchase":
        lines = draw(st.lists(st.fixed_dictionaries(
            {"sku": st.sampled_from(SKUS), "quantity": st.integers(-2, 4).filter(bool),
             "amount_minor": st.integers(-500, 20_000)}), max_size=4))
        return {**base, "type": kind, "amount_minor": draw(st.integers(1, 60_000)),
                "currency": "EUR", "store_id": "s", "items": lines}
    if kind == "refund":
        return refund_body(draw, base, purchases)
    if kind == "redemption":
        return {**base, "type": kind, "points": draw(st.integers(1, 500)), "reward_id": "r"}
    return {**base, "type": kind, "year": moment.year - 1}


def _apply(ledger: LoyaltyLedger, events: list[dict]) -> None:
    for event in events:
        for result in ledger.apply_in_order([command_from_event(event)]):
            ledger.find_account(result.member_id).check_invariant()


def _members(events: list[dict]) -> set[str]:
    return {event["member_id"] for event in events}


@SETTINGS
@given(events=event_streams())
def test_with_no_campaign_matching_results_equal_the_program_without_campaigns(events):
    plain, never = LoyaltyLedger(program=load_program()), LoyaltyLedger(program=NEVER_MATCHING)
    _apply(plain, events)
    _apply(never, events)
    for member in _members(events):
        assert account_state(never, member) == account_state(plain, member)


@SETTINGS
@given(events=event_streams())
def test_matching_campaigns_keep_the_invariant_the_budget_and_the_rebuild(events):
    ledger = LoyaltyLedger(env={"LOYALTY_SNAPSHOT_INTERVAL_EVENTS": "3"}, program=WITH_CAMPAIGNS)
    _apply(ledger, events)
    lines: dict[str, int] = {}
    for fact in ledger.fact_log.facts():
        if isinstance(fact, LoyaltyAccount.PointsEarned):
            for line in fact.campaigns:
                lines[line["campaign_id"]] = lines.get(line["campaign_id"], 0) + line["points"]
    awarded = ledger.budgets.awarded()
    for budgeted in ("coffee", "trio"):
        assert awarded.get(budgeted, 0) == lines.get(budgeted, 0) <= BUDGET_POINTS
    for member in _members(events):
        assert account_state(ledger, member) == replayed_state(ledger, member)
        assert all(uses <= 3 for campaign, uses in ledger.find_account(member).campaign_uses.items()
                   if campaign == "x2")


@property_settings(5)
@given(events=event_streams())
def test_the_campaigns_read_model_caught_up_live_equals_its_replay(pg_env, events):
    ledger = LoyaltyLedger(env=pg_env, program=WITH_CAMPAIGNS)
    with open_read_models(pg_env, ["campaigns"], ledger.program) as models:
        for event in events:
            ledger.apply_in_order([command_from_event(event)])
            catch_up(ledger, models, batch_notifications_max=7)
        live = read_model_digests(models)
        replay(ledger, models)
        assert read_model_digests(models) == live
    ledger.close()
