"""Text from events never reaches SQL except as a parameter.

1. A story on PostgreSQL: members, event ids, stores, referrers and rewards
   named with SQL and shell metacharacters (and unicode) go through the
   ledger and every read model; afterwards every table is still there, each
   id round-trips exactly (ledger, read-model rows, ``loyalty member`` on
   the command line) and ``verify`` agrees.
2. A static check: no ``execute(...)`` or ``SQL(...)`` in ``ledger/``,
   ``projections/`` or ``streams/`` is given a string built at run time
   (f-string, ``%``, ``+`` or ``.format`` on a plain string): statements are
   constants or ``psycopg.sql`` compositions with ``Identifier``, and
   values are bound parameters, with one exception: a budgeted batch's
   new budget totals travel in the save's parameterless lock message as
   ``psycopg.sql.Literal`` values quoted by psycopg (campaign ids of the
   program file and integers, never event text;
   ``ledger/postgres/campaign_budgets.py``,
   ``tests/ledger/test_campaign_budgets_postgres.py`` checks the quoting).
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg

from ledger.application import LoyaltyLedger
from ledger.commands import command_from_event
from projections.balances import BALANCES
from projections.runner import READ_MODEL_NAMES, catch_up, open_read_models
from projections.tiers import TIERS
from projections.verify import verify
from tests.support import builders as b

ROOT = Path(__file__).resolve().parents[2]
CLI_TIMEOUT_S = 60
HOSTILE_IDS = [
    "'; DROP TABLE loyalty_events; --",
    "Robert'); DROP TABLE balances;--",
    "$$; DELETE FROM tiers; $$",
    "$1 %s %(member)s {}",
    "\" OR \"1\"=\"1",
    "`rm -rf /`; $(reboot) | cat /etc/passwd && echo pwned",
    "back\\slash\\'quote",
    "ǅemo 🦄 中文 \u202eevil\u202c",
    "tab\tnew\nline",
    "x" * 64,
]


def test_hostile_ids_round_trip_through_the_ledger_and_the_read_models(pg_env, embedded_pg, tmp_path):
    events = []
    for number, member in enumerate(HOSTILE_IDS):
        events.append(b.purchase(member, f"2025-01-{number + 1:02d}T10:00:00Z", 60_000 + number,
                                 event_id=f"{member}#p", store=member))
        events.append(b.referral(member, f"2025-01-{number + 1:02d}T11:00:00Z",
                                 HOSTILE_IDS[number - 1], event_id=f"{member}#r"))
        events.append(b.purchase(member, f"2025-02-{number + 1:02d}T10:00:00Z", 3000,
                                 event_id=f"{member}#q", store=member))
        events.append(b.refund(member, f"2025-02-{number + 1:02d}T12:00:00Z", f"{member}#p", 500,
                               event_id=f"{member}#f"))
        events.append({**b.redemption(member, f"2025-03-{number + 1:02d}T10:00:00Z", 100,
                                      event_id=f"{member}#x"), "reward_id": member})
    ledger = LoyaltyLedger(env=pg_env)
    try:
        ledger.apply_in_order([command_from_event(event) for event in events])
        with open_read_models(pg_env, program=ledger.program) as models:
            catch_up(ledger, models, batch_notifications_max=100)
            report = verify(ledger, models)
            balances = {row["member_id"]: row for row in models.view("balances").rows(BALANCES)}
            tiers = {row["member_id"] for row in models.view("tiers").rows(TIERS)}
        # every id round-trips exactly, and the facts point back at the hostile event ids
        assert set(balances) == set(HOSTILE_IDS) and tiers == set(HOSTILE_IDS)
        for member in HOSTILE_IDS:
            account = ledger.find_account(member)
            assert account.member_id == member
            assert balances[member]["balance"] == account.balance > 0
            causes = {entry.source_event_id for entry in ledger.history(member)}
            assert {f"{member}#p", f"{member}#q", f"{member}#f", f"{member}#x"} <= causes
        assert report.ok, report.mismatches[:3]
        assert_tables_intact(pg_env)
        assert_member_command_round_trips(pg_env, HOSTILE_IDS[0], ledger.find_account(HOSTILE_IDS[0]))
    finally:
        ledger.close()


def assert_tables_intact(env: dict) -> None:
    with psycopg.connect(dbname=env["POSTGRES_DBNAME"], host=env["POSTGRES_HOST"],
                         port=env["POSTGRES_PORT"], user=env["POSTGRES_USER"]) as connection:
        tables = {row[0] for row in connection.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")}
        expected = {"loyalty_events", "balances", "tiers"} | {f"{n}_tracking" for n in READ_MODEL_NAMES}
        assert expected <= tables, expected - tables
        assert connection.execute("SELECT count(*) FROM loyalty_events").fetchone()[0] > 0


def assert_member_command_round_trips(env: dict, member: str, account) -> None:
    """``loyalty member`` with a hostile argument (no shell: argv as a list)."""
    url = (f"postgresql://{env['POSTGRES_USER']}@/{env['POSTGRES_DBNAME']}"
           f"?host={env['POSTGRES_HOST']}&port={env['POSTGRES_PORT']}")
    run = subprocess.run([sys.executable, "-m", "streams.cli", "member", member, "--json"],
                         env={**os.environ, "LOYALTY_DATABASE_URL": url}, capture_output=True,
                         text=True, timeout=CLI_TIMEOUT_S)
    assert run.returncode == 0, run.stderr[-2000:]
    assert member in json.loads(run.stdout).values() or json.dumps(member)[1:-1] in run.stdout
    assert str(account.balance) in run.stdout


# ------------------------------------------------------------------ static check


SQL_CALLS = {"execute", "executemany", "SQL", "copy"}


def dynamic_string(node: ast.AST) -> bool:
    """A string built at run time from something other than constants."""
    if isinstance(node, ast.JoinedStr):
        return any(isinstance(part, ast.FormattedValue) for part in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Mod, ast.Add)):
        return not (isinstance(node.left, ast.Constant) and isinstance(node.right, ast.Constant))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format":
        return isinstance(node.func.value, ast.Constant)  # "...".format(x), not SQL("...").format
    return False


def test_no_statement_is_built_from_run_time_strings():
    offences = []
    for folder in ("ledger", "projections", "streams"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if not isinstance(node, ast.Call) or not node.args:
                    continue
                name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                if name in SQL_CALLS and dynamic_string(node.args[0]):
                    offences.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offences, offences
