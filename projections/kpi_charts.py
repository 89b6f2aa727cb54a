"""Charts of the programme KPIs' monthly series, drawn with matplotlib's Agg backend.

``chart_data(name, rows)`` picks one chart's series out of ``kpi_report``
rows (the same integers, nulls kept); ``render_chart(name, rows, fmt)``
draws it as PNG or SVG bytes (the console embeds SVG); ``write_charts(rows,
directory)`` writes ``<name>.png`` and ``<name>.json`` (its data) for every
chart. The charts (``CHARTS``):

- ``members``: enrollments, active and churned members per month;
- ``retention``: retention and repeat-purchase rate per month (basis points);
- ``average_check``: the average check per tier per month (minor units);
- ``nps``: the NPS score per month (basis points, -10,000..10,000);
- ``liability``: open points in money by expiry month (minor units).

Every PNG is ``CHART_WIDTH_PX`` x ``CHART_HEIGHT_PX``. matplotlib and numpy
are imported when the first chart is drawn: every ``loyalty`` command imports
this module, and loading them took 0.7 s of each process's start. The figures are
built without pyplot (no global state, safe in any thread); floats exist
only in the drawing, never in the data.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:  # matplotlib and numpy load on the first chart drawn, not with every command
    import numpy
    from matplotlib.figure import Figure

CHART_WIDTH_PX = 960
CHART_HEIGHT_PX = 540
CHART_DPI = 96
FORMATS = ("png", "svg")
TIER_PREFIX = "average_check_minor_"


@dataclass(frozen=True)
class Chart:
    """One chart: its title, the unit of its values, bars or lines, and its row kind."""

    title: str
    unit: str
    bars: bool = False
    kind: str = "month"  # the rows it draws: month rows, or liability rows (by expiry month)


CHARTS = {
    "members": Chart("Members per month", "members"),
    "retention": Chart("Retention and repeat-purchase rate per month", "basis points"),
    "average_check": Chart("Average check per tier per month", "minor units"),
    "nps": Chart("Net promoter score per month", "basis points"),
    "liability": Chart("Points liability in money by expiry month", "minor units", bars=True,
                       kind="liability"),
}
FIXED_SERIES = {
    "members": ("enrollments", "active_members", "churned_members"),
    "retention": ("retention_rate_bp", "repeat_purchase_rate_bp"),
    "nps": ("nps_score_bp",),
    "liability": ("outstanding_value_minor",),
}


def chart_data(name: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The chart's data: ``x`` (months) and each series' values, as the KPI rows hold them."""
    chart = CHARTS[name]
    drawn = [row for row in rows if row["kind"] == chart.kind]
    x_field = "month" if chart.kind == "month" else "expiry_month"
    series = FIXED_SERIES.get(name) or _tier_series(drawn)
    return {"chart": name, "title": chart.title, "unit": chart.unit, "x_field": x_field,
            "x": [row[x_field] for row in drawn],
            "series": {field: [row.get(field) for row in drawn] for field in series}}


def render_chart(name: str, rows: list[dict[str, Any]], fmt: str = "png") -> bytes:
    """The chart as PNG or SVG bytes."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown chart format {fmt!r}; known: {', '.join(FORMATS)}")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    data, chart = chart_data(name, rows), CHARTS[name]
    figure = Figure(figsize=(CHART_WIDTH_PX / CHART_DPI, CHART_HEIGHT_PX / CHART_DPI),
                    dpi=CHART_DPI)
    FigureCanvasAgg(figure)
    _draw(figure, data, chart)
    out = io.BytesIO()
    figure.savefig(out, format=fmt, dpi=CHART_DPI, metadata=_metadata(fmt))
    return out.getvalue()


def write_charts(rows: list[dict[str, Any]], directory: Path) -> list[Path]:
    """Write every chart as ``<name>.png`` with its data as ``<name>.json``; the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name in CHARTS:
        png, data = directory / f"{name}.png", directory / f"{name}.json"
        png.write_bytes(render_chart(name, rows, "png"))
        data.write_bytes(orjson.dumps(chart_data(name, rows), option=orjson.OPT_INDENT_2))
        written += [png, data]
    return written


def _tier_series(rows: list[dict[str, Any]]) -> tuple[str, ...]:
    first = rows[0] if rows else {}
    return tuple(field for field in first if field.startswith(TIER_PREFIX))


def _gaps_masked(values: list[int | None]) -> numpy.ma.MaskedArray:
    """The integer series with its missing periods (None) masked: matplotlib leaves gaps there."""
    import numpy

    return numpy.ma.masked_array([0 if value is None else value for value in values],
                                 mask=[value is None for value in values], dtype=numpy.int64)


def _draw(figure: Figure, data: dict[str, Any], chart: Chart) -> None:
    axes = figure.add_subplot()
    positions = range(len(data["x"]))
    series = data["series"]
    width = 0.8 / max(len(series), 1)
    for index, (label, values) in enumerate(series.items()):
        if chart.bars:  # a missing period has no bar
            shown = [(p + index * width, value) for p, value in zip(positions, values) if value is not None]
            axes.bar([x for x, _ in shown], [value for _, value in shown], width=width, label=label)
        else:
            axes.plot(list(positions), _gaps_masked(values), marker="o", label=label)
    axes.set_xticks(list(positions), data["x"], rotation=60, fontsize=8)
    axes.set_title(chart.title)
    axes.set_ylabel(chart.unit)
    if series:
        axes.legend(fontsize=8)
    figure.tight_layout()


def _metadata(fmt: str) -> dict[str, Any]:
    """No creation date in the file: the same rows give the same bytes."""
    return {"Date": None} if fmt == "svg" else {"Software": None}
