"""Layers: nothing outside ``ledger/postgres/`` reads the event store by hand.

The production packages (``ledger``, ``projections``, ``streams``; not
``ledger/postgres/``, the adapters, nor the dev kit's database launcher) go
through ``LoyaltyLedger`` and its ``fact_log``: no ``select_notifications``,
no ``psycopg.connect``, no ``.execute(`` of SQL that names the event store's
tables, no reaching into the ledger recorder's ``datastore``. Read from the
syntax tree, so a docstring that names them is not a finding.
"""

from __future__ import annotations

import ast
from pathlib import Path

from ledger.application import LoyaltyLedger

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION_PACKAGES = ("ledger", "projections", "streams")
ALLOWED = ("ledger/postgres/", "streams/devkit/embedded_postgres.py")
EVENT_STORE_TABLES = tuple(f"{LoyaltyLedger.name}_{kind}" for kind in ("events", "tracking", "snapshots"))
EVENT_STORE_ATTRIBUTES = ("events_table_name",)
RUNS_SQL = ("execute", "executemany", "copy")


def findings(source: str) -> list[str]:
    """What in ``source`` reads or writes the event store by hand."""
    tree = ast.parse(source)
    found = []
    runs_sql = names_event_store = False
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            if node.attr == "select_notifications":
                found.append("select_notifications")
            if node.attr == "connect" and isinstance(node.value, ast.Name) and node.value.id == "psycopg":
                found.append("psycopg.connect")
            if node.attr == "datastore" and isinstance(node.value, ast.Attribute) \
                    and node.value.attr == "recorder":
                found.append("recorder.datastore")
            names_event_store |= node.attr in EVENT_STORE_ATTRIBUTES
        if isinstance(node, ast.ImportFrom) and node.module == "psycopg" \
                and any(alias.name == "connect" for alias in node.names):
            found.append("psycopg.connect")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            runs_sql |= node.func.attr in RUNS_SQL
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            names_event_store |= any(table in node.value for table in EVENT_STORE_TABLES)
    if runs_sql and names_event_store:
        found.append("SQL against the event store's tables")
    return found


def production_modules() -> list[Path]:
    modules = [path for package in PRODUCTION_PACKAGES for path in (ROOT / package).rglob("*.py")]
    return [path for path in modules
            if not path.relative_to(ROOT).as_posix().startswith(ALLOWED)]


def test_nothing_outside_the_adapters_reads_the_event_store_by_hand():
    modules = production_modules()
    assert len(modules) > 40  # the walk found the packages
    offenders = {path.relative_to(ROOT).as_posix(): found for path in modules
                 if (found := findings(path.read_text(encoding="utf-8")))}
    assert offenders == {}


def test_the_check_finds_each_kind_of_hand_made_read():
    # what streams/process.py and streams/devkit/dashboard.py did before the ledger's log API
    counted = ('import psycopg\n'
               'with psycopg.connect(url) as c:\n'
               '    c.execute("SELECT count(*) FROM loyalty_events WHERE topic = %s", (t,))\n')
    paged = "page = ledger.recorder.select_notifications(start=1, limit=10)\n"
    by_name = ("statement = SQL('SELECT 1 FROM {}').format(Identifier(r.events_table_name))\n"
               "with ledger.recorder.datastore.transaction() as cursor:\n"
               "    cursor.execute(statement)\n")
    assert findings(counted) == ["psycopg.connect", "SQL against the event store's tables"]
    assert findings(paged) == ["select_notifications"]
    assert findings(by_name) == ["recorder.datastore", "SQL against the event store's tables"]
    assert findings('"""Not select_notifications, not loyalty_events."""\n') == []
