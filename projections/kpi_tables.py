"""The programme KPIs as rich tables: one row per figure, one column per period.

``kpi_tables(rows)`` gives the periods' table (figures down, periods across:
a month or a year is a column, so dozens of figures stay readable) and the
liability table (expiry month, points, money). A cell is the row's integer
with thousands separators, ``-`` for null: the same numbers as the JSON.
"""

from __future__ import annotations

from typing import Any

from rich.table import Table

from projections.kpi_report import HEAD_FIELDS, LIABILITY_FIELDS, kpi_fields, report_tiers


def kpi_tables(rows: list[dict[str, Any]]) -> list[Table]:
    """The periods' table (if any period row), then the liability table (if any open points)."""
    periods = [row for row in rows if row["kind"] != "liability"]
    liability = [row for row in rows if row["kind"] == "liability"]
    tables = []
    if periods:
        tables.append(_periods_table(periods))
    if liability:
        tables.append(_liability_table(liability))
    return tables


def period_label(row: dict[str, Any]) -> str:
    return row["month"] or str(row["year"])


def cell(value: Any) -> str:
    return "-" if value is None else f"{value:,}" if isinstance(value, int) else str(value)


def _periods_table(periods: list[dict[str, Any]]) -> Table:
    table = Table(title="programme KPIs")
    table.add_column("figure")
    for row in periods:
        table.add_column(period_label(row), justify="right")
    figures = [field for field in kpi_fields(report_tiers(periods))
               if field not in HEAD_FIELDS + LIABILITY_FIELDS]
    for field in figures:
        table.add_row(field, *(cell(row.get(field)) for row in periods))
    return table


def _liability_table(liability: list[dict[str, Any]]) -> Table:
    table = Table(title="points liability by expiry month")
    for field in LIABILITY_FIELDS:
        table.add_column(field, justify="right")
    for row in liability:
        table.add_row(*(cell(row[field]) for field in LIABILITY_FIELDS))
    return table
