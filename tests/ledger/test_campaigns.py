"""Campaigns (contract 2, section 12): every effect, filter, limit and rounding of the pure
computation (``ledger.campaigns``), then the stories through the ledger: a purchase matching
three campaigns, a gift, a budget running out mid-purchase, per-member limits, refunds and the
annual incentive counting campaign points, and version-2 ``points_earned`` facts upcast."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from ledger.application import LoyaltyLedger
from ledger.basket import BasketLine
from ledger.campaign_budgets import BudgetBook, InMemoryBudgets
from ledger.campaigns import (CampaignAward, MemberCampaignState, PurchaseTerms, campaign_awards,
                              budgeted_campaign_ids)
from ledger.domain import LoyaltyAccount
from ledger.program import DEFAULT_PROGRAM_PATH, parse_program
from tests.support import builders as b
from tests.support.ledger_steps import account, apply, facts

DEFAULT_TEXT = DEFAULT_PROGRAM_PATH.read_text()
AT = datetime(2025, 6, 7, 12, tzinfo=timezone.utc)  # a Saturday inside every window below
WINDOW = 'starts_at = "2025-06-07T00:00:00Z"\nends_at = "2025-06-09T00:00:00Z"\n'


def campaign(cid: str, body: str) -> str:
    return f'\n[[campaigns]]\nid = "{cid}"\nname = "{cid}"\n{WINDOW}{body}\n'


def program_of(*campaigns: str):
    return parse_program(DEFAULT_TEXT + "".join(campaigns), "p.toml")


def terms(amount: int = 10000, *, store: str = "store-1", channel: str | None = "pos",
          items: tuple[BasketLine, ...] = (), at: datetime = AT) -> PurchaseTerms:
    return PurchaseTerms(occurred_at=at, amount_minor=amount, store_id=store, channel=channel,
                         items=items)


BRONZE = MemberCampaignState(tier="bronze", uses={})


def awards(program, purchase=None, member=BRONZE, lefts=None) -> list[CampaignAward]:
    return campaign_awards(program, member, purchase or terms(), lefts or {})


# ------------------------------------------------------------------ effects


def test_extra_multiplier_on_the_purchase_amount_rounds_down():
    program = program_of(campaign("x2", "extra_multiplier_pct = 100"))
    assert awards(program, terms(12399)) == [CampaignAward("x2", 123)]
    program = program_of(campaign("x1.5", "extra_multiplier_pct = 50"))
    assert awards(program, terms(199)) == []  # floor(0.995) = 0 points: no line


def test_extra_multiplier_with_an_item_filter_counts_the_matching_lines_amounts():
    program = program_of(campaign("wine", 'sku_prefixes = ["WINE-"]\nextra_multiplier_pct = 200'))
    lines = (BasketLine("WINE-1", 1, 1550), BasketLine("WINE-2", 2, 0),  # no amount: counts 0
             BasketLine("BREAD", 1, 300))
    assert awards(program, terms(1850, items=lines)) == [CampaignAward("wine", 31)]


def test_bonus_points_per_qualifying_purchase():
    program = program_of(campaign("b50", "bonus_points = 50"))
    assert awards(program) == [CampaignAward("b50", 50)]


def test_points_per_item_count_whole_units_of_matching_lines():
    program = program_of(campaign("coffee", 'skus = ["COF-1"]\npoints_per_item = 5'))
    lines = (BasketLine("COF-1", 2, 800), BasketLine("COF-1", 0, 90),  # 0.375 kg: 0 whole units
             BasketLine("TEA-1", 3, 900))
    assert awards(program, terms(items=lines)) == [CampaignAward("coffee", 10)]


def test_points_per_item_without_an_item_filter_counts_every_line():
    program = program_of(campaign("any", "points_per_item = 2"))
    lines = (BasketLine("A", 2, 100), BasketLine("B", 1, 100), BasketLine("R", -1, -50, True))
    assert awards(program, terms(items=lines)) == [CampaignAward("any", 6)]


def test_items_min_bonus_needs_that_many_matching_units():
    program = program_of(campaign("three", 'sku_prefixes = ["COF-"]\nitems_min = 3\nbonus_points = 40'))
    two = (BasketLine("COF-1", 2, 800),)
    three = (BasketLine("COF-1", 2, 800), BasketLine("COF-2", 1, 400))
    assert awards(program, terms(items=two)) == []
    assert awards(program, terms(items=three)) == [CampaignAward("three", 40)]


def test_items_min_reward_grants_the_reward_with_0_points():
    program = program_of(campaign("mug", 'skus = ["COF-1"]\nitems_min = 3\nreward_id = "RW-MUG"'))
    assert awards(program, terms(items=(BasketLine("COF-1", 3, 900),))) == [
        CampaignAward("mug", 0, "RW-MUG")]
    assert awards(program, terms(items=(BasketLine("COF-1", 2, 900),))) == []


def test_return_lines_match_no_campaign():
    program = program_of(campaign("coffee", 'skus = ["COF-1"]\npoints_per_item = 5'))
    returned = (BasketLine("COF-1", -2, -800, True), BasketLine("COF-1", 1, -10, True))
    assert awards(program, terms(items=returned)) == []


# ------------------------------------------------------------------ filters


@pytest.mark.parametrize("body, purchase, member, matches", [
    ('stores = ["store-2"]', terms(store="store-1"), BRONZE, False),
    ('stores = ["store-2"]', terms(store="store-2"), BRONZE, True),
    ('channels = ["online"]', terms(channel="pos"), BRONZE, False),
    ('channels = ["pos"]', terms(channel=None), BRONZE, False),  # no channel: no channels match
    ('channels = ["pos"]', terms(channel="pos"), BRONZE, True),
    ('tiers = ["gold"]', terms(), BRONZE, False),
    ('tiers = ["gold"]', terms(), MemberCampaignState("gold", {}), True),
    ("min_amount_minor = 10001", terms(10000), BRONZE, False),
    ("min_amount_minor = 10000", terms(10000), BRONZE, True),
    ('skus = ["X"]', terms(items=(BasketLine("Y", 1, 1),)), BRONZE, False),
    ('skus = ["X"]\nsku_prefixes = ["Y"]', terms(items=(BasketLine("Y1", 1, 1),)), BRONZE, True),
    ("", terms(at=datetime(2025, 6, 9, tzinfo=timezone.utc)), BRONZE, False),  # ends_at excluded
    ("", terms(at=datetime(2025, 6, 7, tzinfo=timezone.utc)), BRONZE, True),  # starts_at included
])
def test_every_filter_must_match(body, purchase, member, matches):
    program = program_of(campaign("c", f"{body}\nbonus_points = 7"))
    assert awards(program, purchase, member) == ([CampaignAward("c", 7)] if matches else [])


def test_campaigns_with_the_same_item_filter_each_count_its_lines():
    # Three campaigns state one filter; the plan shares it, each effect still counts on its own.
    same = 'sku_prefixes = ["COF-"]\nskus = ["TEA-1"]'
    program = program_of(campaign("per-item", f"{same}\npoints_per_item = 2"),
                         campaign("x2", f"{same}\nextra_multiplier_pct = 100"),
                         campaign("other", 'skus = ["COF-2"]\npoints_per_item = 1'),
                         campaign("three", f"{same}\nitems_min = 4\nbonus_points = 9"))
    lines = (BasketLine("COF-1", 2, 700), BasketLine("TEA-1", 1, 300), BasketLine("BREAD", 5, 900))
    assert awards(program, terms(1900, items=lines)) == [
        CampaignAward("per-item", 6), CampaignAward("x2", 10)]  # 3 units: not the 4 of "three"
    plan = program.campaign_plan
    assert plan is program.campaign_plan  # compiled once per program
    shared = {id(planned.item_filter) for planned in plan.campaigns if planned.campaign.id != "other"}
    assert len(shared) == 1 and plan.campaigns[2].item_filter is not plan.campaigns[0].item_filter


def test_the_plan_finds_the_campaigns_running_at_a_moment_in_file_order():
    def windowed(cid: str, starts: str, ends: str) -> str:
        return (f'\n[[campaigns]]\nid = "{cid}"\nname = "{cid}"\nstarts_at = "{starts}"\n'
                f'ends_at = "{ends}"\nbonus_points = 1\n')
    program = program_of(windowed("late", "2025-06-05T00:00:00Z", "2025-06-20T00:00:00Z"),
                         windowed("early", "2025-06-01T00:00:00Z", "2025-06-10T00:00:00Z"),
                         windowed("same", "2025-06-01T00:00:00Z", "2025-06-10T00:00:00Z"))
    plan = program.campaign_plan

    def running(text: str) -> list[str]:
        return [p.campaign.id for p in plan.running_at(datetime.fromisoformat(text))]
    assert running("2025-05-31T23:59:59+00:00") == []
    assert running("2025-06-01T00:00:00+00:00") == ["early", "same"]  # starts_at included
    assert running("2025-06-05T01:00:00+01:00") == ["late", "early", "same"]  # any offset
    assert running("2025-06-10T00:00:00+00:00") == ["late"]  # ends_at excluded
    assert running("2025-06-20T00:00:00+00:00") == []
    assert plan.ids_running_at_any([datetime(2025, 6, 15, tzinfo=timezone.utc),
                                    datetime(2025, 6, 2, tzinfo=timezone.utc)]) == {"late", "early", "same"}


# ------------------------------------------------------------------- limits


def test_per_member_max_counts_earlier_benefits():
    program = program_of(campaign("c", "bonus_points = 7\nper_member_max = 2"))
    assert awards(program, member=MemberCampaignState("bronze", {"c": 1})) == [CampaignAward("c", 7)]
    assert awards(program, member=MemberCampaignState("bronze", {"c": 2})) == []


def test_a_budget_gives_what_remains_then_nothing():
    program = program_of(campaign("c", "bonus_points = 70\nbudget_points = 100"))
    assert awards(program, lefts={"c": 100}) == [CampaignAward("c", 70)]
    assert awards(program, lefts={"c": 30}) == [CampaignAward("c", 30)]  # partial award
    assert awards(program, lefts={"c": 0}) == []


def test_each_campaign_is_computed_on_its_own_from_the_purchase():
    program = program_of(campaign("x2", "extra_multiplier_pct = 100"),
                         campaign("x1.5", "extra_multiplier_pct = 50"),
                         campaign("b", "bonus_points = 5"))
    assert awards(program, terms(10099)) == [
        CampaignAward("x2", 100), CampaignAward("x1.5", 50), CampaignAward("b", 5)]


def test_only_running_budgeted_campaigns_are_locked():
    program = program_of(campaign("zeta", "bonus_points = 1\nbudget_points = 5"),
                         campaign("alpha", "bonus_points = 1\nbudget_points = 5"),
                         campaign("free", "bonus_points = 1"))
    assert budgeted_campaign_ids(program, [AT]) == ["alpha", "zeta"]
    assert budgeted_campaign_ids(program, [datetime(2025, 1, 1, tzinfo=timezone.utc)]) == []


# ---------------------------------------------------------- through the ledger

THREE = (campaign("weekend-x2", "extra_multiplier_pct = 100")
         + campaign("coffee-bonus", 'skus = ["COF-1"]\nbonus_points = 50')
         + campaign("mug", 'sku_prefixes = ["COF-"]\nitems_min = 3\nreward_id = "RW-MUG"'))


@pytest.fixture
def ledger_of(ledger_env):
    """A ledger on each backend (in-memory, PostgreSQL) running the given program."""
    made = []

    def make(program=None):
        made.append(LoyaltyLedger(env=ledger_env, program=program))
        return made[-1]
    yield make
    for ledger in made:
        ledger.close()


def basket_purchase(member: str, at: str, amount: int, items: list[dict], **kw) -> dict:
    return {**b.purchase(member, at, amount, **kw), "items": items}


def test_a_purchase_matching_three_campaigns(ledger_of):
    ledger = ledger_of(program_of(THREE))
    results = apply(ledger, basket_purchase("m", "2025-06-07T10:00:00Z", 4550, [
        {"sku": "COF-1", "quantity": 3, "amount_minor": 1500}, {"sku": "MILK", "amount_minor": 3050}]))
    [earned] = facts(results, "points_earned")
    assert earned.campaigns == [{"campaign_id": "weekend-x2", "points": 45},
                                {"campaign_id": "coffee-bonus", "points": 50}]
    assert earned.points == 45 + 45 + 50  # base plus every campaign line, in one lot
    assert earned.lot["points"] == 140
    [gift] = facts(results, "reward_granted")
    assert (gift.campaign_id, gift.reward_id, gift.points) == ("mug", "RW-MUG", 0)
    member = account(ledger, "m")
    assert member.balance == 140
    assert member.campaign_uses == {"weekend-x2": 1, "coffee-bonus": 1, "mug": 1}


def test_with_no_campaign_matching_the_purchase_earns_as_without_campaigns(ledger_of):
    with_campaigns, without = ledger_of(program_of(THREE)), ledger_of()
    [earned] = facts(apply(with_campaigns, b.purchase("m", "2025-07-01T10:00:00Z", 4550)),
                     "points_earned")
    [plain] = facts(apply(without, b.purchase("n", "2025-07-01T10:00:00Z", 4550)),
                    "points_earned")  # another member: on PostgreSQL both share one store
    assert (earned.points, earned.campaigns, earned.lot) == (plain.points, [], plain.lot)


def test_the_tier_before_the_purchase_decides_the_tier_filter(ledger_of):
    ledger = ledger_of(program_of(campaign("silver", 'tiers = ["silver"]\nbonus_points = 9')))
    first = facts(apply(ledger, b.purchase("m", "2025-06-07T10:00:00Z", 60000)), "points_earned")
    second = facts(apply(ledger, b.purchase("m", "2025-06-07T11:00:00Z", 100)), "points_earned")
    assert first[0].campaigns == []  # bronze before it, silver only after
    assert second[0].campaigns == [{"campaign_id": "silver", "points": 9}]


def test_per_member_max_is_kept_in_the_account(ledger_of):
    ledger = ledger_of(program_of(campaign("twice", "bonus_points = 10\nper_member_max = 2")))
    lines = [facts(apply(ledger, b.purchase("m", f"2025-06-07T1{n}:00:00Z", 100)), "points_earned")[0]
             .campaigns for n in range(3)]
    assert lines == [[{"campaign_id": "twice", "points": 10}]] * 2 + [[]]
    assert facts(apply(ledger, b.purchase("other", "2025-06-07T12:00:00Z", 100)),
                 "points_earned")[0].campaigns == [{"campaign_id": "twice", "points": 10}]


def test_a_budget_that_runs_out_in_the_middle_of_a_purchase_gives_what_remains(ledger_of):
    ledger = ledger_of(program_of(campaign("tight", "bonus_points = 40\nbudget_points = 100")))
    earned = [facts(apply(ledger, b.purchase(f"m{n}", "2025-06-07T10:00:00Z", 100)),
                    "points_earned")[0] for n in range(4)]
    assert [fact.campaigns for fact in earned] == [
        [{"campaign_id": "tight", "points": 40}], [{"campaign_id": "tight", "points": 40}],
        [{"campaign_id": "tight", "points": 20}], []]
    assert ledger.budgets.awarded() == {"tight": 100}


def test_a_redelivered_purchase_spends_no_budget_twice(ledger_of):
    ledger = ledger_of(program_of(campaign("tight", "bonus_points = 40\nbudget_points = 100")))
    event = b.purchase("m", "2025-06-07T10:00:00Z", 100)
    apply(ledger, event)
    apply(ledger, event)
    assert ledger.budgets.awarded() == {"tight": 40}


def test_a_failed_round_leaves_the_in_memory_budget_untouched():
    budgets = InMemoryBudgets()
    with pytest.raises(RuntimeError), budgets.reserve(["c"]) as book:
        book.spend("c", 5)
        raise RuntimeError("save failed")
    with budgets.reserve(["c"]) as book:
        book.spend("c", 3)
    assert budgets.awarded() == {"c": 3}


def test_a_refund_reverses_base_and_campaign_points_proportionally(ledger_of):
    ledger = ledger_of(program_of(campaign("x2", "extra_multiplier_pct = 100")))
    apply(ledger, b.purchase("m", "2025-06-07T10:00:00Z", 10000, event_id="p-1"))
    [half] = facts(apply(ledger, b.refund("m", "2025-06-10T10:00:00Z", "p-1", 5000)),
                   "points_reversed")
    assert half.points == 100  # floor(200 * 5000 / 10000)
    [rest] = facts(apply(ledger, b.refund("m", "2025-06-11T10:00:00Z", "p-1", 5000)),
                   "points_reversed")
    assert rest.points == 100 and account(ledger, "m").balance == 0
    assert ledger.budgets.awarded() == {}  # refunds give no budget back (none here to give)


def test_a_refund_does_not_give_budget_back(ledger_of):
    ledger = ledger_of(program_of(campaign("b", "bonus_points = 40\nbudget_points = 100")))
    apply(ledger, b.purchase("m", "2025-06-07T10:00:00Z", 10000, event_id="p-1"),
          b.refund("m", "2025-06-08T10:00:00Z", "p-1", 10000))
    assert ledger.budgets.awarded() == {"b": 40}


def test_the_annual_incentive_counts_campaign_points(ledger_of):
    ledger = ledger_of(program_of(campaign("b", "bonus_points = 100").replace(
        WINDOW, 'starts_at = "2025-01-01T00:00:00Z"\nends_at = "2026-01-01T00:00:00Z"\n')))
    apply(ledger, *[b.purchase("m", f"2025-{month:02d}-05T10:00:00Z", 1000)  # bronze all year
                    for month in range(1, 13)])
    [closed] = facts(apply(ledger, b.year_closed("m", "2026-01-01T00:05:00Z", 2025)), "year_closed")
    assert closed.net_purchase_points == 12 * (10 + 100)
    assert closed.bonus_points == 12 * 110 * 5 // 100


def test_the_domain_spends_from_the_book_it_is_given():
    program = program_of(campaign("b", "bonus_points = 40\nbudget_points = 100"))
    book = BudgetBook({"b": 90})
    from ledger.commands import command_from_event
    command = command_from_event(b.purchase("m", "2025-06-07T10:00:00Z", 100))
    member = LoyaltyAccount.open(command, program)
    member.decide(command, program, book)
    assert book.spent == {"b": 10}
    assert member.pending_events[-1].campaigns == [{"campaign_id": "b", "points": 10}]


def test_a_version_2_points_earned_fact_is_upcast_with_no_campaign_lines():
    state = {"campaigns": "never read"}
    LoyaltyAccount.PointsEarned.upcast_v2_v3(state)
    assert state == {"campaigns": []}
    assert LoyaltyAccount.PointsEarned.class_version == 3
    snapshot_state: dict = {}
    LoyaltyAccount.upcast_v3_v4(snapshot_state)
    assert snapshot_state == {"campaign_uses": {}}
    assert LoyaltyAccount.class_version == 4


@pytest.mark.parametrize("before, spent, now, stands", [
    (100, 50, 100, True),   # nobody else spent
    (100, 50, 140, True),   # 860 left now: the 50 spent here were never cut
    (100, 50, 150, True),   # exactly 850 left now
    (100, 50, 960, False),  # 40 left now: an award would have been cut
    (950, 50, 960, False),  # this round emptied the budget: its last award may have been cut
    (950, 50, 950, True),   # ... and stands when nobody else spent
    (100, 0, 990, True),    # nothing spent here
])
def test_a_rounds_decisions_stand_unless_what_it_spent_depends_on_what_others_spent(
        before, spent, now, stands):
    book = BudgetBook({"c": before})
    book.spend("c", spent)
    assert book.stands_with({"c": now}, {"c": 1000}) is stands
