"""The till's quote shows the campaign lines a basket would earn (contract 2, sections 12
and 14), and says what the ledger then records, on both stores."""

from __future__ import annotations

from ledger.application import LoyaltyLedger
from ledger.basket import basket_lines
from ledger.calendar import parse_timestamp
from ledger.campaign_budgets import BudgetBook
from ledger.quote import quote_purchase
from tests.support import builders as b
from tests.support.campaigns import campaign_toml, program_with

PROGRAM = program_with(
    campaign_toml("weekend-x2", "extra_multiplier_pct = 100",
                  ("2025-06-07T00:00:00Z", "2025-06-09T00:00:00Z")),
    campaign_toml("coffee", 'skus = ["COF-1"]\npoints_per_item = 5\nbudget_points = 12'),
    campaign_toml("mug", 'skus = ["COF-1"]\nitems_min = 3\nreward_id = "RW-MUG"'))
ITEMS = [{"sku": "COF-1", "quantity": 2, "amount_minor": 900}]


def quote(ledger: LoyaltyLedger, member: str, event: dict):
    return quote_purchase(
        ledger.find_account(member), ledger.program, amount_minor=event["amount_minor"],
        currency=event["currency"], occurred_at=parse_timestamp(event["occurred_at"]),
        store_id=event["store_id"], items=basket_lines(event.get("items")),
        budgets_left=BudgetBook(ledger.budgets.awarded()).lefts(ledger.program))


def earned(ledger: LoyaltyLedger, event: dict):
    [result] = ledger.apply(*b.commands(event))
    return next(fact for fact in result.facts if type(fact).__name__ == "PointsEarned")


def test_the_quote_shows_each_campaign_line_and_the_ledger_then_earns_it(ledger_env):
    ledger = LoyaltyLedger(env=ledger_env, program=PROGRAM)
    first = {**b.purchase("q", "2025-06-07T10:00:00Z", 900), "items": ITEMS}
    said = quote(ledger, "q", first)
    assert said.campaigns == [{"campaign_id": "weekend-x2", "points": 9},
                              {"campaign_id": "coffee", "points": 10}]
    assert (said.base_points, said.points) == (9, 28)
    fact = earned(ledger, first)
    assert (fact.points, fact.campaigns) == (said.points, said.campaigns)
    # the budget has 2 points left, and three coffees earn the mug
    second = {**b.purchase("q", "2025-06-10T10:00:00Z", 900),
              "items": [{"sku": "COF-1", "quantity": 3, "amount_minor": 900}]}
    said = quote(ledger, "q", second)
    assert said.campaigns == [{"campaign_id": "coffee", "points": 2},
                              {"campaign_id": "mug", "points": 0, "reward_id": "RW-MUG"}]
    assert earned(ledger, second).points == said.points == 9 + 2
    ledger.close()


def test_without_a_matching_campaign_the_quote_equals_the_plain_programs(ledger_env):
    ledger = LoyaltyLedger(env=ledger_env, program=PROGRAM)
    plain = LoyaltyLedger()
    event = b.purchase("q-late", "2025-08-01T10:00:00Z", 12399)
    assert quote(ledger, "q-late", event) == quote(plain, "q-late", event)
    ledger.close()
