"""A campaign budget stays exact across workers (contract 2, section 12): 4 worker processes
on 12 partitions of the embedded broker and PostgreSQL, a campaign whose budget the qualifying
purchases exceed 5 times over, one worker SIGKILLed mid-stream. The campaign's points in the
facts equal its budget exactly, the budget record agrees, and every award is traceable to one
purchase and its Kafka position.

Size: ``PURCHASES`` = 10,000, the issue's (25 to 45 s on the shared 2-core box, broker and
PostgreSQL already up: most of it the four faust workers starting).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import orjson
import pytest

from ledger.domain import LoyaltyAccount
from ledger.program import DEFAULT_PROGRAM_PATH
from streams.producer import produce_lines
from streams.topics import ensure_topics
from streams.worker import open_ledger
from tests.streams.test_stream_pipeline import unique_settings
from tests.support import builders as b
from tests.support.pipeline import run_with_a_worker_killed

pytestmark = pytest.mark.broker

PURCHASES = 10000
MEMBERS = 500
WORKERS = 4
PARTITIONS = 12
BONUS_POINTS = 7
BUDGET_POINTS = PURCHASES * BONUS_POINTS // 5 - 3  # exceeded 5 times over; not a multiple of 7
CAMPAIGN = f"""
[[campaigns]]
id = "seven-while-it-lasts"
name = "Seven points a purchase while the budget lasts"
starts_at = "2025-01-01T00:00:00Z"
ends_at = "2026-01-01T00:00:00Z"
bonus_points = {BONUS_POINTS}
budget_points = {BUDGET_POINTS}
"""


def purchase_events() -> list[dict]:
    return [b.purchase(f"M-{n % MEMBERS:04d}", f"2025-{1 + n % 12:02d}-{1 + n % 28:02d}T10:00:00Z",
                       500 + n % 3000, event_id=f"pos-{n:05d}") for n in range(PURCHASES)]


def test_a_budget_is_exact_across_four_workers_with_a_sigkill(kafka_bootstrap, embedded_pg,
                                                             tmp_path):
    program_file = tmp_path / "program.toml"
    program_file.write_text(DEFAULT_PROGRAM_PATH.read_text() + CAMPAIGN)
    settings = replace(unique_settings(kafka_bootstrap, embedded_pg, "budget"),
                       partitions=PARTITIONS, program_file=str(program_file))
    ensure_topics(settings)
    ledger = open_ledger(settings)
    events = purchase_events()
    produced = produce_lines(settings.bootstrap_servers, settings.events_topic,
                             [orjson.dumps(event) for event in events])
    run_with_a_worker_killed(ledger, settings, produced, tmp_path, timeout_s=240,
                             workers_count=WORKERS, killed_at_fraction=0.1)

    earned = [f for f in ledger.fact_log.facts() if isinstance(f, LoyaltyAccount.PointsEarned)]
    assert sorted(f.source_event_id for f in earned) == sorted(e["event_id"] for e in events)
    lines = [(f, line["points"]) for f in earned for line in f.campaigns]
    assert sum(points for _, points in lines) == BUDGET_POINTS  # never more, never less
    assert ledger.budgets.awarded() == {"seven-while-it-lasts": BUDGET_POINTS}
    assert Counter(points for _, points in lines) == {
        BONUS_POINTS: BUDGET_POINTS // BONUS_POINTS, BUDGET_POINTS % BONUS_POINTS: 1}
    for fact, _ in lines:  # traceable: the purchase and where Kafka had it
        assert fact.source_position.startswith(f"{settings.events_topic}/")
    ledger.close()
