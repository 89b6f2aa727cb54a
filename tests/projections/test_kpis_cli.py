"""``loyalty kpis`` (table, JSON, CSV, charts) and ``loyalty export kpis --format csv``,
on the hand-computed stream of ``test_kpis``."""

from __future__ import annotations

import csv
import io
import re
import struct
import subprocess
import sys

import orjson
import pytest

from ledger.application import LoyaltyLedger
from projections.kpi_charts import CHART_HEIGHT_PX, CHART_WIDTH_PX, CHARTS
from projections.kpi_report import kpi_fields
from projections.kpi_tables import cell
from streams.cli import main
from tests.projections.steps import database_url
from tests.projections.test_kpis import PROGRAM, TIERS, two_years

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def url(pg_env):
    ledger = LoyaltyLedger(env=pg_env, program=PROGRAM)
    two_years(ledger)
    ledger.close()
    return database_url(pg_env)


def kpis(capsys, url: str, *flags: str) -> str:
    assert main(["kpis", "--database-url", url, *flags]) == 0
    return capsys.readouterr().out


def test_json_rows_by_year_and_month(url, capsys):
    of_2024 = orjson.loads(kpis(capsys, url, "--year", "2024", "--format", "json"))
    periods = [(row["kind"], row["month"]) for row in of_2024 if row["kind"] != "liability"]
    assert periods == [("month", f"2024-{m:02d}") for m in range(1, 13)] + [("year", None)]
    assert of_2024[12]["purchases"] == 6 and of_2024[12]["programme_cost_minor"] == 80 * 1
    years = orjson.loads(kpis(capsys, url, "--format", "json"))
    assert [row["year"] for row in years if row["kind"] == "year"] == [2024, 2025]
    [february] = [row for row in orjson.loads(kpis(capsys, url, "--month", "2024-02",
                                                   "--format", "json"))
                  if row["kind"] != "liability"]
    assert (february["churned_members"], february["points_redeemed"]) == (2, 80)
    assert [row["expiry_month"] for row in years if row["kind"] == "liability"] == [
        "2025-02", "2025-03", "2025-12", "2026-01", "2026-02"]


def test_the_table_shows_the_json_figures(url, capsys):
    rows = orjson.loads(kpis(capsys, url, "--year", "2025", "--format", "json"))
    table = kpis(capsys, url, "--year", "2025")
    lines = [[part.strip() for part in re.split("[│┃]", line)[1:-1]]
             for line in table.splitlines() if len(re.findall("[│┃]", line)) > 2]
    header, *body = lines
    periods = [row for row in rows if row["kind"] != "liability"]
    assert header == ["figure", "2025-01", "2025-02", "2025"]
    shown = {figure: cells for figure, *cells in body if figure in periods[0]}
    assert len(shown) == len(kpi_fields(list(TIERS))) - 6  # every figure but kind/year/month/liability's
    for figure, cells in shown.items():
        assert cells == [cell(row[figure]) for row in periods], figure
    liability = {cells[0]: cells[1:] for cells in body if cells[0].startswith("20")}
    assert liability["2025-03"] == ["800", "800"]  # the default program here: a point costs 1


def test_chart_writes_pngs_of_the_expected_size_and_their_data(url, capsys, tmp_path):
    rows = orjson.loads(kpis(capsys, url, "--format", "json", "--year", "2024"))
    kpis(capsys, url, "--year", "2024", "--chart", str(tmp_path / "charts"))
    written = sorted(path.name for path in (tmp_path / "charts").iterdir())
    assert written == sorted([f"{name}.png" for name in CHARTS] + [f"{name}.json" for name in CHARTS])
    for name in CHARTS:
        png = (tmp_path / "charts" / f"{name}.png").read_bytes()
        assert png[:8] == PNG_SIGNATURE and png[12:16] == b"IHDR"
        assert struct.unpack(">II", png[16:24]) == (CHART_WIDTH_PX, CHART_HEIGHT_PX)
    months = [row for row in rows if row["kind"] == "month"]
    members = orjson.loads((tmp_path / "charts" / "members.json").read_bytes())
    assert members["x"] == [row["month"] for row in months]
    assert members["series"] == {field: [row[field] for row in months]
                                 for field in ("enrollments", "active_members", "churned_members")}
    checks = orjson.loads((tmp_path / "charts" / "average_check.json").read_bytes())
    assert checks["series"]["average_check_minor_bronze"][:3] == [11666, 3000, 60000]
    assert set(checks["series"]) == {f"average_check_minor_{tier}" for tier in TIERS}
    retention = orjson.loads((tmp_path / "charts" / "retention.json").read_bytes())
    assert retention["series"]["retention_rate_bp"] == [row["retention_rate_bp"] for row in months]
    liability = orjson.loads((tmp_path / "charts" / "liability.json").read_bytes())
    assert liability["x"][0] == "2025-02" and liability["series"]["outstanding_value_minor"][0] == 30


@pytest.mark.parametrize("command", [["kpis", "--format", "csv"],
                                     ["export", "kpis", "--format", "csv"]])
def test_csv_has_one_column_per_figure_and_no_json_in_a_cell(url, capsys, command):
    assert main([*command, "--database-url", url]) == 0
    table = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert tuple(table[0]) == kpi_fields(list(TIERS))
    assert not [value for row in table for value in row.values() if value[:1] in ("{", "[")]
    year_2025 = next(row for row in table if row["kind"] == "year" and row["year"] == "2025")
    assert (year_2025["average_check_minor_silver"], year_2025["projected_clv_minor"],
            year_2025["retention_rate_bp"]) == ("10000", "21000", "6666")


@pytest.mark.parametrize("flags", [["--month", "2024-13"], ["--month", "2024-1"],
                                   ["--year", "2024", "--month", "2024-01"],
                                   ["--format", "xml"]])
def test_a_bad_period_or_format_is_one_line_and_status_2(flags, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["kpis", *flags])
    assert exit_.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_a_month_without_figures_shows_only_the_liability(url, capsys):
    assert main(["kpis", "--database-url", url, "--month", "2031-01"]) == 0
    captured = capsys.readouterr()
    assert "2031-01" not in captured.out and "points liability" in captured.out


def test_a_loyalty_command_starts_without_loading_matplotlib_until_a_chart_is_drawn():
    probe = ("import sys, streams.cli; before = 'matplotlib' in sys.modules; "
             "from projections.kpi_charts import render_chart, CHARTS; "
             "render_chart(next(iter(CHARTS)), []); print(before, 'matplotlib' in sys.modules)")
    shown = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert shown.stdout.split() == ["False", "True"]
