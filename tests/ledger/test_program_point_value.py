"""``program.point_value_minor``: what one redeemed point costs the programme (the KPIs' money)."""

from __future__ import annotations

import pytest

from ledger.program import DEFAULT_PROGRAM_PATH, ProgramError, load_program, parse_program
from streams.cli import main

DEFAULT_TEXT = DEFAULT_PROGRAM_PATH.read_text()


def with_point_value(value: str) -> str:
    return DEFAULT_TEXT.replace('name = "default"', f'name = "default"\npoint_value_minor = {value}')


def test_a_point_costs_one_minor_unit_unless_the_program_says_otherwise():
    assert load_program().point_value_minor == 1
    assert parse_program(with_point_value("4")).point_value_minor == 4


@pytest.mark.parametrize("value", ["-1", "0.5", '"1"'])
def test_a_point_value_that_is_not_a_whole_number_of_minor_units_is_refused(value):
    with pytest.raises(ProgramError, match="program.point_value_minor"):
        parse_program(with_point_value(value))


def test_check_program_prints_the_point_value(tmp_path, capsys):
    path = tmp_path / "valued.toml"
    path.write_text(with_point_value("25"))
    assert main(["check-program", str(path)]) == 0
    assert "a point costs 25 minor units when redeemed" in capsys.readouterr().out
