"""The benchmark's programmes with 20 campaigns (CONTRACT contract 2, section 12).

``realistic_campaign_program_text`` is the headline (``campaigns.ingest`` and,
since 2026-11-29, every ingest figure): 20 campaigns all running over the bench
stream, each aimed as a chain aims one (about 0.7 campaign lines an event).
``campaign_program_text`` (the dense stress set, ``campaigns.dense_ingest`` and
``ingest.dense_campaigns``, about 7 lines an event) is the default program plus
``BENCH_CAMPAIGNS`` campaigns that all run over the simulator's period and match
its baskets
(``streams/devkit/baskets.py``): every effect (extra multiplier, bonus, points per
item, items with a bonus or a gift), every filter (stores, channels, tiers, smallest
amount, skus, sku prefixes), per-member limits and budgets (so batches take the
budgets' row locks, as a real programme's would). ``python -m bench`` measures ingest
with each set against ingest with none, in the same run.
``targeted_campaign_program_text`` is 20 campaigns aimed by month and weekend (a
purchase matches one or two, but only about 8 run at once): an extra side of
``bench/campaign_cpu.py``.
"""

from __future__ import annotations

from datetime import date, timedelta

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


# A programme as marketing teams run one: the same 20 campaigns' effects, but each aimed
# (a month, a weekend, a product, a store, a tier), so a purchase matches one or two, not
# ten as with ``campaign_program_text`` (an extra figure of ``bench/campaign_cpu.py``).
_MONTHLY_BODIES = (
    'bonus_points = 20\nmin_amount_minor = 5000',
    'extra_multiplier_pct = 50\nchannels = ["online"]',
    'points_per_item = 2\nsku_prefixes = ["COF-"]',
    'items_min = 3\nbonus_points = 40\nsku_prefixes = ["COF-"]',
)
_WEEKENDS = ("2025-03-01", "2025-06-07", "2025-09-06", "2025-11-29")
_AIMED_BODIES = (
    'bonus_points = 50\nskus = ["PRD-TEA-01"]\nper_member_max = 5',
    'bonus_points = 10\ntiers = ["gold", "platinum"]',
    'extra_multiplier_pct = 50\nstores = ["S-001"]',
    'items_min = 6\nreward_id = "RW-MUG"\nsku_prefixes = ["COF-"]\nper_member_max = 1',
)


def _window(starts: str, ends: str) -> str:
    return f'starts_at = "{starts}T00:00:00Z"\nends_at = "{ends}T00:00:00Z"\n'


def targeted_campaign_program_text() -> str:
    """The default program with 20 campaigns aimed as a real programme's are: 12 monthly
    ones, 4 weekend double points, 4 for a product, a tier, a store and a gift; every other
    one of the points campaigns has a budget."""
    campaigns = [(_window(f"2025-{month:02d}-01", f"{2025 + month // 12}-{month % 12 + 1:02d}-01"),
                  _MONTHLY_BODIES[(month - 1) % len(_MONTHLY_BODIES)]) for month in range(1, 13)]
    campaigns += [(_window(day, _two_days_after(day)), 'extra_multiplier_pct = 100') for day in _WEEKENDS]
    campaigns += [(WINDOW, body) for body in _AIMED_BODIES]
    text = ""
    for number, (window, body) in enumerate(campaigns):
        budget = f"\nbudget_points = {BUDGET_POINTS}" if number % 2 and "reward_id" not in body else ""
        text += (f'\n[[campaigns]]\nid = "aimed-{number:02d}"\nname = "aimed {number}"\n'
                 f"{window}{body}{budget}\n")
    return DEFAULT_PROGRAM_PATH.read_text().replace('name = "default"', 'name = "aimed-campaigns"', 1) + text


def _two_days_after(day: str) -> str:
    return (date.fromisoformat(day) + timedelta(days=2)).isoformat()


