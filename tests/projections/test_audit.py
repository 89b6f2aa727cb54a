"""The auditor's tools: verify, the member view (now, at a version, as of a time),
exports, the year-end producer and their command line."""

from __future__ import annotations

import csv
import io

import orjson
import pytest
from psycopg.sql import SQL, Identifier

from ledger.application import LoyaltyLedger
from ledger.commands import command_from_event
from ledger.domain import FACT_TYPES
from projections.annual import ANNUAL
from projections.auditor import member_view
from projections.balances import BALANCE_FIELDS, BALANCES
from projections.export import export
from projections.export import export_read_models
from projections.runner import catch_up
from projections.tiers import TIER_FIELDS, TIERS
from projections.verify import verify
from projections.year_end import year_closed_event, year_closed_events
from streams.validation import validate_outbound
from tests.support import builders as b
from tests.support.ledger_steps import apply
from tests.projections.steps import database_url, projected, rows_by_key, run_cli, utc

W = "walker"


@pytest.fixture
def pg_ledger(pg_env):
    ledger = LoyaltyLedger(env=pg_env)
    yield ledger
    ledger.close()


def a_small_ledger(ledger: LoyaltyLedger) -> None:
    apply(ledger,
          b.purchase("m-1", "2024-03-01T10:00:00Z", 60000, event_id="m1-buy"),
          b.purchase("m-2", "2024-03-02T10:00:00Z", 3000),
          b.redemption("m-1", "2024-04-01T10:00:00Z", 100),
          b.refund("m-1", "2024-04-02T10:00:00Z", "m1-buy", 30000),
          b.referral("m-3", "2024-05-01T10:00:00Z", "m-2"),
          b.purchase("m-3", "2024-05-02T10:00:00Z", 2500),
          b.year_closed("m-1", "2025-01-01T00:00:00Z", 2024),
          b.birthday("m-2", "2025-06-01T00:00:00Z"))


def execute(models, statement: str, *params) -> None:
    """Run one statement on the read models' database (table names are ours)."""
    with models.factory.datastore.transaction(commit=True) as cursor:
        cursor.execute(SQL(statement).format(schema=Identifier("public")), params)


# ------------------------------------------------------------------ verify

def test_verify_finds_nothing_wrong_in_read_models_the_projections_built(pg_ledger, pg_env):
    a_small_ledger(pg_ledger)
    with projected(pg_ledger, pg_env) as models:
        report = verify(pg_ledger, models)
    assert report.ok, report.mismatches
    assert report.members == 3
    assert set(report.positions.values()) == {report.head}


def test_verify_reports_each_corrupted_row(pg_ledger, pg_env):
    a_small_ledger(pg_ledger)
    with projected(pg_ledger, pg_env) as models:
        # Corrupt a balance, a tier, delete an annual row, add a row for nobody
        execute(models, "UPDATE {schema}.balances SET balance = balance + 7 WHERE member_id = %s",
                "m-2")
        execute(models, "UPDATE {schema}.tiers SET tier = 'gold' WHERE member_id = %s", "m-1")
        execute(models, "DELETE FROM {schema}.annual_incentives WHERE member_id = %s AND year = %s",
                "m-1", 2024)
        execute(models, "INSERT INTO {schema}.balances SELECT 'ghost', 0, 0, 0, 0, 0, 0, "
                        "last_event_at FROM {schema}.balances WHERE member_id = %s", "m-1")
        report = verify(pg_ledger, models)
    found = {(m.read_model, m.member_id, m.year, m.field) for m in report.mismatches}
    assert found == {
        ("balances", "m-2", None, "balance"),
        ("balances", "m-2", None, "balance_invariant"),
        ("tiers", "m-1", None, "tier"),
        ("annual", "m-1", 2024, "row"),
        ("balances", "ghost", None, "row"),
    }
    balance = next(m for m in report.mismatches if m.field == "balance")
    assert balance.read_model_value == balance.ledger + 7


def test_verify_checks_a_lagging_read_model_at_its_own_position(pg_ledger, pg_env):
    a_small_ledger(pg_ledger)
    with projected(pg_ledger, pg_env) as models:
        apply(pg_ledger, b.purchase("m-1", "2025-07-01T10:00:00Z", 99000),
              b.purchase("m-9", "2025-07-02T10:00:00Z", 1000))
        report = verify(pg_ledger, models)
    assert report.ok, report.mismatches
    assert all(position < report.head for position in report.positions.values())


