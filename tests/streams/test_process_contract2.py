"""``loyalty process --program retail-example.toml`` on a stream with contract 2's
pending points, adjustments and transfers: its balance rows carry the new
columns and equal the direct application of the same events."""

from __future__ import annotations

from ledger.application import LoyaltyLedger
from ledger.commands import command_from_event
from ledger.program import RETAIL_EXAMPLE_PROGRAM_PATH, load_program
from streams.cli import main
from tests.streams.test_process import expected_balance_row, read_jsonl
from tests.support.streamgen import with_faults
from tests.support.streamgen_contract2 import generate_contract_2_events

EVENTS = 1500


def test_process_outputs_carry_contract_2s_columns(tmp_path):
    events = generate_contract_2_events(seed=9, count=EVENTS)
    lines, _ = with_faults(events, seed=9)
    (tmp_path / "input.jsonl").write_text("\n".join(lines) + "\n")
    assert main(["process", str(tmp_path / "input.jsonl"), "--out", str(tmp_path / "out"),
                 "--program", str(RETAIL_EXAMPLE_PROGRAM_PATH)]) == 0
    direct = LoyaltyLedger(program=load_program(RETAIL_EXAMPLE_PROGRAM_PATH))
    direct.apply_in_order([command_from_event(event) for event in events])
    rows = read_jsonl(tmp_path / "out" / "balances.jsonl")
    assert len(rows) == 50
    for row in rows:
        assert row == expected_balance_row(direct.find_account(row["member_id"]))
    assert any(row["pending"] for row in rows) and any(row["lifetime_transferred_in"] for row in rows)
    ledger_types = {row["type"] for row in read_jsonl(tmp_path / "out" / "ledger.jsonl")}
    assert {"points_activated", "points_adjusted", "points_transferred_out",
            "points_transferred_in"} <= ledger_types
    tiers = read_jsonl(tmp_path / "out" / "tiers.jsonl")
    assert any(row["discount_pct"] > 0 for row in tiers)
