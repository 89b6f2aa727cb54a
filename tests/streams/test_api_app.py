"""The till API's pieces without services: the OpenAPI document's schema
components, the answer of a write, and the settings the app refuses."""

from __future__ import annotations

import pytest

import schemas
from ledger.application import LoyaltyLedger
from streams.api.app import create_app
from streams.api.openapi import component_name, schema_components
from streams.api.reads import outcome_document
from streams.cli import main
from streams.settings import Settings
from tests.support import builders as b


def refs(node) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "$ref"] + [r for v in node.values() for r in refs(v)]
    if isinstance(node, list):
        return [r for item in node for r in refs(item)]
    return []


def test_every_schema_is_a_component_whose_refs_stay_in_the_document():
    components = schema_components()
    assert {component_name(name) for name in schemas.schema_names()} <= set(components)
    for name, component in components.items():
        assert "$id" not in component, name
        for ref in refs(component):
            target, _, _ = ref.removeprefix("#/components/schemas/").partition("/")
            assert ref.startswith("#/components/schemas/") and target in components, (name, ref)
    assert refs(components["inbound_refund_v1"]["properties"]["purchase_event_id"]) == [
        "#/components/schemas/common_v1/$defs/event_id"]


def test_a_rejection_answers_its_reason_and_no_points_moved():
    ledger = LoyaltyLedger()
    [result] = ledger.apply(*b.commands(b.redemption("m-1", "2025-03-01T10:00:00Z", 500, event_id="r-1")))
    outcome = next(fact for fact in result.facts if type(fact).__name__ == "RedemptionRejected")
    answer = outcome_document(outcome, ledger.find_account("m-1"))
    assert answer == {"event_id": "r-1", "member_id": "m-1", "outcome": "redemption_rejected",
                      "reason": "insufficient_points", "points": 0, "balance": 0, "held": 0,
                      "pending": 0, "version": ledger.find_account("m-1").version}


def test_read_threads_beyond_the_ledger_pool_are_refused_by_name(capsys, monkeypatch):
    with pytest.raises(ValueError, match="api_read_threads"):
        create_app(Settings(api_read_threads=99))
    monkeypatch.setenv("LOYALTY_API_READ_THREADS", "99")
    assert main(["api", "--bootstrap-servers", "x:9092", "--database-url", "postgresql://x/y"]) == 2
    assert "api_read_threads must be 1 to 15" in capsys.readouterr().err
