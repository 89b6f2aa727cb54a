"""The program file: the default equals the contract; a bad file names the field."""

from __future__ import annotations

import pytest

from ledger.program import DEFAULT_PROGRAM_PATH, ProgramError, load_program, parse_program
from streams.cli import main

DEFAULT_TEXT = DEFAULT_PROGRAM_PATH.read_text()


def test_default_program_equals_the_contract():
    program = load_program()
    assert program.currency == "EUR"
    assert (program.points_per_unit, program.minor_units_per_unit) == (1, 100)
    assert [(t.name, t.threshold_minor, t.multiplier_pct) for t in program.tiers] == [
        ("bronze", 0, 100), ("silver", 50000, 125), ("gold", 200000, 150),
        ("platinum", 500000, 200)]
    assert (program.expiry_months, program.birthday_points) == (12, 200)
    assert (program.referral_qualifying_purchase_minor, program.referee_points,
            program.referrer_points, program.referrer_bonuses_per_year_max) == (2000, 250, 500, 10)
    assert (program.annual_purchases_min, program.annual_bonus_pct) == (12, 5)


def test_purchase_points_formula_floors():
    program = load_program()
    assert program.purchase_points(99, 100) == 0
    assert program.purchase_points(100, 100) == 1
    assert program.purchase_points(12399, 125) == 154


@pytest.mark.parametrize(
    "old, new, field",
    [
        ('currency = "EUR"', 'currency = "euro"', "program.currency"),
        ("expiry_months = 12", "expiry_months = 0", "program.expiry_months"),
        ("bonus_pct = 5", "bonus_pct = true", "annual_incentive.bonus_pct"),
        ("bonus_pct = 5", "bonus_pct = 5.5", "annual_incentive.bonus_pct"),
        ("threshold_minor = 50000\n", "threshold_minor = 600000\n", "tiers[2].threshold_minor"),
        ("threshold_minor = 0\n", "threshold_minor = 1\n", "tiers[0].threshold_minor"),
        ('name = "gold"', 'name = "silver"', "tiers[2].name"),
        ("referrer_points = 500", "referrer_points = -1", "referral.referrer_points"),
        ("referee_points = 250\n", "referee_points = 250\nreferee_pts = 1\n", "referral"),
        ("birthday_points = 200", "", "program"),
    ],
)
def test_a_bad_program_file_names_the_field(old, new, field):
    assert old in DEFAULT_TEXT
    with pytest.raises(ProgramError) as raised:
        parse_program(DEFAULT_TEXT.replace(old, new, 1), "bad.toml")
    assert raised.value.field == field
    assert str(raised.value).startswith(f"bad.toml: {field}: ")


def test_not_toml_is_a_clear_error(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("[program\n")
    with pytest.raises(ProgramError, match="not valid TOML"):
        load_program(path)


def test_another_program_changes_the_rules(tmp_path):
    path = tmp_path / "jpy.toml"
    path.write_text(DEFAULT_TEXT.replace('"EUR"', '"JPY"').replace(
        "minor_units_per_unit = 100", "minor_units_per_unit = 1"))
    program = load_program(path)
    assert program.purchase_points(1234, 100) == 1234


def test_check_program_command(tmp_path, capsys):
    assert main(["check-program"]) == 0
    assert "EUR" in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text(DEFAULT_TEXT.replace("expiry_months = 12", "expiry_months = -3"))
    assert main(["check-program", str(bad)]) == 2
    assert "program.expiry_months" in capsys.readouterr().err