# The headline programme (issue 17's "20 active campaigns"): 20 campaigns running over the
# whole bench stream (the simulated year 2025), each aimed as a chain aims one: a store or a
# store group, a channel, a tier, a product or a range of SKUs, a smallest basket, a gift
# for N items. Section 12 has no weekday filter, so "weekend" campaigns cannot run all year
# and are left out. Several have budgets; ``EXHAUSTED_BUDGET_POINTS`` runs out within the
# first few hundred events of any bench size (the flagship store's double points).
REALISTIC_WINDOW = 'starts_at = "2024-12-31T00:00:00Z"\nends_at = "2026-01-02T00:00:00Z"\n'
EXHAUSTED_BUDGET_POINTS = 2_000
_REALISTIC_BODIES = (
    f'extra_multiplier_pct = 100\nstores = ["S-001"]\nbudget_points = {EXHAUSTED_BUDGET_POINTS}',
    'extra_multiplier_pct = 50\nchannels = ["online"]\nmin_amount_minor = 8000',
    'bonus_points = 50\nskus = ["PRD-TEA-01"]\nper_member_max = 2',
    'bonus_points = 100\ntiers = ["platinum"]\nmin_amount_minor = 10000',
    'points_per_item = 5\nskus = ["COF-DECAF-250"]\nstores = ["S-002", "S-003"]',
    'items_min = 3\nreward_id = "RW-MUG"\nsku_prefixes = ["COF-"]\nper_member_max = 1',
    f'items_min = 4\nbonus_points = 40\nskus = ["GEN-001", "GEN-002", "GEN-003"]\n'
    f'budget_points = {BUDGET_POINTS}',
    'extra_multiplier_pct = 100\nsku_prefixes = ["GEN-01"]\nstores = ["S-005", "S-008"]',
    f'bonus_points = 20\nstores = ["S-002", "S-003", "S-004"]\nmin_amount_minor = 6000\n'
    f'budget_points = {BUDGET_POINTS}',
    'bonus_points = 10\ntiers = ["gold"]\nchannels = ["pos"]\nmin_amount_minor = 4000',
    'points_per_item = 2\nsku_prefixes = ["GEN-02"]\nchannels = ["online"]',
    f'extra_multiplier_pct = 200\nskus = ["COF-ARABICA-250"]\ntiers = ["silver"]\n'
    f'budget_points = {BUDGET_POINTS}',
    f'bonus_points = 300\nmin_amount_minor = 25000\nbudget_points = {BUDGET_POINTS}',
    'points_per_item = 3\nskus = ["GEN-033", "GEN-034"]',
    'items_min = 2\nbonus_points = 25\nskus = ["COF-ROBUSTA-250"]\nstores = ["S-006", "S-007", "S-020"]',
    'extra_multiplier_pct = 25\ntiers = ["gold", "platinum"]\nchannels = ["online"]',
    'bonus_points = 15\nstores = ["S-010", "S-011", "S-013", "S-019"]\nmin_amount_minor = 3000',
    'items_min = 6\nreward_id = "RW-TOTE"\nsku_prefixes = ["GEN-00"]',
    f'points_per_item = 1\nsku_prefixes = ["GEN-03"]\nstores = ["S-001"]\nbudget_points = {BUDGET_POINTS}',
    'extra_multiplier_pct = 100\nskus = ["GEN-040"]',
)


def realistic_campaign_program_text() -> str:
    """The default program with ``BENCH_CAMPAIGNS`` campaigns all running over the bench
    stream, each aimed (store group, channel, tier, product or SKU range, smallest basket,
    gift for N items), six with budgets, one of which runs out early in the stream."""
    text = ""
    for number, body in enumerate(_REALISTIC_BODIES):
        text += (f'\n[[campaigns]]\nid = "chain-{number:02d}"\nname = "chain {number}"\n'
                 f"{REALISTIC_WINDOW}{body}\n")
    return DEFAULT_PROGRAM_PATH.read_text().replace('name = "default"', 'name = "chain-campaigns"', 1) + text
