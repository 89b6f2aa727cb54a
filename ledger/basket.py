"""Basket lines of a purchase, as campaigns count them (CONTRACT contract 2, section 12).

``basket_lines`` turns a purchase's schema-valid ``items`` into
``BasketLine`` values kept by the command: integers only (a fractional
quantity, such as goods sold by weight, counts its whole units,
floor(quantity); a line without ``quantity`` counts 1; a line without
``amount_minor`` counts 0 toward a base amount), and a line with a negative
``amount_minor`` or ``quantity`` (a return line inside a sale) is kept but
matches no campaign. Fields beyond ``sku``, ``quantity`` and ``amount_minor``
are the producer's and are not kept (the payload fingerprint covers them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class BasketLine:
    """One line: ``units`` = floor(quantity), ``amount_minor`` 0 when the line gave none."""

    sku: str
    units: int
    amount_minor: int
    returned: bool = False  # a negative amount or quantity: matches no campaign

    @property
    def counts(self) -> bool:
        return not self.returned


def basket_line(item: dict) -> BasketLine:
    """A schema-valid ``items`` entry as a ``BasketLine`` (quantity floored, never a float)."""
    quantity = item.get("quantity", 1)
    amount_minor = item.get("amount_minor", 0)
    return BasketLine(sku=item["sku"], units=math.floor(quantity), amount_minor=amount_minor,
                      returned=quantity < 0 or amount_minor < 0)


def basket_lines(items: list[dict] | None) -> tuple[BasketLine, ...]:
    """The purchase's lines in the order sent (none when ``items`` is absent)."""
    return tuple(basket_line(item) for item in items or ())