def test_verify_command_prints_the_mismatches_and_fails(pg_ledger, pg_env, capsys):
    a_small_ledger(pg_ledger)
    url = database_url(pg_env)
    assert run_cli("verify", "--database-url", url, "--catch-up") == 0
    with projected(pg_ledger, pg_env) as models:
        execute(models, "UPDATE {schema}.balances SET debt = 3 WHERE member_id = %s", "m-3")
    assert run_cli("verify", "--database-url", url) == 1
    out = capsys.readouterr().out
    assert "no mismatches" in out and "m-3" in out and "debt" in out


# ------------------------------------------------------------------ member view

def test_member_view_at_every_version_and_time_equals_what_the_read_models_showed_then(
        pg_ledger, pg_env):
    events = [
        b.purchase(W, "2024-01-10T10:00:00Z", 60000, event_id="w-buy"),
        b.redemption(W, "2024-02-01T10:00:00Z", 120),
        b.purchase(W, "2024-01-20T10:00:00Z", 5000),            # late: the clock stays
        b.refund(W, "2024-03-01T10:00:00Z", "w-buy", 60000),    # back to bronze
        b.redemption(W, "2024-03-02T10:00:00Z", 10_000),        # rejected
        b.birthday(W, "2025-01-15T00:00:00Z"),                  # expiry, new year
        b.year_closed(W, "2025-01-01T00:00:00Z", 2024),         # late year end
        b.purchase(W, "2025-02-01T10:00:00Z", 250000),          # straight to gold
    ]
    seen = []
    with projected(pg_ledger, pg_env) as models:
        for offset, event in enumerate(events, start=40):
            command = command_from_event(event, source_position=f"loyalty.events/3/{offset}")
            pg_ledger.apply(command)
            catch_up(pg_ledger, models, batch_notifications_max=100)
            seen.append(_read_models_of(models, W) | {"version": pg_ledger.find_account(W).version})
    for then in seen:
        view = member_view(pg_ledger, W, version=then["version"])
        _assert_view_shows(view, then)
        assert [row["version"] for row in view.history] == list(range(1, then["version"] + 1))
    for then in seen:  # the last state with each clock is what an as-of read gives
        clock = then["balance"]["last_event_at"]
        last_with_clock = [s for s in seen if s["balance"]["last_event_at"] == clock][-1]
        _assert_view_shows(member_view(pg_ledger, W, as_of=clock), last_with_clock)
    assert member_view(pg_ledger, W, as_of=utc("2024-01-01T00:00:00Z")) is None


def _read_models_of(models, member: str) -> dict:
    balance = rows_by_key(models, "balances", BALANCES)[(member,)]
    tier = rows_by_key(models, "tiers", TIERS)[(member,)]
    annual = [row for key, row in sorted(rows_by_key(models, "annual", ANNUAL).items())
              if key[0] == member]
    return {"balance": balance, "tier": {name: tier[name] for name in TIER_FIELDS},
            "annual": annual}


def _assert_view_shows(view, then: dict) -> None:
    assert view.version == then["version"]
    assert view.balance == {name: then["balance"][name] for name in BALANCE_FIELDS}
    assert {name: view.tier[name] for name in TIER_FIELDS} == then["tier"]
    assert view.annual == then["annual"]
    # every fact names the Kafka position of the event that caused it
    offsets = {row["source_event_id"]: row["offset"] for row in view.history}
    assert {(row["topic"], row["partition"]) for row in view.history} == {("loyalty.events", 3)}
    assert sorted(offsets.values()) == list(range(40, 40 + len(offsets)))
    unspent = sum(lot["remaining"] for lot in view.lots)
    assert view.balance["balance"] == unspent - view.balance["debt"]


def test_member_view_names_the_fact_behind_the_tier(pg_ledger):
    apply(pg_ledger, b.purchase(W, "2024-01-10T10:00:00Z", 60000, event_id="w-buy"))
    view = member_view(pg_ledger, W)
    assert view.tier["tier"] == "silver"
    assert view.tier["reason"] == {"reason": "spend", "from_tier": "bronze",
                                   "qualifying_spend_minor": 60000, "version": 3,
                                   "source_event_id": "w-buy"}
    assert view.lots[0]["expires_at"] == utc("2025-01-10T10:00:00Z")


