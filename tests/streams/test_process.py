"""``loyalty process INPUT --out DIR`` (CONTRACT section 6) on a 10k-event file.

It starts its own embedded broker and PostgreSQL (no flags), and its output
files must match the direct application of the same valid events. With
``--keep`` its store outlives it; its workers' logs and ``kpis.jsonl`` are
in the output directory. In the Apache Kafka lane (LOYALTY_TEST_BROKER=kafka)
it is pointed at the session's broker through ``LOYALTY_*`` variables; the
assertions are the same.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from ledger.application import LoyaltyLedger
from ledger.calendar import format_timestamp
from ledger.commands import command_from_event
from ledger.domain import LoyaltyAccount
from projections.figures import CONTRACT_2_LIFETIME_COUNTERS
from streams.cli import main
from streams.devkit.services import stack_store_dir
from streams import process as pipeline
from streams.process import ProcessError, Worker, wait_until_processed
from streams.settings import Settings
from tests.support.streamgen import generate_events, with_faults

EVENTS = 10_000
RELAY_IN_WORKER_EVENTS = 500

pytestmark = pytest.mark.broker


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def processed(tmp_path_factory, lane_broker_env):
    events = generate_events(seed=21, count=EVENTS)
    lines, bad = with_faults(events, seed=21)
    work = tmp_path_factory.mktemp("process")
    (work / "input.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.MonkeyPatch.context() as env:
        for name, value in lane_broker_env("process").items():
            env.setenv(name, value)
        assert main(["process", str(work / "input.jsonl"), "--out", str(work / "out"),
                     "--keep", str(work / "kept")]) == 0
    direct = LoyaltyLedger()
    direct.apply_in_order([command_from_event(event) for event in events])
    yield work / "out", direct, events, bad
    shutil.rmtree(stack_store_dir(work / "kept").parent, ignore_errors=True)


def test_balances_equal_direct_application(processed):
    out, direct, _, _ = processed
    rows = read_jsonl(out / "balances.jsonl")
    assert rows
    for row in rows:
        assert row == expected_balance_row(direct.find_account(row["member_id"]))


def expected_balance_row(account: LoyaltyAccount) -> dict:
    """The ``balances.jsonl`` row of an account, contract 2's columns included (0 with the
    default program)."""
    return {
        "member_id": account.member_id, "balance": account.balance,
        "lifetime_earned": account.lifetime_earned, "lifetime_redeemed": account.lifetime_redeemed,
        "lifetime_expired": account.lifetime_expired, "lifetime_reversed": account.lifetime_reversed,
        "debt": account.debt, "last_event_at": format_timestamp(account.clock),
        "held": account.held, "pending": account.pending,
        **{name: getattr(account, name) for name in CONTRACT_2_LIFETIME_COUNTERS},
    }


def test_tiers_and_annual_awards_equal_direct_application(processed):
    out, direct, events, _ = processed
    referrers = {e["referrer_member_id"] for e in events if e["type"] == "referral"}
    for row in read_jsonl(out / "tiers.jsonl"):
        account = direct.find_account(row["member_id"])
        assert row["tier"] == account.tier
        if row["member_id"] not in referrers:  # README: a credit may open a referrer's account
            assert row["tier_since"] == format_timestamp(account.tier_since)
    awarded = {(f.member_id, f.year): f.bonus_points for f in direct.fact_log.facts()
               if isinstance(f, LoyaltyAccount.YearClosed)}
    annual = {(r["member_id"], r["year"]): r["awarded_bonus"] for r in read_jsonl(out / "annual.jsonl")
              if r["awarded_bonus"] is not None}
    assert annual == awarded


def test_tier_changes_and_ledger_facts_equal_direct_application(processed):
    out, direct, _, _ = processed
    facts = list(direct.fact_log.facts())
    expected = Counter((f.member_id, f.from_tier, f.to_tier, f.reason) for f in facts
                       if isinstance(f, LoyaltyAccount.TierChanged))
    got = Counter((r["member_id"], r["from_tier"], r["to_tier"], r["reason"])
                  for r in read_jsonl(out / "tier_changes.jsonl"))
    assert got == expected
    outcomes = {f.source_event_id for f in facts if isinstance(f, LoyaltyAccount.Outcome)}
    ledger_rows = read_jsonl(out / "ledger.jsonl")
    assert {r["source_event_id"] for r in ledger_rows if "fingerprint" in r} == outcomes
    assert any(r["type"].endswith("_rejected") for r in ledger_rows)


def test_dead_letters_are_exactly_the_bad_lines(processed):
    out, _, _, bad = processed
    letters = read_jsonl(out / "dead_letters.jsonl")
    assert sorted(base64.b64decode(l["value_base64"]).decode() for l in letters) == sorted(bad)


def test_logs_kpis_and_the_kept_store_are_left_behind(processed, tmp_path_factory):
    out, direct, events, _ = processed
    assert {"worker-0.log", "worker-1.log", "relay.log"} <= {path.name for path in (out / "logs").iterdir()}
    kpis = read_jsonl(out / "kpis.jsonl")
    kpi_years = {row.get("year") for row in kpis if row.get("kind") == "year"}
    assert {int(event["occurred_at"][:4]) for event in events} <= kpi_years
    months = [row for row in kpis if row.get("kind") == "month"]  # issue 19's figures, by month
    assert months and sum(row["purchases"] for row in months) == sum(
        row["purchases"] for row in kpis if row.get("kind") == "year")
    assert {"enrollments", "churned_members", "projected_clv_minor", "nps_score_bp",
            "breakage_rate_bp", "programme_cost_minor"} <= set(months[0])
    assert (stack_store_dir(out.parent / "kept") / "data" / "PG_VERSION").exists()


def test_the_previous_design_runs_the_relay_in_the_first_worker(tmp_path, lane_broker_env, monkeypatch):
    """``--relay-in-worker``: no relay process; the outbox is still drained (``is_processed``)."""
    events = generate_events(seed=5, count=RELAY_IN_WORKER_EVENTS)
    (tmp_path / "input.jsonl").write_text("\n".join(json.dumps(event) for event in events) + "\n")
    for name, value in lane_broker_env("process-relay-in-worker").items():
        monkeypatch.setenv(name, value)
    assert main(["process", str(tmp_path / "input.jsonl"), "--out", str(tmp_path / "out"),
                 "--relay-in-worker"]) == 0
    assert {path.name for path in (tmp_path / "out" / "logs").iterdir()} == {"worker-0.log", "worker-1.log"}
    direct = LoyaltyLedger()
    direct.apply_in_order([command_from_event(event) for event in events])
    rows = read_jsonl(tmp_path / "out" / "balances.jsonl")
    assert rows and all(row == expected_balance_row(direct.find_account(row["member_id"])) for row in rows)


@pytest.mark.parametrize("relay_in_worker, expected", [
    (False, [("worker-0", ["worker"]), ("worker-1", ["worker"]), ("relay", ["relay"])]),
    (True, [("worker-0", ["worker", "--relay"]), ("worker-1", ["worker"])]),
])
def test_start_workers_places_the_relay_as_the_setting_says(tmp_path, monkeypatch, relay_in_worker, expected):
    started = []
    monkeypatch.setattr(pipeline, "start_child", lambda settings, arguments, log_path: started.append(
        (log_path.stem, arguments)) or Worker(None, log_path))
    children = pipeline.start_workers(Settings(relay_in_worker=relay_in_worker), 2, tmp_path)
    assert started == expected and [child.name for child in children] == [name for name, _ in expected]


@pytest.mark.parametrize("command", ["process", "up", "demo"])
def test_relay_in_worker_comes_from_the_flag_or_the_environment(command, monkeypatch):
    from streams.cli import build_parser
    from streams.cli.options import settings_from

    arguments = [command, "in.jsonl", "--out", "out"] if command == "process" else [command]
    monkeypatch.delenv("LOYALTY_RELAY_IN_WORKER", raising=False)
    assert settings_from(build_parser().parse_args(arguments), stack=False).relay_in_worker is False
    parsed = build_parser().parse_args([*arguments, "--relay-in-worker"])
    assert settings_from(parsed, stack=False).relay_in_worker is True
    monkeypatch.setenv("LOYALTY_RELAY_IN_WORKER", "true")
    assert settings_from(build_parser().parse_args(arguments), stack=False).relay_in_worker is True


def test_a_relay_that_dies_stops_the_pipeline_with_its_log(tmp_path):
    log_path = tmp_path / "relay.log"
    log_path.write_text("the relay's last words\n")
    relay = Worker(subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"]), log_path)
    relay.process.wait()
    with pytest.raises(ProcessError, match="relay exited with 3:\n.*the relay's last words"):
        wait_until_processed(None, Settings(), {0: 0}, [relay], timeout_s=5)


def test_every_dead_letter_names_its_input_line(processed):
    out, _, _, bad = processed
    lines = (out.parent / "input.jsonl").read_text().splitlines()
    for letter in read_jsonl(out / "dead_letters.jsonl"):
        assert lines[letter["source_line"] - 1] == base64.b64decode(letter["value_base64"]).decode()
