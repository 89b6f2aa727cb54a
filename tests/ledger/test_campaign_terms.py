"""`[[campaigns]]` in the program file (contract 2, section 12): parsed, and every
mistake refused by `loyalty check-program` with one line naming the campaign and the field."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from ledger.campaign_terms import BONUS, EXTRA_MULTIPLIER, ITEMS_REWARD, PER_ITEM
from ledger.program import DEFAULT_PROGRAM_PATH, ProgramError, parse_program
from streams.cli import main

DEFAULT_TEXT = DEFAULT_PROGRAM_PATH.read_text()

WEEKEND = """
[[campaigns]]
id = "weekend-x2"
name = "Double points weekend"
starts_at = 2025-06-07T00:00:00Z
ends_at = "2025-06-09T00:00:00+02:00"
stores = ["store-1", "store-2"]
channels = ["pos"]
tiers = ["silver", "gold"]
min_amount_minor = 1000
extra_multiplier_pct = 100
per_member_max = 2
budget_points = 50000
"""

GIFT = """
[[campaigns]]
id = "gift-3"
name = "A mug for three coffees"
starts_at = "2025-01-01T00:00:00Z"
ends_at = "2026-01-01T00:00:00Z"
sku_prefixes = ["COF-"]
items_min = 3
reward_id = "RW-MUG"
"""


def program_with(*campaigns: str):
    return parse_program(DEFAULT_TEXT + "".join(campaigns), "p.toml")


def test_the_default_program_has_no_campaigns():
    assert parse_program(DEFAULT_TEXT).campaigns == ()


def test_campaigns_are_parsed_with_every_field():
    weekend, gift = program_with(WEEKEND, GIFT).campaigns
    assert weekend.id == "weekend-x2" and weekend.effect == EXTRA_MULTIPLIER
    assert weekend.starts_at == datetime(2025, 6, 7, tzinfo=timezone.utc)
    assert weekend.ends_at == datetime(2025, 6, 8, 22, tzinfo=timezone.utc)  # offsets normalised
    assert (weekend.stores, weekend.channels, weekend.tiers) == (
        ("store-1", "store-2"), ("pos",), ("silver", "gold"))
    assert (weekend.min_amount_minor, weekend.extra_multiplier_pct) == (1000, 100)
    assert (weekend.per_member_max, weekend.budget_points) == (2, 50000)
    assert weekend.skus is None and not weekend.has_item_filter
    assert gift.effect == ITEMS_REWARD and (gift.items_min, gift.reward_id) == (3, "RW-MUG")
    assert gift.sku_prefixes == ("COF-",) and gift.has_item_filter
    assert gift.per_member_max is None and gift.budget_points is None


def test_the_window_is_half_open():
    weekend = program_with(WEEKEND).campaigns[0]
    assert weekend.runs_at(weekend.starts_at)
    assert not weekend.runs_at(weekend.ends_at)


@pytest.mark.parametrize("effect, kind", [
    ("bonus_points = 50", BONUS), ("points_per_item = 5", PER_ITEM),
    ("extra_multiplier_pct = 50", EXTRA_MULTIPLIER),
])
def test_each_plain_effect(effect, kind):
    text = GIFT.replace('items_min = 3\nreward_id = "RW-MUG"', effect)
    assert program_with(text).campaigns[0].effect == kind


MISTAKES = [
    ("duplicate id", lambda: (WEEKEND, WEEKEND.replace('"Double', '"Other')),
     "campaigns[1] (weekend-x2).id", "duplicate campaign id"),
    ("ends before it starts", lambda: (WEEKEND.replace("2025-06-09T00:00:00+02:00",
                                                        "2025-06-01T00:00:00Z"),),
     "campaigns[0] (weekend-x2).ends_at", "after starts_at"),
    ("two effects", lambda: (WEEKEND.replace("per_member_max = 2", "bonus_points = 5"),),
     "campaigns[0] (weekend-x2).effect", "exactly one effect"),
    ("no effect", lambda: (WEEKEND.replace("extra_multiplier_pct = 100\n", ""),),
     "campaigns[0] (weekend-x2).effect", "found: none"),
    ("items_min with both", lambda: (GIFT.replace("items_min = 3", "items_min = 3\nbonus_points = 9"),),
     "campaigns[0] (gift-3).items_min", "exactly one of bonus_points and reward_id"),
    ("items_min with neither", lambda: (GIFT.replace('reward_id = "RW-MUG"', ""),),
     "campaigns[0] (gift-3).items_min", "exactly one of bonus_points and reward_id"),
    ("reward without items_min", lambda: (GIFT.replace("items_min = 3\n", ""),),
     "campaigns[0] (gift-3).reward_id", "needs items_min"),
    ("unknown tier", lambda: (WEEKEND.replace('"gold"]', '"diamond"]'),),
     "campaigns[0] (weekend-x2).tiers", "unknown tier 'diamond'"),
    ("unknown channel", lambda: (WEEKEND.replace('["pos"]', '["kiosk"]'),),
     "campaigns[0] (weekend-x2).channels", "unknown channel 'kiosk'"),
    ("no offset", lambda: (WEEKEND.replace("2025-06-07T00:00:00Z", "2025-06-07T00:00:00"),),
     "campaigns[0] (weekend-x2).starts_at", "offset"),
    ("unknown field", lambda: (WEEKEND.replace("per_member_max", "per_person_max"),),
     "campaigns[0] (weekend-x2)", "per_person_max"),
    ("negative budget", lambda: (WEEKEND.replace("budget_points = 50000", "budget_points = -1"),),
     "campaigns[0] (weekend-x2).budget_points", "minimum"),
]


@pytest.mark.parametrize("case, campaigns, field, problem", MISTAKES, ids=[m[0] for m in MISTAKES])
def test_mistakes_name_the_campaign_and_field(case, campaigns, field, problem):
    with pytest.raises(ProgramError) as raised:
        program_with(*campaigns())
    assert raised.value.field == field
    assert problem in str(raised.value)


def test_check_program_prints_one_line_naming_the_campaign(tmp_path, capsys):
    good = tmp_path / "good.toml"
    good.write_text(DEFAULT_TEXT + WEEKEND + GIFT)
    assert main(["check-program", str(good)]) == 0
    assert "campaigns 2" in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text(DEFAULT_TEXT + WEEKEND.replace('["pos"]', '["kiosk"]'))
    assert main(["check-program", str(bad)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert "campaigns[0] (weekend-x2).channels" in error and "kiosk" in error


def test_campaigns_belong_to_the_program_version():
    """The file recorded per version carries the campaigns: a recorded version gives them back."""
    from ledger.program_versions import ProgramVersions

    program = program_with(WEEKEND)
    registry = ProgramVersions.start()
    registry.record(program)
    assert registry.program(program.version).campaigns == program.campaigns
