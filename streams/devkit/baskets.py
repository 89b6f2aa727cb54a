"""Basket lines for the simulator's purchases (the dev kit only).

``basket_items`` splits a purchase's amount over 1 to ``BASKET_LINES_MAX``
lines of a small catalogue (coffee ``COF-*`` sold by the bag, tea
``PRD-TEA-01``, everyday goods ``GEN-*``), so the demo's
campaigns (``demo-program.toml``: a product bonus, three coffees) have
something to match. Each basket is drawn from its own generator seeded by
the purchase's ``event_id``: the simulator's main random stream, and so
every other event it makes, is the same as without baskets. Line amounts
are whole minor units and add up to the purchase's amount; quantities are
whole too (the simulator writes no float: goods sold by weight, a fractional
quantity, are left to the ledger's own tests).
"""

from __future__ import annotations

import random

BASKET_LINES_MAX = 4
COFFEE_SKUS = ("COF-ARABICA-250", "COF-ROBUSTA-250", "COF-DECAF-250")
TEA_SKU = "PRD-TEA-01"
GENERAL_SKUS = tuple(f"GEN-{number:03d}" for number in range(1, 41))
COFFEE_LINE_PPM = 300_000   # of lines
TEA_LINE_PPM = 80_000
PPM = 1_000_000


def basket_items(event_id: str, amount_minor: int) -> list[dict]:
    """The lines of the purchase ``event_id``; their amounts add up to ``amount_minor``."""
    rng = random.Random(event_id)
    count = min(rng.randint(1, BASKET_LINES_MAX), max(amount_minor, 1))
    amounts = _split(rng, amount_minor, count)
    return [_line(rng, amount) for amount in amounts]


def _split(rng: random.Random, amount_minor: int, count: int) -> list[int]:
    cuts = sorted(rng.sample(range(1, amount_minor), count - 1)) if count > 1 else []
    edges = [0, *cuts, amount_minor]
    return [edges[i + 1] - edges[i] for i in range(count)]


def _line(rng: random.Random, amount_minor: int) -> dict:
    draw = rng.randrange(PPM)
    if draw < COFFEE_LINE_PPM:
        return {"sku": rng.choice(COFFEE_SKUS), "quantity": rng.randint(1, 3),
                "amount_minor": amount_minor}
    draw -= COFFEE_LINE_PPM
    if draw < TEA_LINE_PPM:
        return {"sku": TEA_SKU, "quantity": 1, "amount_minor": amount_minor}
    return {"sku": rng.choice(GENERAL_SKUS), "quantity": rng.randint(1, 4),
            "amount_minor": amount_minor}
