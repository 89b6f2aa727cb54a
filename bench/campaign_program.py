"""The benchmark's programme with 20 active campaigns (CONTRACT contract 2, section 12).

``campaign_program_text`` is the default program plus ``BENCH_CAMPAIGNS`` campaigns
that all run over the simulator's period and match its baskets
(``streams/devkit/baskets.py``): every effect (extra multiplier, bonus, points per
item, items with a bonus or a gift), every filter (stores, channels, tiers, smallest
amount, skus, sku prefixes), per-member limits and budgets (so batches take the
budgets' row locks, as a real programme's would). ``python -m bench`` measures ingest
with it against ingest with none, in the same run.
"""

from __future__ import annotations

from ledger.program import DEFAULT_PROGRAM_PATH

BENCH_CAMPAIGNS = 20
WINDOW = 'starts_at = "2000-01-01T00:00:00Z"\nends_at = "2100-01-01T00:00:00Z"\n'
BUDGET_POINTS = 10_000_000  # large: the locks are taken, the budget never runs out mid-run
_BODIES = (
    'extra_multiplier_pct = 100\nchannels = ["pos"]',
    'extra_multiplier_pct = 50\nstores = ["S-001", "S-002", "S-003", "S-004"]',
    'extra_multiplier_pct = 200\nsku_prefixes = ["COF-"]',
    'bonus_points = 50\nskus = ["PRD-TEA-01"]\nper_member_max = 5',
    'bonus_points = 20\nmin_amount_minor = 5000',
    'bonus_points = 10\ntiers = ["silver", "gold", "platinum"]',
    'points_per_item = 2\nsku_prefixes = ["GEN-0"]',
    'points_per_item = 5\nsku_prefixes = ["COF-"]',
    'items_min = 3\nbonus_points = 40\nsku_prefixes = ["COF-"]',
    'items_min = 6\nreward_id = "RW-MUG"\nsku_prefixes = ["COF-"]\nper_member_max = 1',
)


def campaign_program_text(count: int = BENCH_CAMPAIGNS) -> str:
    """The default program's text with ``count`` campaigns; every other one has a budget."""
    campaigns = []
    for number in range(count):
        body = _BODIES[number % len(_BODIES)]
        budget = f"\nbudget_points = {BUDGET_POINTS}" if number % 2 and "reward_id" not in body else ""
        campaigns.append(f'\n[[campaigns]]\nid = "bench-{number:02d}"\nname = "bench {number}"\n'
                         f"{WINDOW}{body}{budget}\n")
    return DEFAULT_PROGRAM_PATH.read_text().replace('name = "default"', 'name = "bench-campaigns"', 1) \
        + "".join(campaigns)
