"""Basket lines kept by the purchase command (contract 2, section 12): floored
quantities, missing amounts and quantities, return lines; the schema accepts them."""

from __future__ import annotations

import orjson
import pytest

from ledger.basket import BasketLine
from ledger.commands import command_from_event
from streams.validation import InvalidInput, decode_inbound

PURCHASE = {"type": "purchase", "schema_version": 1, "event_id": "pos-1", "member_id": "m-1",
            "occurred_at": "2025-03-01T10:00:00+01:00", "amount_minor": 5000,
            "currency": "EUR", "store_id": "s-1"}


def purchase_with(items: list[dict]):
    return command_from_event(decode_inbound(orjson.dumps({**PURCHASE, "items": items})))


def test_the_command_keeps_the_lines_as_integers():
    command = purchase_with([
        {"sku": "A", "quantity": 2, "amount_minor": 1200},
        {"sku": "CHEESE", "quantity": 0.375, "amount_minor": 749, "name": "Comté"},
        {"sku": "KG", "quantity": 2.9},
        {"sku": "NOQ", "amount_minor": 300},
    ])
    assert command.items == (
        BasketLine("A", 2, 1200), BasketLine("CHEESE", 0, 749),  # floor(0.375) whole units
        BasketLine("KG", 2, 0),  # no amount: counts 0 toward a base amount
        BasketLine("NOQ", 1, 300),  # no quantity: counts 1
    )
    assert all(isinstance(line.units, int) for line in command.items)


def test_return_lines_are_kept_but_match_nothing():
    command = purchase_with([{"sku": "A", "quantity": -1, "amount_minor": -500},
                             {"sku": "B", "quantity": 1, "amount_minor": -200},
                             {"sku": "C", "quantity": -0.5}])
    assert [line.counts for line in command.items] == [False, False, False]


def test_a_purchase_without_items_has_no_lines():
    assert command_from_event(dict(PURCHASE)).items == ()


def test_the_items_change_the_fingerprint():
    plain = command_from_event(dict(PURCHASE))
    with_lines = purchase_with([{"sku": "A"}])
    assert plain.fingerprint != with_lines.fingerprint


@pytest.mark.parametrize("quantity", [0, 0.0, 1000001, -1000001])
def test_the_schema_refuses_a_zero_or_huge_quantity(quantity):
    with pytest.raises(InvalidInput):
        decode_inbound(orjson.dumps({**PURCHASE, "items": [{"sku": "A", "quantity": quantity}]}))
