"""Contract 2's everyday rules (sections 8 to 11) and its invariant, as stories.

Each test runs on the in-memory store and on the embedded PostgreSQL (the
``ledger_env`` fixture); ``ledger_on`` builds a ledger with a program that
differs from the default in the fields a story needs. ``apply`` checks
balance + held + pending = in - out after every event.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone

import orjson
import pytest

from ledger.application import LoyaltyLedger
from eventsourcing.domain import Snapshot

from ledger.domain import CONTRACT_2_COUNTERS, LoyaltyAccount, account_id, fact_type
from ledger.program import DEFAULT_PROGRAM_PATH, ProgramError, load_program, parse_program
from streams.cli import main
from tests.support import builders as b
from tests.support.ledger_steps import account, apply, facts

M = "member-1"
DEFAULT_TEXT = DEFAULT_PROGRAM_PATH.read_text()


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(timezone.utc)


@pytest.fixture
def ledger_on(ledger_env):
    """``ledger_on(pending_days=14, ...)``: a ledger whose program differs in those fields."""
    opened = []

    def build(**overrides) -> LoyaltyLedger:
        program = dataclasses.replace(load_program(), **overrides)
        opened.append(LoyaltyLedger(env=ledger_env, program=program))
        return opened[-1]

    yield build
    for ledger in opened:
        ledger.close()


# ------------------------------------------------------- program fields (11)

def test_the_default_program_has_contract_2s_defaults():
    program = load_program()
    assert (program.version, program.pending_days, program.tier_basis) == (1, 0, "annual")
    assert [tier.discount_pct for tier in program.tiers] == [0, 0, 0, 0]
    assert program.adjustment_points_max == 1_000_000
    assert program.adjustment_reason_codes == ("goodwill", "correction", "migration", "fraud")
    assert program.transfer_points_per_year_max == 10_000


def test_contract_2_fields_are_read_and_checked():
    text = DEFAULT_TEXT.replace('name = "default"', 'name = "x"\nversion = 3\npending_days = 14\n'
                                'tier_basis = "lifetime"')
    text = text.replace("multiplier_pct = 125", "multiplier_pct = 125\ndiscount_pct = 5")
    text += '\n[adjustments]\npoints_max = 500\nreason_codes = ["goodwill"]\n'
    text += '\n[transfers]\npoints_per_year_max = 0\n'
    program = parse_program(text)
    assert (program.version, program.pending_days, program.tier_basis) == (3, 14, "lifetime")
    assert program.tier("silver").discount_pct == 5
    assert (program.adjustment_points_max, program.adjustment_reason_codes) == (500, ("goodwill",))
    assert program.transfer_points_per_year_max == 0
    for bad, field in [("pending_days = 91", "program.pending_days"),
                       ('tier_basis = "forever"', "program.tier_basis"),
                       ("version = 0", "program.version")]:
        with pytest.raises(ProgramError, match=field):
            parse_program(DEFAULT_TEXT.replace('name = "default"', f'name = "x"\n{bad}'))


def test_check_program_prints_the_version(tmp_path, capsys):
    path = tmp_path / "v7.toml"
    path.write_text(DEFAULT_TEXT.replace('name = "default"', 'name = "default"\nversion = 7'))
    assert main(["check-program", str(path)]) == 0
    assert "version 7" in capsys.readouterr().out


# ----------------------------------------------- program_version on outcomes

def test_every_outcome_fact_records_the_program_version(ledger_on):
    ledger = ledger_on(version=4)
    buy = b.purchase(M, "2025-01-10T10:00:00Z", 60000)
    results = apply(ledger, buy, b.refund(M, "2025-01-11T10:00:00Z", buy["event_id"], 100),
                    b.birthday(M, "2025-01-12T10:00:00Z"),
                    b.redemption(M, "2025-01-13T10:00:00Z", 10**6))
    outcomes = [f for r in results for f in r.facts if isinstance(f, LoyaltyAccount.Outcome)]
    assert [fact_type(f) for f in outcomes] == [
        "points_earned", "points_reversed", "birthday_rewarded", "redemption_rejected"]
    assert {f.program_version for f in outcomes} == {4}
    assert {fact.program_version for fact in ledger.events.get(account_id(M))
            if isinstance(fact, LoyaltyAccount.Outcome)} == {4}


def test_an_outcome_stored_before_versions_reads_as_version_1(ledger):
    [result] = apply(ledger, b.purchase(M, "2025-01-10T10:00:00Z", 5000))
    (earned,) = facts([result], "points_earned")
    stored = ledger.mapper.to_stored_event(earned)
    state = orjson.loads(stored.state)
    assert (state.pop("class_version"), state.pop("program_version")) == (2, 1)
    old = dataclasses.replace(stored, state=orjson.dumps(state))
    revived = ledger.mapper.to_domain_event(old)
    assert revived.program_version == 1
    assert revived.points == earned.points


def test_a_snapshot_taken_before_contract_2_reads_with_zero_counters(ledger):
    apply(ledger, b.purchase(M, "2025-01-10T10:00:00Z", 5000))
    stored = ledger.mapper.to_stored_event(Snapshot.take(account(ledger, M)))
    state = orjson.loads(stored.state)
    old_state = state["state"]
    assert old_state.pop("class_version") == 2
    for name in (*CONTRACT_2_COUNTERS, "transferred_by_year"):
        del old_state[name]
    old = dataclasses.replace(stored, state=orjson.dumps(state))
    revived = ledger.mapper.to_domain_event(old).mutate(None)
    assert (revived.balance, revived.lifetime_transferred_in, revived.held) == (50, 0, 0)
    assert revived.transferred_by_year == {}
    revived.check_invariant()