# ------------------------------------------------------------------ exports

def test_read_model_exports_use_the_contract_field_names(pg_ledger, pg_env):
    a_small_ledger(pg_ledger)
    with projected(pg_ledger, pg_env) as models:
        lines = {kind: _export(kind, pg_ledger, models) for kind in ("balances", "tiers", "annual")}
        table = _export("balances", pg_ledger, models, "csv")
    assert [list(row) for row in lines["balances"]][0] == [
        "member_id", "balance", "lifetime_earned", "lifetime_redeemed", "lifetime_expired",
        "lifetime_reversed", "debt", "last_event_at",
        # contract 2
        "held", "pending", "lifetime_adjusted_in", "lifetime_adjusted_out",
        "lifetime_transferred_in", "lifetime_transferred_out", "lifetime_cancelled",
        "lifetime_forfeited"]
    assert list(lines["tiers"][0]) == ["member_id", "tier", "spend_current_year",
                                       "spend_previous_year", "next_tier", "spend_to_next_tier",
                                       "tier_since", "discount_pct"]
    assert list(lines["annual"][0]) == ["member_id", "year", "purchases", "net_purchase_points",
                                        "eligible", "projected_bonus", "awarded_bonus"]
    assert lines["balances"][0]["last_event_at"].endswith("Z")
    assert [row["member_id"] for row in table] == ["m-1", "m-2", "m-3"]
    assert table[0]["balance"] == str(lines["balances"][0]["balance"])


def test_tier_change_and_ledger_exports_are_deterministic_and_complete(pg_ledger, pg_env):
    a_small_ledger(pg_ledger)
    with projected(pg_ledger, pg_env) as models:
        changes = _export("tier-changes", pg_ledger, models)
        facts = _export("ledger", pg_ledger, models)
        again = _export("ledger", pg_ledger, models)
        csv_facts = _export("ledger", pg_ledger, models, "csv")
    assert facts == again and len(facts) == pg_ledger.recorder.max_notification_id()
    for change in changes:
        validate_outbound("tier_changed", change)
    assert [(c["member_id"], c["from_tier"], c["to_tier"], c["reason"]) for c in changes] == [
        ("m-1", "bronze", "silver", "spend"), ("m-1", "silver", "bronze", "refund")]
    assert {fact["type"] for fact in facts} <= set(FACT_TYPES)
    earned = next(fact for fact in facts if fact["type"] == "points_earned")
    assert (earned["member_id"], earned["ledger_version"], earned["source_event_id"]) == (
        "m-1", 2, "m1-buy")
    assert earned["lot"]["expires_at"] == "2025-03-01T10:00:00Z"
    assert [row["fact_id"] for row in csv_facts] == [fact["fact_id"] for fact in facts]
    assert orjson.loads(csv_facts[1]["lot"]) == earned["lot"]


def test_kpi_export_has_year_and_liability_rows(pg_ledger, pg_env):
    a_small_ledger(pg_ledger)
    with projected(pg_ledger, pg_env) as models:
        rows = _export("kpis", pg_ledger, models)
        table = _export("kpis", pg_ledger, models, "csv")
    assert {row["kind"] for row in rows} == {"month", "year", "liability"}
    assert [row["year"] for row in rows if row["kind"] == "year"] == [2024, 2025]
    assert len(table) == len(rows)


def test_loyalty_process_gets_its_read_model_files_caught_up(pg_ledger, pg_env, tmp_path):
    a_small_ledger(pg_ledger)
    counts = export_read_models(pg_ledger, database_url(pg_env), tmp_path)
    kpi_rows = counts.pop("kpis.jsonl")
    assert counts == {"balances.jsonl": 3, "tiers.jsonl": 3, "annual.jsonl": 3,  # all in 2024
                      "campaigns.jsonl": 0}  # the default program has no campaign
    kpis = [orjson.loads(line) for line in (tmp_path / "kpis.jsonl").read_text().splitlines()]
    assert len(kpis) == kpi_rows and {row["kind"] for row in kpis} == {"month", "year", "liability"}
    year_row = next(row for row in kpis if row["kind"] == "year")
    assert {"enrollments", "churned_members", "historical_clv_minor", "projected_clv_minor",
            "nps_score_bp", "breakage_rate_bp", "programme_cost_minor",
            "average_check_minor_bronze"} <= set(year_row)
    assert year_row["enrollments"] == 3  # m-1, m-2 and m-3, from their first events
    lines = (tmp_path / "balances.jsonl").read_text().splitlines()
    balances = [orjson.loads(line) for line in lines]
    assert [row["member_id"] for row in balances] == ["m-1", "m-2", "m-3"]


