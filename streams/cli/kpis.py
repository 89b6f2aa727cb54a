"""``loyalty kpis``: the programme KPIs as a table, JSON or CSV, and as charts.

It decodes its flags, catches the ``kpis`` read model up with the ledger
(unless ``--no-catch-up``), reads ``projections.kpi_report`` and encodes:
a rich table on a terminal (plain text elsewhere), a JSON array or CSV (the
columns of ``loyalty export kpis``). Rows: without ``--year`` or
``--month`` the year rows; ``--year Y`` its months and the year;
``--month YYYY-MM`` that month; the liability rows always. ``--chart DIR``
also writes the monthly charts (PNG, each with its data as JSON; of
``--year`` when given, else every month) and says where.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

import orjson

from projections.export import write_rows
from projections.kpi_charts import write_charts
from projections.kpi_report import kpi_fields, kpi_report, monthly_rows, report_tiers, select_rows
from projections.kpi_tables import kpi_tables
from projections.runner import BATCH_NOTIFICATIONS_MAX_DEFAULT, catch_up
from streams.cli.audit import EXIT_OK, _connection_flags, _guarded, opened
from streams.cli.options import plain_console

FORMATS = ("table", "json", "csv")
MONTH_PATTERN = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


def add_subcommand(subparsers: Any) -> None:
    helptext = "the programme KPIs per month and year: a table, JSON or CSV, and charts"
    parser = subparsers.add_parser("kpis", help=helptext, description=helptext)
    _connection_flags(parser)
    period = parser.add_mutually_exclusive_group()
    period.add_argument("--year", type=int, metavar="Y", help="the months and the year row of Y")
    period.add_argument("--month", type=month_arg, metavar="YYYY-MM", help="one month's row")
    parser.add_argument("--format", choices=FORMATS, default="table",
                        help=f"{', '.join(FORMATS)} (default table)")
    parser.add_argument("--chart", metavar="DIR", type=Path,
                        help="also write the monthly charts (PNG) and their data (JSON) to DIR")
    parser.add_argument("--no-catch-up", action="store_true",
                        help="read the read model as it stands, without catching up first")
    parser.set_defaults(run=_guarded(run_kpis))


def month_arg(text: str) -> str:
    """An argparse type: ``YYYY-MM``."""
    if not MONTH_PATTERN.match(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a month: YYYY-MM")
    return text


def run_kpis(args: argparse.Namespace) -> int:
    with opened(args, ["kpis"]) as (ledger, models):
        if not args.no_catch_up:
            catch_up(ledger, models, batch_notifications_max=BATCH_NOTIFICATIONS_MAX_DEFAULT)
        report = kpi_report(models.view("kpis"), ledger.program)
    _print(select_rows(report, args.year, args.month), args.format)
    if args.chart is not None:
        written = write_charts(monthly_rows(report, args.year), args.chart)
        print(f"wrote {len(written) // 2} charts (PNG and JSON) to {args.chart}", file=sys.stderr)
    return EXIT_OK


def _print(rows: list[dict[str, Any]], fmt: str) -> None:
    if fmt == "json":
        sys.stdout.write(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode() + "\n")
    elif fmt == "csv":
        write_rows(rows, kpi_fields(report_tiers(rows)), sys.stdout, "csv")
    else:
        console = plain_console()
        for table in kpi_tables(rows):
            console.print(table)
        if not rows:
            print("no KPI rows: the ledger has no such period yet", file=sys.stderr)