def _export(kind: str, ledger, models, fmt: str = "jsonl") -> list[dict]:
    out = io.StringIO()
    count = export(kind, ledger, models, out, fmt)
    text = out.getvalue()
    rows = ([orjson.loads(line) for line in text.splitlines()] if fmt == "jsonl"
            else list(csv.DictReader(io.StringIO(text))))
    assert len(rows) == count
    return rows


# ------------------------------------------------------------------ year end

def test_closing_a_year_twice_changes_nothing(pg_ledger):
    a_small_ledger(pg_ledger)
    events = year_closed_events(pg_ledger, 2025)
    assert events == year_closed_events(pg_ledger, 2025)
    assert [e["member_id"] for e in events] == ["m-1", "m-2", "m-3"]
    assert events[0] == {"type": "year_closed", "schema_version": 1,
                         "event_id": "year-closed:2025:m-1", "member_id": "m-1",
                         "occurred_at": "2026-01-01T00:00:00Z", "year": 2025}
    first = pg_ledger.apply(*map(command_from_event, events))
    head = pg_ledger.recorder.max_notification_id()
    second = pg_ledger.apply(*map(command_from_event, year_closed_events(pg_ledger, 2025)))
    assert {r.status for r in first} == {"applied"}
    assert {r.status for r in second} == {"duplicate"}
    assert pg_ledger.recorder.max_notification_id() == head


def test_year_closed_event_refuses_a_year_outside_the_contract():
    with pytest.raises(ValueError):
        year_closed_event("m-1", 2999)


# ------------------------------------------------------------------ command line

def test_commands_run_against_a_database_url(pg_ledger, pg_env, capsys, tmp_path):
    a_small_ledger(pg_ledger)
    url = database_url(pg_env)
    assert run_cli("replay", "--database-url", url, "--no-progress", "--batch-notifications-max",
                   "5") == 0
    assert "replayed balances, tiers, annual, kpis" in capsys.readouterr().err
    apply(pg_ledger, b.birthday("m-4", "2025-07-01T00:00:00Z"))
    assert run_cli("replay", "balances", "--resume", "--database-url", url, "--no-progress") == 0
    assert "caught up balances: 2 notifications in 1 transactions" in capsys.readouterr().err
    assert run_cli("export", "tiers", "--database-url", url, "--out", str(tmp_path / "t.csv"),
                   "--format", "csv") == 0
    assert (tmp_path / "t.csv").read_text().startswith("member_id,tier,")
    assert run_cli("member", "m-1", "--database-url", url, "--version", "3", "--json") == 0
    view = orjson.loads(capsys.readouterr().out)
    assert view["version"] == 3 and view["tier"]["tier"] == "silver"
    assert run_cli("member", "m-1", "--database-url", url,
                   "--as-of", "2024-03-31T00:00:00+02:00") == 0
    assert "m-1" in capsys.readouterr().out
    assert run_cli("close-year", "2025", "--database-url", url) == 0
    assert len(capsys.readouterr().out.splitlines()) == 4  # m-1, m-2, m-3, m-4
    assert run_cli("replay", "nonsense", "--database-url", url) == 2
    assert run_cli("member", "nobody", "--database-url", url) == 2


def test_replay_rebuilds_in_large_transactions_and_follows_in_small_ones():
    from streams.cli.audit import batch_sizes
    from projections.runner import BATCH_NOTIFICATIONS_MAX_DEFAULT, REPLAY_BATCH_NOTIFICATIONS_MAX_DEFAULT
    from streams.cli import build_parser

    default = build_parser().parse_args(["replay", "--follow"])
    assert batch_sizes(default) == (REPLAY_BATCH_NOTIFICATIONS_MAX_DEFAULT, BATCH_NOTIFICATIONS_MAX_DEFAULT)
    assert REPLAY_BATCH_NOTIFICATIONS_MAX_DEFAULT > BATCH_NOTIFICATIONS_MAX_DEFAULT
    given = build_parser().parse_args(["replay", "--batch-notifications-max", "7"])
    assert batch_sizes(given) == (7, 7)
